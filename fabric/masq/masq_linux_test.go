package masq

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"
)

// pollTimeout bounds every wait for packets; generous for a busy 2-core VM.
const pollTimeout = 20 * time.Second

// requireRoot skips when not root; as root every refusal is a failure.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and nftables tables")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatalf("nft not found (install the Debian package nftables): %v", err)
	}
}

// newNS creates a uniquely named network namespace, removed in t.Cleanup,
// and returns its name and a handle to it.
func newNS(t *testing.T, role string) (string, netns.NsHandle) {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random name: %v", err)
	}
	name := "weftmasq-" + role + "-" + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() { h.Close() })
	return name, h
}

// inNS runs `cmd args...` in namespace ns and returns its combined output.
func inNS(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", strings.Join(args, " "), ns, err, out)
	}
	return string(out), nil
}

func mustInNS(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := inNS(ns, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func newApplier(t *testing.T, h netns.NsHandle) (*Applier, *nftables.Conn) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatalf("nftables conn: %v", err)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	return New(Config{Conn: c, Logger: log}), c
}

// ruleHandles returns the handles of the rules in weft's chain.
func ruleHandles(t *testing.T, c *nftables.Conn) []uint64 {
	t.Helper()
	rules, err := c.GetRules(table(), chain(table()))
	if err != nil {
		t.Fatalf("get rules: %v", err)
	}
	var hs []uint64
	for _, r := range rules {
		hs = append(hs, r.Handle)
	}
	return hs
}

// tableHandle returns the table's handle from `nft -a list table` output,
// whose first line reads `table ip weft-nat { # handle 7`.
func tableHandle(t *testing.T, text string) string {
	t.Helper()
	first, _, _ := strings.Cut(text, "\n")
	_, h, ok := strings.Cut(first, "# handle ")
	if !ok {
		t.Fatalf("no table handle in nft output:\n%s", text)
	}
	return h
}

func mustApply(t *testing.T, a *Applier, p netip.Prefix) {
	t.Helper()
	if err := a.Apply(t.Context(), p); err != nil {
		t.Fatalf("Apply(%s): %v", p, err)
	}
	if ok, reason, err := a.Check(t.Context(), p); !ok || err != nil {
		t.Fatalf("Check(%s) after Apply = %v, %q, %v", p, ok, reason, err)
	}
}

func TestKernelApply(t *testing.T) {
	requireRoot(t)
	ns, h := newNS(t, "k")
	a, c := newApplier(t, h)
	mustInNS(t, ns, "nft", "add table ip other; add chain ip other postrouting { type nat hook postrouting priority 50; }")
	other := mustInNS(t, ns, "nft", "list", "ruleset")

	if ok, reason, err := a.Check(t.Context(), cluster16); ok || err != nil || reason != "table ip weft-nat missing" {
		t.Errorf("Check before Apply = %v, %q, %v", ok, reason, err)
	}
	mustApply(t, a, cluster16)
	text := mustInNS(t, ns, "nft", "list", "table", "ip", TableName)
	for _, want := range []string{
		"type nat hook postrouting priority srcnat; policy accept;",
		"ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 ip daddr != 224.0.0.0/4",
		"masquerade fully-random",
		`comment "weft masquerade v1 cluster 10.244.0.0/16"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("nft list table ip %s lacks %q:\n%s", TableName, want, text)
		}
	}
	// The chain name must be one nft can parse.
	mustInNS(t, ns, "nft", "list", "chain", "ip", TableName, chainName)

	// The table's handle (in `nft -a` output) is new whenever Apply replaces
	// the table; rule handles restart with each new table.
	before, beforeText := ruleHandles(t, c), mustInNS(t, ns, "nft", "-a", "list", "table", "ip", TableName)
	mustApply(t, a, cluster16)
	if after := ruleHandles(t, c); !slices.Equal(before, after) || len(after) != 1 {
		t.Errorf("second Apply changed the rules: handles %v, then %v", before, after)
	}
	if afterText := mustInNS(t, ns, "nft", "-a", "list", "table", "ip", TableName); afterText != beforeText {
		t.Errorf("second Apply changed the table:\n%s\nthen:\n%s", beforeText, afterText)
	}

	mustApply(t, a, cluster8)
	text = mustInNS(t, ns, "nft", "list", "table", "ip", TableName)
	if !strings.Contains(text, "ip saddr 10.0.0.0/8") || strings.Contains(text, "10.244.") {
		t.Errorf("Apply(%s) did not replace the rule:\n%s", cluster8, text)
	}
	if afterText := mustInNS(t, ns, "nft", "-a", "list", "table", "ip", TableName); tableHandle(t, afterText) == tableHandle(t, beforeText) {
		t.Errorf("Apply(%s) kept the table:\n%s", cluster8, afterText)
	}

	// Drift made with nft is detected and repaired in one Apply.
	drifts := []struct {
		name, nft, reason string
	}{
		{"extra rule", "add rule ip weft-nat cluster-masq counter", "chain cluster-masq has 2 rules, want 1"},
		{"extra chain", "add chain ip weft-nat junk", `chains ["cluster-masq" "junk"], want ["cluster-masq"]`},
		{"flushed", "flush table ip weft-nat", "chain cluster-masq has 0 rules, want 1"},
		{"dormant", "add table ip weft-nat { flags dormant; }", "table ip weft-nat dormant"},
		{"deleted", "delete table ip weft-nat", "table ip weft-nat missing"},
	}
	for _, d := range drifts {
		mustInNS(t, ns, "nft", d.nft)
		if ok, reason, err := a.Check(t.Context(), cluster8); ok || err != nil || reason != d.reason {
			t.Errorf("%s: Check = %v, %q, %v; want reason %q", d.name, ok, reason, err, d.reason)
		}
		mustApply(t, a, cluster8)
	}

	mustApply(t, a, netip.Prefix{})
	if out, err := inNS(ns, "nft", "list", "table", "ip", TableName); err == nil {
		t.Errorf("Apply(zero) left the table:\n%s", out)
	}
	mustApply(t, a, netip.Prefix{})
	if got := mustInNS(t, ns, "nft", "list", "ruleset"); got != other {
		t.Errorf("foreign table after Apply(zero):\n%s\nwant:\n%s", got, other)
	}

	mustApply(t, a, cluster16)
	for i := range 2 {
		if err := a.Remove(t.Context()); err != nil {
			t.Fatalf("Remove %d: %v", i, err)
		}
	}
	if got := mustInNS(t, ns, "nft", "list", "ruleset"); got != other {
		t.Errorf("ruleset after Remove:\n%s\nwant only:\n%s", got, other)
	}
}

// TestKernelMasquerade sends UDP from a workload address through a router
// namespace to a destination and checks the source the destination sees:
// the router's address with masquerade on, the workload's with it off.
//
//	src 10.244.1.2/24 --- 10.244.1.1/24 router 198.18.0.1/24 --- 198.18.0.2/24 dst
func TestKernelMasquerade(t *testing.T) {
	requireRoot(t)
	src, srcH := newNS(t, "src")
	router, routerH := newNS(t, "rtr")
	dst, dstH := newNS(t, "dst")
	for _, cmd := range []struct {
		ns   string
		args []string
	}{
		{src, []string{"ip", "link", "add", "eth0", "type", "veth", "peer", "name", "wl0", "netns", router}},
		{router, []string{"ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", dst}},
		{src, []string{"ip", "addr", "add", "10.244.1.2/24", "dev", "eth0"}},
		{src, []string{"ip", "link", "set", "eth0", "up"}},
		{src, []string{"ip", "route", "add", "default", "via", "10.244.1.1"}},
		{router, []string{"ip", "addr", "add", "10.244.1.1/24", "dev", "wl0"}},
		{router, []string{"ip", "addr", "add", "198.18.0.1/24", "dev", "eth1"}},
		{router, []string{"ip", "link", "set", "wl0", "up"}},
		{router, []string{"ip", "link", "set", "eth1", "up"}},
		{router, []string{"sysctl", "-qw", "net.ipv4.ip_forward=1"}},
		{dst, []string{"ip", "addr", "add", "198.18.0.2/24", "dev", "eth0"}},
		{dst, []string{"ip", "link", "set", "eth0", "up"}},
		// No route back to 10.244.0.0/16 in dst: accept unmasqueraded
		// packets anyway, so that "masquerade off" is observable.
		{dst, []string{"sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.eth0.rp_filter=0"}},
	} {
		mustInNS(t, cmd.ns, cmd.args...)
	}
	a, _ := newApplier(t, routerH)
	var listener net.PacketConn
	if err := inNetNS(dstH, func() (err error) {
		listener, err = net.ListenPacket("udp4", "198.18.0.2:0")
		return err
	}); err != nil {
		t.Fatalf("listen in %s: %v", dst, err)
	}
	t.Cleanup(func() { listener.Close() })

	for _, tc := range []struct {
		cluster netip.Prefix
		want    netip.Addr
	}{
		{cluster16, netip.MustParseAddr("198.18.0.1")},
		{netip.Prefix{}, netip.MustParseAddr("10.244.1.2")},
		{cluster16, netip.MustParseAddr("198.18.0.1")},
	} {
		mustApply(t, a, tc.cluster)
		// A new socket per phase: a new flow, so no old conntrack binding.
		got, err := sourceSeen(t, srcH, listener)
		if err != nil {
			t.Fatalf("cluster %s: %v", tc.cluster, err)
		}
		if got != tc.want {
			t.Errorf("cluster %s: destination saw source %s, want %s", tc.cluster, got, tc.want)
		}
	}
}

// sourceSeen sends UDP datagrams from namespace src to listener until one
// arrives, and returns its source address.
func sourceSeen(t *testing.T, src netns.NsHandle, listener net.PacketConn) (netip.Addr, error) {
	var conn net.Conn
	if err := inNetNS(src, func() (err error) {
		conn, err = net.Dial("udp4", listener.LocalAddr().String())
		return err
	}); err != nil {
		return netip.Addr{}, fmt.Errorf("dial from source namespace: %w", err)
	}
	defer conn.Close()
	want := []byte(conn.LocalAddr().String())
	buf := make([]byte, 64)
	deadline := time.Now().Add(pollTimeout)
	for time.Now().Before(deadline) {
		if _, err := conn.Write(want); err != nil {
			return netip.Addr{}, fmt.Errorf("send: %w", err)
		}
		// Wait a little per datagram: the first may wait for ARP.
		if err := listener.SetReadDeadline(time.Now().Add(250 * time.Millisecond)); err != nil {
			return netip.Addr{}, err
		}
		for {
			n, from, err := listener.ReadFrom(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				return netip.Addr{}, fmt.Errorf("receive: %w", err)
			}
			if string(buf[:n]) == string(want) { // skip late datagrams of earlier phases
				return from.(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("no datagram arrived within %s", pollTimeout)
}

// inNetNS runs fn on a thread switched into ns, then switches it back. When
// switching back fails the thread stays locked, so the runtime discards it
// instead of reusing a thread in the wrong namespace. Sockets opened by fn
// stay in ns.
func inNetNS(ns netns.NsHandle, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("open current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			done <- fmt.Errorf("enter netns: %w", err) // thread stays locked: discarded
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			done <- errors.Join(ferr, fmt.Errorf("leave netns: %w", err))
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}
