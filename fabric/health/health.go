// Package health decides whether the paths to peers work: it is the pure
// half of path health (issue 7). The agent probes each peer over the path
// the planner chose and over the paths it would fall back to or return to;
// this package turns the answers into per-path states and the planner's
// input (fabric.Peer.Avoid).
//
// Data flow, all driven by the caller's clock (no goroutines, no kernel):
//
//	plan (fabric.PeerPlan per peer) -> Tracker.SetPlan -> Tracker.Targets
//	-> Scheduler.Due (interval, jitter, probe budget) -> the caller sends
//	probes (Tracker.Sent gives each its sequence number) -> Tracker.Reply /
//	Tracker.Expire -> Link state changes -> Tracker.Avoid -> replan.
//
// A path is up or down per peer: down after Config.Misses probes in a row
// went unanswered, up again after it has answered every probe for
// Config.HoldDown (one miss restarts the wait), so a path that flaps stays
// down. The planner's fallback order (fabric.PeerPlan.Candidates) decides
// where a peer goes; this package only says what is down.
package health

import (
	"errors"
	"fmt"
	"time"
)

// Defaults. With them a path that stops answering is down about 2 s after
// its first lost probe (3 misses 500 ms apart, the last one given 1 s), and
// a host sends at most 200 probes per second whatever the cluster's size.
const (
	DefaultInterval           = 500 * time.Millisecond
	DefaultMisses             = 3
	DefaultHoldDown           = 10 * time.Second
	DefaultTimeout            = time.Second
	DefaultMaxProbesPerSecond = 200
	// DefaultStartGrace is how long misses of a peer new to the plan do
	// not count until it first answers: its agent may not know this node
	// yet, nor have its routes and tunnels in place.
	DefaultStartGrace = 5 * time.Second
	// DefaultPort is the UDP port probes are sent to; memberlist's default
	// is 7946, so the next one.
	DefaultPort = 7947
)

// Config tunes path health. The zero value is not valid: start from
// DefaultConfig.
type Config struct {
	// Interval is the time between two probes of one path, before
	// stretching for the probe budget.
	Interval time.Duration
	// Misses is how many probes in a row must go unanswered for a path
	// to be down.
	Misses int
	// HoldDown is how long a down path must answer every probe before it
	// is up again.
	HoldDown time.Duration
	// Timeout is how long a probe waits for its answer before it counts as
	// missed.
	Timeout time.Duration
	// MaxProbesPerSecond bounds the probes this host sends: the interval
	// is stretched so that all targets fit in it.
	MaxProbesPerSecond float64
	// Port is the UDP port probes are sent to and answered from.
	Port int
	// StartGrace is how long after a peer first appears in the plan its
	// misses do not count, unless it has answered a probe since.
	StartGrace time.Duration
	// MTUReprobe is how long a found path MTU is trusted; 0 means
	// DefaultMTUReprobe.
	MTUReprobe time.Duration
}

// DefaultConfig returns the defaults above. Each call returns a new value.
func DefaultConfig() Config {
	return Config{
		Interval:           DefaultInterval,
		Misses:             DefaultMisses,
		HoldDown:           DefaultHoldDown,
		Timeout:            DefaultTimeout,
		MaxProbesPerSecond: DefaultMaxProbesPerSecond,
		Port:               DefaultPort,
		StartGrace:         DefaultStartGrace,
	}
}

// Validate returns nil or every problem of c joined, each naming the field
// as the config file does (health.interval, ...) and its value. Interval 10
// ms to 1 h; misses 1 to 100; holdDown 0 to 24 h; timeout 10 ms to 1 min;
// maxProbesPerSecond 1 to 100,000; port 1 to 65535.
func (c Config) Validate() error {
	var errs []error
	bad := func(field string, value any, want string) {
		errs = append(errs, fmt.Errorf("health.%s: %q: want %s", field, fmt.Sprint(value), want))
	}
	if c.Interval < 10*time.Millisecond || c.Interval > time.Hour {
		bad("interval", c.Interval, "10ms to 1h")
	}
	if c.Misses < 1 || c.Misses > 100 {
		bad("misses", c.Misses, "1 to 100")
	}
	if c.HoldDown < 0 || c.HoldDown > 24*time.Hour {
		bad("holdDown", c.HoldDown, "0s to 24h")
	}
	if c.Timeout < 10*time.Millisecond || c.Timeout > time.Minute {
		bad("timeout", c.Timeout, "10ms to 1m")
	}
	if !(c.MaxProbesPerSecond >= 1 && c.MaxProbesPerSecond <= 100000) {
		bad("maxProbesPerSecond", c.MaxProbesPerSecond, "1 to 100000")
	}
	if c.Port < 1 || c.Port > 65535 {
		bad("port", c.Port, "1 to 65535")
	}
	return errors.Join(errs...)
}

// State is the state of one path to one peer.
type State string

// States.
const (
	// StateUnknown: not probed enough yet; usable.
	StateUnknown State = "unknown"
	// StateUp: answering.
	StateUp State = "up"
	// StateDown: Misses probes in a row unanswered, or answering for less
	// than HoldDown since; the planner avoids it.
	StateDown State = "down"
)
