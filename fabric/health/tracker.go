package health

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/weft-net/weft/fabric"
)

// Target is one thing to probe: a path to a peer. Route says how the probe
// goes: true through the routing table, exactly as the peer's workload
// traffic goes now (the active path); false built for Path by hand, for a
// path that is not in the routing table (see OffPath).
type Target struct {
	Peer  string
	Path  fabric.PathKind
	Route bool
	// MTU marks a path MTU probe (off-path, padded to the size SentSized
	// returns, DF set): its outcome feeds the path MTU search, not the
	// path's state.
	MTU bool
}

func (t Target) String() string {
	how := "off-path"
	if t.Route {
		how = "route"
	}
	if t.MTU {
		how = "mtu"
	}
	return fmt.Sprintf("%s/%s/%s", t.Peer, t.Path, how)
}

// OffPath reports whether a probe can be sent over kind without the
// routing table sending it there: direct (a plain IP packet to the peer's
// MAC on the underlay) and VXLAN (a VXLAN packet to the peer's underlay
// address and port). Native, IP-in-IP and WireGuard paths are probed only
// while they are in use.
func OffPath(kind fabric.PathKind) bool {
	return kind == fabric.PathDirect || kind == fabric.PathVXLAN
}

// StateChange is a path to a peer changing state.
type StateChange struct {
	At       time.Time
	Peer     string
	Path     fabric.PathKind
	From, To State
	Reason   string
	// MTU is set (From == To) when the path MTU found for Path changed.
	MTU int
	// LocalFault is set on a change to down when Path had just come back
	// up on probes built by hand (off its route) and then failed on probes
	// through the routing table: the network carries the path, this
	// node's own device (say a checksum offload) does not.
	LocalFault bool
}

// PathChange is the planner moving a peer to another path.
type PathChange struct {
	At     time.Time       `json:"at"`
	Peer   string          `json:"-"`
	From   fabric.PathKind `json:"from"`
	To     fabric.PathKind `json:"to"`
	Reason string          `json:"reason"`
}

type peerState struct {
	first      time.Time // when the peer first appeared in the plan
	answered   bool      // it has answered a probe
	active     fabric.PathKind
	candidates []fabric.PathKind
	since      time.Time
	last       *PathChange
	links      map[fabric.PathKind]*Link
	maxMTU     int // the active path's MTU before discovery
	search     *mtuSearch
	found      map[fabric.PathKind]foundMTU
}

type pending struct {
	target Target
	sent   time.Time
	size   int // path MTU probes
}

// Tracker holds the health of every path to every peer of the plan. It is
// not safe for concurrent use: the caller serialises.
type Tracker struct {
	now     time.Time // of the last SetPlan, Expire or Sent: Targets' clock
	cfg     Config
	peers   map[string]*peerState
	seq     uint64
	pending map[uint64]pending
}

// NewTracker returns an empty Tracker. seqStart is the first sequence
// number minus one: a random one keeps answers meant for an earlier run of
// the agent from matching.
func NewTracker(cfg Config, seqStart uint64) *Tracker {
	return &Tracker{cfg: cfg, peers: map[string]*peerState{}, seq: seqStart, pending: map[uint64]pending{}}
}

// SetPlan takes the planner's latest decision at now: each peer's path and
// candidates. Peers not in plans are forgotten, with their paths' states.
// It returns the peers whose path changed (not their first plan).
func (t *Tracker) SetPlan(plans []fabric.PeerPlan, now time.Time) []PathChange {
	t.now = now
	var out []PathChange
	seen := make(map[string]bool, len(plans))
	for _, pp := range plans {
		seen[pp.Name] = true
		ps, ok := t.peers[pp.Name]
		if !ok {
			ps = &peerState{first: now, active: pp.Path, since: now, links: map[fabric.PathKind]*Link{}, found: map[fabric.PathKind]foundMTU{}}
			t.peers[pp.Name] = ps
		} else if ps.active != pp.Path {
			c := PathChange{At: now, Peer: pp.Name, From: ps.active, To: pp.Path, Reason: pp.Reason}
			ps.active, ps.since, ps.last = pp.Path, now, &c
			out = append(out, c)
		}
		ps.candidates = slices.Clone(pp.Candidates)
		for kind := range ps.links {
			if !slices.Contains(ps.candidates, kind) {
				delete(ps.links, kind)
			}
		}
		maxMTU := pp.MaxMTU
		if maxMTU == 0 {
			maxMTU = pp.MTU
		}
		if ps.maxMTU != maxMTU {
			// Another path (or the same with another MTU): search afresh.
			ps.maxMTU, ps.search = maxMTU, nil
			delete(ps.found, pp.Path)
		}
		if ps.search != nil && ps.search.path != ps.active {
			ps.search = nil
		}
	}
	for name := range t.peers {
		if !seen[name] {
			delete(t.peers, name)
		}
	}
	for seq, p := range t.pending {
		if !seen[p.target.Peer] {
			delete(t.pending, seq)
		}
	}
	return out
}

