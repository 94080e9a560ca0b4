package main

import "slices"

// TputSummary is the medians of one path and stream count.
type TputSummary struct {
	Path    string `json:"path"`
	Streams int    `json:"streams"`
	// Runs counts every sample; OK those that measured; Noisy the measured
	// ones taken while other processes were busy, left out of the medians
	// unless every one was noisy.
	Runs  int     `json:"runs"`
	OK    int     `json:"ok"`
	Noisy int     `json:"noisy"`
	Gbps  float64 `json:"gbps"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
	// VsRaw is Gbps over the raw veth's median at the same stream count;
	// VsBase over the median of Base, the path's baseline (baselineOf).
	// 0 when missing.
	VsRaw       float64 `json:"vsRaw"`
	Base        string  `json:"base,omitempty"`
	VsBase      float64 `json:"vsBase"`
	Retransmits float64 `json:"retransmits"`
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
		var quiet, all, quietRetr, allRetr []float64
		for _, s := range groups[k] {
			if s.Err != "" {
				continue
			}
			sum.OK++
			all, allRetr = append(all, s.Gbps), append(allRetr, float64(s.Retransmits))
			if s.Noisy {
				sum.Noisy++
				continue
			}
			quiet, quietRetr = append(quiet, s.Gbps), append(quietRetr, float64(s.Retransmits))
		}
		use, retr := quiet, quietRetr
		if len(use) == 0 {
			use, retr = all, allRetr
		}
		sum.Gbps = median(use)
		if len(use) > 0 {
			sum.Min, sum.Max = slices.Min(use), slices.Max(use)
		}
		sum.Retransmits = median(retr)
		out = append(out, sum)
	}
	base := map[key]float64{}
	for _, s := range out {
		base[key{s.Streams, s.Path}] = s.Gbps
	}
	for i, s := range out {
		if b := base[key{s.Streams, pathRaw}]; b > 0 && s.Gbps > 0 {
			out[i].VsRaw = s.Gbps / b
		}
		out[i].Base = baselineOf[s.Path]
		if b := base[key{s.Streams, out[i].Base}]; b > 0 && s.Gbps > 0 {
			out[i].VsBase = s.Gbps / b
		}
	}
	return out
}

// JoinSummary is the medians over the trials of one size.
type JoinSummary struct {
	N      int `json:"n"`
	Trials int `json:"trials"`
	OK     int `json:"ok"`
	// Noisy trials are left out of the medians unless every one was noisy.
	Noisy int `json:"noisy"`
	// NoSetup counts labs whose first N-1 agents never converged.
	NoSetup  int     `json:"noSetup"`
	SubnetMS float64 `json:"subnetMs"`
	FirstMS  float64 `json:"firstMs"`
	MedianMS float64 `json:"medianMs"`
	AllMS    float64 `json:"allMs"`
	MaxAllMS float64 `json:"maxAllMs"`
	SelfMS   float64 `json:"selfMs"`
}

// summarizeJoin groups trials by size, in first-seen order.
func summarizeJoin(trials []JoinTrial) []JoinSummary {
	var out []JoinSummary
	idx := map[int]int{}
	groups := map[int][]JoinTrial{}
	for _, t := range trials {
		if _, ok := idx[t.N]; !ok {
			idx[t.N] = len(out)
			out = append(out, JoinSummary{N: t.N})
		}
		groups[t.N] = append(groups[t.N], t)
	}
	for i, s := range out {
		var good, quiet []JoinTrial
		for _, t := range groups[s.N] {
			if t.NoSetup {
				s.NoSetup++
				continue
			}
			s.Trials++
			if t.Err != "" {
				continue
			}
			good = append(good, t)
			if t.Noisy {
				s.Noisy++
			} else {
				quiet = append(quiet, t)
			}
		}
		s.OK = len(good)
		if len(quiet) > 0 {
			good = quiet
		}
		col := func(get func(JoinTrial) float64) float64 {
			var xs []float64
			for _, t := range good {
				xs = append(xs, get(t))
			}
			return median(xs)
		}
		s.SubnetMS = col(func(t JoinTrial) float64 { return t.SubnetMS })
		s.FirstMS = col(func(t JoinTrial) float64 { return t.FirstMS })
		s.MedianMS = col(func(t JoinTrial) float64 { return t.MedianMS })
		s.AllMS = col(func(t JoinTrial) float64 { return t.AllMS })
		s.SelfMS = col(func(t JoinTrial) float64 { return t.SelfMS })
		s.MaxAllMS = -1
		for _, t := range good {
			s.MaxAllMS = max(s.MaxAllMS, t.AllMS)
		}
		out[i] = s
	}
	return out
}
