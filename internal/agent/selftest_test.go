package agent

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-net/weft/fabric"
	"github.com/weft-net/weft/fabric/health"
	"github.com/weft-net/weft/fabric/health/probe"
)

// fakeTunnel is a peer's probe responder behind this node's tunnel device:
// it echoes self-test packets at once (through the agent's echo path),
// dropping or corrupting them as told.
type fakeTunnel struct {
	a *Agent
	// deviceCorrupts: packets through the device (Route) are corrupted
	// while tx checksum offload is on (or always, with always).
	deviceCorrupts, always bool
	// networkDrops: every packet is lost, on or off the route.
	networkDrops bool
	// notReady: every send fails with probe.ErrNotReady.
	notReady bool

	mu    sync.Mutex
	txOn  bool
	calls []string
}

var _ testSender = (*fakeTunnel)(nil)

func (f *fakeTunnel) SendTest(t health.Target, seq uint64, sent time.Time, payload []byte) error {
	if f.notReady {
		return probe.ErrNotReady
	}
	if f.networkDrops {
		return nil
	}
	f.mu.Lock()
	corrupt := t.Route && f.deviceCorrupts && (f.txOn || f.always)
	f.mu.Unlock()
	echo := append([]byte(nil), payload...)
	if corrupt && len(echo) > 0 {
		echo[len(echo)/2] ^= 0x40
	}
	f.a.health.self.echo(probe.Reply{Probe: health.Probe{Type: health.ProbeEcho, Path: t.Path, Node: t.Peer, Seq: seq, Sent: sent, Payload: echo}})
	return nil
}

func (f *fakeTunnel) setTx(dev string, on bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.txOn = on
	f.calls = append(f.calls, dev+map[bool]string{true: " on", false: " off"}[on])
	return nil
}

func newSelfTestAgent(t *testing.T, f *fakeTunnel) *Agent {
	t.Helper()
	a := &Agent{health: newPathHealth(noGrace()), log: slog.New(slog.DiscardHandler), now: func() time.Time { return time.Unix(100, 0) }}
	a.cfg.NodeName = "h1"
	a.cfg.VXLAN.Device = "weft.vxlan"
	a.setTxCsum = f.setTx
	f.a, f.txOn = a, true
	// h2 answered a probe once: it knows this node.
	h := a.health
	h.tr.SetPlan([]fabric.PeerPlan{{Name: "h2", Path: fabric.PathVXLAN, MTU: 1450, Candidates: []fabric.PathKind{fabric.PathVXLAN}}}, a.now())
	h.mtu["h2"] = 1450
	tg := health.Target{Peer: "h2", Path: fabric.PathVXLAN, Route: true}
	seq := h.tr.Sent(tg, a.now())
	h.tr.Reply(seq, "h2", fabric.PathVXLAN, a.now())
	return a
}

