// Command health measures path health (fabric/health): how many probes a
// host sends and what they cost at 10, 100 and 1,000 peers (simulated),
// and, in a lab of real agents, how long it takes from a path breaking to
// traffic flowing over the fallback and from the path healing to the pair
// being back on it, with health off as the baseline measured in the same
// run. Results and their conditions go to docs/PERFORMANCE.md; nothing
// here asserts a number.
//
//	go run ./bench/health -what load -n 10,100,1000
//	go run ./bench/health -what fallback -runs 3      # needs root
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weft-net/weft/bench/internal/cpuload"
	"golang.org/x/sys/unix"
)

type options struct {
	quiet     float64
	quietWait time.Duration
	limit     time.Duration
	settle    time.Duration
}

// Machine describes where and how the numbers were measured.
type Machine struct {
	Date     string `json:"date"`
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpuModel"`
	Kernel   string `json:"kernel"`
	Go       string `json:"go"`
	Command  string `json:"command"`
}

func machine() Machine {
	m := Machine{Date: time.Now().UTC().Format(time.RFC3339), CPUs: runtime.NumCPU(), Go: runtime.Version(),
		Command: strings.Join(os.Args, " ")}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

func mkTemp() (string, error) { return os.MkdirTemp("", "weft-bench-health-") }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/health:", err)
		os.Exit(1)
	}
}

func run() error {
	what := flag.String("what", "load,fallback", "what to measure: load (probes and CPU per host, simulated peers), fallback (break and heal a path in a lab; root)")
	sizes := flag.String("n", "10,100,1000", "load: numbers of simulated peers")
	dur := flag.Duration("duration", 10*time.Second, "load: how long each size is measured (after one probe interval of warm-up)")
	runs := flag.Int("runs", 3, "fallback: break-and-heal runs per scenario")
	limit := flag.Duration("limit", 20*time.Second, "fallback: give up waiting for the fallback after this")
	settle := flag.Duration("settle", 25*time.Second, "fallback: pause between runs; under twice the hold-down (2 x 10 s), the next break counts as flapping and its return waits a doubled hold-down")
	baseline := flag.Bool("baseline", true, "fallback: also run each scenario once with health off")
	quiet := flag.Float64("quiet", 0.3, "wait before each measurement until other processes use fewer cores than this; mark it noisy otherwise")
	quietWait := flag.Duration("quiet-wait", 2*time.Minute, "longest wait for a quiet machine")
	binary := flag.String("binary", "", "fallback: weft binary (default: build ./cmd/weft)")
	asJSON := flag.Bool("json", false, "print the results as JSON")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of this process (the load part runs the agent's health loop in it) to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("start cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	o := options{quiet: *quiet, quietWait: *quietWait, limit: *limit, settle: *settle}
	out := struct {
		Machine  Machine          `json:"machine"`
		Load     []LoadResult     `json:"load,omitempty"`
		Fallback []FallbackResult `json:"fallback,omitempty"`
	}{Machine: machine()}
	whats := strings.Split(*what, ",")
	if slices.Contains(whats, "load") {
		var ns []int
		for _, s := range strings.Split(*sizes, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 0 {
				return fmt.Errorf("-n: %q: want a list of peer counts", *sizes)
			}
			ns = append(ns, n)
		}
		// Baseline: the same loop with no peer (the tick alone).
		for _, n := range append([]int{0}, ns...) {
			q := cpuload.WaitQuiet(ctx, o.quiet, o.quietWait, log)
			log.Info("load", "peers", n)
			r, err := runLoad(ctx, n, *dur)
			if err != nil {
				return fmt.Errorf("load %d: %w", n, err)
			}
			r.Quiet = q && r.Foreign < o.quiet
			out.Load = append(out.Load, r)
		}
	}
	if slices.Contains(whats, "fallback") {
		if os.Geteuid() != 0 {
			return fmt.Errorf("-what fallback needs root (network namespaces)")
		}
		bin := *binary
		if bin == "" {
			dir, err := mkTemp()
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			bin = filepath.Join(dir, "weft")
			if b, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/weft-net/weft/cmd/weft").CombinedOutput(); err != nil {
				return fmt.Errorf("build weft: %w\n%s", err, b)
			}
		}
		for _, sc := range scenarios() {
			rs, err := runFallback(ctx, sc, true, *runs, bin, o, log)
			out.Fallback = append(out.Fallback, rs...)
			if err != nil {
				return fmt.Errorf("%s: %w", sc.name, err)
			}
			if *baseline {
				rs, err := runFallback(ctx, sc, false, 1, bin, o, log)
				out.Fallback = append(out.Fallback, rs...)
				if err != nil {
					return fmt.Errorf("%s, health off: %w", sc.name, err)
				}
			}
		}
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	m := out.Machine
	fmt.Printf("%s, %d CPUs (%s), kernel %s, %s\n%s\n\n", m.Date, m.CPUs, m.CPUModel, m.Kernel, m.Go, m.Command)
	if len(out.Load) > 0 {
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "peers\ttargets\tinterval\tprobes/s sent\tanswered\tcores\tforeign cores\t")
		for _, r := range out.Load {
			fmt.Fprintf(tw, "%d\t%d\t%s\t%.1f\t%.1f%%\t%.4f\t%.2f%s\t\n", r.Peers, r.Targets, r.Interval, r.SentPerSec, r.Answered*100, r.Cores, r.Foreign, noisy(r.Quiet))
		}
		tw.Flush()
		fmt.Println()
	}
	if len(out.Fallback) > 0 {
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "scenario\thealth\trun\tpath moved\ttraffic flows\tback after heal\tforeign cores\t")
		for _, r := range out.Fallback {
			fmt.Fprintf(tw, "%s\t%v\t%d\t%s\t%s\t%s\t%.2f%s\t\n", r.Scenario, r.Health, r.Run, ms(r.PathMillis, r.Health), ms(r.TrafficMillis, true), ms(r.BackMillis, r.Health), r.Foreign, noisy(r.Quiet))
		}
		tw.Flush()
	}
	return nil
}

func ms(v int64, applies bool) string {
	switch {
	case !applies:
		return "-"
	case v < 0:
		return "never"
	}
	return fmt.Sprintf("%.2fs", float64(v)/1000)
}

func noisy(quiet bool) string {
	if quiet {
		return ""
	}
	return " *"
}
