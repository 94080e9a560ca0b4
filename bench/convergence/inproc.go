package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/weft-net/weft/bench/internal/cpuload"
	"github.com/weft-net/weft/gossip"
)

// inprocCluster is the cluster name of the in-process runs.
const inprocCluster = "bench"

// benchKey is the cluster key (32 bytes) of the in-process runs: encryption
// is on, as in every real weft cluster, so its CPU cost is in the numbers.
const benchKey = "weft-bench-key-0123456789abcdef!"

// Run phases, for counting false deaths.
const (
	phaseConverge = iota
	phaseSteady
	phaseDetect
	numPhases
)

// tracker follows every member's view of the cluster from its event stream.
// It is fed by one goroutine per member.
type tracker struct {
	mu        sync.Mutex
	n         int
	alive     []map[string]bool // per observer: the members it sees alive, itself included
	full      int               // observers that see all n alive
	at        time.Time         // when full first reached n
	converged chan struct{}     // closed then

	phase       int
	victim      string // set at the crash
	victimIdx   int
	deadAt      map[int]time.Time // survivor -> when it saw the victim dead
	detected    chan struct{}     // closed when every survivor has
	falseDeaths [numPhases]int
}

func newTracker(n int) *tracker {
	t := &tracker{n: n, alive: make([]map[string]bool, n), converged: make(chan struct{}),
		victimIdx: -1, deadAt: map[int]time.Time{}, detected: make(chan struct{})}
	for i := range t.alive {
		t.alive[i] = make(map[string]bool, n)
	}
	return t
}

func (t *tracker) handle(i int, ev gossip.Event, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	view := t.alive[i]
	switch ev.Kind {
	case gossip.EventJoined:
		if view[ev.Node] {
			return
		}
		view[ev.Node] = true
		if len(view) == t.n {
			t.full++
			if t.full == t.n && t.at.IsZero() {
				t.at = now
				close(t.converged)
			}
		}
	case gossip.EventDead, gossip.EventLeft, gossip.EventReaped:
		if view[ev.Node] {
			if len(view) == t.n {
				t.full--
			}
			delete(view, ev.Node)
		}
		if ev.Kind != gossip.EventDead || i == t.victimIdx {
			return
		}
		if ev.Node != t.victim {
			t.falseDeaths[t.phase]++
			return
		}
		if _, seen := t.deadAt[i]; !seen {
			t.deadAt[i] = now
			if len(t.deadAt) == t.n-1 {
				close(t.detected)
			}
		}
	}
}

func (t *tracker) setPhase(p int) {
	t.mu.Lock()
	t.phase = p
	t.mu.Unlock()
}

func (t *tracker) crash(i int, name string) {
	t.mu.Lock()
	t.victimIdx, t.victim, t.phase = i, name, phaseDetect
	t.mu.Unlock()
}

// minView returns the smallest number of live members any observer sees.
func (t *tracker) minView() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	least := t.n
	for i, v := range t.alive {
		if i != t.victimIdx {
			least = min(least, len(v))
		}
	}
	return least
}

// detectTimes returns how long after crashedAt each survivor saw the victim dead.
func (t *tracker) detectTimes(crashedAt time.Time) []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]time.Duration, 0, len(t.deadAt))
	for _, at := range t.deadAt {
		out = append(out, at.Sub(crashedAt))
	}
	return out
}

func (t *tracker) totalFalseDeaths() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.falseDeaths[phaseConverge] + t.falseDeaths[phaseSteady] + t.falseDeaths[phaseDetect]
}

