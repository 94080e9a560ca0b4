package agent

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/weft-net/weft/encap/vxlan"
	"github.com/weft-net/weft/fabric"
	"github.com/weft-net/weft/fabric/health"
	"github.com/weft-net/weft/fabric/health/probe"
	"github.com/weft-net/weft/internal/api"
)

// Encapsulation self-test.
//
// At start (the first plan that puts a peer on a tunnel) and whenever a
// peer moves onto a tunnel, the agent sends a burst of known test packets
// (health.TestPayloads: sizes from one byte to the path MTU, odd lengths,
// runs of 0x00 and 0xff) to up to selfTestPeers peers on each tunnel kind
// in use (VXLAN, IP-in-IP, WireGuard): through the routing table, so
// through this node's own tunnel device as workload packets go, and, for
// VXLAN, as hand-built frames that bypass the device. The peers' probe
// responders echo every pattern; echoes are compared byte for byte (the
// HMAC already rejects corrupted ones: corrupted or lost, both fail).
// health.Diagnose says what the two bursts mean. On a local fault of
// weft's own VXLAN device the agent turns its transmit checksum offload
// off (checksums are then computed in software, before the device) and
// sends the burst again: if it now passes, offload stays off (cured);
// else offload goes back on (not cured). weft never changes the underlay's
// (or any other foreign) device. A path that path health sees fail through
// the device after coming back on hand-built probes
// (health.StateChange.LocalFault) asks for a self-test of its tunnel too.
// A tunnel kind is tested at most once per selfTestInterval.

const (
	// selfTestInterval is the least time between two self-tests of one
	// tunnel kind: path flapping must not turn into a test storm.
	selfTestInterval = 30 * time.Second
	// selfTestPeers is how many peers on a tunnel one self-test uses.
	selfTestPeers = 2
	// selfTestWait is how long a burst waits for its echoes; a round trip
	// on any working path is far shorter.
	selfTestWait = time.Second
	// selfTestTick is how often the self-test loop looks for work when
	// not woken by a plan or a fault.
	selfTestTick = time.Second
	// defaultTestMTU is the path MTU assumed for a peer whose plan has none.
	defaultTestMTU = 1280
)

// testSender sends self-test packets: fabric/health/probe.Conn.
type testSender interface {
	// SendTest sends one self-test packet; it does not block on the
	// network. probe.ErrNotReady: not sent.
	SendTest(t health.Target, seq uint64, sent time.Time, payload []byte) error
}

// selfTest is the encapsulation self-test's state. Its own mutex guards it.
type selfTest struct {
	mu    sync.Mutex
	sched *health.SelfTestScheduler
	paths map[string]fabric.PathKind // the path in use per peer, from the last plan
	// plannedAt is when each peer's path in use was planned: a self-test
	// waits for a data-plane pass after it (the routes are in place).
	plannedAt map[string]time.Time
	results   map[fabric.PathKind]api.SelfTest
	txOff     map[string]bool // devices whose tx checksum offload weft turned off
	seq       uint64
	waiting   map[uint64]chan<- probe.Reply
	// kick wakes the self-test loop (buffered, one slot).
	kick chan struct{}
	// loops counts the self-test loop's passes (tests wait on it).
	loops atomic.Uint64
}

func newSelfTest() selfTest {
	return selfTest{sched: health.NewSelfTestScheduler(selfTestInterval), paths: map[string]fabric.PathKind{}, plannedAt: map[string]time.Time{},
		results: map[fabric.PathKind]api.SelfTest{}, txOff: map[string]bool{}, waiting: map[uint64]chan<- probe.Reply{},
		kick: make(chan struct{}, 1)}
}

func (st *selfTest) wake() {
	select {
	case st.kick <- struct{}{}:
	default:
	}
}

// planned takes the path in use to each peer from a new plan made at now.
func (st *selfTest) planned(plan fabric.Plan, now time.Time) {
	paths := make(map[string]fabric.PathKind, len(plan.Peers))
	for _, pp := range plan.Peers {
		paths[pp.Name] = pp.Path
	}
	st.mu.Lock()
	for name, kind := range paths {
		if old, ok := st.paths[name]; !ok || old != kind {
			st.plannedAt[name] = now
		}
	}
	for name := range st.plannedAt {
		if _, ok := paths[name]; !ok {
			delete(st.plannedAt, name)
		}
	}
	st.paths = paths
	st.mu.Unlock()
	st.wake()
}

