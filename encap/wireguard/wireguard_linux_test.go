package wireguard_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weft-net/weft/encap/wireguard"
)

// requireRoot skips t unless it runs as root, which making network
// namespaces and TUN devices needs. Under root, any refusal fails the test.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root: creates network namespaces and TUN devices (euid is %d)", os.Geteuid())
	}
}

// host is one end of the test: a named namespace with a veth to the other
// end, and a driver running the user-space device inside it.
type host struct {
	n        int // 1 or 2: underlay 198.18.250.n, tunnel 10.99.0.n
	ns, path string
	h        *netlink.Handle
	d        *wireguard.Driver
	client   wireguard.Client // to read the device back
	stateDir string
	key      wireguard.PrivateKey
	muts     *counts // the driver's mutating calls; nil for the Open one
}

func (x *host) underlay() netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 250, byte(x.n)}) }
func (x *host) tunnel() netip.Addr   { return netip.AddrFrom4([4]byte{10, 99, 0, byte(x.n)}) }

// want is x's WireGuard state with peer as its only peer.
func (x *host) want(peer *host) wireguard.Want {
	return wireguard.Want{
		Device: &wireguard.Device{
			Name: wireguard.DefaultDevice, ListenPort: wireguard.DefaultPort, PrivateKey: x.key,
			MTU: wireguard.MTU(1500), Addr: netip.PrefixFrom(x.tunnel(), 24),
		},
		Peers: []wireguard.Peer{{
			PublicKey:  peer.key.PublicKey(),
			Endpoint:   netip.AddrPortFrom(peer.underlay(), wireguard.DefaultPort),
			AllowedIPs: []netip.Prefix{netip.PrefixFrom(peer.tunnel(), 32)},
		}},
	}
}

// newNamespace makes the namespace name, removed when the test ends even
// on failure, and returns a netlink handle bound to it.
func newNamespace(t *testing.T, name string) (*netlink.Handle, netns.NsHandle) {
	t.Helper()
	t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	nsh, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() { nsh.Close() })
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	t.Cleanup(h.Close)
	return h, nsh
}

func TestUserspaceInNamespaces(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	prefix := "wgt" + randomHex(t, 3)
	a := &host{n: 1, ns: prefix + "a"}
	b := &host{n: 2, ns: prefix + "b"}
	var nsB netns.NsHandle
	a.h, _ = newNamespace(t, a.ns)
	b.h, nsB = newNamespace(t, b.ns)

	// eth0 in each, joined by a veth.
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1500}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(nsB))}
	if err := a.h.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	for _, x := range []*host{a, b} {
		x.path = "/run/netns/" + x.ns
		x.stateDir = filepath.Join(t.TempDir(), "state")
		key, err := wireguard.LoadOrCreateKey(x.stateDir)
		must(t, err)
		x.key = key
		for _, name := range []string{"lo", "eth0"} {
			l, err := x.h.LinkByName(name)
			must(t, err)
			if name == "eth0" {
				must(t, x.h.AddrReplace(l, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(x.underlay(), 24).String())}))
			}
			must(t, x.h.LinkSetUp(l))
		}
		mode, why := wireguard.Detect(wireguard.NewNetlinkLink(x.h))
		t.Logf("%s: kernel probe: mode %s (%v)", x.ns, mode, why)
		if _, err := x.h.LinkByName("weft.wgprobe"); err == nil {
			t.Errorf("%s: Detect left its probe link", x.ns)
		}
	}

	// a through Open, as the agent makes it; b through New, with its calls
	// counted. Both run wireguard-go inside their namespace, each with its
	// own UAPI socket dir.
	dirA, dirB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	d, err := wireguard.Open(wireguard.Options{NetNS: a.path, SocketDir: dirA, Mode: wireguard.ModeUserspace, Logger: log.With("host", "a")})
	if err != nil {
		t.Fatalf("Open in %s: %v", a.ns, err)
	}
	t.Cleanup(func() { d.Close() })
	a.d, a.client = d, wireguard.NewUAPIClient(dirA)
	b.muts = &counts{m: map[string]int{}}
	b.client = wireguard.NewUAPIClient(dirB)
	newB := func() *wireguard.Driver {
		d, err := wireguard.New(wireguard.Config{
			Mode:   wireguard.ModeUserspace,
			Link:   countingLink{wireguard.NewNetlinkLink(b.h), b.muts},
			Client: countingClient{b.client, b.muts},
			Start:  wireguard.NewStarter(b.path, dirB, log.With("host", "b")),
			Logger: log.With("host", "b"),
		})
		must(t, err)
		t.Cleanup(func() { d.Close() })
		return d
	}
	b.d = newB()
	if a.d.Mode() != wireguard.ModeUserspace {
		t.Errorf("Mode = %q, want %q", a.d.Mode(), wireguard.ModeUserspace)
	}

	apply(t, a, a.want(b))
	apply(t, b, b.want(a))
	b.muts.reset()
	must(t, b.d.Apply(ctx, b.want(a)))
	if diff := cmp.Diff(map[string]int{}, b.muts.get()); diff != "" {
		t.Errorf("second Apply made calls (-want +got):\n%s", diff)
	}
	for _, x := range []*host{a, b} {
		if !x.d.Offload() {
			t.Errorf("%s: TUN offloads (virtio-net header, GSO/GRO) not in use", x.ns)
		}
		l, err := x.h.LinkByName(wireguard.DefaultDevice)
		must(t, err)
		if l.Attrs().MTU != 1420 || l.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("%s: %s mtu %d flags %v, want 1420 and up", x.ns, wireguard.DefaultDevice, l.Attrs().MTU, l.Attrs().Flags)
		}
	}
	ping(t, a, b)
	ping(t, b, a)

	// a rotates its key with no traffic: a applies the new key, b the new
	// peer entry, and b's handshake kick alone brings the session back.
	floodWindowPassed(t, a, b)
	rotated := time.Now()
	rotate(t, a, b)
	handshakeSince(t, a, b, rotated)
	ping(t, a, b)

	// b rotates its key during a TCP stream from a to b: the stream
	// carries on.
	s := startStream(t, a, b)
	s.waitFor(t, 1<<20)
	rotate(t, b, a)
	ping(t, a, b)
	s.waitFor(t, s.received.Load()+1<<20)
	s.stop(t)

	// b restarts, as an agent stopping and starting: its device is made
	// again, and its kicks bring the session back without traffic.
	floodWindowPassed(t, a, b)
	must(t, b.d.Close())
	if _, err := b.h.LinkByName(wireguard.DefaultDevice); err == nil {
		t.Errorf("%s: %s still there after Close", b.ns, wireguard.DefaultDevice)
	}
	restarted := time.Now()
	b.d = newB()
	apply(t, b, b.want(a))
	handshakeSince(t, a, b, restarted)
	ping(t, a, b)

	// Close stops the device: the TUN goes with the process's device.
	must(t, a.d.Close())
	if _, err := a.h.LinkByName(wireguard.DefaultDevice); err == nil {
		t.Errorf("%s: %s still there after Close", a.ns, wireguard.DefaultDevice)
	}
	if _, err := os.Stat(filepath.Join(dirA, wireguard.DefaultDevice+".sock")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("UAPI socket after Close: %v", err)
	}
}