// Targets returns what to probe, by peer name: every peer's active path
// through the routing table, each cheaper candidate that can be probed off
// its path (to come back to it), and the next candidate after the active
// one if it can (to know the fallback works before it is needed).
func (t *Tracker) Targets() []Target {
	names := make([]string, 0, len(t.peers))
	for name := range t.peers {
		names = append(names, name)
	}
	slices.Sort(names)
	var out []Target
	for _, name := range names {
		ps := t.peers[name]
		at := slices.Index(ps.candidates, ps.active)
		if ps.active == fabric.PathNone || ps.active == "" || at < 0 {
			continue
		}
		out = append(out, Target{Peer: name, Path: ps.active, Route: true})
		for i, c := range ps.candidates {
			if (i < at || i == at+1) && OffPath(c) {
				out = append(out, Target{Peer: name, Path: c})
			}
		}
		if tg, ok := t.mtuTarget(name, ps, t.now); ok {
			out = append(out, tg)
		}
	}
	return out
}

// SentSized is Sent that also returns the size (the whole IP packet) a path
// MTU probe must have; 0 for other probes.
func (t *Tracker) SentSized(target Target, now time.Time) (seq uint64, size int) {
	seq = t.Sent(target, now)
	if !target.MTU {
		return seq, 0
	}
	ps := t.peers[target.Peer]
	if ps == nil || ps.active != target.Path {
		return seq, 0
	}
	if ps.search == nil {
		ps.search = newMTUSearch(ps.active, ps.maxMTU)
	}
	size = ps.search.next()
	p := t.pending[seq]
	p.size = size
	t.pending[seq] = p
	return seq, size
}

// Sent records that a probe for target left at now, and returns its
// sequence number (never 0).
func (t *Tracker) Sent(target Target, now time.Time) uint64 {
	t.now = now
	t.seq++
	if t.seq == 0 {
		t.seq++
	}
	t.pending[t.seq] = pending{target: target, sent: now}
	return t.seq
}

// Reply records the answer to probe seq from peer over path, arriving at
// now. An answer that matches no probe waiting for one (late, duplicate,
// or from another peer or path) is ignored.
func (t *Tracker) Reply(seq uint64, peer string, path fabric.PathKind, now time.Time) []StateChange {
	p, ok := t.pending[seq]
	if !ok || p.target.Peer != peer || p.target.Path != path {
		return nil
	}
	delete(t.pending, seq)
	if p.target.MTU {
		return t.mtuObserve(p.target, p.size, true, now)
	}
	return t.observe(p.target, true, now.Sub(p.sent), now)
}

// Cancel forgets probe seq without counting it: it could not be sent for a
// reason that says nothing about the path.
func (t *Tracker) Cancel(seq uint64) { delete(t.pending, seq) }

// Failed records that the probe seq could not be sent: a miss at now.
func (t *Tracker) Failed(seq uint64, now time.Time) []StateChange {
	p, ok := t.pending[seq]
	if !ok {
		return nil
	}
	delete(t.pending, seq)
	if p.target.MTU {
		return t.mtuObserve(p.target, p.size, false, now)
	}
	return t.observe(p.target, false, 0, now)
}

// Expire counts every probe older than the timeout as missed, and gives a
// down path that cannot be probed off its route another try (StateUnknown)
// once it has been down for its hold-down (doubled each time such a try
// fails soon). Call it on every tick.
func (t *Tracker) Expire(now time.Time) []StateChange {
	t.now = now
	var late []uint64
	for seq, p := range t.pending {
		if now.Sub(p.sent) >= t.cfg.Timeout {
			late = append(late, seq)
		}
	}
	slices.Sort(late) // oldest first: the order the probes were sent
	var out []StateChange
	for _, seq := range late {
		p := t.pending[seq]
		delete(t.pending, seq)
		if p.target.MTU {
			out = append(out, t.mtuObserve(p.target, p.size, false, now)...)
			continue
		}
		out = append(out, t.observe(p.target, false, 0, now)...)
	}
	for _, name := range t.sortedNames() {
		ps := t.peers[name]
		for _, kind := range ps.candidates {
			l := ps.links[kind]
			if l == nil || l.State != StateDown || OffPath(kind) || kind == ps.active || now.Sub(l.Since) < l.holdDown(t.cfg) {
				continue
			}
			reason := fmt.Sprintf("retried after %s: cannot be probed off its route", l.holdDown(t.cfg))
			l.Reset(now, reason)
			out = append(out, StateChange{At: now, Peer: name, Path: kind, From: StateDown, To: StateUnknown, Reason: reason})
		}
	}
	return out
}

