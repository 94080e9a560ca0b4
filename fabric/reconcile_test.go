package fabric

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// recorder is a Stage that records the plans it was given and can fail.
type recorder struct {
	mu    sync.Mutex
	plans []Plan
	fail  error
}

func (r *recorder) apply(_ context.Context, p Plan) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.plans = append(r.plans, p)
	err := r.fail
	r.fail = nil
	return err
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.plans)
}

func waitCount(t *testing.T, r *recorder, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for r.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("stage ran %d times, want %d", r.count(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitStatus(t *testing.T, r *Reconciler, ok func(ReconcileStatus) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok(r.Status()) {
		if time.Now().After(deadline) {
			t.Fatalf("status %+v", r.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testPlan(dst string) Plan {
	return Plan{Routes: []Route{{Dst: netip.MustParsePrefix(dst), Blackhole: true}}}
}

func TestReconcilerPasses(t *testing.T) {
	rec := &recorder{}
	drift := make(chan struct{}) // unbuffered: a send returns once Run took it
	r := NewReconciler(ReconcilerConfig{
		Stages: []Stage{{Name: "rec", Apply: rec.apply}},
		Drift:  drift,
		Resync: time.Hour,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	r.Set(testPlan("10.244.1.0/24"))
	waitStatus(t, r, func(st ReconcileStatus) bool { return st.Passes == 1 })

	// The same plan again: no pass.
	r.Set(testPlan("10.244.1.0/24"))
	// Drift: a pass with the same plan.
	drift <- struct{}{}
	waitStatus(t, r, func(st ReconcileStatus) bool { return st.Passes == 2 && st.Reason == "drift" })

	// A failing pass is retried.
	rec.mu.Lock()
	rec.fail = errors.New("boom")
	rec.mu.Unlock()
	r.Set(testPlan("10.244.2.0/24"))
	waitStatus(t, r, func(st ReconcileStatus) bool { return st.Passes == 4 && st.Reason == "retry" && st.LastError == "" })
	rec.mu.Lock()
	last := rec.plans[len(rec.plans)-1]
	rec.mu.Unlock()
	if last.Routes[0].Dst != netip.MustParsePrefix("10.244.2.0/24") {
		t.Errorf("last pass applied %v", last.Routes)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := rec.count(); n != 4 {
		t.Errorf("stage ran %d times, want 4", n)
	}
}

// TestReconcilerWaitsForPlan: drift before the first plan changes nothing
// (a restarting agent must not apply a plan made without its peers).
func TestReconcilerWaitsForPlan(t *testing.T) {
	rec := &recorder{}
	drift := make(chan struct{}) // unbuffered: a send returns once Run took it
	r := NewReconciler(ReconcilerConfig{Stages: []Stage{{Name: "rec", Apply: rec.apply}}, Drift: drift, Resync: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	// The second send is taken only after the pass for the first one is over.
	drift <- struct{}{}
	drift <- struct{}{}
	if n := rec.count(); n != 0 || r.Status().Passes != 0 {
		t.Fatalf("stage ran %d times before the first plan", n)
	}
}

func TestReconcilerResync(t *testing.T) {
	rec := &recorder{}
	r := NewReconciler(ReconcilerConfig{Stages: []Stage{{Name: "rec", Apply: rec.apply}}, Resync: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	r.Set(testPlan("10.244.1.0/24"))
	waitCount(t, rec, 3)
}
