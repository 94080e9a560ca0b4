// Command convergence measures how fast weft's membership converges and how
// fast it declares a crashed member dead, for growing cluster sizes:
//
//   - -mode inproc: N gossip.Membership instances in this one process, each
//     on its own port of 127.0.0.1, encrypted as in production;
//   - -mode lab: N real `weft agent` processes, each in its own network
//     namespace of a netlab topology (two L2 segments joined by a router).
//
// Each run starts a cluster cold, waits until every member sees all N alive,
// leaves it alone for -settle, crashes one member that is not a seed, and
// waits until every survivor has declared it dead. Each size is measured with
// weft's timings (gossip.Config defaults unless overridden by flags) and, with
// -baseline, with memberlist's LAN timings, the runs of the two interleaved.
// It prints a summary (medians over the runs) and every run, or JSON.
//
// It only talks to 127.0.0.1 and to namespaces it made; a lab's namespaces are
// removed when the run ends, on error and on SIGINT too.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weft-net/weft/bench/internal/cpuload"
)

// profile is one set of failure-detection timings; zero fields mean "weft's
// default" (gossip.Config defaults in-process, the agent's config defaults in the lab).
type profile struct {
	Name          string
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	SuspicionMult int
}

// memberlistLAN returns memberlist's DefaultLANConfig timings, the baseline.
func memberlistLAN() profile {
	return profile{Name: "memberlist-lan", ProbeInterval: time.Second, ProbeTimeout: 500 * time.Millisecond, SuspicionMult: 4}
}

// label describes p's timings; zero fields read "default".
func (p profile) label() string {
	f := func(d time.Duration) string {
		if d == 0 {
			return "default"
		}
		return d.String()
	}
	m := "default"
	if p.SuspicionMult > 0 {
		m = strconv.Itoa(p.SuspicionMult)
	}
	return fmt.Sprintf("probe %s, timeout %s, suspicion x%s", f(p.ProbeInterval), f(p.ProbeTimeout), m)
}