// floodWindowPassed polls until x's last handshake with peer is 50 ms
// old. WireGuard ignores a peer's initiations less than 20 ms apart (flood
// protection): a kick sooner would wait for the 5 s retry, which only a
// test this fast runs into.
func floodWindowPassed(t *testing.T, x, peer *host) {
	t.Helper()
	eventually(t, "the last handshake 50 ms old", func() error {
		if age := time.Since(lastHandshake(t, x, peer)); age < 50*time.Millisecond {
			return fmt.Errorf("last handshake %s ago", age)
		}
		return nil
	})
}

// handshakeSince polls until x has handshaken with peer after since. The
// test sends no traffic meanwhile: only a kick makes that handshake.
func handshakeSince(t *testing.T, x, peer *host, since time.Time) {
	t.Helper()
	eventually(t, "a handshake without traffic", func() error {
		if last := lastHandshake(t, x, peer); !last.After(since) {
			return fmt.Errorf("%s: last handshake with %s at %s, want after %s", x.ns, peer.ns, last.Format(time.StampMicro), since.Format(time.StampMicro))
		}
		return nil
	})
}

// lastHandshake returns the time of x's last handshake with peer.
func lastHandshake(t *testing.T, x, peer *host) time.Time {
	t.Helper()
	dev, err := x.client.Device(wireguard.DefaultDevice)
	if err != nil {
		t.Fatalf("%s: read device: %v", x.ns, err)
	}
	for _, p := range dev.Peers {
		if p.PublicKey == wgtypes.Key(peer.key.PublicKey()) {
			return p.LastHandshakeTime
		}
	}
	t.Fatalf("%s: no peer %s", x.ns, peer.key.PublicKey())
	return time.Time{}
}

// apply applies want on x and checks that Check then finds nothing.
func apply(t *testing.T, x *host, want wireguard.Want) {
	t.Helper()
	if err := x.d.Apply(context.Background(), want); err != nil {
		t.Fatalf("%s: Apply: %v", x.ns, err)
	}
	diffs, err := x.d.Check(context.Background(), want)
	if err != nil || len(diffs) != 0 {
		t.Fatalf("%s: Check after Apply = %q, %v; want none", x.ns, diffs, err)
	}
}

// rotate rotates x's key as the agent does: a new key in the state dir,
// applied on x, then (the record having reached it) on peer.
func rotate(t *testing.T, x, peer *host) {
	t.Helper()
	key, err := wireguard.Rotate(x.stateDir)
	must(t, err)
	x.key = key
	apply(t, x, x.want(peer))
	apply(t, peer, peer.want(x))
}

