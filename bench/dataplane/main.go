// Command dataplane measures weft's data plane on this machine (weft issue
// #3, "Measured, not asserted"):
//
//   - throughput: iperf3 TCP, 1 and 4 streams, workload to workload over
//     weft's direct path (w1 on h1 -> w2 on h2, one L2 segment) and over its
//     VXLAN path (w1 -> w3 on h3, another segment behind a router) of the
//     default lab topology, and, in the same run and interleaved with them,
//     two baselines without weft: a raw veth between two fresh namespaces,
//     and host to host over the lab underlay (h1 -> h2, through the
//     segment's bridge);
//   - join: the time from starting the agent of a new host until every other
//     host's kernel holds a weft route (protocol 87) to the newcomer's subnet,
//     in clusters of N hosts on two segments joined by a router;
//   - planner: `go test -bench BenchmarkCompute -benchmem ./fabric`.
//
// It prints the conditions and Markdown tables of medians on stdout (or
// JSON), and every sample on stderr as it is measured. Nothing is asserted.
//
// It needs root for the first two. It only sends packets inside network
// namespaces it made (all named <prefix>-*, with a fresh prefix "wd...." per
// lab, printed on stderr) and removes them when it ends, fails or is
// interrupted (SIGINT, SIGTERM); after a SIGKILL of the benchmark itself,
// remove leftovers with `ip netns list` / `ip netns del`.
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
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the settings shared by every part.
type options struct {
	runs        int
	duration    time.Duration
	streams     []int
	sizes       []int
	trials      int
	benchCount  int
	quiet       float64
	quietWait   time.Duration
	retries     int
	setups      int
	waitTimeout time.Duration
	binary      string
	logs        string
	paths       map[string]bool // path names to measure; nil means all
	log         *slog.Logger
}

