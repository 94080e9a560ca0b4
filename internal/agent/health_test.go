package agent

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-net/weft/fabric"
	"github.com/weft-net/weft/fabric/health"
	"github.com/weft-net/weft/fabric/health/probe"
)

// TestHealthPlanned: a plan gives the prober its view of each peer (subnet
// address, the underlay address off-route probes go to, VTEP MAC) and the
// tracker its paths; a second plan that moves a peer is a path change.
func TestHealthPlanned(t *testing.T) {
	a := &Agent{health: newPathHealth(noGrace()), log: slog.New(slog.DiscardHandler), now: func() time.Time { return time.Unix(100, 0) }}
	local := fabric.Local{
		Name: "h1", Subnets: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}, UnderlayDev: "eth0",
		UnderlayAddr: netip.MustParseAddr("198.18.1.2"), UnderlayMTU: 1500, VTEPMAC: fabric.VTEPMAC("h1"),
		Connected: []netip.Prefix{netip.MustParsePrefix("198.18.1.2/24")}, Location: fabric.Location{Cloud: "lab", Region: "r1"},
		WireGuardKey: make([]byte, 32),
	}
	key := func(b byte) []byte { k := make([]byte, 32); k[0] = b; return k }
	peers := []fabric.Peer{
		{Name: "h2", Underlay: []netip.Addr{netip.MustParseAddr("198.18.1.3")}, Subnets: []netip.Prefix{netip.MustParsePrefix("10.244.2.0/24")},
			VTEPMAC: fabric.VTEPMAC("h2"), Location: fabric.Location{Cloud: "lab", Region: "r1"}},
		// Across regions, with a public address: WireGuard to the public
		// address, but off-route probes would go to its underlay.
		{Name: "h4", Underlay: []netip.Addr{netip.MustParseAddr("198.19.1.2")}, Public: netip.MustParseAddr("203.0.113.4"),
			Subnets: []netip.Prefix{netip.MustParsePrefix("10.244.4.0/24")}, VTEPMAC: fabric.VTEPMAC("h4"),
			Location: fabric.Location{Cloud: "lab", Region: "r2"}, WireGuardKey: key(4), WireGuardPort: 51820},
	}
	a.health.avoid(peers)
	plan := fabric.Compute(local, peers, fabric.DefaultOptions())
	a.healthPlanned(local, peers, plan)
	want := map[string]probe.Peer{
		"h2": {Name: "h2", Addr: netip.MustParseAddr("10.244.2.0"), Underlay: netip.MustParseAddr("198.18.1.3"), VTEPMAC: fabric.VTEPMAC("h2")},
		"h4": {Name: "h4", Addr: netip.MustParseAddr("10.244.4.0"), Underlay: netip.MustParseAddr("198.19.1.2"), VTEPMAC: fabric.VTEPMAC("h4")},
	}
	for name, w := range want {
		got, ok := a.health.peer(name)
		if !ok {
			t.Fatalf("no prober view of %s", name)
		}
		if diff := cmp.Diff(w, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	// h2's direct path goes down: the next plan moves it, a counted change.
	h := a.health
	for range 3 {
		seq := h.tr.Sent(health.Target{Peer: "h2", Path: fabric.PathDirect, Route: true}, a.now())
		h.tr.Failed(seq, a.now())
	}
	a.health.avoid(peers)
	if !cmp.Equal(peers[0].Avoid, []fabric.PathKind{fabric.PathDirect}) {
		t.Fatalf("avoid %v, want [direct]", peers[0].Avoid)
	}
	plan = fabric.Compute(local, peers, fabric.DefaultOptions())
	a.healthPlanned(local, peers, plan)
	if n := h.count.pathMoves.Load(); n != 1 {
		t.Errorf("%d path changes counted, want 1", n)
	}
	if got := a.healthSnapshot()["h2"]; got.Path != fabric.PathVXLAN || got.LastChange == nil || got.LastChange.Reason != "fallback: direct down" {
		t.Errorf("h2 after the replan: %+v", got)
	}
}