// ping polls until one ping from x to peer's tunnel address is answered.
func ping(t *testing.T, x, peer *host) {
	t.Helper()
	eventually(t, fmt.Sprintf("ping %s -> %s", x.ns, peer.tunnel()), func() error {
		out, err := exec.Command("ip", "netns", "exec", x.ns, "ping", "-c1", "-W1", "-q", peer.tunnel().String()).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
}

// eventually polls fn until it succeeds, or fails t after 20 s.
func eventually(t *testing.T, what string, fn func() error) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := fn()
		if err == nil {
			return
		}
		select {
		case <-deadline:
			t.Fatalf("%s: not before the deadline: %v", what, err)
		case <-tick.C:
		}
	}
}

// stream is a TCP stream from one host's namespace to another's.
type stream struct {
	received atomic.Int64
	done     chan struct{}
	wg       sync.WaitGroup
	sent     int64
	errs     [2]error
}

func startStream(t *testing.T, from, to *host) *stream {
	t.Helper()
	var l net.Listener
	must(t, inNS(to.path, func() (err error) {
		l, err = net.Listen("tcp", netip.AddrPortFrom(to.tunnel(), 0).String())
		return err
	}))
	t.Cleanup(func() { l.Close() })
	var c net.Conn
	must(t, inNS(from.path, func() (err error) {
		c, err = net.DialTimeout("tcp", l.Addr().String(), 10*time.Second)
		return err
	}))
	t.Cleanup(func() { c.Close() })
	s := &stream{done: make(chan struct{})}
	s.wg.Go(func() {
		sc, err := l.Accept()
		if err != nil {
			s.errs[0] = err
			return
		}
		defer sc.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := sc.Read(buf)
			s.received.Add(int64(n))
			if err == io.EOF {
				return
			} else if err != nil {
				s.errs[0] = err
				return
			}
		}
	})
	s.wg.Go(func() {
		buf := make([]byte, 32<<10)
		for {
			select {
			case <-s.done:
				s.errs[1] = c.(*net.TCPConn).CloseWrite()
				return
			default:
			}
			c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			n, err := c.Write(buf)
			s.sent += int64(n)
			if err != nil {
				s.errs[1] = err
				return
			}
		}
	})
	return s
}

// waitFor polls until the receiver has n bytes.
func (s *stream) waitFor(t *testing.T, n int64) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d bytes through the stream", n), func() error {
		if got := s.received.Load(); got < n {
			return fmt.Errorf("%d bytes so far", got)
		}
		return nil
	})
}

// stop ends the stream and checks that every byte sent arrived.
func (s *stream) stop(t *testing.T) {
	t.Helper()
	close(s.done)
	s.wg.Wait()
	if s.errs[0] != nil || s.errs[1] != nil || s.received.Load() != s.sent {
		t.Errorf("stream: sent %d, received %d, errors: receiver %v, sender %v", s.sent, s.received.Load(), s.errs[0], s.errs[1])
	}
}

// inNS runs fn on a thread switched into the namespace at path, then back.
func inNS(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- err // the thread stays locked and is discarded
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// counts counts mutating calls by name.
type counts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counts) add(name string) { c.mu.Lock(); c.m[name]++; c.mu.Unlock() }
func (c *counts) reset()          { c.mu.Lock(); clear(c.m); c.mu.Unlock() }
func (c *counts) get() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.m {
		out[k] = v
	}
	return out
}

// countingLink counts the mutating calls to a Link.
type countingLink struct {
	wireguard.Link
	c *counts
}

func (l countingLink) LinkAdd(x netlink.Link) error { l.c.add("LinkAdd"); return l.Link.LinkAdd(x) }
func (l countingLink) LinkDel(x netlink.Link) error { l.c.add("LinkDel"); return l.Link.LinkDel(x) }
func (l countingLink) LinkSetUp(x netlink.Link) error {
	l.c.add("LinkSetUp")
	return l.Link.LinkSetUp(x)
}
func (l countingLink) LinkSetMTU(x netlink.Link, mtu int) error {
	l.c.add("LinkSetMTU")
	return l.Link.LinkSetMTU(x, mtu)
}
func (l countingLink) AddrReplace(x netlink.Link, a *netlink.Addr) error {
	l.c.add("AddrReplace")
	return l.Link.AddrReplace(x, a)
}
func (l countingLink) AddrDel(x netlink.Link, a *netlink.Addr) error {
	l.c.add("AddrDel")
	return l.Link.AddrDel(x, a)
}

// countingClient counts the ConfigureDevice calls to a Client.
type countingClient struct {
	wireguard.Client
	c *counts
}

func (c countingClient) ConfigureDevice(name string, cfg wgtypes.Config) error {
	c.c.add("ConfigureDevice")
	return c.Client.ConfigureDevice(name, cfg)
}