// Output is everything one invocation measured.
type Output struct {
	Machine    Machine        `json:"machine"`
	Samples    []Sample       `json:"throughputSamples,omitempty"`
	Throughput []TputSummary  `json:"throughput,omitempty"`
	Notes      []Note         `json:"notes,omitempty"`
	Trials     []JoinTrial    `json:"joinTrials,omitempty"`
	Join       []JoinSummary  `json:"join,omitempty"`
	Planner    *PlannerResult `json:"planner,omitempty"`
	Errors     []string       `json:"errors,omitempty"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "dataplane:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		what      = flag.String("what", "planner,throughput,join", "comma-separated parts to run: planner, throughput, join")
		runs      = flag.Int("runs", 3, "throughput: runs per path and stream count")
		duration  = flag.Duration("t", 10*time.Second, "throughput: length of one iperf3 run")
		streams   = flag.String("streams", "1,4", "throughput: comma-separated iperf3 stream counts (-P)")
		pathList  = flag.String("paths", "", "throughput: comma-separated paths to measure (raw, host, host-routed, hand, hand-vxlan, hand-nft, direct, vxlan; default all)")
		sizes     = flag.String("n", "5,20", "join: comma-separated cluster sizes (hosts, the newcomer included)")
		trials    = flag.Int("trials", 3, "join: trials per size, each in a fresh lab")
		setups    = flag.Int("setups", 3, "join: build a new lab up to this many more times per trial when its first N-1 agents do not converge")
		count     = flag.Int("count", 5, "planner: go test -count")
		quiet     = flag.Float64("quiet", 0.3, "before each measurement, wait until other processes use fewer cores than this; a measurement during which they used more is noisy")
		quietWait = flag.Duration("quiet-wait", 5*time.Minute, "longest wait for a quiet machine before a measurement")
		retries   = flag.Int("retries", 2, "re-measure a noisy measurement up to this many times")
		waitT     = flag.Duration("wait-timeout", 120*time.Second, "give up waiting for a lab to converge after this")
		binary    = flag.String("binary", "", "weft binary the agents run (default: build ./cmd/weft into a temp dir)")
		jsonOut   = flag.Bool("json", false, "print the machine, every sample and the summaries as JSON instead of Markdown")
		save      = flag.String("save", "", "also write that JSON to this file")
		logs      = flag.String("logs", "", "join: keep each newcomer's agent log in this directory, and when a cluster does not converge, every agent's log with its goroutine stacks (SIGQUIT)")
		verbose   = flag.Bool("v", false, "debug logging on stderr")
	)
	flag.Parse()
	if *logs != "" {
		if err := os.MkdirAll(*logs, 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "dataplane: -logs: %v\n", err)
			os.Exit(2)
		}
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	parts := map[string]bool{}
	for p := range strings.SplitSeq(*what, ",") {
		p = strings.TrimSpace(p)
		if p != "planner" && p != "throughput" && p != "join" {
			return fmt.Errorf("-what %q: unknown part %q (want planner, throughput, join)", *what, p)
		}
		parts[p] = true
	}
	st, err := parseInts("-streams", *streams, 1)
	if err != nil {
		return err
	}
	ns, err := parseInts("-n", *sizes, 2)
	if err != nil {
		return err
	}
	switch {
	case *runs < 1:
		return fmt.Errorf("-runs %d: want at least 1", *runs)
	case *trials < 1:
		return fmt.Errorf("-trials %d: want at least 1", *trials)
	case *count < 1:
		return fmt.Errorf("-count %d: want at least 1", *count)
	case *duration < time.Second:
		return fmt.Errorf("-t %s: want at least 1s", *duration)
	case *retries < 0 || *setups < 0 || *quiet <= 0:
		return fmt.Errorf("-retries %d, -setups %d, -quiet %g: want -retries >= 0, -setups >= 0 and -quiet > 0", *retries, *setups, *quiet)
	}
	if (parts["throughput"] || parts["join"]) && os.Geteuid() != 0 {
		return errors.New("throughput and join need root: they make network namespaces, veths and bridges (run -what planner without root)")
	}

	// SIGINT and SIGTERM cancel ctx: every wait returns, every deferred
	// Close runs, and the namespaces go with them.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var paths map[string]bool
	if *pathList != "" {
		paths = map[string]bool{}
		for k := range strings.SplitSeq(*pathList, ",") {
			name, ok := pathKeys[strings.TrimSpace(k)]
			if !ok {
				return fmt.Errorf("-paths %q: unknown path %q", *pathList, k)
			}
			paths[name] = true
		}
	}
	o := options{runs: *runs, duration: *duration, streams: st, sizes: ns, trials: *trials, benchCount: *count,
		quiet: *quiet, quietWait: *quietWait, retries: *retries, setups: *setups, waitTimeout: *waitT, binary: *binary, logs: *logs, paths: paths, log: log}
	if (parts["throughput"] || parts["join"]) && o.binary == "" {
		dir, err := os.MkdirTemp("", "weft-bench-dp-bin-")
		if err != nil {
			return fmt.Errorf("make build dir: %w", err)
		}
		defer os.RemoveAll(dir)
		if o.binary, err = buildWeft(ctx, dir); err != nil {
			return err
		}
	}

	out := Output{Machine: machine()}
	log.Info("machine", "desc", out.Machine.String())
	var errs []error
	note := func(part string, err error) {
		if err != nil {
			log.Error("part failed", "part", part, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", part, err))
			out.Errors = append(out.Errors, fmt.Sprintf("%s: %v", part, err))
		}
	}
	if parts["planner"] && ctx.Err() == nil {
		p, err := runPlanner(ctx, o)
		note("planner", err)
		if err == nil {
			out.Planner = &p
		}
	}
	if parts["throughput"] && ctx.Err() == nil {
		samples, notes, err := runThroughput(ctx, o)
		note("throughput", err)
		out.Samples, out.Notes = samples, notes
		out.Throughput = summarizeThroughput(samples)
	}
	if parts["join"] && ctx.Err() == nil {
		out.Trials = runJoin(ctx, o)
		out.Join = summarizeJoin(out.Trials)
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, fmt.Errorf("interrupted: %w", err))
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("encode results: %w", err))...)
	}
	b = append(b, '\n')
	if *save != "" {
		if err := os.WriteFile(*save, b, 0o644); err != nil {
			errs = append(errs, fmt.Errorf("save results: %w", err))
		}
	}
	if *jsonOut {
		_, err := os.Stdout.Write(b)
		errs = append(errs, err)
	} else {
		printMarkdown(os.Stdout, out, o)
	}
	return errors.Join(errs...)
}

// parseInts parses a comma-separated list of integers of at least min.
func parseInts(flagName, s string, min int) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < min {
			return nil, fmt.Errorf("%s %q: %q is not a whole number of at least %d", flagName, s, f, min)
		}
		out = append(out, n)
	}
	return out, nil
}
