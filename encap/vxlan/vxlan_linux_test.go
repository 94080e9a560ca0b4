package vxlan_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weft-net/weft/encap/vxlan"
	"github.com/weft-net/weft/encap/vxlan/vxlantest"
	"github.com/weft-net/weft/fabric"
)

// requireRoot skips t unless it runs as root, which making network
// namespaces needs. Under root, any refusal by the kernel fails the test.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root: creates network namespaces (euid is %d)", os.Geteuid())
	}
}

// node is one host of the test: a named namespace with a netlink handle
// bound to it and a driver working in it. The test's thread never leaves
// its own namespace.
type node struct {
	n      int // 1 or 2: underlay 198.18.1.n, subnet 10.244.n.0/24
	ns     string
	nsh    netns.NsHandle
	h      *netlink.Handle
	kernel *vxlantest.Counter
	d      *vxlan.Driver
}

// newNode makes the namespace name, removed when the test ends, even on
// failure.
func newNode(t *testing.T, name string, n int) *node {
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
	k := vxlantest.NewCounter(vxlan.NewNetlinkKernel(h))
	return &node{n: n, ns: name, nsh: nsh, h: h, kernel: k, d: newDriver(t, k)}
}

func (x *node) underlay() netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 1, byte(x.n)}) }
func (x *node) vtep() netip.Addr     { return netip.AddrFrom4([4]byte{10, 244, byte(x.n), 0}) }
func (x *node) mac() net.HardwareAddr {
	return net.HardwareAddr{0x0a, 0x58, 0x0a, 0xf4, byte(x.n), 0}
}

// want is x's VXLAN state with peer as the only other node.
func (x *node) want(peer *node, vni int) vxlan.Want {
	return vxlan.Want{
		Device: &fabric.VXLANDevice{
			Name:  fabric.DefaultVXLANDevice,
			VNI:   vni,
			Port:  fabric.DefaultVXLANPort,
			Local: x.underlay(),
			Dev:   "eth0",
			MAC:   x.mac(),
			MTU:   1500 - fabric.VXLANOverhead,
			Addr:  netip.PrefixFrom(x.vtep(), 32),
		},
		Neighbors: []fabric.Neighbor{{IP: peer.vtep(), MAC: peer.mac()}},
		FDB:       []fabric.FDBEntry{{MAC: peer.mac(), Dst: peer.underlay()}},
	}
}

// routeTo adds what the route applier would: peer's subnet via its VTEP
// address, onlink, out of the VXLAN device.
func (x *node) routeTo(t *testing.T, peer *node) {
	t.Helper()
	dev, err := x.h.LinkByName(fabric.DefaultVXLANDevice)
	if err != nil {
		t.Fatalf("%s: look up %s: %v", x.ns, fabric.DefaultVXLANDevice, err)
	}
	r := &netlink.Route{
		LinkIndex: dev.Attrs().Index,
		Dst:       ipNet(netip.PrefixFrom(peer.vtep(), 24).String()),
		Gw:        net.IP(peer.vtep().AsSlice()),
		Flags:     int(netlink.FLAG_ONLINK),
	}
	if err := x.h.RouteReplace(r); err != nil {
		t.Fatalf("%s: add route %s: %v", x.ns, r, err)
	}
}

// apply applies want and checks that a second Apply changes nothing and
// Check finds nothing.
func (x *node) apply(t *testing.T, want vxlan.Want) {
	t.Helper()
	ctx := context.Background()
	if err := x.d.Apply(ctx, want); err != nil {
		t.Fatalf("%s: Apply: %v", x.ns, err)
	}
	x.kernel.ResetMutations()
	if err := x.d.Apply(ctx, want); err != nil {
		t.Fatalf("%s: second Apply: %v", x.ns, err)
	}
	if m := x.kernel.Mutations(); len(m) != 0 {
		t.Errorf("%s: second Apply made mutating calls %v, want none", x.ns, m)
	}
	if diffs, err := x.d.Check(ctx, want); err != nil || len(diffs) != 0 {
		t.Errorf("%s: Check after Apply = %q, %v; want none", x.ns, diffs, err)
	}
}

