package health

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/weft-net/weft/fabric"
)

const (
	direct = fabric.PathDirect
	vxlan  = fabric.PathVXLAN
	wg     = fabric.PathWireGuard
	ipip   = fabric.PathIPIP
	native = fabric.PathNative
)

func pp(name string, path fabric.PathKind, cands ...fabric.PathKind) fabric.PeerPlan {
	return fabric.PeerPlan{Name: name, Path: path, Candidates: cands}
}

func TestTrackerTargets(t *testing.T) {
	tests := []struct {
		name  string
		plans []fabric.PeerPlan
		want  []string
	}{
		{"direct: active and the overlay to fall back to", []fabric.PeerPlan{pp("h2", direct, direct, vxlan, wg)},
			[]string{"h2/direct/route", "h2/vxlan/off-path"}},
		{"on the overlay: active, direct to return to; WireGuard not off-path", []fabric.PeerPlan{pp("h2", vxlan, direct, vxlan, wg)},
			[]string{"h2/vxlan/route", "h2/direct/off-path"}},
		{"on WireGuard: both cheaper ones", []fabric.PeerPlan{pp("h2", wg, direct, vxlan, wg)},
			[]string{"h2/wireguard/route", "h2/direct/off-path", "h2/vxlan/off-path"}},
		{"encrypted pair: WireGuard only", []fabric.PeerPlan{pp("h4", wg, wg)}, []string{"h4/wireguard/route"}},
		{"ipip overlay: not probed off-path", []fabric.PeerPlan{pp("h2", direct, direct, ipip, wg)}, []string{"h2/direct/route"}},
		{"native, then vxlan", []fabric.PeerPlan{pp("h3", native, native, vxlan, wg)}, []string{"h3/native/route", "h3/vxlan/off-path"}},
		{"no path: nothing", []fabric.PeerPlan{pp("h9", fabric.PathNone)}, nil},
		{"by name", []fabric.PeerPlan{pp("h3", vxlan, vxlan), pp("h2", vxlan, vxlan)}, []string{"h2/vxlan/route", "h3/vxlan/route"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTracker(DefaultConfig(), 0)
			tr.SetPlan(tt.plans, time.Unix(0, 0))
			var got []string
			for _, tg := range tr.Targets() {
				got = append(got, tg.String())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("targets (-want +got):\n%s", diff)
			}
		})
	}
}

// TestTrackerFallbackAndReturn walks one peer from direct to the overlay and
// back, through Sent, Expire and Reply, as the agent drives it.
func TestTrackerFallbackAndReturn(t *testing.T) {
	cfg := DefaultConfig() // 3 misses, 10 s hold-down, 1 s timeout
	cfg.StartGrace = 0
	tr := NewTracker(cfg, 100)
	now := time.Unix(1000, 0)
	tr.SetPlan([]fabric.PeerPlan{pp("h2", direct, direct, vxlan, wg)}, now)
	dRoute := Target{Peer: "h2", Path: direct, Route: true}
	dOff := Target{Peer: "h2", Path: direct}
	vOff := Target{Peer: "h2", Path: vxlan}

	if s := tr.Sent(dRoute, now); s != 101 {
		t.Fatalf("first seq %d, want 101", s)
	}
	now = now.Add(2 * time.Millisecond)
	ch := tr.Reply(101, "h2", direct, now)
	if len(ch) != 1 || ch[0].To != StateUp {
		t.Fatalf("first answer: %+v, want up", ch)
	}
	// A reply for the wrong peer, path or an unknown seq changes nothing.
	s := tr.Sent(dRoute, now)
	if ch := tr.Reply(s, "h3", direct, now); ch != nil || tr.Pending() != 1 {
		t.Fatalf("reply from another peer matched: %+v", ch)
	}
	if ch := tr.Reply(s, "h2", vxlan, now); ch != nil || tr.Pending() != 1 {
		t.Fatalf("reply for another path matched: %+v", ch)
	}
	if ch := tr.Reply(999, "h2", direct, now); ch != nil {
		t.Fatalf("unknown seq matched: %+v", ch)
	}
	// Direct stops answering: three probes expire.
	var changes []StateChange
	for range 3 {
		tr.Sent(dRoute, now)
		tr.Sent(vOff, now)
		now = now.Add(500 * time.Millisecond)
		for seq, p := range tr.pending {
			if p.target == vOff {
				changes = append(changes, tr.Reply(seq, "h2", vxlan, now)...)
			}
		}
		now = now.Add(time.Second)
		changes = append(changes, tr.Expire(now)...)
	}
	if got := tr.Avoid("h2"); !cmp.Equal(got, []fabric.PathKind{direct}) {
		t.Fatalf("avoid %v, want [direct]; changes %+v", got, changes)
	}
	last := changes[len(changes)-1]
	if last.Path != direct || last.To != StateDown || last.Reason != "3 probes in a row unanswered" {
		t.Errorf("last change %+v, want direct down", last)
	}
	// The planner moves the peer; the tracker reports the path change.
	pcs := tr.SetPlan([]fabric.PeerPlan{pp("h2", vxlan, direct, vxlan, wg)}, now)
	if len(pcs) != 1 || pcs[0].From != direct || pcs[0].To != vxlan {
		t.Fatalf("path changes %+v, want direct -> vxlan", pcs)
	}
	// Direct answers again, off-path; up only after the hold-down.
	var upAt time.Time
	start := now
	for i := 0; i < 40 && upAt.IsZero(); i++ {
		seq := tr.Sent(dOff, now)
		now = now.Add(500 * time.Millisecond)
		for _, c := range tr.Reply(seq, "h2", direct, now) {
			if c.Path == direct && c.To == StateUp {
				upAt = now
			}
		}
	}
	if upAt.IsZero() || upAt.Sub(start) < cfg.HoldDown {
		t.Fatalf("direct up at %v after %v, want after the %v hold-down", upAt, upAt.Sub(start), cfg.HoldDown)
	}
	if got := tr.Avoid("h2"); len(got) != 0 {
		t.Errorf("avoid after the hold-down %v, want none", got)
	}
	snap := tr.Snapshot()
	if len(snap) != 1 || snap[0].Path != vxlan || snap[0].LastChange == nil || snap[0].LastChange.From != direct {
		t.Errorf("snapshot %+v", snap)
	}
}

