package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/weft-net/weft/fabric"
	"github.com/weft-net/weft/fabric/health"
	"github.com/weft-net/weft/fabric/health/probe"
	"github.com/weft-net/weft/internal/api"
)

// healthTick is how often the health loop expires probes and sends those
// due: well below the probe interval, so jitter and the budget work.
const healthTick = 50 * time.Millisecond

// Prober is the kernel side of path health: fabric/health/probe.Conn.
type Prober interface {
	// SetLocal tells the prober about this node; it never blocks.
	SetLocal(probe.Local)
	// Send sends one probe; it does not block on the network.
	// probe.ErrNotReady: not sent, and not a miss.
	// size > 0: a path MTU probe of that size; probe.ErrTooBig: refuted.
	Send(t health.Target, seq uint64, sent time.Time, size int) error
	// Replies delivers answers; closed when Run returns.
	Replies() <-chan probe.Reply
	// Run answers and reads probes until ctx is done.
	Run(ctx context.Context) error
	testSender
}

// pathHealth is the agent's path health: the pure tracker and scheduler
// under one lock, the prober's view of the peers, and the prober.
type pathHealth struct {
	cfg health.Config

	mu    sync.Mutex
	tr    *health.Tracker
	sc    *health.Scheduler
	peers map[string]probe.Peer
	mtu   map[string]int

	count healthCounters
	self  selfTest
}

func newPathHealth(cfg health.Config) *pathHealth {
	seed := rand.Uint64()
	return &pathHealth{
		cfg:   cfg,
		tr:    health.NewTracker(cfg, seed>>1), // room before wrapping
		sc:    health.NewScheduler(cfg, rand.New(rand.NewPCG(seed, rand.Uint64()))),
		peers: map[string]probe.Peer{},
		mtu:   map[string]int{},
		self:  newSelfTest(),
	}
}

// avoid sets each peer's Avoid from the paths found down. No-op when
// health is off.
func (h *pathHealth) avoid(peers []fabric.Peer) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tr.AvoidAll(peers)
}

// planned takes a new plan: the tracker learns each peer's path and
// candidates, the prober's peer view is rebuilt, path changes are logged.
func (a *Agent) healthPlanned(local fabric.Local, peers []fabric.Peer, plan fabric.Plan) {
	h := a.health
	if h == nil {
		return
	}
	byName := make(map[string]*fabric.Peer, len(peers))
	for i := range peers {
		byName[peers[i].Name] = &peers[i]
	}
	view := make(map[string]probe.Peer, len(plan.Peers))
	mtu := make(map[string]int, len(plan.Peers))
	for _, pp := range plan.Peers {
		p := byName[pp.Name]
		if p == nil || len(pp.Subnets) == 0 {
			continue
		}
		mtu[pp.Name] = pp.MTU
		view[pp.Name] = probe.Peer{Name: pp.Name, Addr: pp.Subnets[0].Addr(), Underlay: underlayOf(local, p, pp), VTEPMAC: p.VTEPMAC}
	}
	h.mu.Lock()
	changes := h.tr.SetPlan(plan.Peers, a.now())
	h.peers, h.mtu = view, mtu
	h.mu.Unlock()
	h.count.pathMoves.Add(uint64(len(changes)))
	for _, c := range changes {
		a.log.Info("path changed", "peer", c.Peer, "from", c.From, "to", c.To, "reason", c.Reason)
	}
	h.self.planned(plan, a.now())
}

// underlayOf returns the underlay address off-path probes to p go to: the
// plan's remote, unless that is a WireGuard endpoint (maybe a public
// address), then p's first IPv4 underlay address on-link, else its first.
func underlayOf(local fabric.Local, p *fabric.Peer, pp fabric.PeerPlan) netip.Addr {
	if pp.Path != fabric.PathWireGuard && pp.Remote.IsValid() {
		return pp.Remote
	}
	var first netip.Addr
	for _, u := range p.Underlay {
		u = u.Unmap()
		if !u.Is4() {
			continue
		}
		for _, c := range local.Connected {
			if c.Contains(u) {
				return u
			}
		}
		if !first.IsValid() {
			first = u
		}
	}
	return first
}

func (h *pathHealth) peer(name string) (probe.Peer, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.peers[name]
	return p, ok
}

// runHealth probes until ctx is done. Errors that stop it go to status.
func (a *Agent) runHealth(ctx context.Context, open func(probe.Config) (Prober, error)) {
	h := a.health
	conn, err := open(probe.Config{
		Port:   h.cfg.Port,
		Key:    health.ProbeKey(a.key, a.cfg.ClusterName),
		Peer:   h.peer,
		Logger: a.log,
		Now:    a.now,
	})
	if err != nil {
		a.log.Error("path health off", "err", err)
		a.setProblem("health", err.Error())
		return
	}
	go func() {
		if err := conn.Run(ctx); err != nil {
			a.log.Error("prober stopped", "err", err)
			a.setProblem("health", err.Error())
		}
	}()
	go a.runSelfTests(ctx, conn)
	tick := time.NewTicker(healthTick)
	defer tick.Stop()
	replies := conn.Replies()
	for {
		var changes []health.StateChange
		select {
		case <-ctx.Done():
			return
		case r, ok := <-replies:
			if !ok {
				return
			}
			if r.Probe.Type == health.ProbeEcho {
				h.self.echo(r)
				continue
			}
			h.count.answered.Add(1)
			h.mu.Lock()
			changes = h.tr.Reply(r.Probe.Seq, r.Probe.Node, r.Probe.Path, r.At)
			h.mu.Unlock()
		case <-tick.C:
			conn.SetLocal(a.probeLocal())
			now := a.now()
			h.mu.Lock()
			changes = h.tr.Expire(now)
			due := h.sc.Due(now, h.tr.Targets())
			seqs := make([]uint64, len(due))
			sizes := make([]int, len(due))
			for i, t := range due {
				seqs[i], sizes[i] = h.tr.SentSized(t, now)
			}
			h.mu.Unlock()
			for i, t := range due {
				err := conn.Send(t, seqs[i], now, sizes[i])
				if err == nil {
					h.count.sent.Add(1)
					continue
				}
				a.log.Debug("probe not sent", "target", t.String(), "err", err)
				h.mu.Lock()
				if errors.Is(err, probe.ErrNotReady) {
					h.tr.Cancel(seqs[i])
				} else {
					h.count.failed.Add(1)
					changes = append(changes, h.tr.Failed(seqs[i], now)...)
				}
				h.mu.Unlock()
			}
		}
		a.healthChanged(changes)
	}
}