// pingUntil pings addr from inside x until it answers or the deadline
// passes.
func (x *node) pingUntil(t *testing.T, addr netip.Addr) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", x.ns, "ping", "-c1", "-W1", addr.String()).CombinedOutput()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: ping %s: no answer before the deadline: %v: %s", x.ns, addr, err, out)
		case <-tick.C:
		}
	}
}

func TestLinuxTwoNodes(t *testing.T) {
	requireRoot(t)
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	prefix := "wvx" + hex.EncodeToString(b[:])
	a, z := newNode(t, prefix+"-1", 1), newNode(t, prefix+"-2", 2)

	// One veth, eth0 in each namespace, is the underlay segment.
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(z.nsh)}
	if err := a.h.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s/eth0 - %s/eth0: %v", a.ns, z.ns, err)
	}
	for _, x := range []*node{a, z} {
		eth0, err := x.h.LinkByName("eth0")
		if err != nil {
			t.Fatalf("%s: look up eth0: %v", x.ns, err)
		}
		if err := x.h.AddrAdd(eth0, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(x.underlay(), 24).String())}); err != nil {
			t.Fatalf("%s: add address to eth0: %v", x.ns, err)
		}
		if err := x.h.LinkSetUp(eth0); err != nil {
			t.Fatalf("%s: set eth0 up: %v", x.ns, err)
		}
	}

	a.apply(t, a.want(z, 1))
	z.apply(t, z.want(a, 1))
	a.routeTo(t, z)
	z.routeTo(t, a)
	a.pingUntil(t, z.vtep())
	z.pingUntil(t, a.vtep())

	t.Run("fdb entry deleted by hand is restored", func(t *testing.T) {
		ctx := context.Background()
		dev, err := a.h.LinkByName(fabric.DefaultVXLANDevice)
		if err != nil {
			t.Fatal(err)
		}
		gone := &netlink.Neigh{LinkIndex: dev.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
			IP: net.IP(z.underlay().AsSlice()), HardwareAddr: z.mac()}
		if err := a.h.NeighDel(gone); err != nil {
			t.Fatalf("delete fdb entry by hand: %v", err)
		}
		diffs, err := a.d.Check(ctx, a.want(z, 1))
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		wantDiffs := []string{fmt.Sprintf("fdb %s dst %s missing", z.mac(), z.underlay())}
		if diff := cmp.Diff(wantDiffs, diffs); diff != "" {
			t.Errorf("Check after the deletion (-want +got):\n%s", diff)
		}
		a.kernel.ResetMutations()
		if err := a.d.Apply(ctx, a.want(z, 1)); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if diff := cmp.Diff(map[string]int{"NeighSet": 1}, a.kernel.Mutations()); diff != "" {
			t.Errorf("mutating calls of Apply (-want +got):\n%s", diff)
		}
		a.apply(t, a.want(z, 1))
		a.pingUntil(t, z.vtep())
	})

	t.Run("vni changed: recreated", func(t *testing.T) {
		before, err := a.h.LinkByName(fabric.DefaultVXLANDevice)
		if err != nil {
			t.Fatal(err)
		}
		a.apply(t, a.want(z, 2))
		z.apply(t, z.want(a, 2))
		after, err := a.h.LinkByName(fabric.DefaultVXLANDevice)
		if err != nil {
			t.Fatal(err)
		}
		if vx, ok := after.(*netlink.Vxlan); !ok || vx.VxlanId != 2 || after.Attrs().Index == before.Attrs().Index {
			t.Errorf("device after VNI change = %T index %d (was %d), want a new vxlan with VNI 2", after, after.Attrs().Index, before.Attrs().Index)
		}
		// The routes went with the old device; the route applier puts
		// them back.
		a.routeTo(t, z)
		z.routeTo(t, a)
		a.pingUntil(t, z.vtep())
	})

	t.Run("no device: removed, underlay stays", func(t *testing.T) {
		a.apply(t, vxlan.Want{})
		if _, err := a.h.LinkByName(fabric.DefaultVXLANDevice); !errors.As(err, &netlink.LinkNotFoundError{}) {
			t.Errorf("look up %s after removal: %v, want not found", fabric.DefaultVXLANDevice, err)
		}
		if _, err := a.h.LinkByName("eth0"); err != nil {
			t.Errorf("look up eth0 after removal: %v", err)
		}
	})
}
