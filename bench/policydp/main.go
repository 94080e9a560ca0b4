// Command policydp measures weft's policy data plane (policy/nft) on this
// machine (weft issue #9, "Measured, not asserted"), each against no weft
// table in the same run:
//
//   - compile: decode and Compile of a generated world (endpoints labelled
//     by app, tier and env; policies selecting them, allowing ports from
//     other apps and nets, some egress; a default deny), and the ruleset's
//     chains, rules, sets and elements;
//   - connrate: new TCP connections per second from a client workload to a
//     server workload through the routing namespace r that holds the table:
//     no table, a table with only "ct state established,related accept",
//     and weft's compiled table for each -endpoints size, interleaved run by
//     run so that all see the same machine;
//   - iperf: iperf3 TCP throughput, one stream, no table against weft's
//     table for the largest size;
//   - update: time of Applier.Apply for one change against the largest
//     table (an endpoint's label changed and back, an endpoint removed and
//     added), against Applier.Replace of the whole table (the resync), and
//     the first Apply of a new Applier (a restarted agent) that finds the
//     table current;
//   - memory: kernel memory (SUnreclaim + VmallocUsed + Percpu of
//     /proc/meminfo) taken by the largest table, in a namespace of its own.
//
// The machine is shared: before each measurement it waits (at most
// -quiet-wait) until other processes use fewer than -quiet cores, records
// the cores they used during the measurement, and marks it noisy (*) when
// that was -quiet or more; medians leave noisy samples out when there are
// others. It prints Markdown tables on stdout and progress on stderr.
//
// It needs root. It sends packets only between namespaces it made (named
// pd<4 hex digits>-*, removed when it ends or is interrupted).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weft-net/weft/policy/nft"
)

type options struct {
	sizes      []int
	policies   int
	runs       int
	duration   time.Duration
	dialers    int
	iperfRuns  int
	iperfTime  time.Duration
	changes    int
	replaces   int
	memRuns    int
	quiet      float64
	quietWait  time.Duration
	parts      map[string]bool
	log        *slog.Logger
	compileRep int
	narrow     bool
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "policydp:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		o     options
		sizes = flag.String("endpoints", "100,1000,10000", "endpoint counts of the generated worlds; the largest is used for iperf, update and memory")
		parts = flag.String("parts", "compile,connrate,iperf,update,memory", "what to measure")
	)
	flag.IntVar(&o.policies, "policies", 1000, "policies in every generated world (including the benchmark's two and a default deny)")
	flag.IntVar(&o.runs, "runs", 5, "connrate runs per table")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "length of one connrate measurement")
	flag.IntVar(&o.dialers, "dialers", 4, "connections opened at once by the client")
	flag.IntVar(&o.iperfRuns, "iperf-runs", 3, "iperf3 runs per table")
	flag.DurationVar(&o.iperfTime, "iperf-time", 5*time.Second, "length of one iperf3 run")
	flag.IntVar(&o.changes, "changes", 200, "incremental updates measured per kind of change")
	flag.IntVar(&o.replaces, "replaces", 10, "full replaces measured")
	flag.IntVar(&o.memRuns, "mem-runs", 3, "kernel memory measurements")
	flag.IntVar(&o.compileRep, "compile-runs", 5, "compiles timed per size")
	flag.BoolVar(&o.narrow, "narrow", true, "connrate: also weft's largest table in a world where no generated policy selects the client or the server (10 do otherwise, on each side)")
	flag.Float64Var(&o.quiet, "quiet", 0.3, "wait until other processes use fewer cores than this; a measurement during which they used more is marked noisy")
	flag.DurationVar(&o.quietWait, "quiet-wait", 2*time.Minute, "longest wait for a quiet machine before each measurement")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./bench/policydp [flags] (as root)\n\n"+
			"Measures weft's nftables policy data plane: compile time, connection rate and\n"+
			"iperf3 throughput through a host with and without weft's table, incremental update\n"+
			"and full replace times, kernel memory. Markdown on stdout, progress on stderr.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	o.log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 16000 {
			return fmt.Errorf("-endpoints %q: want numbers from 1 to 16000", *sizes)
		}
		o.sizes = append(o.sizes, n)
	}
	slices.Sort(o.sizes)
	if o.policies < 3 {
		return fmt.Errorf("-policies %d: want at least 3", o.policies)
	}
	o.parts = map[string]bool{}
	for _, p := range strings.Split(*parts, ",") {
		switch p = strings.TrimSpace(p); p {
		case "compile", "connrate", "iperf", "update", "memory":
			o.parts[p] = true
		default:
			return fmt.Errorf("-parts %q: unknown part %q", *parts, p)
		}
	}
	if os.Geteuid() != 0 && (len(o.parts) > 1 || !o.parts["compile"]) {
		return errors.New("needs root (network namespaces, nftables); only -parts compile runs without")
	}
	if o.parts["iperf"] {
		if _, err := exec.LookPath("iperf3"); err != nil {
			return errors.New("iperf3 is missing (apt-get install -y iperf3)")
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	m := machine()
	fmt.Printf("# policy data plane, %s\n\n`%s`\n\n", m, m.Command)
	rulesets := map[int]nft.Ruleset{}
	for _, n := range o.sizes {
		o.log.Info("compile", "endpoints", n, "policies", o.policies)
		rs, err := compilePart(ctx, o, n)
		if err != nil {
			return err
		}
		rulesets[n] = rs
	}
	largest := o.sizes[len(o.sizes)-1]
	var errs []error
	if o.parts["connrate"] || o.parts["iperf"] || o.parts["update"] {
		l, err := newLab(ctx)
		if err == nil {
			err = labParts(ctx, o, l, rulesets, largest)
		}
		if cerr := l.Close(); cerr != nil {
			errs = append(errs, fmt.Errorf("remove lab: %w", cerr))
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if o.parts["memory"] && ctx.Err() == nil {
		if err := memoryPart(ctx, o, rulesets[largest], largest); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sample is one measurement and the cores other processes used during it.
type sample struct {
	value   float64
	foreign float64
}

// summary returns the median of samples (of the quiet ones, when there are
// any), how many were noisy, and the highest foreign load.
func summary(ss []sample, quiet float64) (med float64, noisy int, maxForeign float64) {
	var q, all []float64
	for _, s := range ss {
		all = append(all, s.value)
		if s.foreign >= quiet {
			noisy++
		} else {
			q = append(q, s.value)
		}
		maxForeign = max(maxForeign, s.foreign)
	}
	if len(q) > 0 {
		return median(q), noisy, maxForeign
	}
	return median(all), noisy, maxForeign
}

// percentile returns the p-th percentile (nearest rank) of xs.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return -1
	}
	s := slices.Sorted(slices.Values(xs))
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// measure waits for a quiet machine, then runs fn and returns its value and
// the foreign load during it.
func measure(ctx context.Context, o options, fn func() (float64, error)) (sample, error) {
	waitQuiet(ctx, o.quiet, o.quietWait, o.log)
	a := markCPU()
	v, err := fn()
	return sample{value: v, foreign: foreign(a, markCPU())}, err
}

func noisyMark(noisy, total int) string {
	if noisy == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d of %d noisy*)", noisy, total)
}
