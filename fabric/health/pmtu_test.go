package health

import (
	"testing"
	"time"

	"github.com/weft-net/weft/fabric"
)

// TestMTUSearch drives the search against paths that carry packets up to
// a given size, and checks it finds that size in few probes.
func TestMTUSearch(t *testing.T) {
	for _, tt := range []struct {
		max, carries, maxProbes int
	}{
		{1450, 1450, 1},  // the common case: one probe
		{1450, 1350, 11}, // a router with MTU 1400 behind VXLAN
		{1500, 1400, 11},
		{9000, 1500, 14},
		{1450, 500, 11}, // below MinMTU: MinMTU
	} {
		m := newMTUSearch(fabric.PathVXLAN, tt.max)
		got, probes := 0, 0
		for got == 0 && probes < 50 {
			size := m.next()
			probes++
			got = m.observe(size, size <= tt.carries)
		}
		want := max(tt.carries, MinMTU)
		if got != want || probes > tt.maxProbes {
			t.Errorf("max %d, carries %d: found %d in %d probes, want %d in at most %d", tt.max, tt.carries, got, probes, want, tt.maxProbes)
		}
	}
}

// TestTrackerPathMTU: the active VXLAN path gets an MTU probe target; its
// outcomes (answers, expiries) find the path MTU, which AvoidAll hands to
// the planner and a change reports; no more probes until the re-probe
// time; a new path starts afresh.
func TestTrackerPathMTU(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StartGrace = 0
	tr := NewTracker(cfg, 0)
	now := time.Unix(0, 0)
	plan := fabric.PeerPlan{Name: "h3", Path: vxlan, Candidates: []fabric.PathKind{vxlan, wg}, MTU: 1450, MaxMTU: 1450}
	tr.SetPlan([]fabric.PeerPlan{plan}, now)
	mtuTarget := Target{Peer: "h3", Path: vxlan, MTU: true}
	has := func() bool {
		for _, tg := range tr.Targets() {
			if tg == mtuTarget {
				return true
			}
		}
		return false
	}
	if !has() {
		t.Fatalf("no MTU target in %v", tr.Targets())
	}
	var changes []StateChange
	for i := 0; i < 30 && has(); i++ {
		seq, size := tr.SentSized(mtuTarget, now)
		if size < MinMTU || size > 1450 {
			t.Fatalf("probe size %d", size)
		}
		if size <= 1350 {
			changes = append(changes, tr.Reply(seq, "h3", vxlan, now.Add(time.Millisecond))...)
		} else {
			now = now.Add(cfg.Timeout)
			changes = append(changes, tr.Expire(now)...)
		}
	}
	if len(changes) != 1 || changes[0].MTU != 1350 || changes[0].Path != vxlan {
		t.Fatalf("changes %+v, want one with MTU 1350", changes)
	}
	// Big probes going unanswered did not take the path down.
	if got := tr.Avoid("h3"); len(got) != 0 {
		t.Errorf("avoid %v after MTU probes, want none", got)
	}
	peers := []fabric.Peer{{Name: "h3"}}
	tr.AvoidAll(peers)
	if peers[0].PathMTU[vxlan] != 1350 {
		t.Errorf("PathMTU %v, want vxlan 1350", peers[0].PathMTU)
	}
	if has() {
		t.Errorf("still probing the MTU after finding it")
	}
	if snap := tr.Snapshot(); snap[0].Paths[0].MTU != 1350 {
		t.Errorf("snapshot MTU %d, want 1350", snap[0].Paths[0].MTU)
	}
	// The planner applies it (MTU 1350, MaxMTU 1450): no new search.
	plan.MTU = 1350
	tr.SetPlan([]fabric.PeerPlan{plan}, now)
	if has() {
		t.Errorf("a replan with the found MTU restarted the search")
	}
	// After the re-probe time, it searches again.
	tr.Expire(now.Add(DefaultMTUReprobe + time.Second))
	if !has() {
		t.Errorf("no re-probe after %v", DefaultMTUReprobe)
	}
	// On WireGuard (not probed off its route): no MTU target.
	tr.SetPlan([]fabric.PeerPlan{{Name: "h3", Path: wg, Candidates: []fabric.PathKind{vxlan, wg}, MTU: 1420, MaxMTU: 1420}}, now)
	if has() {
		t.Errorf("MTU target on wireguard")
	}
}