func (t *Tracker) observe(target Target, ok bool, rtt time.Duration, now time.Time) []StateChange {
	ps := t.peers[target.Peer]
	if ps == nil || !slices.Contains(ps.candidates, target.Path) {
		return nil
	}
	if ok {
		ps.answered = true
	} else if !ps.answered && now.Sub(ps.first) < t.cfg.StartGrace {
		return nil // a new peer: it may not know this node yet
	}
	l := ps.links[target.Path]
	if l == nil {
		l = &Link{}
		ps.links[target.Path] = l
	}
	penalty := l.penalty
	from, changed := l.Observe(ok, rtt, now, t.cfg)
	if !changed {
		return nil
	}
	c := StateChange{At: now, Peer: target.Peer, Path: target.Path, From: from, To: l.State, Reason: l.Reason}
	switch {
	case l.State == StateUp:
		// Remember how it came back: off its route, or through it.
		l.upOffRoute = !target.Route
	case l.State == StateDown && target.Route && l.upOffRoute && l.penalty > penalty:
		// Probes built by hand brought it back, and the first probes
		// through the routing table took it down again soon after: the
		// network carries the path's packets, this node's own device does
		// not send them intact (the encapsulation self-test's finding).
		c.LocalFault = true
		c.Reason += "; packets through the routing table are lost while hand-built ones arrive: a fault in this node's own " + string(target.Path) + " sending"
	}
	return []StateChange{c}
}

// Avoid returns the paths to peer that are down, in candidate order.
func (t *Tracker) Avoid(peer string) []fabric.PathKind {
	ps := t.peers[peer]
	if ps == nil {
		return nil
	}
	var out []fabric.PathKind
	for _, kind := range ps.candidates {
		if l := ps.links[kind]; l != nil && l.State == StateDown {
			out = append(out, kind)
		}
	}
	return out
}

// AvoidAll sets Avoid on every one of peers from the paths found down, and
// PathMTU from the path MTUs found.
func (t *Tracker) AvoidAll(peers []fabric.Peer) {
	for i := range peers {
		peers[i].Avoid = t.Avoid(peers[i].Name)
		peers[i].PathMTU = t.PathMTUs(peers[i].Name)
	}
}

// Pending returns how many probes wait for an answer.
func (t *Tracker) Pending() int { return len(t.pending) }

// PathStatus is the health of one path to a peer.
type PathStatus struct {
	Path   fabric.PathKind `json:"path"`
	State  State           `json:"state"`
	Since  time.Time       `json:"since,omitzero"`
	Reason string          `json:"reason,omitempty"`
	RTT    time.Duration   `json:"rtt"`
	Loss   float64         `json:"loss"`
	Probes int             `json:"probes"`
	// MTU is the path MTU found; 0 when none (yet).
	MTU int `json:"mtu,omitempty"`
}

// PeerStatus is the health of a peer's paths as shown by `weft peers`.
type PeerStatus struct {
	Peer string
	// Path is the path in use, Since when it was taken; State, RTT and
	// Loss are its own.
	Path  fabric.PathKind
	State State
	RTT   time.Duration
	Loss  float64
	Since time.Time
	// LastChange is the last time the peer moved to another path; nil
	// when it never did.
	LastChange *PathChange
	// Paths are every candidate, cheapest first.
	Paths []PathStatus
}

// Snapshot returns the status of every peer, by name. The result is the
// caller's.
func (t *Tracker) Snapshot() []PeerStatus {
	out := make([]PeerStatus, 0, len(t.peers))
	for _, name := range t.sortedNames() {
		ps := t.peers[name]
		s := PeerStatus{Peer: name, Path: ps.active, State: StateUnknown, Since: ps.since}
		if ps.last != nil {
			c := *ps.last
			s.LastChange = &c
		}
		for _, kind := range ps.candidates {
			st := PathStatus{Path: kind, State: StateUnknown}
			if l := ps.links[kind]; l != nil {
				st = PathStatus{Path: kind, State: l.state(), Since: l.Since, Reason: l.Reason, RTT: l.RTT, Loss: l.Loss(), Probes: l.Probes()}
			}
			st.MTU = ps.found[kind].mtu
			if kind == ps.active {
				s.State, s.RTT, s.Loss = st.State, st.RTT, st.Loss
			}
			s.Paths = append(s.Paths, st)
		}
		out = append(out, s)
	}
	return out
}

func (t *Tracker) sortedNames() []string {
	names := make([]string, 0, len(t.peers))
	for name := range t.peers {
		names = append(names, name)
	}
	slices.SortFunc(names, cmp.Compare[string])
	return names
}

// Answered reports whether peer has answered any probe since it appeared
// in the plan (so it knows this node).
func (t *Tracker) Answered(peer string) bool {
	ps := t.peers[peer]
	return ps != nil && ps.answered
}
