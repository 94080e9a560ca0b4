package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// printMarkdown writes the conditions and the summaries as Markdown, ready
// for docs/PERFORMANCE.md.
func printMarkdown(w io.Writer, out Output, o options) {
	m := out.Machine
	fmt.Fprintf(w, "Conditions:\n\n")
	fmt.Fprintf(w, "- date (UTC): %s\n", m.Date)
	fmt.Fprintf(w, "- CPUs (nproc): %d, CPU model: %s\n", m.CPUs, m.CPUModel)
	fmt.Fprintf(w, "- kernel (uname -r): %s\n", m.Kernel)
	fmt.Fprintf(w, "- Go: %s; iperf3: %s\n", m.Go, m.Iperf3)
	fmt.Fprintf(w, "- command: `%s`\n\n", m.Command)

	if p := out.Planner; p != nil {
		fmt.Fprintf(w, "Planner (`%s`, cpu: %s), medians:\n\n", p.Command, p.CPU)
		fmt.Fprintln(w, "| benchmark | runs | ns/op | ms/op | B/op | allocs/op |")
		fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: |")
		for _, b := range p.Benches {
			fmt.Fprintf(w, "| %s | %d | %.0f | %.2f | %.0f | %.0f |\n", b.Name, b.Runs, b.NsPerOp, b.NsPerOp/1e6, b.BytesPerOp, b.AllocsPerOp)
		}
		fmt.Fprintln(w)
	}

	if len(out.Throughput) > 0 {
		fmt.Fprintf(w, "Throughput (iperf3 TCP, receiver's rate in Gbit/s, median of %d runs of %s; a noisy measurement is left out and taken again, up to -retries times):\n\n", o.runs, o.duration)
		fmt.Fprintln(w, "| path | streams | Gbit/s | min - max | vs raw veth | vs its baseline | retransmits | measured / noisy |")
		fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
		for _, s := range out.Throughput {
			vsBase := "-"
			if s.Base != "" {
				vsBase = ratio(s.VsBase) + " of " + s.Base
			}
			fmt.Fprintf(w, "| %s | %d | %s | %s - %s | %s | %s | %s | %d / %d |\n", s.Path, s.Streams, gb(s.Gbps), gb(s.Min), gb(s.Max),
				ratio(s.VsRaw), vsBase, num(s.Retransmits), s.OK, s.Noisy)
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Paths:")
		fmt.Fprintln(w)
		for _, p := range pathOrder {
			if slices.ContainsFunc(out.Throughput, func(s TputSummary) bool { return s.Path == p }) {
				fmt.Fprintf(w, "- %s: %s\n", p, pathDesc[p])
			}
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Setup:")
		fmt.Fprintln(w)
		for _, n := range out.Notes {
			fmt.Fprintf(w, "- %s: `%s`\n", n.What, n.Text)
		}
		fmt.Fprintln(w)
	}

	if len(out.Join) > 0 {
		fmt.Fprintln(w, "Join: from starting the newcomer's agent until the kernels hold the routes (ms, medians over the trials; noisy trials left out):")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| hosts | trials ok / noisy | labs whose N-1 agents never converged | newcomer has a subnet | first other host | median other host | every other host | worst trial, every other host | newcomer's routes to all |")
		fmt.Fprintln(w, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
		for _, s := range out.Join {
			fmt.Fprintf(w, "| %d | %d of %d / %d | %d | %s | %s | %s | %s | %s | %s |\n", s.N, s.OK, s.Trials, s.Noisy, s.NoSetup,
				num(s.SubnetMS), num(s.FirstMS), num(s.MedianMS), num(s.AllMS), num(s.MaxAllMS), num(s.SelfMS))
		}
		fmt.Fprintln(w)
	}

	printAims(w, out)
	if len(out.Errors) > 0 {
		fmt.Fprintln(w, "Errors:")
		fmt.Fprintln(w)
		for _, e := range out.Errors {
			fmt.Fprintf(w, "- %s\n", strings.ReplaceAll(e, "\n", " "))
		}
	}
}

// printAims compares the results with issue #3's aims where a number can
// decide; the VXLAN aim needs a judgement and only gets its numbers.
func printAims(w io.Writer, out Output) {
	var lines []string
	for _, s := range out.Throughput {
		switch s.Path {
		case pathDirect:
			verdict := "met"
			if s.VsRaw < 0.95 {
				verdict = "not met"
			}
			lines = append(lines, fmt.Sprintf("direct within 5%% of raw veth, %d stream(s): %s (%s of raw veth; %s of the same path routed by hand)", s.Streams, verdict, ratio(s.VsRaw), ratio(s.VsBase)))
		case pathVXLAN:
			lines = append(lines, fmt.Sprintf("VXLAN within the kernel's own VXLAN cost, %d stream(s): %s Gbit/s, %s of raw veth, %s of the hand-made kernel VXLAN on the same topology (FACTS.md: kernel VXLAN 15.1 / 24.5 Gbit/s for 1 / 4 streams)", s.Streams, gb(s.Gbps), ratio(s.VsRaw), ratio(s.VsBase)))
		}
	}
	if p := out.Planner; p != nil {
		i := slices.IndexFunc(p.Benches, func(b BenchStats) bool { return strings.Contains(b.Name, "peers=5000") })
		if i >= 0 {
			verdict := "met"
			if p.Benches[i].NsPerOp >= 50e6 {
				verdict = "not met"
			}
			lines = append(lines, fmt.Sprintf("plan for 5,000 peers under 50 ms: %s (%.2f ms)", verdict, p.Benches[i].NsPerOp/1e6))
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(w, "Aims of issue #3:")
	fmt.Fprintln(w)
	for _, l := range lines {
		fmt.Fprintf(w, "- %s\n", l)
	}
	fmt.Fprintln(w)
}

func gb(v float64) string {
	if v < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", v)
}

func ratio(v float64) string {
	if v <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", v)
}

func num(v float64) string {
	if v < 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", v)
}
