package health

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-net/weft/fabric"
)

func TestDiagnose(t *testing.T) {
	ok := Burst{Tested: true, Sent: 4, Intact: 4}
	lost := Burst{Tested: true, Sent: 4, Intact: 3}
	corrupt := Burst{Tested: true, Sent: 4, Intact: 2, Corrupt: 2}
	none := Burst{Tested: true}
	tests := []struct {
		name      string
		route, of Burst
		want      Verdict
	}{
		{"through the device ok, off-route ok", ok, ok, VerdictHealthy},
		{"through the device ok, no off-route", ok, Burst{}, VerdictHealthy},
		{"through the device ok, off-route lost", ok, lost, VerdictHealthy},
		{"through the device lost, off-route ok", lost, ok, VerdictLocalFault},
		{"through the device corrupt, off-route ok", corrupt, ok, VerdictLocalFault},
		{"both lose", lost, lost, VerdictNetwork},
		{"corrupt, off-route lost", corrupt, lost, VerdictNetwork},
		{"through the device lost, no off-route", lost, Burst{}, VerdictFailed},
		{"nothing sent through the device counts as failed", none, ok, VerdictLocalFault},
		{"not tested", Burst{}, ok, VerdictUntested},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Diagnose(tt.route, tt.of); got != tt.want {
				t.Errorf("Diagnose(%+v, %+v) = %s, want %s", tt.route, tt.of, got, tt.want)
			}
		})
	}
}

func TestWorst(t *testing.T) {
	for _, tt := range []struct {
		in   []Verdict
		want Verdict
	}{
		{nil, VerdictUntested},
		{[]Verdict{VerdictUntested, VerdictHealthy}, VerdictHealthy},
		{[]Verdict{VerdictHealthy, VerdictNetwork, VerdictFailed}, VerdictNetwork},
		{[]Verdict{VerdictNetwork, VerdictLocalFault, VerdictHealthy}, VerdictLocalFault},
	} {
		if got := Worst(tt.in); got != tt.want {
			t.Errorf("Worst(%v) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestBurstEcho(t *testing.T) {
	var b Burst
	b.Tested, b.Sent = true, 3
	b.Echo([]byte{0, 0xff}, []byte{0, 0xff})
	b.Echo([]byte{0, 0xff}, []byte{0, 0xfe})
	if b.Intact != 1 || b.Corrupt != 1 || b.Lost() != 1 || b.OK() {
		t.Errorf("burst %+v, lost %d, ok %v", b, b.Lost(), b.OK())
	}
}

// TestTestPayloads: the burst has odd and even sizes from one byte up to
// the largest inner packet the MTU carries, runs of 0x00 and 0xff.
func TestTestPayloads(t *testing.T) {
	const mtu = 1450
	ps := TestPayloads("h1", mtu)
	largest := mtu - 28 - ProbeLen("h1", 0)
	var sizes []int
	zeros, ones := false, false
	for _, p := range ps {
		if len(sizes) == 0 || sizes[len(sizes)-1] != len(p) {
			sizes = append(sizes, len(p))
		}
		allZero, allOnes := true, true
		for _, c := range p {
			allZero = allZero && c == 0
			allOnes = allOnes && c == 0xff
		}
		zeros, ones = zeros || allZero, ones || allOnes
	}
	if diff := cmp.Diff([]int{1, 2, 63, 301, largest - 1, largest}, sizes); diff != "" {
		t.Errorf("sizes (-want +got):\n%s", diff)
	}
	if !zeros || !ones {
		t.Errorf("no run of zeros (%v) or of ones (%v)", zeros, ones)
	}
	// A tiny MTU: only what fits, but never nothing.
	if ps := TestPayloads("h1", 100); len(ps) == 0 || len(ps[len(ps)-1]) > 2 {
		t.Errorf("mtu 100: %d payloads, the last %d bytes", len(ps), len(ps[len(ps)-1]))
	}
}

// TestSelfTestScheduler: a tunnel kind runs when it first comes into use,
// when a peer moves onto it and when asked, at most once per interval.
func TestSelfTestScheduler(t *testing.T) {
	const interval = 30 * time.Second
	t0 := time.Unix(1000, 0)
	s := NewSelfTestScheduler(interval)
	type step struct {
		at      time.Duration
		paths   map[string]fabric.PathKind
		request fabric.PathKind
		want    []SelfTestRun
	}
	vx, wg, direct := fabric.PathVXLAN, fabric.PathWireGuard, fabric.PathDirect
	steps := []step{
		{at: 0, paths: map[string]fabric.PathKind{}},
		// Start: the first plan puts b and c on VXLAN, a on direct.
		{at: 1 * time.Second, paths: map[string]fabric.PathKind{"a": direct, "b": vx, "c": vx},
			want: []SelfTestRun{{Tunnel: vx, Peers: []string{"b", "c"}, Why: "start"}}},
		// Nothing changed: nothing due.
		{at: 2 * time.Second, paths: map[string]fabric.PathKind{"a": direct, "b": vx, "c": vx}},
		// a moves to VXLAN within the interval: waits.
		{at: 5 * time.Second, paths: map[string]fabric.PathKind{"a": vx, "b": vx, "c": vx}},
		// c moves to WireGuard: a kind not yet tested runs at once.
		{at: 6 * time.Second, paths: map[string]fabric.PathKind{"a": vx, "b": vx, "c": wg},
			want: []SelfTestRun{{Tunnel: wg, Peers: []string{"c"}, Why: "path change"}}},
		{at: 30 * time.Second, paths: map[string]fabric.PathKind{"a": vx, "b": vx, "c": wg}},
		// The interval is over: the path change to VXLAN runs.
		{at: 31 * time.Second, paths: map[string]fabric.PathKind{"a": vx, "b": vx, "c": wg},
			want: []SelfTestRun{{Tunnel: vx, Peers: []string{"a", "b"}, Why: "path change"}}},
		// A request within the interval waits; non-tunnels are ignored.
		{at: 40 * time.Second, paths: map[string]fabric.PathKind{"a": vx, "b": vx, "c": wg}, request: vx},
		{at: 41 * time.Second, paths: map[string]fabric.PathKind{"a": vx, "b": vx, "c": wg}, request: direct},
		{at: 61 * time.Second, paths: map[string]fabric.PathKind{"a": vx, "b": vx, "c": wg},
			want: []SelfTestRun{{Tunnel: vx, Peers: []string{"a", "b"}, Why: "local fault"}}},
		// WireGuard goes out of use and comes back: a path change.
		{at: 70 * time.Second, paths: map[string]fabric.PathKind{"a": vx, "b": vx, "c": vx}},
		{at: 80 * time.Second, paths: map[string]fabric.PathKind{"a": vx, "b": vx, "c": wg},
			want: []SelfTestRun{{Tunnel: wg, Peers: []string{"c"}, Why: "path change"}}},
	}
	for _, st := range steps {
		if st.request != "" {
			s.Request(st.request, "local fault")
		}
		got := s.Due(st.paths, t0.Add(st.at))
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Errorf("at %s (-want +got):\n%s", st.at, diff)
		}
	}
}
