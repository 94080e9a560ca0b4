package main

import (
	"fmt"
	"io"
	"slices"
)

// The measured paths, in the order the tables show them.
const (
	pathRaw    = "raw veth"
	pathWGVeth = "wireguard-go, veth"
	pathUnder  = "underlay h1 -> h4"
	pathWGLab  = "wireguard-go, h1 -> h4"
	pathWeft   = "weft w1 -> w4"
)

var pathOrder = []string{pathRaw, pathWGVeth, pathUnder, pathWGLab, pathWeft}

// pathDesc says what each path is.
var pathDesc = map[string]string{
	pathRaw:    "two fresh namespaces joined by one veth, MTU 1500: no WireGuard, no routing, no weft",
	pathWGVeth: "standalone wireguard-go (the `wireguard` binary, one process per end, configured with wg(8), MTU 1420) between two fresh namespaces joined by one veth",
	pathUnder:  "the weft lab's underlay without WireGuard: h1 -> bridge -> rt1 -> WAN bridge -> rt2 -> bridge -> h4",
	pathWGLab:  "the same standalone wireguard-go, run in the weft lab's h1 and h4 (tunnel h1 -> h4 over the underlay above, beside weft's own device)",
	pathWeft:   "weft's path: workload w1 on h1 -> h1 -> weft.wg (wireguard-go embedded in the agent) -> underlay above -> h4 -> w4, as the agents programmed it",
}

// TputSummary is the medians of one path and stream count.
type TputSummary struct {
	Path    string `json:"path"`
	Streams int    `json:"streams"`
	// Runs counts every sample; OK those that measured; Noisy the measured
	// ones taken while other processes were busy, left out of the medians
	// unless every one was noisy.
	Runs, OK, Noisy int
	Gbps, Min, Max  float64
	CPUPerGB        float64 `json:"cpuSecondsPerGB"`
	Retransmits     float64
	// VsRaw, VsWGVeth and VsWGLab are Gbps over those paths' medians at the
	// same stream count (0: missing).
	VsRaw, VsWGVeth, VsWGLab float64
}

// summarizeThroughput groups samples by stream count, then path in
// pathOrder, and computes medians and ratios.
func summarizeThroughput(samples []Sample) []TputSummary {
	type key struct {
		streams int
		path    string
	}
	groups := map[key][]Sample{}
	var keys []key
	for _, s := range samples {
		k := key{s.Streams, s.Path}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], s)
	}
	slices.SortFunc(keys, func(a, b key) int {
		if a.streams != b.streams {
			return a.streams - b.streams
		}
		return slices.Index(pathOrder, a.path) - slices.Index(pathOrder, b.path)
	})
	var out []TputSummary
	for _, k := range keys {
		sum := TputSummary{Path: k.path, Streams: k.streams, Runs: len(groups[k])}
		var quiet, all []Sample
		for _, s := range groups[k] {
			if s.Err != "" {
				continue
			}
			sum.OK++
			all = append(all, s)
			if s.Noisy {
				sum.Noisy++
			} else {
				quiet = append(quiet, s)
			}
		}
		use := quiet
		if len(use) == 0 {
			use = all
		}
		var gbps, cpu, retr []float64
		for _, s := range use {
			gbps, retr = append(gbps, s.Gbps), append(retr, float64(s.Retransmits))
			if s.CPUPerGB > 0 {
				cpu = append(cpu, s.CPUPerGB)
			}
		}
		sum.Gbps, sum.CPUPerGB, sum.Retransmits = median(gbps), median(cpu), median(retr)
		if len(gbps) > 0 {
			sum.Min, sum.Max = slices.Min(gbps), slices.Max(gbps)
		}
		out = append(out, sum)
	}
	base := map[key]float64{}
	for _, s := range out {
		base[key{s.Streams, s.Path}] = s.Gbps
	}
	r := func(s TputSummary, p string) float64 {
		if b := base[key{s.Streams, p}]; b > 0 && s.Gbps > 0 {
			return s.Gbps / b
		}
		return 0
	}
	for i, s := range out {
		out[i].VsRaw, out[i].VsWGVeth, out[i].VsWGLab = r(s, pathRaw), r(s, pathWGVeth), r(s, pathWGLab)
	}
	return out
}

// LatSummary is the medians of one kind of new-peer trial, in milliseconds.
type LatSummary struct {
	Kind                                      string
	Trials, OK, Noisy, ARPFull                int
	Configured, Routed, Handshake, FirstReply float64
	// MinReply and MaxReply bound FirstReply; ReplyAfterRouted is the
	// median of FirstReply - Routed.
	MinReply, MaxReply, ReplyAfterRouted float64
}