// healthChanged logs state changes and replans when one changes what the
// planner avoids.
func (a *Agent) healthChanged(changes []health.StateChange) {
	if len(changes) > 0 {
		a.health.count.stateChanges.Add(uint64(len(changes)))
	}
	replan := false
	for _, c := range changes {
		if c.LocalFault {
			a.localFault(c)
		}
		if c.MTU > 0 {
			a.log.Info("path mtu found", "peer", c.Peer, "path", c.Path, "mtu", c.MTU, "reason", c.Reason)
			replan = true
			continue
		}
		a.log.Info("path state changed", "peer", c.Peer, "path", c.Path, "from", c.From, "to", c.To, "reason", c.Reason)
		if c.From == health.StateDown || c.To == health.StateDown {
			replan = true
		}
	}
	if replan {
		a.replan()
	}
}

// probeLocal returns this node as the prober needs it.
func (a *Agent) probeLocal() probe.Local {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := probe.Local{Name: a.cfg.NodeName, UnderlayDev: a.underlay.Interface, VTEPMAC: a.vtepMAC,
		VNI: a.cfg.VXLAN.VNI, VXLANPort: a.cfg.VXLAN.Port}
	if a.dp != nil && a.dp.WireGuard().Mode != "" {
		l.WireGuardDev = a.cfg.WireGuard.Device
	}
	if a.claim.Subnet.IsValid() {
		// The VTEP (or IP-in-IP device) address: the subnet's network address.
		l.Addr = a.claim.Subnet.Masked().Addr()
	}
	return l
}

// openProber opens the real prober in the agent's namespace.
func openProber(cfg probe.Config) (Prober, error) { return probe.Listen(cfg) }

// peerHealth fills p's MTU and health from path health, if it is on.
func (a *Agent) peerHealth(p *api.Peer, snap map[string]health.PeerStatus) {
	h := a.health
	if h == nil || p.Local {
		return
	}
	h.mu.Lock()
	p.MTU = h.mtu[p.Name]
	h.mu.Unlock()
	s, ok := snap[p.Name]
	if !ok || s.Path == fabric.PathNone {
		return
	}
	ph := &api.PeerHealth{State: string(s.State), RTTMillis: millis(s.RTT), Loss: s.Loss, PathSince: s.Since, Paths: []api.PathHealth{}}
	if c := s.LastChange; c != nil {
		ph.LastChange = &api.PathChange{At: c.At, From: string(c.From), To: string(c.To), Reason: c.Reason}
	}
	for _, x := range s.Paths {
		ph.Paths = append(ph.Paths, api.PathHealth{Path: string(x.Path), State: string(x.State), Since: x.Since,
			Reason: x.Reason, RTTMillis: millis(x.RTT), Loss: x.Loss, Probes: x.Probes, MTU: x.MTU})
	}
	p.Health = ph
}

// healthSnapshot returns path health per peer name; nil when it is off.
func (a *Agent) healthSnapshot() map[string]health.PeerStatus {
	h := a.health
	if h == nil {
		return nil
	}
	h.mu.Lock()
	snap := h.tr.Snapshot()
	h.mu.Unlock()
	out := make(map[string]health.PeerStatus, len(snap))
	for _, s := range snap {
		out[s.Peer] = s
	}
	return out
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// maxHealthProblems bounds the path-health lines in status.
const maxHealthProblems = 10

// healthProblems returns what path health has to say in status: peers
// whose path in use is down, and peers on a fallback path.
func (a *Agent) healthProblems() []string {
	snap := a.healthSnapshot()
	if snap == nil {
		return nil
	}
	out := a.selfTestProblems()
	more := 0
	for _, name := range slices.Sorted(maps.Keys(snap)) {
		s := snap[name]
		line := ""
		switch {
		case s.Path == fabric.PathNone || len(s.Paths) == 0:
		case s.State == health.StateDown:
			line = fmt.Sprintf("path health: %s: %s in use is down", name, s.Path)
		case s.Paths[0].Path != s.Path:
			line = fmt.Sprintf("path health: %s: on fallback %s, %s is %s", name, s.Path, s.Paths[0].Path, s.Paths[0].State)
		}
		if line == "" {
			continue
		}
		if len(out) == maxHealthProblems {
			more++
			continue
		}
		out = append(out, line)
	}
	if more > 0 {
		out = append(out, fmt.Sprintf("path health: %d more peers", more))
	}
	return out
}
