package health

import (
	"bytes"
	"slices"
	"time"

	"github.com/weft-net/weft/fabric"
)

// Encapsulation self-test, the pure half.
//
// At start and whenever a peer moves to a tunnel, the agent sends a short
// burst of known test packets (TestPayloads) to one or a few peers on each
// tunnel kind in use: through the routing table, as workload packets go
// (through this node's tunnel device), and, where the path can be probed
// off its route (VXLAN), as hand-built frames that bypass the device. The
// peer echoes every payload; the agent compares byte for byte (Burst) and
// Diagnose says what the two bursts mean. SelfTestScheduler says when a
// tunnel kind is due. None of this touches the kernel or a clock.

// Tunnels are the path kinds the self-test covers: the encapsulations.
var Tunnels = []fabric.PathKind{fabric.PathVXLAN, fabric.PathIPIP, fabric.PathWireGuard}

// IsTunnel reports whether kind is an encapsulation the self-test covers.
func IsTunnel(kind fabric.PathKind) bool { return slices.Contains(Tunnels, kind) }

// minTestPayload is the smallest test payload: one byte, an odd length.
const minTestPayload = 1

// TestPayloads returns the payloads of one self-test burst from a node
// named name over a path whose MTU (the largest inner IP packet) is mtu:
// a few sizes, from one byte to the largest that fits the MTU, odd and
// even lengths, with patterns that stress checksum arithmetic (runs of
// 0x00 and of 0xff, which sum to the checksum's two zeros, alternating
// bytes, a counter). An mtu too small for a probe gives only the small ones.
func TestPayloads(name string, mtu int) [][]byte {
	largest := min(MaxPad, mtu-20-8-ProbeLen(name, 0)) // IPv4 and UDP headers
	sizes := []int{minTestPayload, 2, 63, 301}
	if largest > 301 {
		sizes = append(sizes, largest-1, largest)
	}
	patterns := []func(i int) byte{
		func(int) byte { return 0x00 },
		func(int) byte { return 0xff },
		func(i int) byte { return byte(0xff * (i & 1)) },
		func(i int) byte { return byte(i) },
	}
	var out [][]byte
	for i, n := range sizes {
		if n > largest && n > minTestPayload {
			continue
		}
		for j, p := range patterns {
			if n <= 2 && j > 1 { // tiny payloads: zeros and ones say it all
				continue
			}
			b := make([]byte, n)
			for k := range b {
				b[k] = p(k + i)
			}
			out = append(out, b)
		}
	}
	return out
}

// Burst is the outcome of one burst of test packets.
type Burst struct {
	// Tested is false when the burst was not sent (this path cannot be
	// probed that way, or the prober was not ready).
	Tested bool
	Sent   int
	// Intact counts echoes that came back byte for byte as sent; Corrupt
	// those that came back different. Sent-Intact-Corrupt were lost.
	Intact, Corrupt int
}

// OK reports whether every test packet came back intact.
func (b Burst) OK() bool { return b.Tested && b.Sent > 0 && b.Intact == b.Sent }

// Lost returns how many test packets got no echo.
func (b Burst) Lost() int { return b.Sent - b.Intact - b.Corrupt }

// Echo records one echo of a payload sent as want.
func (b *Burst) Echo(want, got []byte) {
	if bytes.Equal(want, got) {
		b.Intact++
	} else {
		b.Corrupt++
	}
}

// Verdict is what a self-test concluded about a tunnel to a peer.
type Verdict string

const (
	// VerdictHealthy: every test packet crossed through this node's device.
	VerdictHealthy Verdict = "healthy"
	// VerdictLocalFault: through this node's device they failed, built by
	// hand (bypassing the device) they crossed: the device (an offload,
	// say) breaks them.
	VerdictLocalFault Verdict = "local-fault"
	// VerdictNetwork: they failed both ways: the network or the peer, not
	// this node's device.
	VerdictNetwork Verdict = "network"
	// VerdictFailed: they failed through the device and the path cannot be
	// tested off its route, so the cause is unknown.
	VerdictFailed Verdict = "failed"
	// VerdictUntested: the burst through the device was not sent.
	VerdictUntested Verdict = "untested"
)

// Diagnose says what a burst through the routing table (route) and the
// same burst built by hand off the route (off) mean.
func Diagnose(route, off Burst) Verdict {
	switch {
	case !route.Tested:
		return VerdictUntested
	case route.OK():
		return VerdictHealthy
	case !off.Tested:
		return VerdictFailed
	case off.OK():
		return VerdictLocalFault
	}
	return VerdictNetwork
}

