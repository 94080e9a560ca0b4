package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// PlannerResult is the planner benchmark: `go test -bench BenchmarkCompute`.
type PlannerResult struct {
	Command string `json:"command"`
	// CPU is the "cpu:" line go test printed.
	CPU     string       `json:"cpu"`
	Benches []BenchStats `json:"benches"`
}

// BenchStats is the medians over the -count runs of one benchmark.
type BenchStats struct {
	Name        string    `json:"name"`
	Runs        int       `json:"runs"`
	NsPerOp     float64   `json:"nsPerOp"`
	BytesPerOp  float64   `json:"bytesPerOp"`
	AllocsPerOp float64   `json:"allocsPerOp"`
	AllNsPerOp  []float64 `json:"allNsPerOp"`
}

// runPlanner runs the fabric planner benchmark in the module's root and
// returns its medians.
func runPlanner(ctx context.Context, o options) (PlannerResult, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return PlannerResult{}, fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == "/dev/null" {
		return PlannerResult{}, fmt.Errorf("go env GOMOD: not inside a module (run from the weft repository)")
	}
	args := []string{"test", "-run", "^$", "-bench", "BenchmarkCompute", "-benchmem", "-count", strconv.Itoa(o.benchCount), "./fabric"}
	res := PlannerResult{Command: "go " + strings.Join(args, " ")}
	o.log.Info("planner benchmark", "command", res.Command, "dir", root)
	waitQuiet(ctx, o.quiet, o.quietWait, o.log)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return res, fmt.Errorf("%s: %w\n%s", res.Command, err, out)
	}
	res.CPU, res.Benches = parseBench(string(out))
	if len(res.Benches) == 0 {
		return res, fmt.Errorf("%s: no benchmark lines in its output:\n%s", res.Command, out)
	}
	for _, b := range res.Benches {
		o.log.Info("planner", "bench", b.Name, "runs", b.Runs, "ns_per_op", b.NsPerOp, "b_per_op", b.BytesPerOp, "allocs_per_op", b.AllocsPerOp)
	}
	return res, nil
}

// parseBench reads `go test -bench -benchmem` output: the "cpu:" line and,
// per benchmark in first-seen order, the medians of ns/op, B/op and
// allocs/op. Lines it does not understand are skipped.
func parseBench(out string) (cpu string, benches []BenchStats) {
	type acc struct{ ns, b, allocs []float64 }
	accs := map[string]*acc{}
	var names []string
	for line := range strings.SplitSeq(out, "\n") {
		if v, ok := strings.CutPrefix(line, "cpu:"); ok {
			cpu = strings.TrimSpace(v)
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue // not "name iterations value unit ..."
		}
		a, ok := accs[f[0]]
		if !ok {
			a = &acc{}
			accs[f[0]] = a
			names = append(names, f[0])
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				a.ns = append(a.ns, v)
			case "B/op":
				a.b = append(a.b, v)
			case "allocs/op":
				a.allocs = append(a.allocs, v)
			}
		}
	}
	for _, n := range names {
		a := accs[n]
		benches = append(benches, BenchStats{Name: n, Runs: len(a.ns), NsPerOp: median(a.ns),
			BytesPerOp: median(a.b), AllocsPerOp: median(a.allocs), AllNsPerOp: a.ns})
	}
	return cpu, benches
}
