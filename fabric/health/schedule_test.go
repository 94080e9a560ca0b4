package health

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func TestSchedulerInterval(t *testing.T) {
	s := NewScheduler(DefaultConfig(), rand.New(rand.NewPCG(1, 2))) // 500 ms, 200/s
	for _, tt := range []struct {
		n    int
		want time.Duration
	}{
		{0, 500 * time.Millisecond},
		{10, 500 * time.Millisecond},
		{100, 500 * time.Millisecond},
		{200, time.Second},
		{2000, 10 * time.Second},
	} {
		if got := s.Interval(tt.n); got != tt.want {
			t.Errorf("Interval(%d) = %v, want %v", tt.n, got, tt.want)
		}
	}
}

func targets(n int) []Target {
	out := make([]Target, n)
	for i := range out {
		out[i] = Target{Peer: fmt.Sprintf("h%d", i), Path: direct, Route: true}
	}
	return out
}

// TestSchedulerBudget runs the scheduler on a 10 ms tick for 60 s at 10,
// 100 and 1,000 targets and checks the rate stays inside the budget, every
// target is probed, and the gaps between probes of a target stay within
// the jittered interval (plus a tick, and a little more when the budget is
// the limit).
func TestSchedulerBudget(t *testing.T) {
	cfg := DefaultConfig()
	for _, n := range []int{10, 100, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s := NewScheduler(cfg, rand.New(rand.NewPCG(uint64(n), 7)))
			tg := targets(n)
			iv := s.Interval(n)
			start := time.Unix(0, 0)
			const tick = 10 * time.Millisecond
			last := map[Target]time.Time{}
			maxGap := time.Duration(0)
			perSecond := map[int]int{}
			total := 0
			for now := start; now.Sub(start) < 60*time.Second; now = now.Add(tick) {
				for _, x := range s.Due(now, tg) {
					if l, ok := last[x]; ok && now.Sub(l) > maxGap {
						maxGap = now.Sub(l)
					}
					last[x] = now
					perSecond[int(now.Sub(start)/time.Second)]++
					total++
				}
			}
			if len(last) != n {
				t.Errorf("%d of %d targets probed", len(last), n)
			}
			limit := int(cfg.MaxProbesPerSecond) + int(cfg.MaxProbesPerSecond*burstSeconds)
			for sec, c := range perSecond {
				if c > limit {
					t.Errorf("second %d: %d probes, budget %d", sec, c, limit)
				}
			}
			if bound := time.Duration(float64(iv)*(1+jitter)*1.1) + tick; maxGap > bound {
				t.Errorf("longest gap %v, want at most %v (interval %v)", maxGap, bound, iv)
			}
			rate := float64(total) / 60
			want := min(float64(n)/iv.Seconds(), cfg.MaxProbesPerSecond)
			if rate < 0.85*want || rate > 1.15*want {
				t.Errorf("rate %.1f/s, want about %.1f/s", rate, want)
			}
			t.Logf("%d targets: interval %v, %.1f probes/s, longest gap %v", n, iv, rate, maxGap)
		})
	}
}

func TestSchedulerForgetsAndSpreads(t *testing.T) {
	s := NewScheduler(DefaultConfig(), rand.New(rand.NewPCG(3, 4)))
	tg := targets(50)
	now := time.Unix(0, 0)
	// New targets are spread over the first interval, not all due at once.
	first := len(s.Due(now, tg))
	if first > 5 {
		t.Errorf("%d of 50 new targets due at once, want them spread over the interval", first)
	}
	s.Due(now, tg[:10])
	if len(s.next) != 10 {
		t.Errorf("%d targets remembered after 40 left, want 10", len(s.next))
	}
}
