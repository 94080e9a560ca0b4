package health

import (
	"fmt"
	"math/bits"
	"time"
)

// historyLen is how many of the last probes Loss is computed over.
const historyLen = 32

// Link is the state machine of one path to one peer. The zero value is a
// path in StateUnknown. It is not safe for concurrent use.
type Link struct {
	State State
	// Since is when State was entered; Reason says why.
	Since  time.Time
	Reason string
	// RTT is the round-trip time of the last answered probe.
	RTT time.Duration

	misses  int       // unanswered probes in a row
	okSince time.Time // first answer of the current run while down; zero: none
	history uint32    // bit i: the i-th last probe was lost
	probes  int       // probes observed, up to historyLen
	// upAt is when the path last came back up; penalty how many times in
	// a row it went down again soon after (each doubles the hold-down).
	upAt    time.Time
	penalty int
	// upOffRoute: the last change to up came from a probe off the
	// path's route (built by hand), not through the routing table.
	upOffRoute bool
}

// maxPenalty caps the doubling of the hold-down: 2^6 = 64 times.
const maxPenalty = 6

// maxHoldDown caps the doubled hold-down.
const maxHoldDown = 10 * time.Minute

// holdDown returns the hold-down this link must answer for: cfg.HoldDown,
// doubled for each time in a row the path went down again within twice its
// hold-down of coming back, up to 64 times and 10 minutes (never below
// cfg.HoldDown). A path that fails only under load, or only for what the
// probes off its route do not see (a fault in the local tunnel device),
// so comes back less and less often instead of every hold-down.
func (l *Link) holdDown(cfg Config) time.Duration {
	d := cfg.HoldDown << l.penalty
	return max(cfg.HoldDown, min(d, maxHoldDown))
}

// Observe records the outcome of one probe at now: answered (ok, after rtt)
// or missed. It returns the state before and whether the state changed.
func (l *Link) Observe(ok bool, rtt time.Duration, now time.Time, cfg Config) (from State, changed bool) {
	from = l.state()
	l.history <<= 1
	if !ok {
		l.history |= 1
	}
	if l.probes < historyLen {
		l.probes++
	}
	to, reason := from, ""
	if ok {
		l.misses = 0
		l.RTT = rtt
		switch from {
		case StateUnknown:
			to, reason = StateUp, "answering"
		case StateDown:
			if l.okSince.IsZero() {
				l.okSince = now
			}
			if hd := l.holdDown(cfg); now.Sub(l.okSince) >= hd {
				to, reason = StateUp, fmt.Sprintf("answered every probe for %s", hd)
				if l.penalty > 0 {
					reason += fmt.Sprintf(" (hold-down doubled %d times: it went down again soon after coming back)", l.penalty)
				}
			}
		}
	} else {
		l.misses++
		l.okSince = time.Time{}
		if from != StateDown && l.misses >= cfg.Misses {
			to, reason = StateDown, fmt.Sprintf("%d probes in a row unanswered", l.misses)
			switch {
			case !l.upAt.IsZero() && now.Sub(l.upAt) < 2*l.holdDown(cfg):
				l.penalty = min(l.penalty+1, maxPenalty)
			default:
				l.penalty = 0
			}
		}
	}
	if to == from {
		return from, false
	}
	l.State, l.Since, l.Reason = to, now, reason
	if to == StateUp {
		l.okSince = time.Time{}
		if from == StateDown {
			l.upAt = now
		}
	}
	return from, true
}

// Reset puts l back in StateUnknown at now, for reason (a path that cannot
// be probed off its route gets retried this way).
func (l *Link) Reset(now time.Time, reason string) {
	*l = Link{State: StateUnknown, Since: now, Reason: reason, upAt: now, penalty: l.penalty}
}

// Loss returns the share of the last probes (up to 32) that went
// unanswered, 0 to 1; 0 before any probe.
func (l *Link) Loss() float64 {
	if l.probes == 0 {
		return 0
	}
	mask := uint32(1)<<l.probes - 1
	if l.probes == historyLen {
		mask = ^uint32(0)
	}
	return float64(bits.OnesCount32(l.history&mask)) / float64(l.probes)
}

// Probes returns how many probes Loss is computed over.
func (l *Link) Probes() int { return l.probes }

func (l *Link) state() State {
	if l.State == "" {
		return StateUnknown
	}
	return l.State
}