// applied returns the paths in use to the peers whose path the data plane
// has applied: planned before the start of its last pass.
func (st *selfTest) appliedLocked(lastPass time.Time) map[string]fabric.PathKind {
	out := make(map[string]fabric.PathKind, len(st.paths))
	for name, kind := range st.paths {
		if st.plannedAt[name].Before(lastPass) {
			out[name] = kind
		}
	}
	return out
}

// lastPass returns the start of the data plane's last pass; without a data
// plane (unit tests), now.
func (a *Agent) lastPass() time.Time {
	if a.dp == nil {
		return a.now()
	}
	return a.dp.Status().LastPass
}

// request asks for a self-test of kind, for why.
func (st *selfTest) request(kind fabric.PathKind, why string) {
	st.mu.Lock()
	st.sched.Request(kind, why)
	st.mu.Unlock()
	st.wake()
}

// echo hands an echo to the burst waiting for it; it reports whether one was.
func (st *selfTest) echo(r probe.Reply) bool {
	st.mu.Lock()
	ch, ok := st.waiting[r.Probe.Seq]
	st.mu.Unlock()
	if ok {
		select {
		case ch <- r:
		default:
		}
	}
	return ok
}

// localFault handles a path to a peer that failed through this node's
// device right after coming back on hand-built probes: a self-test of its
// tunnel says whether the device is at fault, and acts.
func (a *Agent) localFault(c health.StateChange) {
	a.log.Warn("path fails through this node's device", "peer", c.Peer, "path", c.Path)
	a.health.self.request(c.Path, "local fault")
}

// runSelfTests runs the self-tests due until ctx is done.
func (a *Agent) runSelfTests(ctx context.Context, conn testSender) {
	st := &a.health.self
	tick := time.NewTicker(selfTestTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-st.kick:
		case <-tick.C:
		}
		pass := a.lastPass()
		st.mu.Lock()
		runs := st.sched.Due(st.appliedLocked(pass), a.now())
		st.mu.Unlock()
		for _, run := range runs {
			if ctx.Err() != nil {
				return
			}
			a.selfTestTunnel(ctx, conn, run)
		}
		st.loops.Add(1)
	}
}

// selfTestTunnel runs one self-test of a tunnel kind, acts on a local
// fault of weft's VXLAN device, and records the result.
func (a *Agent) selfTestTunnel(ctx context.Context, conn testSender, run health.SelfTestRun) {
	st := &a.health.self
	peers := run.Peers[:min(len(run.Peers), selfTestPeers)]
	res := api.SelfTest{Tunnel: string(run.Tunnel), At: a.now(), Why: run.Why, Peers: peers}
	var verdicts []health.Verdict
	var found []string
	var faulty []string
	for _, peer := range peers {
		route := a.burst(ctx, conn, health.Target{Peer: peer, Path: run.Tunnel, Route: true})
		var off health.Burst
		if health.OffPath(run.Tunnel) && !route.OK() {
			off = a.burst(ctx, conn, health.Target{Peer: peer, Path: run.Tunnel})
		}
		v := health.Diagnose(route, off)
		if v != health.VerdictHealthy && route.Intact+route.Corrupt+off.Intact+off.Corrupt == 0 && !a.peerAnswered(peer) {
			// Nothing came back from a peer that never answered a probe:
			// it may not know this node yet. Not a finding.
			v = health.VerdictUntested
		}
		verdicts = append(verdicts, v)
		found = append(found, describe(peer, v, route, off))
		if v == health.VerdictLocalFault {
			faulty = append(faulty, peer)
		}
	}
	verdict := health.Worst(verdicts)
	res.Result, res.Found = string(verdict), strings.Join(found, "; ")
	if verdict == health.VerdictUntested {
		// The prober was not ready (no subnet address yet): try again soon.
		st.mu.Lock()
		st.sched.Retry(run.Tunnel, run.Why)
		st.mu.Unlock()
		a.log.Debug("encapsulation self-test not sent", "tunnel", run.Tunnel, "found", res.Found)
		return
	}
	if verdict == health.VerdictLocalFault {
		res.Did, res.Cured = a.cureLocalFault(ctx, conn, run.Tunnel, faulty)
	}
	log := a.log.Info
	if verdict != health.VerdictHealthy {
		log = a.log.Warn
	}
	log("encapsulation self-test", "tunnel", run.Tunnel, "why", run.Why, "peers", strings.Join(peers, ","),
		"result", res.Result, "found", res.Found, "did", res.Did)
	st.mu.Lock()
	st.results[run.Tunnel] = res
	st.mu.Unlock()
}

