package ipip_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/weft-net/weft/encap/ipip"
)

// requireRoot skips t unless it runs as root, which making network
// namespaces needs. Under root, any refusal by the kernel fails the test.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root: creates network namespaces, TUN devices and raw sockets (euid is %d)", os.Geteuid())
	}
}

// tunnelMTU is the lab's: veth MTU 1500 less ipip.Overhead.
const tunnelMTU = 1500 - ipip.Overhead

// host is one node of the lab: namespace ns with underlay address
// 198.18.1.n on veth "ul", a user-space driver whose TUN has 10.244.n.0/32,
// and a workload namespace wl (10.244.n.2, behind 10.244.n.1 on veth "wl"
// of ns). The test's own thread never leaves its namespace.
type host struct {
	t   *testing.T
	n   int
	ns  string
	nsh netns.NsHandle
	wl  string
	wlh netns.NsHandle
	k   ipip.Kernel
	d   *ipip.Driver
}

func (x *host) underlay() netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 1, byte(x.n)}) }
func (x *host) subnet() netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(x.n), 0}), 24)
}
func (x *host) workload() netip.Addr { return netip.AddrFrom4([4]byte{10, 244, byte(x.n), 2}) }

// want is x's state with peer as the only other node.
func (x *host) want(peer *host) ipip.Want {
	return ipip.Want{
		Device: &ipip.Device{
			Name:  ipip.DefaultDevice,
			Local: x.underlay(),
			MTU:   tunnelMTU,
			Addr:  netip.PrefixFrom(x.subnet().Addr(), 32),
		},
		Peers: []ipip.Peer{{Remote: peer.underlay(), Subnets: []netip.Prefix{peer.subnet()}}},
	}
}

// newNamespace makes the namespace name, removed when the test ends, even
// on failure.
func newNamespace(t *testing.T, name string) netns.NsHandle {
	t.Helper()
	t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	run(t, "ip", "netns", "add", name)
	nsh, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() { nsh.Close() })
	return nsh
}

// newLab makes two hosts joined by a veth, each with a workload, and
// starts a user-space driver in each, with routes to the other's subnet
// via its underlay address onlink out of the TUN (as the route applier
// would plan them).
func newLab(t *testing.T) (a, b *host) {
	t.Helper()
	id := make([]byte, 3)
	rand.Read(id)
	prefix := "wipip-" + hex.EncodeToString(id)
	a, b = &host{t: t, n: 1}, &host{t: t, n: 2}
	for _, x := range []*host{a, b} {
		x.ns = fmt.Sprintf("%s-h%d", prefix, x.n)
		x.wl = fmt.Sprintf("%s-w%d", prefix, x.n)
		x.nsh = newNamespace(t, x.ns)
		x.wlh = newNamespace(t, x.wl)
	}
	run(t, "ip", "-n", a.ns, "link", "add", "ul", "type", "veth", "peer", "name", "ul", "netns", b.ns)
	for _, x := range []*host{a, b} {
		sub := x.subnet().Addr().As4()
		gw := netip.AddrFrom4([4]byte{sub[0], sub[1], sub[2], 1})
		run(t, "ip", "-n", x.ns, "addr", "add", x.underlay().String()+"/24", "dev", "ul")
		run(t, "ip", "-n", x.ns, "link", "set", "ul", "up")
		run(t, "ip", "-n", x.ns, "link", "set", "lo", "up")
		run(t, "ip", "-n", x.ns, "link", "add", "wl", "type", "veth", "peer", "name", "eth0", "netns", x.wl)
		run(t, "ip", "-n", x.ns, "addr", "add", gw.String()+"/24", "dev", "wl")
		run(t, "ip", "-n", x.ns, "link", "set", "wl", "up")
		run(t, "ip", "-n", x.wl, "addr", "add", x.workload().String()+"/24", "dev", "eth0")
		run(t, "ip", "-n", x.wl, "link", "set", "eth0", "up")
		run(t, "ip", "-n", x.wl, "link", "set", "lo", "up")
		run(t, "ip", "-n", x.wl, "route", "add", "default", "via", gw.String())
		// Forward, with strict reverse-path filtering: the driver's
		// frag-needed answers must pass it.
		run(t, "ip", "netns", "exec", x.ns, "sysctl", "-qw", "net.ipv4.ip_forward=1",
			"net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.default.rp_filter=1")
		h, err := netlink.NewHandleAt(x.nsh)
		if err != nil {
			t.Fatalf("netlink handle in %s: %v", x.ns, err)
		}
		t.Cleanup(h.Close)
		x.k = ipip.NewNetlinkKernel(h)
		x.d = x.newDriver()
	}
	for _, x := range []*host{a, b} {
		peer := map[*host]*host{a: b, b: a}[x]
		x.apply(x.want(peer))
		run(t, "ip", "-n", x.ns, "route", "add", peer.subnet().String(),
			"via", peer.underlay().String(), "dev", ipip.DefaultDevice, "onlink")
	}
	return a, b
}

