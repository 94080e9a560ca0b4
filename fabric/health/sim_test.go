package health

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weft-net/weft/fabric"
)

// simNet says whether a probe to peer over path is answered at t.
type simNet func(peer string, path fabric.PathKind, t time.Duration, rng *rand.Rand) bool

// simNetTarget is simNet that also sees how the probe goes (Target.Route).
type simNetTarget func(tg Target, t time.Duration, rng *rand.Rand) bool

// simulate runs path health for h1 of a small lab against net for dur on a
// 50 ms tick, with replies arriving 2 ms after the probe, replanning with
// fabric.Compute on every state change as the agent does. It returns the
// path changes per peer.
func simulate(t *testing.T, cfg Config, net simNet, dur time.Duration) map[string][]PathChange {
	t.Helper()
	return simulateTargets(t, cfg, func(tg Target, at time.Duration, rng *rand.Rand) bool { return net(tg.Peer, tg.Path, at, rng) }, dur)
}

func simulateTargets(t *testing.T, cfg Config, net simNetTarget, dur time.Duration) map[string][]PathChange {
	t.Helper()
	key := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	local := fabric.Local{
		Name: "h1", Subnets: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")},
		UnderlayDev: "eth0", UnderlayAddr: netip.MustParseAddr("198.18.1.2"), UnderlayMTU: 1500,
		Connected: []netip.Prefix{netip.MustParsePrefix("198.18.1.2/24")},
		Location:  fabric.Location{Cloud: "lab", Region: "r1"}, VTEPMAC: fabric.VTEPMAC("h1"), WireGuardKey: key(1),
	}
	peer := func(name, addr, subnet, region string, k byte) fabric.Peer {
		return fabric.Peer{Name: name, Underlay: []netip.Addr{netip.MustParseAddr(addr)},
			Location: fabric.Location{Cloud: "lab", Region: region}, Subnets: []netip.Prefix{netip.MustParsePrefix(subnet)},
			VTEPMAC: fabric.VTEPMAC(name), WireGuardKey: key(k), WireGuardPort: 51820}
	}
	peers := []fabric.Peer{
		peer("h2", "198.18.1.3", "10.244.2.0/24", "r1", 2), // same segment: direct
		peer("h3", "198.18.2.2", "10.244.3.0/24", "r1", 3), // other segment: vxlan
		peer("h4", "198.19.1.2", "10.244.4.0/24", "r2", 4), // other region: wireguard
	}
	opts := fabric.DefaultOptions()
	rng := rand.New(rand.NewPCG(11, 12))
	tr := NewTracker(cfg, 0)
	sc := NewScheduler(cfg, rng)
	start := time.Unix(1764000000, 0)
	changes := map[string][]PathChange{}
	replan := func(now time.Time) {
		tr.AvoidAll(peers)
		plan := fabric.Compute(local, peers, opts)
		for _, c := range tr.SetPlan(plan.Peers, now) {
			changes[c.Peer] = append(changes[c.Peer], c)
		}
	}
	replan(start)
	type inflight struct {
		seq  uint64
		tg   Target
		at   time.Time
		lost bool
	}
	var flying []inflight
	for now := start; now.Sub(start) < dur; now = now.Add(50 * time.Millisecond) {
		var sc2 []StateChange
		keep := flying[:0]
		for _, f := range flying {
			if f.at.After(now) {
				keep = append(keep, f)
				continue
			}
			if !f.lost {
				sc2 = append(sc2, tr.Reply(f.seq, f.tg.Peer, f.tg.Path, f.at)...)
			}
		}
		flying = keep
		sc2 = append(sc2, tr.Expire(now)...)
		if len(sc2) > 0 {
			replan(now)
		}
		for _, tg := range sc.Due(now, tr.Targets()) {
			seq := tr.Sent(tg, now)
			ok := net(tg, now.Sub(start), rng)
			flying = append(flying, inflight{seq: seq, tg: tg, at: now.Add(2 * time.Millisecond), lost: !ok})
		}
	}
	return changes
}

func describe(cs []PathChange, start time.Time) string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "%v %s->%s (%s); ", c.At.Sub(start), c.From, c.To, c.Reason)
	}
	return b.String()
}