// options are the settings shared by every run.
type options struct {
	seeds           int
	joinRetryMax    time.Duration
	settle          time.Duration
	convergeTimeout time.Duration
	detectTimeout   time.Duration
	binary          string
	keepLogs        bool
	log             *slog.Logger
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "convergence:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		mode      = flag.String("mode", "inproc", "inproc (gossip.Membership instances on 127.0.0.1) or lab (weft agents in network namespaces)")
		sizes     = flag.String("n", "", "comma-separated cluster sizes (default 100,200,300 for inproc, 5,20,50 for lab)")
		runs      = flag.Int("runs", 3, "runs per size and profile")
		probe     = flag.Duration("probe-interval", 0, "weft profile: gossip ProbeInterval (0: weft's default, 500ms)")
		timeout   = flag.Duration("probe-timeout", 0, "weft profile: gossip ProbeTimeout (0: weft's default, 250ms)")
		mult      = flag.Int("suspicion-mult", 0, "weft profile: gossip SuspicionMult (0: weft's default, 3)")
		baseline  = flag.Bool("baseline", true, "also measure memberlist's LAN timings (probe 1s, timeout 500ms, suspicion x4), interleaved")
		settle    = flag.Duration("settle", 10*time.Second, "time the converged cluster is left alone before the crash (false deaths and steady CPU are measured then)")
		convWait  = flag.Duration("converge-timeout", 120*time.Second, "give up waiting for convergence after this")
		detWait   = flag.Duration("detect-timeout", 60*time.Second, "give up waiting for every survivor to declare the crash after this")
		seeds     = flag.Int("seeds", 3, "inproc: how many of the first members every member joins through")
		binary    = flag.String("binary", "", "lab: weft binary to run (default: build ./cmd/weft into a temp dir)")
		keepLogs  = flag.Bool("keep-logs", false, "lab: keep every run's work dir with the agents' logs (failed runs always keep theirs)")
		stopBreak = flag.Bool("stop-on-break", true, "stop before the next size once no run of weft's profile converged")
		quiet     = flag.Float64("quiet", 0.3, "before each run, wait until other processes use fewer cores than this; a run during which they used more is noisy")
		quietWait = flag.Duration("quiet-wait", 10*time.Minute, "longest wait for a quiet machine before a run")
		retries   = flag.Int("retries", 2, "re-measure a noisy run up to this many times")
		jsonOut   = flag.Bool("json", false, "print the machine, every run and the summary as JSON instead of tables")
		verbose   = flag.Bool("v", false, "debug logging on stderr")
	)
	flag.Parse()
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	if *sizes == "" {
		*sizes = map[string]string{"inproc": "100,200,300", "lab": "5,20,50"}[*mode]
	}
	ns, err := parseSizes(*sizes)
	if err != nil {
		return err
	}
	if *runs < 1 {
		return fmt.Errorf("-runs %d: want at least 1", *runs)
	}
	if *retries < 0 || *quiet <= 0 {
		return fmt.Errorf("-retries %d, -quiet %g: want -retries >= 0 and -quiet > 0", *retries, *quiet)
	}
	if *seeds < 1 {
		return fmt.Errorf("-seeds %d: want at least 1", *seeds)
	}
	if *probe < 0 || *timeout < 0 || *mult < 0 {
		return fmt.Errorf("-probe-interval %s, -probe-timeout %s, -suspicion-mult %d: want no negative value", *probe, *timeout, *mult)
	}
	profiles := []profile{{Name: "weft", ProbeInterval: *probe, ProbeTimeout: *timeout, SuspicionMult: *mult}}
	if *probe != 0 || *timeout != 0 || *mult != 0 {
		profiles[0].Name = "weft-custom"
	}
	if *baseline {
		profiles = append(profiles, memberlistLAN())
	}

	// SIGINT and SIGTERM cancel ctx: every wait returns, every deferred
	// Close runs, and a lab's namespaces go with it.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	o := options{seeds: *seeds, joinRetryMax: 5 * time.Second, settle: *settle,
		convergeTimeout: *convWait, detectTimeout: *detWait, binary: *binary, keepLogs: *keepLogs, log: log}
	var measure func(context.Context, profile, int, int, options) Result
	switch *mode {
	case "inproc":
		measure = runInproc
	case "lab":
		if os.Geteuid() != 0 {
			return errNotRoot
		}
		measure = runLab
		if o.binary == "" {
			dir, err := os.MkdirTemp("", "weft-bench-bin-")
			if err != nil {
				return fmt.Errorf("make build dir: %w", err)
			}
			defer os.RemoveAll(dir)
			if o.binary, err = buildWeft(ctx, dir); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("-mode %q: want inproc or lab", *mode)
	}

	m := machine()
	log.Info("machine", "desc", m.String())
	for _, p := range profiles {
		log.Info("profile", "name", p.Name, "timings", p.label())
	}
	var results []Result
	for _, n := range ns {
		broken := true
		for r := 1; r <= *runs; r++ {
			for _, p := range profiles {
				if ctx.Err() != nil {
					return finish(results, m, *jsonOut, ctx.Err())
				}
				for try := 0; try <= *retries && ctx.Err() == nil; try++ {
					runtime.GC() // start every run with the last one's garbage gone
					cpuload.WaitQuiet(ctx, *quiet, *quietWait, log)
					m0 := cpuload.Now()
					res := measure(ctx, p, n, r, o)
					if ctx.Err() != nil {
						break // interrupted: not a measurement
					}
					res.CPUForeign = cpuload.Foreign(m0, cpuload.Now())
					res.Noisy = res.CPUForeign > *quiet
					results = append(results, res)
					logResult(log, res)
					if p.Name != "memberlist-lan" && res.ConvergeMS >= 0 {
						broken = false
					}
					if !res.Noisy {
						break
					}
				}
			}
		}
		if broken && *stopBreak {
			log.Info("no run of weft's profile converged: not trying larger sizes", "n", n)
			break
		}
	}
	return finish(results, m, *jsonOut, nil)
}

// finish prints what was measured, even after an interruption, and returns err.
func finish(results []Result, m Machine, asJSON bool, err error) error {
	var perr error
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		perr = enc.Encode(struct {
			Machine Machine   `json:"machine"`
			Results []Result  `json:"results"`
			Summary []Summary `json:"summary"`
		}{m, results, summarize(results)})
	} else {
		fmt.Printf("# %s\n\n", m)
		perr = printTables(os.Stdout, results)
	}
	return errors.Join(err, perr)
}

func logResult(log *slog.Logger, r Result) {
	log.Info("run", "mode", r.Mode, "n", r.N, "profile", r.Profile, "run", r.Run,
		"converge_s", secs(r.ConvergeMS), "alive_s", secs(r.AliveMS), "min_view", r.MinView,
		"dead_first_s", secs(r.DetectFirstMS), "dead_median_s", secs(r.DetectMedianMS), "dead_all_s", secs(r.DetectAllMS),
		"detected", r.Detected, "false_deaths", r.FalseDeaths,
		"cpu_converge", fmt.Sprintf("%.2f", r.CPUConverge), "cpu_steady", fmt.Sprintf("%.2f", r.CPUSteady),
		"cpu_detect", fmt.Sprintf("%.2f", r.CPUDetect), "cpu_peak", fmt.Sprintf("%.2f", r.CPUPeak),
		"cpu_foreign", fmt.Sprintf("%.2f", r.CPUForeign), "noisy", r.Noisy, "err", r.Err)
}

// parseSizes parses "100,200,300".
func parseSizes(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			return nil, fmt.Errorf("-n %q: %q is not a cluster size of at least 2", s, f)
		}
		out = append(out, n)
	}
	return out, nil
}