// runInproc measures one in-process cluster of n members on 127.0.0.1, each
// with its own ports: all n join at once (seeded by the first o.seeds), the
// cluster is left alone for o.settle, then one non-seed member is shut down
// without leaving (a crash) and the survivors are watched until all of them
// have declared it dead.
func runInproc(ctx context.Context, p profile, n, run int, o options) (res Result) {
	res = Result{Mode: "inproc", Profile: p.Name, N: n, Run: run, ConvergeMS: -1, AliveMS: -1, DetectFirstMS: -1, DetectMedianMS: -1, DetectAllMS: -1}
	peak := cpuload.StartPeak()
	tr := newTracker(n)
	members := make([]*gossip.Membership, 0, n)
	var drains sync.WaitGroup
	defer func() {
		// Shut down in parallel: shutting down one by one would read as deaths to the rest.
		var wg sync.WaitGroup
		for _, m := range members {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = m.Shutdown()
			}()
		}
		wg.Wait()
		drains.Wait()
		res.CPUPeak = peak.Stop()
		res.FalseDeaths = tr.totalFalseDeaths()
	}()

	loopback := netip.MustParseAddr("127.0.0.1")
	for i := range n {
		name := fmt.Sprintf("n%04d", i)
		m, err := gossip.New(gossip.Config{
			NodeName:      name,
			ClusterName:   inprocCluster,
			BindAddr:      loopback,
			AdvertiseAddr: loopback,
			Key:           []byte(benchKey),
			Record:        gossip.Record{Cluster: inprocCluster, Underlay: []netip.Addr{loopback}},
			ProbeInterval: p.ProbeInterval,
			ProbeTimeout:  p.ProbeTimeout,
			SuspicionMult: p.SuspicionMult,
			Logger:        slog.New(slog.DiscardHandler),
		})
		if err != nil {
			res.Err = fmt.Sprintf("start member %d: %v", i, err)
			return res
		}
		members = append(members, m)
		drains.Add(1)
		go func() {
			defer drains.Done()
			for ev := range m.Events() {
				tr.handle(i, ev, time.Now())
			}
		}()
	}
	var seeds []string
	for _, m := range members[:min(o.seeds, n)] {
		seeds = append(seeds, m.LocalAddr().String())
	}

	jctx, cancelJoins := context.WithCancel(ctx)
	defer cancelJoins()
	c0 := cpuload.Now()
	start := c0.Wall
	for _, m := range members {
		go func() { _, _ = m.Join(jctx, seeds, o.joinRetryMax) }()
	}
	if err := wait(ctx, tr.converged, o.convergeTimeout); err != nil {
		res.MinView = tr.minView()
		res.CPUConverge = cpuload.Cores(c0, cpuload.Now())
		res.Err = fmt.Sprintf("converge: %v", err)
		return res
	}
	c1 := cpuload.Now()
	tr.mu.Lock()
	res.ConvergeMS = ms(tr.at.Sub(start))
	res.AliveMS = res.ConvergeMS
	tr.mu.Unlock()
	res.MinView = n
	res.CPUConverge = cpuload.Cores(c0, c1)

	tr.setPhase(phaseSteady)
	if err := wait(ctx, nil, o.settle); err != nil && ctx.Err() != nil {
		res.Err = fmt.Sprintf("settle: %v", err)
		return res
	}
	c2 := cpuload.Now()
	res.CPUSteady = cpuload.Cores(c1, c2)

	// The victim is not a seed, so the survivors' joins and reconnects behave
	// as they would after a real crash.
	vi := min(o.seeds, n-1) + rand.N(n-min(o.seeds, n-1))
	tr.crash(vi, fmt.Sprintf("n%04d", vi))
	crashedAt := time.Now()
	_ = members[vi].Shutdown()
	err := wait(ctx, tr.detected, o.detectTimeout)
	res.CPUDetect = cpuload.Cores(c2, cpuload.Now())
	detectStats(&res, tr.detectTimes(crashedAt))
	if err != nil {
		res.Err = fmt.Sprintf("detect: %d of %d survivors saw the crash: %v", res.Detected, n-1, err)
	}
	return res
}

// errTimeout says a wait ran out of time.
var errTimeout = errors.New("timed out")

// wait blocks until done is closed (nil: never), the timeout passes or ctx is
// done. Only the first two are not errors when done is nil.
func wait(ctx context.Context, done <-chan struct{}, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		if done == nil {
			return nil
		}
		return fmt.Errorf("%w after %s", errTimeout, timeout)
	}
}
