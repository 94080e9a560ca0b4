package health

import (
	"fmt"
	"time"

	"github.com/weft-net/weft/fabric"
)

// Path MTU.
//
// For the path in use, where it can be probed off its route (direct and
// VXLAN: the prober builds the packets and sets DF on them), the tracker
// searches the largest workload packet the path carries: first a probe of
// the path's full MTU (the common case: one probe and done), then a binary
// search between MinMTU and the largest size not yet refuted. A probe
// that goes unanswered, or that the kernel refuses as too big, refutes its
// size; an answer confirms it. The result goes to the planner
// (fabric.Peer.PathMTU), which gives the peer's routes that MTU when it is
// below the path's own; it is searched again after MTUReprobe and
// whenever the peer moves to another path.
//
// VXLAN is probed with hand-built frames with DF set, not through the
// kernel's device, whose outer packets may be fragmented by routers (the
// device does not set DF): fragments cost, and where a link drops
// oversized frames silently (an MTU mismatch) they never arrive.

// MinMTU is the smallest path MTU searched: the datagram every IPv4 host
// must accept.
const MinMTU = 576

// DefaultMTUReprobe is how long a found path MTU is trusted.
const DefaultMTUReprobe = 10 * time.Minute

// mtuSearch is the search of one peer's path MTU on one path.
type mtuSearch struct {
	path     fabric.PathKind
	max      int // the path's MTU before discovery
	lo, hi   int // lo confirmed (or MinMTU), hi not yet refuted
	triedMax bool
}

func newMTUSearch(path fabric.PathKind, max int) *mtuSearch {
	return &mtuSearch{path: path, max: max, lo: MinMTU, hi: max}
}

// next returns the size to probe.
func (m *mtuSearch) next() int {
	if !m.triedMax {
		return m.max
	}
	return (m.lo + m.hi + 1) / 2
}

// observe records that a probe of size was answered (ok) or not. It
// returns the path MTU once the search is over, else 0.
func (m *mtuSearch) observe(size int, ok bool) int {
	if size == m.max {
		m.triedMax = true
	}
	switch {
	case ok && size > m.lo:
		m.lo = size
	case !ok && size-1 < m.hi:
		m.hi = size - 1
	}
	if m.hi < m.lo {
		m.hi = m.lo // a lost small probe after a big answer: trust the answer
	}
	if m.lo >= m.hi {
		return m.lo
	}
	return 0
}

// foundMTU is a path MTU found, and when.
type foundMTU struct {
	mtu int
	at  time.Time
}

// mtuTarget returns the path MTU probe target of ps, or false when its
// path needs no search now.
func (t *Tracker) mtuTarget(name string, ps *peerState, now time.Time) (Target, bool) {
	if !OffPath(ps.active) || ps.maxMTU < MinMTU {
		return Target{}, false
	}
	if l := ps.links[ps.active]; l != nil && l.State == StateDown {
		return Target{}, false
	}
	if f, ok := ps.found[ps.active]; ok && now.Sub(f.at) < t.mtuReprobe() {
		return Target{}, false
	}
	return Target{Peer: name, Path: ps.active, MTU: true}, true
}

func (t *Tracker) mtuReprobe() time.Duration {
	if t.cfg.MTUReprobe > 0 {
		return t.cfg.MTUReprobe
	}
	return DefaultMTUReprobe
}

// mtuObserve feeds a path MTU probe's outcome to its search.
func (t *Tracker) mtuObserve(target Target, size int, ok bool, now time.Time) []StateChange {
	ps := t.peers[target.Peer]
	if ps == nil || ps.search == nil || ps.search.path != target.Path || size <= 0 {
		return nil
	}
	mtu := ps.search.observe(size, ok)
	if mtu == 0 {
		return nil
	}
	ps.search = nil
	prev := ps.found[target.Path]
	ps.found[target.Path] = foundMTU{mtu: mtu, at: now}
	if prev.mtu == mtu {
		return nil
	}
	st := StateUnknown
	if l := ps.links[target.Path]; l != nil {
		st = l.state()
	}
	return []StateChange{{At: now, Peer: target.Peer, Path: target.Path, From: st, To: st, MTU: mtu,
		Reason: fmt.Sprintf("path MTU %d (the path's own %d)", mtu, ps.maxMTU)}}
}

// PathMTUs returns the path MTUs found for peer, by path; nil when none.
// The map is the caller's.
func (t *Tracker) PathMTUs(peer string) map[fabric.PathKind]int {
	ps := t.peers[peer]
	if ps == nil || len(ps.found) == 0 {
		return nil
	}
	out := make(map[fabric.PathKind]int, len(ps.found))
	for k, f := range ps.found {
		out[k] = f.mtu
	}
	return out
}