// peerAnswered reports whether peer ever answered a path-health probe.
func (a *Agent) peerAnswered(peer string) bool {
	h := a.health
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tr.Answered(peer)
}

// describe says what one peer's bursts found.
func describe(peer string, v health.Verdict, route, off health.Burst) string {
	s := fmt.Sprintf("%s: through this node's device %s", peer, burstText(route))
	if off.Tested {
		s += fmt.Sprintf(", built by hand off the route %s", burstText(off))
	}
	switch v {
	case health.VerdictLocalFault:
		s += ": this node's device breaks them"
	case health.VerdictNetwork:
		s += ": the network or the peer, not this node's device"
	case health.VerdictFailed:
		s += ": cause unknown (no off-route test for this tunnel)"
	}
	return s
}

func burstText(b health.Burst) string {
	switch {
	case !b.Tested:
		return "not sent"
	case b.OK():
		return fmt.Sprintf("%d/%d intact", b.Intact, b.Sent)
	}
	return fmt.Sprintf("%d/%d intact, %d corrupt, %d lost", b.Intact, b.Sent, b.Corrupt, b.Lost())
}

// cureLocalFault turns transmit checksum offload off on weft's own VXLAN
// device and tests the faulty peers again; if that does not cure it, it
// turns offload back on. It returns what it did and whether that cured it.
func (a *Agent) cureLocalFault(ctx context.Context, conn testSender, kind fabric.PathKind, peers []string) (string, bool) {
	st := &a.health.self
	dev := a.cfg.VXLAN.Device
	switch {
	case kind != fabric.PathVXLAN:
		return "nothing: no remedy known for " + string(kind), false
	case !strings.HasPrefix(dev, vxlan.LinkPrefix):
		return fmt.Sprintf("nothing: %s is not weft's device", dev), false
	}
	st.mu.Lock()
	already := st.txOff[dev]
	st.mu.Unlock()
	if already {
		return fmt.Sprintf("nothing: tx checksum offload is already off on %s", dev), false
	}
	if err := a.setTxChecksum(dev, false); err != nil {
		return fmt.Sprintf("turning tx checksum offload off on %s failed: %v", dev, err), false
	}
	cured := true
	for _, peer := range peers {
		if !a.burst(ctx, conn, health.Target{Peer: peer, Path: kind, Route: true}).OK() {
			cured = false
			break
		}
	}
	if cured {
		st.mu.Lock()
		st.txOff[dev] = true
		st.mu.Unlock()
		return fmt.Sprintf("tx checksum offload off on %s, cured", dev), true
	}
	if err := a.setTxChecksum(dev, true); err != nil {
		return fmt.Sprintf("tx checksum offload off on %s, not cured; turning it back on failed: %v", dev, err), false
	}
	return fmt.Sprintf("tx checksum offload off on %s, not cured: turned back on", dev), false
}