// summarizeLatency computes the medians of the trials without error, by
// kind, in the order kinds first appear. Trials during which the shared ARP
// table overflowed are left out (their first packets were dropped for
// reasons outside both setups); trials on a busy machine count like the
// others (there are few, and they are not CPU-bound).
func summarizeLatency(trials []Trial) []LatSummary {
	var out []LatSummary
	idx := map[string]int{}
	vals := map[string][5][]float64{}
	for _, t := range trials {
		i, ok := idx[t.Kind]
		if !ok {
			i = len(out)
			idx[t.Kind] = i
			out = append(out, LatSummary{Kind: t.Kind})
		}
		out[i].Trials++
		if t.ARPFull {
			out[i].ARPFull++
			continue
		}
		if t.Err != "" {
			continue
		}
		out[i].OK++
		if t.Noisy {
			out[i].Noisy++
		}
		v := vals[t.Kind]
		v[0], v[1], v[2] = append(v[0], t.Configured), append(v[1], t.Handshake), append(v[2], t.FirstReply)
		if t.Routed >= 0 {
			v[3] = append(v[3], t.FirstReply-t.Routed)
		}
		v[4] = append(v[4], t.Routed)
		vals[t.Kind] = v
	}
	for i, s := range out {
		v := vals[s.Kind]
		out[i].Configured, out[i].Handshake, out[i].FirstReply, out[i].ReplyAfterRouted = median(v[0]), median(v[1]), median(v[2]), median(v[3])
		out[i].Routed = median(v[4])
		if len(v[2]) > 0 {
			out[i].MinReply, out[i].MaxReply = slices.Min(v[2]), slices.Max(v[2])
		}
	}
	return out
}

// printMarkdown writes the conditions and the summaries as Markdown.
func printMarkdown(w io.Writer, out Output, o options) {
	m := out.Machine
	fmt.Fprintf(w, "Conditions:\n\n")
	fmt.Fprintf(w, "- date (UTC): %s; nproc: %d; CPU: %s; kernel: %s\n", m.Date, m.CPUs, m.CPUModel, m.Kernel)
	fmt.Fprintf(w, "- %s; %s; %s\n", m.Go, m.Iperf3, m.WgTools)
	fmt.Fprintf(w, "- wireguard-go: go.mod `%s`; in the weft binary `%s`; standalone binary `%s`\n", m.GoMod, m.WeftDep, m.Standalone)
	fmt.Fprintf(w, "- command: `%s`\n\n", m.Command)

	fmt.Fprintf(w, "Throughput (iperf3 TCP, receiver's Gbit/s, median of %d runs of %s, noisy runs left out; CPU s/GB: utime+stime of both ends' WireGuard processes per 10^9 bytes received):\n\n", o.runs, o.duration)
	fmt.Fprintln(w, "| path | streams | Gbit/s | min - max | vs raw veth | vs wg-go veth | vs wg-go h1->h4 | CPU s/GB | retransmits | ok / noisy |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, s := range out.Throughput {
		fmt.Fprintf(w, "| %s | %d | %s | %s - %s | %s | %s | %s | %s | %.0f | %d / %d |\n", s.Path, s.Streams, num(s.Gbps, 2),
			num(s.Min, 2), num(s.Max, 2), ratio(s.VsRaw), ratio(s.VsWGVeth), ratio(s.VsWGLab), num(s.CPUPerGB, 2), s.Retransmits, s.OK, s.Noisy)
	}
	fmt.Fprintln(w, "\nPaths:")
	fmt.Fprintln(w)
	for _, p := range pathOrder {
		fmt.Fprintf(w, "- %s: %s\n", p, pathDesc[p])
	}
	fmt.Fprintln(w, "\nSetup:")
	fmt.Fprintln(w)
	for _, n := range out.Notes {
		fmt.Fprintf(w, "- %s: `%s`\n", n.What, n.Text)
	}

	fmt.Fprintf(w, "\nNew peer (ms from the start, medians of %d trials of each kind; ping interval %s s):\n\n", o.trials, pingInterval)
	fmt.Fprintln(w, "| start | trials ok / noisy / ARP table full | both devices hold the peer | both kernels route it | handshake done | first echo reply | min - max | reply after routed |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, s := range out.Latency {
		fmt.Fprintf(w, "| %s | %d / %d / %d | %s | %s | %s | %s | %s - %s | %s |\n", s.Kind, s.OK, s.Noisy, s.ARPFull, num(s.Configured, 1), num(s.Routed, 1),
			num(s.Handshake, 1), num(s.FirstReply, 1), num(s.MinReply, 1), num(s.MaxReply, 1), num(s.ReplyAfterRouted, 1))
	}
	for _, e := range out.Errors {
		fmt.Fprintf(w, "\nerror: %s\n", e)
	}
}

// num formats x with prec decimals, or "-" for missing (negative) values.
func num(x float64, prec int) string {
	if x < 0 {
		return "-"
	}
	return fmt.Sprintf("%.*f", prec, x)
}

// ratio formats a ratio, or "-" for none.
func ratio(x float64) string {
	if x <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", x)
}
