package routing_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weft-net/weft/fabric"
	"github.com/weft-net/weft/fabric/routing"
)

// requireRoot skips t unless it runs as root, which namespaces need. Under
// root the test runs and any refusal is a failure.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root: creates a network namespace (euid is %d)", os.Geteuid())
	}
}

// ipCmd runs `ip args...` and returns its output, failing t on an error.
func ipCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// testNS makes a uniquely named network namespace, removed when t ends
// (also on failure), and returns its name and a netlink handle bound to it.
func testNS(t *testing.T) (string, netns.NsHandle, *netlink.Handle) {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	name := "weft-routing-" + hex.EncodeToString(b)
	ipCmd(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("remove netns %s: %v\n%s", name, err, out)
		}
	})
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	t.Cleanup(h.Close)
	return name, ns, h
}

// countingKernel counts the mutating calls made through it.
type countingKernel struct {
	routing.Kernel
	mutations atomic.Int64
}

func (c *countingKernel) RouteReplace(r fabric.Route) error {
	c.mutations.Add(1)
	return c.Kernel.RouteReplace(r)
}

func (c *countingKernel) RouteDel(r fabric.Route) error {
	c.mutations.Add(1)
	return c.Kernel.RouteDel(r)
}

// routeLines returns the `ip route` lines of ns, IPv4 and IPv6.
func routeLines(t *testing.T, ns string) []string {
	t.Helper()
	out := ipCmd(t, "-n", ns, "-4", "route", "show") + ipCmd(t, "-n", ns, "-6", "route", "show")
	return strings.Split(strings.TrimSpace(out), "\n")
}

// lineFor returns the `ip route` line of dst, or "". ip shows a host
// route's destination without its length.
func lineFor(lines []string, dst netip.Prefix) string {
	for _, l := range lines {
		f := strings.Fields(strings.TrimPrefix(l, "blackhole "))
		if len(f) > 0 && (f[0] == dst.String() || dst.IsSingleIP() && f[0] == dst.Addr().String()) {
			return l
		}
	}
	return ""
}