// TestSelfTestTunnel: what one self-test of a tunnel finds, does and
// reports, against a fake tunnel.
func TestSelfTestTunnel(t *testing.T) {
	tests := []struct {
		name      string
		tunnel    fabric.PathKind
		device    string
		f         *fakeTunnel
		want      string // result
		wantDid   string
		wantCured bool
		wantCalls []string
		problem   bool
	}{
		{name: "healthy", tunnel: fabric.PathVXLAN, want: "healthy"},
		{name: "offload fault, cured", tunnel: fabric.PathVXLAN, f: &fakeTunnel{deviceCorrupts: true}, want: "local-fault",
			wantDid: "tx checksum offload off on weft.vxlan, cured", wantCured: true, wantCalls: []string{"weft.vxlan off"}},
		{name: "device fault offload cannot cure", tunnel: fabric.PathVXLAN, f: &fakeTunnel{deviceCorrupts: true, always: true}, want: "local-fault",
			wantDid: "tx checksum offload off on weft.vxlan, not cured: turned back on", wantCalls: []string{"weft.vxlan off", "weft.vxlan on"}, problem: true},
		{name: "not weft's device", tunnel: fabric.PathVXLAN, device: "eth0", f: &fakeTunnel{deviceCorrupts: true}, want: "local-fault",
			wantDid: "nothing: eth0 is not weft's device", problem: true},
		{name: "network drops everything", tunnel: fabric.PathVXLAN, f: &fakeTunnel{networkDrops: true}, want: "network", problem: true},
		{name: "wireguard fails, no off-route test", tunnel: fabric.PathWireGuard, f: &fakeTunnel{deviceCorrupts: true}, want: "failed", problem: true},
		{name: "wireguard healthy", tunnel: fabric.PathWireGuard, want: "healthy"},
		{name: "prober not ready", tunnel: fabric.PathVXLAN, f: &fakeTunnel{notReady: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.f
			if f == nil {
				f = &fakeTunnel{}
			}
			a := newSelfTestAgent(t, f)
			if tt.device != "" {
				a.cfg.VXLAN.Device = tt.device
			}
			a.selfTestTunnel(context.Background(), f, health.SelfTestRun{Tunnel: tt.tunnel, Peers: []string{"h2"}, Why: "start"})
			got := a.selfTests()
			if tt.want == "" {
				if len(got) != 0 {
					t.Fatalf("recorded %+v, want nothing (retry)", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("self-tests %+v, want one", got)
			}
			r := got[0]
			if r.Tunnel != string(tt.tunnel) || r.Result != tt.want || r.Did != tt.wantDid || r.Cured != tt.wantCured || r.Why != "start" {
				t.Errorf("got %+v, want result %s did %q cured %v", r, tt.want, tt.wantDid, tt.wantCured)
			}
			if diff := cmp.Diff(tt.wantCalls, f.calls); diff != "" {
				t.Errorf("tx checksum calls (-want +got):\n%s", diff)
			}
			problems := a.selfTestProblems()
			if (len(problems) > 0) != tt.problem {
				t.Errorf("problems %q, want some: %v", problems, tt.problem)
			}
			for _, p := range problems {
				if !strings.HasPrefix(p, "encapsulation self-test: "+string(tt.tunnel)+": h2: ") {
					t.Errorf("problem line %q", p)
				}
			}
		})
	}
}

// TestSelfTestPeerNeverAnswered: nothing back from a peer that never
// answered a probe is not a finding (it may not know this node yet).
func TestSelfTestPeerNeverAnswered(t *testing.T) {
	f := &fakeTunnel{networkDrops: true}
	a := newSelfTestAgent(t, f)
	a.selfTestTunnel(context.Background(), f, health.SelfTestRun{Tunnel: fabric.PathVXLAN, Peers: []string{"h3"}, Why: "start"})
	if got := a.selfTests(); len(got) != 0 {
		t.Errorf("recorded %+v for a peer that never answered", got)
	}
}

// TestSelfTestLoop: the loop tests a tunnel once its plan is applied, at
// start, and again on a fault request only after the interval.
func TestSelfTestLoop(t *testing.T) {
	f := &fakeTunnel{}
	a := newSelfTestAgent(t, f)
	var mu sync.Mutex
	now := time.Unix(100, 0)
	a.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.runSelfTests(ctx, f); close(done) }()
	defer func() { cancel(); <-done }()
	waitResult := func(why string, at time.Time) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if got := a.selfTests(); len(got) == 1 && got[0].Why == why && got[0].At.Equal(at) {
				return
			}
			a.health.self.wake()
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("no self-test %q at %s: %+v", why, at, a.selfTests())
	}
	a.health.self.planned(fabric.Plan{Peers: []fabric.PeerPlan{{Name: "h2", Path: fabric.PathVXLAN}}}, a.now())
	advance(time.Second) // the data plane's pass (no dp: now) is after the plan
	waitResult("start", a.now())
	start := a.now()
	a.health.self.request(fabric.PathVXLAN, "local fault")
	advance(selfTestInterval / 2)
	// Two full passes of the loop after the request: still only the start result.
	for n := a.health.self.loops.Load() + 2; a.health.self.loops.Load() < n; {
		a.health.self.wake()
		time.Sleep(time.Millisecond)
	}
	if got := a.selfTests(); len(got) != 1 || !got[0].At.Equal(start) {
		t.Fatalf("self-test ran within the interval: %+v", got)
	}
	// After the interval, the fault run.
	advance(selfTestInterval)
	waitResult("local fault", a.now())
}