// burst sends the test packets to target and counts the echoes. It blocks
// up to selfTestWait. Not Tested when nothing could be sent (ErrNotReady).
func (a *Agent) burst(ctx context.Context, conn testSender, target health.Target) health.Burst {
	h := a.health
	st := &h.self
	h.mu.Lock()
	mtu := h.mtu[target.Peer]
	h.mu.Unlock()
	if mtu <= 0 {
		mtu = defaultTestMTU
	}
	payloads := health.TestPayloads(a.cfg.NodeName, mtu)
	echoes := make(chan probe.Reply, len(payloads))
	want := make(map[uint64][]byte, len(payloads))
	st.mu.Lock()
	first := st.seq + 1
	st.seq += uint64(len(payloads))
	for i, p := range payloads {
		seq := first + uint64(i)
		want[seq] = p
		st.waiting[seq] = echoes
	}
	st.mu.Unlock()
	defer func() {
		st.mu.Lock()
		for seq := range want {
			delete(st.waiting, seq)
		}
		st.mu.Unlock()
	}()
	var b health.Burst
	now := a.now()
	for i, p := range payloads {
		seq := first + uint64(i)
		err := conn.SendTest(target, seq, now, p)
		if errors.Is(err, probe.ErrNotReady) {
			delete(want, seq)
			continue
		}
		// Any other error is a test packet lost on this node's side.
		if err != nil {
			a.log.Debug("self-test packet not sent", "target", target.String(), "err", err)
		}
		b.Sent++
	}
	if b.Sent == 0 {
		return b
	}
	b.Tested = true
	timer := time.NewTimer(selfTestWait)
	defer timer.Stop()
	for b.Intact+b.Corrupt < b.Sent {
		select {
		case <-ctx.Done():
			return b
		case <-timer.C:
			return b
		case r := <-echoes:
			p, ok := want[r.Probe.Seq]
			if !ok || r.Probe.Node != target.Peer || r.Probe.Path != target.Path {
				continue
			}
			delete(want, r.Probe.Seq)
			b.Echo(p, r.Probe.Payload)
		}
	}
	return b
}

// selfTests returns the last self-test of each tunnel kind, for status.
func (a *Agent) selfTests() []api.SelfTest {
	h := a.health
	if h == nil {
		return nil
	}
	h.self.mu.Lock()
	defer h.self.mu.Unlock()
	var out []api.SelfTest
	for _, kind := range health.Tunnels {
		if r, ok := h.self.results[kind]; ok {
			r.Peers = slices.Clone(r.Peers)
			out = append(out, r)
		}
	}
	return out
}

// selfTestProblems returns a status problem line for each tunnel kind
// whose last self-test did not pass, with what was done.
func (a *Agent) selfTestProblems() []string {
	var out []string
	for _, r := range a.selfTests() {
		if r.Result == string(health.VerdictHealthy) || r.Cured {
			continue
		}
		line := fmt.Sprintf("encapsulation self-test: %s: %s (%s)", r.Tunnel, r.Found, r.At.UTC().Format(time.RFC3339))
		if r.Did != "" {
			line += "; did: " + r.Did
		}
		out = append(out, line)
	}
	return out
}

// setTxChecksum turns transmit checksum offload of the device named dev on
// or off (ETHTOOL_STXCSUM), in the agent's network namespace.
func (a *Agent) setTxChecksum(dev string, on bool) error {
	if a.setTxCsum != nil {
		return a.setTxCsum(dev, on)
	}
	return setTxChecksum(dev, on)
}

// ethtool ioctl numbers (linux/sockios.h, linux/ethtool.h).
const (
	siocEthtool    = 0x8946
	ethtoolGTxCsum = 0x16
	ethtoolSTxCsum = 0x17
)

type ethtoolValue struct{ cmd, data uint32 }

// ifreqData is struct ifreq with the ifr_data member (40 bytes on 64-bit).
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [16]byte
}

func ethtool(dev string, v *ethtoolValue) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket for ethtool: %w", err)
	}
	defer unix.Close(fd)
	var ifr ifreqData
	if len(dev) >= unix.IFNAMSIZ {
		return fmt.Errorf("device name %q too long", dev)
	}
	copy(ifr.name[:], dev)
	ifr.data = unsafe.Pointer(v)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), siocEthtool, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(v)
	if errno != 0 {
		return fmt.Errorf("ethtool %#x on %s: %w", v.cmd, dev, errno)
	}
	return nil
}

// setTxChecksum sets transmit checksum offload of dev and reads it back.
func setTxChecksum(dev string, on bool) error {
	want := uint32(0)
	if on {
		want = 1
	}
	if err := ethtool(dev, &ethtoolValue{cmd: ethtoolSTxCsum, data: want}); err != nil {
		return err
	}
	return checkTxChecksum(dev, on)
}

// checkTxChecksum returns an error unless dev's transmit checksum offload is on (or off).
func checkTxChecksum(dev string, on bool) error {
	v := ethtoolValue{cmd: ethtoolGTxCsum}
	if err := ethtool(dev, &v); err != nil {
		return err
	}
	if (v.data != 0) != on {
		return fmt.Errorf("tx checksum offload on %s is %d after setting it", dev, v.data)
	}
	return nil
}
