package health

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestLink drives one Link through sequences of answers (o) and misses (x),
// one probe per second, and checks the state after each probe.
func TestLink(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Misses = 3
	cfg.HoldDown = 4 * time.Second
	tests := []struct {
		name  string
		seq   string
		want  string // state after each probe: u(p), d(own), ?(unknown)
		final string // reason of the last change
	}{
		{"answers: up at once", "oo", "uu", "answering"},
		{"misses below the threshold: unknown", "xx", "??", ""},
		{"three misses: down", "xxx", "??d", "3 probes in a row unanswered"},
		{"up, then three misses: down", "oxxx", "uuud", "3 probes in a row unanswered"},
		{"misses not in a row: stays up", "oxxoxxo", "uuuuuuu", "answering"},
		{"down, answers for the hold-down: up", "xxxooooo", "??dddddu", "answered every probe for 4s"},
		{"down, one miss restarts the hold-down", "xxxoooxoooo", "??ddddddddd", "3 probes in a row unanswered"},
		{"down, restarted hold-down completes", "xxxoooxooooo", "??dddddddddu", "answered every probe for 4s"},
		{"flapping every other probe: stays down", "xxxoxoxoxoxoxoxo", "??dddddddddddddd", "3 probes in a row unanswered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l Link
			start := time.Unix(1000, 0)
			got := ""
			for i, c := range tt.seq {
				l.Observe(c == 'o', 3*time.Millisecond, start.Add(time.Duration(i)*time.Second), cfg)
				got += map[State]string{StateUp: "u", StateDown: "d", StateUnknown: "?"}[l.state()]
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("states (-want +got):\n%s", diff)
			}
			if l.Reason != tt.final {
				t.Errorf("reason %q, want %q", l.Reason, tt.final)
			}
		})
	}
}

func TestLinkLoss(t *testing.T) {
	cfg := DefaultConfig()
	var l Link
	now := time.Unix(0, 0)
	if l.Loss() != 0 {
		t.Fatalf("loss before any probe %v, want 0", l.Loss())
	}
	for i := range 4 {
		l.Observe(i%2 == 0, time.Millisecond, now, cfg)
	}
	if got := l.Loss(); got != 0.5 {
		t.Errorf("loss after oxox %v, want 0.5", got)
	}
	for range 40 {
		l.Observe(true, time.Millisecond, now, cfg)
	}
	if got, n := l.Loss(), l.Probes(); got != 0 || n != historyLen {
		t.Errorf("loss after 40 answers %v over %d, want 0 over %d", got, n, historyLen)
	}
	for range 8 {
		l.Observe(false, 0, now, cfg)
	}
	if got := l.Loss(); got != 8.0/32 {
		t.Errorf("loss after 8 misses %v, want %v", got, 8.0/32)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"interval", func(c *Config) { c.Interval = time.Millisecond }, `health.interval: "1ms": want 10ms to 1h`},
		{"misses", func(c *Config) { c.Misses = 0 }, `health.misses: "0": want 1 to 100`},
		{"holdDown", func(c *Config) { c.HoldDown = -time.Second }, `health.holdDown: "-1s": want 0s to 24h`},
		{"timeout", func(c *Config) { c.Timeout = 2 * time.Minute }, `health.timeout: "2m0s": want 10ms to 1m`},
		{"budget", func(c *Config) { c.MaxProbesPerSecond = 0.5 }, `health.maxProbesPerSecond: "0.5": want 1 to 100000`},
		{"port", func(c *Config) { c.Port = 70000 }, `health.port: "70000": want 1 to 65535`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mod(&c)
			err := c.Validate()
			if err == nil || err.Error() != tt.want {
				t.Errorf("Validate() = %v, want %s", err, tt.want)
			}
		})
	}
}

// TestLinkDampening: a path that goes down again soon after each return
// waits twice as long each time; one that stays up for a while is
// forgiven.
func TestLinkDampening(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Misses, cfg.HoldDown = 1, 10*time.Second
	var l Link
	now := time.Unix(0, 0)
	step := func(ok bool, d time.Duration) {
		now = now.Add(d)
		l.Observe(ok, time.Millisecond, now, cfg)
	}
	// upAfter answers every second until the link is up and returns how
	// long that took.
	upAfter := func() time.Duration {
		start := now
		for l.state() != StateUp {
			step(true, time.Second)
		}
		return now.Sub(start)
	}
	step(false, time.Second) // down
	var waits []time.Duration
	for range 4 {
		waits = append(waits, upAfter())
		step(false, time.Second) // down again 1 s after coming back
	}
	want := []time.Duration{11 * time.Second, 21 * time.Second, 41 * time.Second, 81 * time.Second}
	if !cmp.Equal(waits, want) {
		t.Errorf("waits %v, want %v (the first answer starts the hold-down)", waits, want)
	}
	// Back up, then stays up well past twice its hold-down: forgiven.
	upAfter()
	for range 400 {
		step(true, time.Second)
	}
	step(false, time.Second)
	if got := upAfter(); got != 11*time.Second {
		t.Errorf("after a long good spell: up after %v, want 11s", got)
	}
	// The cap.
	for range 20 {
		upAfter()
		step(false, time.Second)
	}
	if got := l.holdDown(cfg); got != 10*time.Second<<maxPenalty && got != maxHoldDown {
		t.Errorf("capped hold-down %v", got)
	}
	if got := l.holdDown(cfg); got > maxHoldDown {
		t.Errorf("hold-down %v beyond the cap %v", got, maxHoldDown)
	}
}