func TestNetlinkKernel(t *testing.T) {
	requireRoot(t)
	ns, nsh, h := testNS(t)
	const dev = "wr0"
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: dev}, PeerName: "wr1"}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s in %s: %v", dev, ns, err)
	}
	for _, name := range []string{dev, "wr1"} {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatalf("find %s: %v", name, err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatalf("set %s up: %v", name, err)
		}
	}
	l, err := h.LinkByName(dev)
	if err != nil {
		t.Fatalf("find %s: %v", dev, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(198, 18, 87, 1), Mask: net.CIDRMask(24, 32)}}
	if err := h.AddrAdd(l, addr); err != nil {
		t.Fatalf("add address to %s: %v", dev, err)
	}
	// A foreign route, and a foreign route at a destination weft will want.
	ipCmd(t, "-n", ns, "route", "add", "10.244.9.0/24", "via", "198.18.87.9", "dev", dev, "proto", "static")
	ipCmd(t, "-n", ns, "route", "add", "10.244.10.0/24", "via", "198.18.87.10", "dev", dev, "proto", "dhcp")

	want := []fabric.Route{
		{Dst: netip.MustParsePrefix("10.244.5.0/24"), Via: netip.MustParseAddr("198.18.87.2"), Dev: dev, MTU: 1400},
		{Dst: netip.MustParsePrefix("10.244.6.0/24"), Via: netip.MustParseAddr("198.18.99.6"), Dev: dev, OnLink: true},
		{Dst: netip.MustParsePrefix("10.244.1.0/24"), Blackhole: true},
		{Dst: netip.MustParsePrefix("10.244.3.4/32"), Dev: dev},
		{Dst: netip.MustParsePrefix("2001:db8:87:5::/64"), Via: netip.MustParseAddr("fe80::87:2"), Dev: dev},
		{Dst: netip.MustParsePrefix("2001:db8:87::/48"), Blackhole: true},
	}
	clash := fabric.Route{Dst: netip.MustParsePrefix("10.244.10.0/24"), Via: netip.MustParseAddr("198.18.87.11"), Dev: dev}
	kernel := &countingKernel{Kernel: routing.NewNetlinkKernel(h)}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	a := routing.New(routing.Config{Kernel: kernel, Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The route that clashes with the foreign one is refused; the rest go in.
	if err := a.Apply(ctx, append(slices.Clone(want), clash)); !errors.Is(err, unix.EEXIST) {
		t.Fatalf("Apply over a foreign route: got %v, want an error wrapping EEXIST", err)
	}
	if err := a.Apply(ctx, want); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	lines := routeLines(t, ns)
	for _, r := range want {
		if l := lineFor(lines, r.Dst); !strings.Contains(l, "proto 87") {
			t.Errorf("route to %s: `ip route` line %q, want one with proto 87\n%s", r.Dst, l, strings.Join(lines, "\n"))
		}
	}
	for dst, line := range map[string]string{
		"10.244.9.0/24":  "10.244.9.0/24 via 198.18.87.9 dev wr0 proto static",
		"10.244.10.0/24": "10.244.10.0/24 via 198.18.87.10 dev wr0 proto dhcp",
	} {
		if got := lineFor(lines, netip.MustParsePrefix(dst)); !strings.HasPrefix(got, line) {
			t.Errorf("foreign route %s: got %q, want %q", dst, got, line)
		}
	}
	// What the kernel holds reads back as exactly what was wanted.
	got, err := kernel.RouteList()
	if err != nil {
		t.Fatalf("RouteList: %v", err)
	}
	slices.SortFunc(got, routing.Compare)
	sorted := slices.SortedFunc(slices.Values(want), routing.Compare)
	if diff := cmp.Diff(sorted, got, addrCmp, prefixCmp); diff != "" {
		t.Errorf("RouteList after Apply (-want +got):\n%s", diff)
	}

	kernel.mutations.Store(0)
	if err := a.Apply(ctx, want); err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	if n := kernel.mutations.Load(); n != 0 {
		t.Errorf("second Apply made %d mutating calls, want 0", n)
	}

	// Drift: a weft route deleted by hand is signalled and restored.
	drift, err := routing.Watch(ctx, nsh, log)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	drainSignal(drift)
	ipCmd(t, "-n", ns, "route", "del", "10.244.5.0/24", "proto", "87")
	select {
	case <-drift:
	case <-time.After(10 * time.Second):
		t.Fatalf("no drift signal within 10s of deleting a weft route")
	}
	report, err := a.Check(ctx, want)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if report.InSync() {
		t.Errorf("Check after the hand delete reports in sync: %+v", report)
	}
	kernel.mutations.Store(0)
	if err := a.Apply(ctx, want); err != nil {
		t.Fatalf("Apply after drift: %v", err)
	}
	if n := kernel.mutations.Load(); n != 1 {
		t.Errorf("Apply after drift made %d mutating calls, want 1", n)
	}
	if l := lineFor(routeLines(t, ns), want[0].Dst); !strings.Contains(l, "proto 87") {
		t.Errorf("route to %s not restored: %q", want[0].Dst, l)
	}
	if report, err := a.Check(ctx, want); err != nil || !report.InSync() {
		t.Errorf("Check after repair: %+v, %v; want in sync", report, err)
	}

	// Weft routes changed by hand (IPv4 and IPv6) are replaced in place, and
	// a stale one is deleted.
	ipCmd(t, "-n", ns, "route", "replace", "10.244.6.0/24", "via", "198.18.87.66", "dev", dev, "proto", "87")
	ipCmd(t, "-n", ns, "-6", "route", "replace", "2001:db8:87:5::/64", "via", "fe80::87:3", "dev", dev, "proto", "87")
	ipCmd(t, "-n", ns, "route", "add", "10.244.8.0/24", "via", "198.18.87.8", "dev", dev, "proto", "87")
	kernel.mutations.Store(0)
	if err := a.Apply(ctx, want); err != nil {
		t.Fatalf("Apply over hand-changed routes: %v", err)
	}
	if n := kernel.mutations.Load(); n != 3 {
		t.Errorf("Apply over hand-changed routes made %d mutating calls, want 3", n)
	}
	if got, err = kernel.RouteList(); err != nil {
		t.Fatalf("RouteList: %v", err)
	}
	slices.SortFunc(got, routing.Compare)
	if diff := cmp.Diff(sorted, got, addrCmp, prefixCmp); diff != "" {
		t.Errorf("RouteList after repairing hand changes (-want +got):\n%s", diff)
	}

	// Sweep removes weft's routes only.
	if err := a.Sweep(ctx); err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	lines = routeLines(t, ns)
	for _, l := range lines {
		if strings.Contains(l, "proto 87") {
			t.Errorf("weft route left after Sweep: %q", l)
		}
	}
	for _, dst := range []string{"10.244.9.0/24", "10.244.10.0/24", "198.18.87.0/24"} {
		if lineFor(lines, netip.MustParsePrefix(dst)) == "" {
			t.Errorf("foreign route %s gone after Sweep:\n%s", dst, strings.Join(lines, "\n"))
		}
	}

	cancel()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-drift:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("drift channel not closed within 10s of cancel")
		}
	}
}

func drainSignal(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}