// newDriver starts a user-space driver in x, closed when the test ends.
func (x *host) newDriver() *ipip.Driver {
	x.t.Helper()
	d, err := ipip.New(ipip.Config{
		Mode:   ipip.ModeUserspace,
		Kernel: x.k,
		Open:   ipip.OpenLinux(x.nsh),
		Logger: slog.New(slog.NewTextHandler(testWriter{x.t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("host", x.n),
	})
	if err != nil {
		x.t.Fatalf("new driver: %v", err)
	}
	x.t.Cleanup(func() {
		if err := d.Close(); err != nil {
			x.t.Errorf("close driver %d: %v", x.n, err)
		}
	})
	return d
}

func (x *host) apply(want ipip.Want) {
	x.t.Helper()
	if err := x.d.Apply(context.Background(), want); err != nil {
		x.t.Fatalf("apply on host %d: %v", x.n, err)
	}
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// run runs a command that must succeed and returns its output.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// eventually polls cond until it returns nil or the deadline passes, and
// then fails t with cond's last error.
func eventually(t *testing.T, within time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", within, err)
		}
		runtime.Gosched()
	}
}

// ping runs ping in namespace ns and returns its output and error.
func ping(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "ping", "-n"}, args...)...).CombinedOutput()
	return string(out), err
}

// inNamespace runs do on a thread switched into nsh, and switches it back;
// sockets made in do stay in nsh.
func inNamespace(t *testing.T, nsh netns.NsHandle, do func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(nsh); err != nil {
			errc <- err
			return
		}
		err = do()
		if errBack := netns.Set(orig); errBack != nil {
			errc <- errors.Join(err, errBack)
			return // the thread stays locked and ends with the goroutine
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("in namespace: %v", err)
	}
}

// hexLines renders b as hex, 4 bytes a line, for diffs that point at the
// byte.
func hexLines(b []byte) string {
	var s strings.Builder
	for i := 0; i < len(b); i += 4 {
		fmt.Fprintf(&s, "%3d: %s\n", i, hex.EncodeToString(b[i:min(i+4, len(b))]))
	}
	return s.String()
}

// captureOne starts tcpdump in ns on dev for one packet matching filter and
// returns a function that waits for it and returns the packet (from the
// IP header on).
func captureOne(t *testing.T, ns, dev, filter string) func() []byte {
	t.Helper()
	file := t.TempDir() + "/capture.pcap"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "tcpdump", "-n", "-U", "-i", dev, "-c", "1", "-w", file, filter)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start tcpdump: %v", err)
	}
	eventually(t, 10*time.Second, func() error {
		if !strings.Contains(stderr.String(), "listening on") {
			return fmt.Errorf("tcpdump not listening yet: %q", stderr.String())
		}
		return nil
	})
	return func() []byte {
		t.Helper()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("tcpdump: %v: %s", err, stderr.String())
		}
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("read capture: %v", err)
		}
		return firstIPPacket(t, data)
	}
}

// firstIPPacket returns the IP packet in the first record of a pcap file of
// Ethernet frames.
func firstIPPacket(t *testing.T, data []byte) []byte {
	t.Helper()
	const globalHeader, recordHeader, ethernet = 24, 16, 14
	if len(data) < globalHeader+recordHeader+ethernet {
		t.Fatalf("capture of %d bytes holds no packet", len(data))
	}
	if linkType := data[20]; linkType != 1 {
		t.Fatalf("capture link type %d, want 1 (Ethernet)", linkType)
	}
	rec := data[globalHeader:]
	n := int(rec[8]) | int(rec[9])<<8 | int(rec[10])<<16 | int(rec[11])<<24 // little-endian pcap
	frame := rec[recordHeader : recordHeader+n]
	if !bytes.Equal(frame[12:14], []byte{0x08, 0x00}) {
		t.Fatalf("captured ethertype %x, want 0800", frame[12:14])
	}
	return frame[ethernet:]
}