func TestTrackerForgetsAndRetries(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StartGrace = 0
	tr := NewTracker(cfg, 0)
	now := time.Unix(0, 0)
	tr.SetPlan([]fabric.PeerPlan{pp("h2", ipip, direct, ipip, wg), pp("h3", vxlan, vxlan)}, now)
	// ipip (not probeable off-path) goes down while in use.
	for range 3 {
		tr.Sent(Target{Peer: "h2", Path: ipip, Route: true}, now)
		now = now.Add(cfg.Timeout)
		tr.Expire(now)
	}
	if got := tr.Avoid("h2"); !cmp.Equal(got, []fabric.PathKind{ipip}) {
		t.Fatalf("avoid %v, want [ipip]", got)
	}
	tr.SetPlan([]fabric.PeerPlan{pp("h2", wg, direct, ipip, wg), pp("h3", vxlan, vxlan)}, now)
	// It is retried (unknown) after the hold-down, not before.
	if ch := tr.Expire(now.Add(cfg.HoldDown - time.Millisecond)); len(ch) != 0 {
		t.Fatalf("retried early: %+v", ch)
	}
	ch := tr.Expire(now.Add(cfg.HoldDown))
	if len(ch) != 1 || ch[0].To != StateUnknown || ch[0].Path != ipip {
		t.Fatalf("retry %+v, want ipip unknown", ch)
	}
	// A peer gone from the plan is forgotten, with its pending probes.
	tr.Sent(Target{Peer: "h3", Path: vxlan, Route: true}, now)
	tr.SetPlan([]fabric.PeerPlan{pp("h2", wg, direct, ipip, wg)}, now)
	if tr.Pending() != 0 || len(tr.Snapshot()) != 1 {
		t.Errorf("after h3 left: %d pending, %d peers; want 0, 1", tr.Pending(), len(tr.Snapshot()))
	}
}

// TestTrackerStartGrace: misses of a peer new to the plan do not count
// during the grace; answers do; after it, misses count.
func TestTrackerStartGrace(t *testing.T) {
	cfg := DefaultConfig() // grace 5 s
	tr := NewTracker(cfg, 0)
	start := time.Unix(0, 0)
	tr.SetPlan([]fabric.PeerPlan{pp("h2", direct, direct, vxlan)}, start)
	tg := Target{Peer: "h2", Path: direct, Route: true}
	for i := range 4 {
		now := start.Add(time.Duration(i) * time.Second)
		tr.Failed(tr.Sent(tg, now), now)
	}
	if got := tr.Avoid("h2"); len(got) != 0 {
		t.Fatalf("down within the grace: %v", got)
	}
	now := start.Add(cfg.StartGrace)
	for range 3 {
		tr.Failed(tr.Sent(tg, now), now)
	}
	if got := tr.Avoid("h2"); !cmp.Equal(got, []fabric.PathKind{direct}) {
		t.Fatalf("after the grace: avoid %v, want [direct]", got)
	}
	// A peer that has answered once gets no grace.
	tr.SetPlan([]fabric.PeerPlan{pp("h3", direct, direct, vxlan)}, start)
	t3 := Target{Peer: "h3", Path: direct, Route: true}
	tr.Reply(tr.Sent(t3, start), "h3", direct, start)
	for range 3 {
		tr.Failed(tr.Sent(t3, start), start)
	}
	if got := tr.Avoid("h3"); !cmp.Equal(got, []fabric.PathKind{direct}) {
		t.Fatalf("answered, then 3 misses within the grace: avoid %v, want [direct]", got)
	}
}
