package fabric

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"
)

// Stage applies one concern of a Plan to the kernel (the VXLAN device and
// its entries, the routes, masquerade, sysctls). Apply must be idempotent:
// it reads the kernel back and changes only the difference, so calling it
// again with the same plan makes no change.
type Stage struct {
	Name  string
	Apply func(ctx context.Context, p Plan) error
}

// ReconcilerConfig configures a Reconciler.
type ReconcilerConfig struct {
	// Stages run in order on every pass: devices before the routes that use them.
	Stages []Stage
	// Drift signals that the kernel may have changed under us (netlink
	// events); nil for none.
	Drift <-chan struct{}
	// Resync is the period of the full resync; 0 means 30 s.
	Resync time.Duration
	Logger *slog.Logger
	Now    func() time.Time
}

// Reconciler keeps the kernel equal to the latest Plan. Plan changes, drift
// events and the periodic resync all run the same pass: every stage with the
// current plan. Until the first Set it does nothing, so a restarting agent
// changes nothing before it knows the cluster. Safe for concurrent use.
type Reconciler struct {
	cfg ReconcilerConfig
	log *slog.Logger

	mu      sync.Mutex
	plan    Plan
	have    bool
	status  ReconcileStatus
	trigger chan struct{}
}

// ReconcileStatus is what the last pass did.
type ReconcileStatus struct {
	Passes    int       `json:"passes"`
	LastPass  time.Time `json:"lastPass,omitzero"`
	LastError string    `json:"lastError,omitempty"`
	// Reason is what started the last pass: "plan", "drift" or "resync".
	Reason string `json:"reason,omitempty"`
}

// NewReconciler returns a Reconciler; call Run to start it.
func NewReconciler(cfg ReconcilerConfig) *Reconciler {
	if cfg.Resync <= 0 {
		cfg.Resync = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Reconciler{cfg: cfg, log: cfg.Logger.With("component", "reconciler"), trigger: make(chan struct{}, 1)}
}

// Set makes p the desired plan and schedules a pass if it differs from the
// current one. It never blocks. p must not be modified afterwards.
func (r *Reconciler) Set(p Plan) {
	r.mu.Lock()
	changed := !r.have || !reflect.DeepEqual(r.plan, p)
	r.plan, r.have = p, true
	r.mu.Unlock()
	if changed {
		r.kick()
	}
}

// Plan returns the current desired plan and whether there is one yet.
func (r *Reconciler) Plan() (Plan, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.plan, r.have
}

// Status returns what the last pass did.
func (r *Reconciler) Status() ReconcileStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

func (r *Reconciler) kick() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// Run applies the plan on every change, drift event and resync period until
// ctx is done. A failed pass is retried with backoff (100 ms doubling to the
// resync period). It leaves the kernel as it is when it returns: stopping
// the agent must not stop the workloads' traffic.
func (r *Reconciler) Run(ctx context.Context) error {
	resync := time.NewTicker(r.cfg.Resync)
	defer resync.Stop()
	var retry <-chan time.Time
	backoff := 100 * time.Millisecond
	reason := ""
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.trigger:
			reason = "plan"
		case _, ok := <-r.cfg.Drift:
			if !ok {
				r.cfg.Drift = nil
				continue
			}
			reason = "drift"
		case <-resync.C:
			reason = "resync"
		case <-retry:
			reason = "retry"
		}
		retry = nil
		if err := r.pass(ctx, reason); err != nil {
			r.log.Error("data plane pass failed, will retry", "reason", reason, "retry_in", backoff, "err", err)
			retry = time.After(backoff)
			backoff = min(backoff*2, r.cfg.Resync)
			continue
		}
		backoff = 100 * time.Millisecond
	}
}

// pass runs every stage with the current plan, keeps going after a failure
// and returns all failures joined.
func (r *Reconciler) pass(ctx context.Context, reason string) error {
	p, ok := r.Plan()
	if !ok {
		return nil
	}
	start := r.cfg.Now()
	var errs []error
	for _, s := range r.cfg.Stages {
		if err := s.Apply(ctx, p); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.Name, err))
		}
	}
	err := errors.Join(errs...)
	r.mu.Lock()
	r.status.Passes++
	r.status.LastPass = start
	r.status.Reason = reason
	r.status.LastError = ""
	if err != nil {
		r.status.LastError = err.Error()
	}
	r.mu.Unlock()
	if err == nil {
		r.log.Debug("data plane pass", "reason", reason, "peers", len(p.Peers), "routes", len(p.Routes), "took", r.cfg.Now().Sub(start))
	}
	return err
}
