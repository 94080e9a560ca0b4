package main

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{"none", nil, -1},
		{"one", []float64{3}, 3},
		{"odd", []float64{5, 1, 3}, 3},
		{"even", []float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, median(tt.in)); diff != "" {
				t.Errorf("median(%v) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestParseSizes(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []int
		wantErr bool
	}{
		{"list", "100, 200,300", []int{100, 200, 300}, false},
		{"one", "5", []int{5}, false},
		{"too small", "1", nil, true},
		{"not a number", "5,x", nil, true},
		{"empty item", "5,,6", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSizes(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseSizes(%q) error %v, want error %t", tt.in, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseSizes(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestDetectStats(t *testing.T) {
	s := time.Second
	tests := []struct {
		name  string
		n     int
		times []time.Duration
		want  Result
	}{
		{"none", 4, nil, Result{N: 4, DetectFirstMS: -1, DetectMedianMS: -1, DetectAllMS: -1}},
		{"some", 4, []time.Duration{3 * s, 1 * s}, Result{N: 4, Detected: 2, DetectFirstMS: 1000, DetectMedianMS: 3000, DetectAllMS: -1}},
		{"all", 4, []time.Duration{3 * s, 1 * s, 2 * s}, Result{N: 4, Detected: 3, DetectFirstMS: 1000, DetectMedianMS: 2000, DetectAllMS: 3000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Result{N: tt.n}
			detectStats(&got, tt.times)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("detectStats (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	ok := func(run int, conv, all float64, noisy bool) Result {
		return Result{Mode: "inproc", Profile: "weft", N: 3, Run: run, ConvergeMS: conv, AliveMS: conv / 2, MinView: 3,
			DetectFirstMS: all / 2, DetectMedianMS: all, DetectAllMS: all, Detected: 2, CPUSteady: 0.5, CPUPeak: conv / 1000, Noisy: noisy}
	}
	stalled := Result{Mode: "inproc", Profile: "weft", N: 9, Run: 1, ConvergeMS: -1, AliveMS: 4000, MinView: 5,
		DetectFirstMS: -1, DetectMedianMS: -1, DetectAllMS: -1, FalseDeaths: 7, CPUPeak: 2, Err: "converge: timed out"}
	tests := []struct {
		name string
		in   []Result
		want []Summary
	}{
		{"medians of quiet runs", []Result{ok(1, 1000, 4000, false), ok(2, 3000, 6000, false), ok(3, 9000, 9000, true), ok(4, 2000, 5000, false)},
			[]Summary{{Mode: "inproc", Profile: "weft", N: 3, Runs: 3, OK: 3, Noisy: 1, ConvergeMS: 2000, AliveMS: 1000,
				DetectFirstMS: 2500, DetectMedianMS: 5000, DetectAllMS: 5000, CPUSteady: 0.5, CPUPeak: 3}}},
		{"all noisy", []Result{ok(1, 1000, 4000, true)},
			[]Summary{{Mode: "inproc", Profile: "weft", N: 3, Runs: 1, OK: 1, Noisy: 1, ConvergeMS: 1000, AliveMS: 500,
				DetectFirstMS: 2000, DetectMedianMS: 4000, DetectAllMS: 4000, CPUSteady: 0.5, CPUPeak: 1}}},
		{"stalled", []Result{stalled},
			[]Summary{{Mode: "inproc", Profile: "weft", N: 9, Runs: 1, ConvergeMS: -1, AliveMS: 4000, DetectFirstMS: -1,
				DetectMedianMS: -1, DetectAllMS: -1, FalseDeaths: 7, CPUSteady: -1, CPUPeak: 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, summarize(tt.in)); diff != "" {
				t.Errorf("summarize (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLabTopology(t *testing.T) {
	for _, n := range []int{2, 5, 50} {
		topo := labTopology(n)
		if err := topo.Validate(); err != nil {
			t.Errorf("labTopology(%d) is invalid: %v", n, err)
		}
		if got := len(topo.Hosts); got != n {
			t.Errorf("labTopology(%d) has %d hosts", n, got)
		}
	}
}

func TestGossipConfig(t *testing.T) {
	tests := []struct {
		name string
		in   profile
		want map[string]any
	}{
		{"defaults", profile{Name: "weft"}, nil},
		{"baseline", memberlistLAN(), map[string]any{"gossip": map[string]any{
			"probeInterval": "1s", "probeTimeout": "500ms", "suspicionMult": 4}}},
		{"one field", profile{ProbeTimeout: 100 * time.Millisecond}, map[string]any{"gossip": map[string]any{"probeTimeout": "100ms"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, gossipConfig(tt.in)); diff != "" {
				t.Errorf("gossipConfig (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFalseDeaths(t *testing.T) {
	log := `time=2026-01-01T00:00:00Z level=INFO msg="member joined" component=gossip node=h2 addr=198.18.10.3:7946
time=2026-01-01T00:00:01Z level=INFO msg="member dead" component=gossip node=h2
time=2026-01-01T00:00:02Z level=INFO msg="member dead" component=gossip node=h12
time=2026-01-01T00:00:03Z level=INFO msg="member dead" component=gossip node=h1
`
	tests := []struct {
		victim string
		want   int
	}{
		{"h1", 2},
		{"h2", 2},
		{"h3", 3},
	}
	for _, tt := range tests {
		t.Run(tt.victim, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, falseDeaths(log, tt.victim)); diff != "" {
				t.Errorf("falseDeaths(log, %q) (-want +got):\n%s", tt.victim, diff)
			}
		})
	}
}