// TestSimulationFallbackAndReturn: h2's direct path breaks at 10 s and
// heals at 30 s; h3's overlay flaps (half the probes lost) from 50 s to
// 80 s and heals; h4 (encrypted) never changes.
func TestSimulationFallbackAndReturn(t *testing.T) {
	cfg := DefaultConfig()
	net := func(peer string, path fabric.PathKind, at time.Duration, rng *rand.Rand) bool {
		switch {
		case peer == "h2" && path == direct:
			return at < 10*time.Second || at >= 30*time.Second
		case peer == "h3" && path == vxlan && at >= 50*time.Second && at < 80*time.Second:
			return rng.IntN(2) == 0
		}
		return true
	}
	start := time.Unix(1764000000, 0)
	changes := simulate(t, cfg, net, 120*time.Second)

	h2 := changes["h2"]
	if len(h2) != 2 {
		t.Fatalf("h2: %d path changes, want 2 (away and back): %s", len(h2), describe(h2, start))
	}
	away, back := h2[0].At.Sub(start), h2[1].At.Sub(start)
	if h2[0].To != vxlan || away < 10*time.Second || away > 13*time.Second {
		t.Errorf("h2 moved to %s at %v, want vxlan within 3 s of the break at 10s", h2[0].To, away)
	}
	if h2[1].To != direct || back < 30*time.Second+cfg.HoldDown || back > 33*time.Second+cfg.HoldDown {
		t.Errorf("h2 back to %s at %v, want direct within 3 s after the %v hold-down from 30s", h2[1].To, back, cfg.HoldDown)
	}
	// Flapping overlay: h3 goes to WireGuard and stays there while it
	// flaps (no flapping with it), then comes back after it heals.
	h3 := changes["h3"]
	if len(h3) != 2 || h3[0].To != wg || h3[1].To != vxlan {
		t.Fatalf("h3: %s; want one move to wireguard and one back", describe(h3, start))
	}
	if at := h3[1].At.Sub(start); at < 80*time.Second+cfg.HoldDown {
		t.Errorf("h3 back at %v, before the flapping stopped (80s) plus the hold-down", at)
	}
	if len(changes["h4"]) != 0 {
		t.Errorf("h4 (encrypted, healthy): %s; want none", describe(changes["h4"], start))
	}
	t.Logf("h2: %s", describe(h2, start))
	t.Logf("h3: %s", describe(h3, start))
}

// TestSimulationEncryptedNeverPlaintext: the encrypted pair's only path
// breaks; it stays on WireGuard whatever happens.
func TestSimulationEncryptedNeverPlaintext(t *testing.T) {
	net := func(peer string, path fabric.PathKind, at time.Duration, _ *rand.Rand) bool {
		return !(peer == "h4" && at > 5*time.Second)
	}
	changes := simulate(t, DefaultConfig(), net, 40*time.Second)
	if len(changes["h4"]) != 0 {
		t.Errorf("h4 changed path: %s", describe(changes["h4"], time.Unix(1764000000, 0)))
	}
}

// TestSimulationLocalFaultDamped: h3's VXLAN carries nothing through the
// routing table (a fault in the local tunnel device, say a checksum
// offload bug) while hand-built VXLAN probes, which bypass the device, are
// answered. The pair keeps coming back to VXLAN and leaving it; the
// doubling hold-down makes that rarer each time instead of every 12 s.
func TestSimulationLocalFaultDamped(t *testing.T) {
	cfg := DefaultConfig()
	net := func(tg Target, at time.Duration, _ *rand.Rand) bool {
		return !(tg.Peer == "h3" && tg.Path == vxlan && tg.Route && at > 10*time.Second)
	}
	start := time.Unix(1764000000, 0)
	changes := simulateTargets(t, cfg, net, 10*time.Minute)
	h3 := changes["h3"]
	// Hold-downs 10, 20, 40, 80, 160, 320 s fit about 6 returns in 10
	// minutes; undamped it would be about 45.
	if len(h3) > 14 {
		t.Errorf("h3 changed path %d times in 10 minutes: %s", len(h3), describe(h3, start))
	}
	if len(h3) < 2 || h3[0].To != wg {
		t.Errorf("h3 never fell back: %s", describe(h3, start))
	}
	t.Logf("h3: %d changes: %s", len(h3), describe(h3, start))
}

// TestSimulationLocalFaultFound: the same local fault is reported as one
// (StateChange.LocalFault) when the path fails on route probes right after
// hand-built probes brought it back; a plain outage is not.
func TestSimulationLocalFaultFound(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StartGrace = 0
	for _, tt := range []struct {
		name  string
		route bool // only route probes fail; else every probe does
		want  bool
	}{
		{"local fault", true, true},
		{"outage", false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTracker(cfg, 0)
			now := time.Unix(0, 0)
			tr.SetPlan([]fabric.PeerPlan{pp("h3", vxlan, vxlan, wg)}, now)
			found := false
			// Probe vxlan through the route while it is active, off it
			// while on WireGuard, once a second, with the planner's move.
			for i := 0; i < 120; i++ {
				now = now.Add(time.Second)
				active := vxlan
				if len(tr.Avoid("h3")) > 0 {
					active = wg
				}
				tr.SetPlan([]fabric.PeerPlan{pp("h3", active, vxlan, wg)}, now)
				tg := Target{Peer: "h3", Path: vxlan, Route: active == vxlan}
				ok := i < 3 || (tt.route && !tg.Route)
				seq := tr.Sent(tg, now)
				var cs []StateChange
				if ok {
					cs = tr.Reply(seq, "h3", vxlan, now)
				} else {
					cs = tr.Failed(seq, now)
				}
				for _, c := range cs {
					found = found || c.LocalFault
				}
			}
			if found != tt.want {
				t.Errorf("local fault reported: %v, want %v", found, tt.want)
			}
		})
	}
}
