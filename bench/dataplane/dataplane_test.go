package main

import (
	"net"
	"net/netip"
	"testing"

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

func TestParseInts(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		min     int
		want    []int
		wantErr bool
	}{
		{"list", "1, 4,8", 1, []int{1, 4, 8}, false},
		{"below min", "1", 2, nil, true},
		{"not a number", "5,x", 1, nil, true},
		{"empty", "", 1, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseInts("-x", tt.in, tt.min)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseInts(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseInts(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

const iperfOK = `{"start":{},"intervals":[],"end":{
 "sum_sent":{"bits_per_second":2.1e10,"retransmits":12},
 "sum_received":{"bits_per_second":2.0e10},
 "cpu_utilization_percent":{"host_total":95.5,"remote_total":60.25}}}`

func TestParseIperf(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantGbps float64
		wantRetr int
		wantErr  bool
	}{
		{"result", iperfOK, 20, 12, false},
		{"iperf3 error", `{"start":{},"end":{},"error":"unable to connect to server: Connection refused"}`, 0, 0, true},
		{"no rate", `{"end":{"sum_sent":{"bits_per_second":1}}}`, 0, 0, true},
		{"not json", "iperf3: error", 0, 0, true},
		{"empty", "", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := parseIperf([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseIperf error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			got := []float64{r.End.SumReceived.BitsPerSecond / 1e9, float64(r.End.SumSent.Retransmits)}
			if diff := cmp.Diff([]float64{tt.wantGbps, float64(tt.wantRetr)}, got); diff != "" {
				t.Errorf("parseIperf (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseIperf(f *testing.F) {
	f.Add([]byte(iperfOK))
	f.Add([]byte(`{"error":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseIperf(b)
		if err == nil && r.End.SumReceived.BitsPerSecond <= 0 {
			t.Errorf("parseIperf(%q) accepted a result without a rate", b)
		}
	})
}

const benchOut = `goos: linux
goarch: amd64
pkg: github.com/weft-net/weft/fabric
cpu: AMD EPYC
BenchmarkCompute/peers=1000-2         	    3000	    400000 ns/op	  654946 B/op	    2551 allocs/op
BenchmarkCompute/peers=5000-2         	     400	   2900000 ns/op	 3968088 B/op	   12578 allocs/op
BenchmarkCompute/peers=1000-2         	    3000	    300000 ns/op	  654940 B/op	    2551 allocs/op
BenchmarkCompute/peers=5000-2         	     400	   2700000 ns/op	 3968080 B/op	   12578 allocs/op
BenchmarkCompute/peers=1000-2         	    3000	    350000 ns/op	  654950 B/op	    2551 allocs/op
BenchmarkCompute/peers=5000-2         	     400	   2800000 ns/op	 3968090 B/op	   12578 allocs/op
BenchmarkBroken	--- FAIL
PASS
ok  	github.com/weft-net/weft/fabric	12.3s
`

func TestParseBench(t *testing.T) {
	cpu, got := parseBench(benchOut)
	want := []BenchStats{
		{Name: "BenchmarkCompute/peers=1000-2", Runs: 3, NsPerOp: 350000, BytesPerOp: 654946, AllocsPerOp: 2551, AllNsPerOp: []float64{400000, 300000, 350000}},
		{Name: "BenchmarkCompute/peers=5000-2", Runs: 3, NsPerOp: 2800000, BytesPerOp: 3968088, AllocsPerOp: 12578, AllNsPerOp: []float64{2900000, 2700000, 2800000}},
	}
	if cpu != "AMD EPYC" {
		t.Errorf("cpu = %q, want %q", cpu, "AMD EPYC")
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseBench (-want +got):\n%s", diff)
	}
}

func FuzzParseBench(f *testing.F) {
	f.Add(benchOut)
	f.Add("BenchmarkX 1 x ns/op")
	f.Fuzz(func(t *testing.T, s string) {
		_, bs := parseBench(s)
		for _, b := range bs {
			if b.Runs != len(b.AllNsPerOp) {
				t.Errorf("%s: runs %d, %d ns/op values", b.Name, b.Runs, len(b.AllNsPerOp))
			}
		}
	})
}

func TestSummarizeThroughput(t *testing.T) {
	samples := []Sample{
		{Path: pathDirect, Streams: 1, Gbps: 9, Retransmits: 1},
		{Path: pathRaw, Streams: 1, Gbps: 20},
		{Path: pathRaw, Streams: 1, Gbps: 10, Noisy: true},
		{Path: pathRaw, Streams: 1, Err: "refused"},
		{Path: pathHandDirect, Streams: 1, Gbps: 10, Retransmits: 3},
		{Path: pathDirect, Streams: 1, Gbps: 11, Retransmits: 3},
		{Path: pathRaw, Streams: 4, Gbps: 30, Noisy: true},
	}
	want := []TputSummary{
		{Path: pathRaw, Streams: 1, Runs: 3, OK: 2, Noisy: 1, Gbps: 20, Min: 20, Max: 20, VsRaw: 1, Retransmits: 0},
		{Path: pathHandDirect, Streams: 1, Runs: 1, OK: 1, Gbps: 10, Min: 10, Max: 10, VsRaw: 0.5, Base: pathHost, Retransmits: 3},
		{Path: pathDirect, Streams: 1, Runs: 2, OK: 2, Gbps: 10, Min: 9, Max: 11, VsRaw: 0.5, Base: pathHandDirect, VsBase: 1, Retransmits: 2},
		// Every run noisy: they count, rather than nothing.
		{Path: pathRaw, Streams: 4, Runs: 1, OK: 1, Noisy: 1, Gbps: 30, Min: 30, Max: 30, VsRaw: 1, Retransmits: 0},
	}
	if diff := cmp.Diff(want, summarizeThroughput(samples)); diff != "" {
		t.Errorf("summarizeThroughput (-want +got):\n%s", diff)
	}
}

func TestSummarizeJoin(t *testing.T) {
	trials := []JoinTrial{
		{N: 5, Trial: 1, SubnetMS: 10, FirstMS: 100, MedianMS: 150, AllMS: 200, SelfMS: 400},
		{N: 5, Trial: 2, SubnetMS: 30, FirstMS: 300, MedianMS: 350, AllMS: 400, SelfMS: 600},
		{N: 5, Trial: 3, SubnetMS: 20, FirstMS: 200, MedianMS: 250, AllMS: 300, SelfMS: 500},
		{N: 5, Trial: 3, SubnetMS: 90, FirstMS: 900, MedianMS: 950, AllMS: 999, SelfMS: 999, Noisy: true},
		{N: 20, Trial: 1, Err: "timeout", SubnetMS: -1, FirstMS: -1, MedianMS: -1, AllMS: -1, SelfMS: -1},
		{N: 20, Trial: 1, Err: "no convergence", NoSetup: true, SubnetMS: -1, FirstMS: -1, MedianMS: -1, AllMS: -1, SelfMS: -1},
	}
	want := []JoinSummary{
		{N: 5, Trials: 4, OK: 4, Noisy: 1, SubnetMS: 20, FirstMS: 200, MedianMS: 250, AllMS: 300, MaxAllMS: 400, SelfMS: 500},
		{N: 20, Trials: 1, NoSetup: 1, SubnetMS: -1, FirstMS: -1, MedianMS: -1, AllMS: -1, MaxAllMS: -1, SelfMS: -1},
	}
	if diff := cmp.Diff(want, summarizeJoin(trials)); diff != "" {
		t.Errorf("summarizeJoin (-want +got):\n%s", diff)
	}
}

func TestTwoSegments(t *testing.T) {
	var got []string
	for _, h := range twoSegments(5).Hosts {
		got = append(got, h.Name+"@"+h.Segment)
	}
	want := []string{"a1@sa", "a2@sa", "a3@sa", "b1@sb", "b2@sb"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("twoSegments(5) hosts (-want +got):\n%s", diff)
	}
	if err := twoSegments(20).Validate(); err != nil {
		t.Errorf("twoSegments(20): %v", err)
	}
}

func TestPrefixOf(t *testing.T) {
	_, n, _ := net.ParseCIDR("10.244.3.0/24")
	tests := []struct {
		name string
		in   *net.IPNet
		want netip.Prefix
	}{
		{"nil", nil, netip.Prefix{}},
		{"v4", n, netip.MustParsePrefix("10.244.3.0/24")},
		{"v4 in v6 form", &net.IPNet{IP: net.ParseIP("10.0.0.0"), Mask: net.CIDRMask(8, 32)}, netip.MustParsePrefix("10.0.0.0/8")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := prefixOf(tt.in); got != tt.want {
				t.Errorf("prefixOf(%v) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestCommandLine(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want string
	}{
		{"built", []string{"/tmp/dp", "-runs", "5"}, "/tmp/dp -runs 5"},
		{"go run", []string{"/tmp/go-build123/b001/exe/dataplane", "-what", "join"}, "go run ./bench/dataplane -what join"},
		{"none", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, commandLine(tt.in)); diff != "" {
				t.Errorf("commandLine(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}