// Worst returns the verdict of a tunnel kind from those of its peers: a
// local fault on any peer is the device's, else the first failure, else
// healthy; untested only when nothing was tested.
func Worst(vs []Verdict) Verdict {
	rank := map[Verdict]int{VerdictUntested: 0, VerdictHealthy: 1, VerdictFailed: 2, VerdictNetwork: 3, VerdictLocalFault: 4}
	out := VerdictUntested
	for _, v := range vs {
		if rank[v] > rank[out] {
			out = v
		}
	}
	return out
}

// SelfTestScheduler says when each tunnel kind is due for a self-test: the
// kinds in use at the first plan with peers (agent start), a kind a peer
// moves onto (path change), and when asked (Request: a path failing on this node's device),
// never more often than once per interval per kind. It is not safe for
// concurrent use.
type SelfTestScheduler struct {
	interval time.Duration
	started  bool                                // a Due has seen peers: later kinds come by a path change
	peers    map[fabric.PathKind]map[string]bool // peers on each tunnel at the last Due
	last     map[fabric.PathKind]time.Time       // when each kind last ran
	pending  map[fabric.PathKind]string          // kinds due, with why
}

// NewSelfTestScheduler returns a scheduler that runs each tunnel kind at
// most once per interval.
func NewSelfTestScheduler(interval time.Duration) *SelfTestScheduler {
	return &SelfTestScheduler{interval: interval, peers: map[fabric.PathKind]map[string]bool{},
		last: map[fabric.PathKind]time.Time{}, pending: map[fabric.PathKind]string{}}
}

// SelfTestRun is one tunnel kind due for a self-test.
type SelfTestRun struct {
	Tunnel fabric.PathKind
	// Peers are the peers on that tunnel now, sorted by name.
	Peers []string
	// Why is "start", "path change" or the reason given to Request.
	Why string
}

// Request asks for a self-test of kind (if it is a tunnel) at the next Due
// that the interval allows.
func (s *SelfTestScheduler) Request(kind fabric.PathKind, why string) {
	if IsTunnel(kind) {
		if _, ok := s.pending[kind]; !ok {
			s.pending[kind] = why
		}
	}
}

// Due takes the path in use to each peer (by peer name) and returns the
// tunnel kinds due now, in the order of Tunnels, marking them run at now.
// A kind that is due but ran less than the interval ago waits, and comes
// out of a later Due.
func (s *SelfTestScheduler) Due(paths map[string]fabric.PathKind, now time.Time) []SelfTestRun {
	on := map[fabric.PathKind]map[string]bool{}
	for peer, kind := range paths {
		if IsTunnel(kind) {
			if on[kind] == nil {
				on[kind] = map[string]bool{}
			}
			on[kind][peer] = true
		}
	}
	var out []SelfTestRun
	defer func() { s.started = s.started || len(paths) > 0 }()
	for _, kind := range Tunnels {
		before, seen := s.peers[kind]
		for peer := range on[kind] {
			if _, ok := s.pending[kind]; ok {
				break
			}
			switch {
			case !seen && !s.started:
				s.pending[kind] = "start"
			case !before[peer]:
				s.pending[kind] = "path change"
			}
		}
		if len(on[kind]) > 0 || seen {
			s.peers[kind] = on[kind]
			if s.peers[kind] == nil {
				s.peers[kind] = map[string]bool{}
			}
		}
		why, ok := s.pending[kind]
		if !ok {
			continue
		}
		if len(on[kind]) == 0 {
			delete(s.pending, kind) // nobody to test with
			continue
		}
		if last, ran := s.last[kind]; ran && now.Sub(last) < s.interval {
			continue
		}
		delete(s.pending, kind)
		s.last[kind] = now
		peers := make([]string, 0, len(on[kind]))
		for p := range on[kind] {
			peers = append(peers, p)
		}
		slices.Sort(peers)
		out = append(out, SelfTestRun{Tunnel: kind, Peers: peers, Why: why})
	}
	return out
}

// Retry makes kind due again at once, for why (its last run tested
// nothing: the prober was not ready), whatever the interval.
func (s *SelfTestScheduler) Retry(kind fabric.PathKind, why string) {
	delete(s.last, kind)
	s.pending[kind] = why
}
