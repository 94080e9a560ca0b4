package health

import (
	"math/rand/v2"
	"slices"
	"time"
)

// jitter is the spread of each interval: +-20%, so that hosts started
// together do not probe in step.
const jitter = 0.2

// burstSeconds is how many seconds of the probe budget may be spent at
// once (at least one probe).
const burstSeconds = 0.1

// Scheduler decides when each target is probed: every Interval(n) with
// jitter, within a budget of MaxProbesPerSecond (a token bucket). It is
// not safe for concurrent use.
type Scheduler struct {
	cfg    Config
	rng    *rand.Rand
	next   map[Target]time.Time
	tokens float64
	last   time.Time
}

// NewScheduler returns a Scheduler drawing its jitter from rng.
func NewScheduler(cfg Config, rng *rand.Rand) *Scheduler {
	return &Scheduler{cfg: cfg, rng: rng, next: map[Target]time.Time{}}
}

// Interval returns the time between two probes of one target when there
// are n targets: Config.Interval, stretched so that n targets send at most
// MaxProbesPerSecond.
func (s *Scheduler) Interval(n int) time.Duration {
	iv := s.cfg.Interval
	if need := time.Duration(float64(n) / s.cfg.MaxProbesPerSecond * float64(time.Second)); need > iv {
		iv = need
	}
	return iv
}

// Due returns the targets to probe at now, oldest due first, and schedules
// their next probe. A new target gets its first probe at a random point of
// the first interval, so that a burst of new peers spreads out; targets
// no longer in targets are forgotten. Targets over the budget stay due and
// go first on a later call.
func (s *Scheduler) Due(now time.Time, targets []Target) []Target {
	iv := s.Interval(len(targets))
	want := make(map[Target]bool, len(targets))
	for _, t := range targets {
		want[t] = true
		if _, ok := s.next[t]; !ok {
			s.next[t] = now.Add(time.Duration(s.rng.Float64() * float64(iv)))
		}
	}
	for t := range s.next {
		if !want[t] {
			delete(s.next, t)
		}
	}
	burst := max(1, s.cfg.MaxProbesPerSecond*burstSeconds)
	if s.last.IsZero() {
		s.tokens = burst
	} else if dt := now.Sub(s.last); dt > 0 {
		s.tokens = min(burst, s.tokens+dt.Seconds()*s.cfg.MaxProbesPerSecond)
	}
	s.last = now
	var due []Target
	for _, t := range targets {
		if !s.next[t].After(now) {
			due = append(due, t)
		}
	}
	slices.SortStableFunc(due, func(a, b Target) int { return s.next[a].Compare(s.next[b]) })
	n := min(len(due), int(s.tokens))
	due = due[:n]
	s.tokens -= float64(n)
	for _, t := range due {
		f := 1 + jitter*(2*s.rng.Float64()-1)
		s.next[t] = now.Add(time.Duration(f * float64(iv)))
	}
	return due
}
