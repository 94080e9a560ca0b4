package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"

	"github.com/weft-net/weft/internal/netlab"
)

// ip runs `ip args...` and returns its output, or an error with it.
func ip(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// ipAll runs every step with ip, stopping at the first failure.
func ipAll(ctx context.Context, steps [][]string) error {
	for _, s := range steps {
		if _, err := ip(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

// rawVeth is the baseline: two fresh namespaces joined by one veth, with
// no bridge, no routing, no policy and no weft.
type rawVeth struct {
	a, b  string // namespace names
	addrB netip.Addr
	made  []string
}

// rawVethAddrs are the two ends' addresses, from the lab range, in
// namespaces of their own.
var rawVethAddrs = [2]netip.Prefix{netip.MustParsePrefix("198.19.254.1/30"), netip.MustParsePrefix("198.19.254.2/30")}

// newRawVeth makes <prefix>-ra and <prefix>-rb joined by a veth (eth0 on
// both sides, MTU 1500 as on the lab's links). The caller must Close it,
// also after an error.
func newRawVeth(ctx context.Context, prefix string) (*rawVeth, error) {
	r := &rawVeth{a: prefix + "-ra", b: prefix + "-rb", addrB: rawVethAddrs[1].Addr()}
	for _, ns := range []string{r.a, r.b} {
		if _, err := ip(ctx, "netns", "add", ns); err != nil {
			return r, err
		}
		r.made = append(r.made, ns)
	}
	// Created from inside ra with its peer put straight into rb: the root
	// namespace never sees either end.
	steps := [][]string{
		{"-n", r.a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", r.b},
		{"-n", r.a, "addr", "add", rawVethAddrs[0].String(), "dev", "eth0"},
		{"-n", r.b, "addr", "add", rawVethAddrs[1].String(), "dev", "eth0"},
	}
	for _, ns := range []string{r.a, r.b} {
		steps = append(steps, []string{"-n", ns, "link", "set", "lo", "up"}, []string{"-n", ns, "link", "set", "eth0", "up"})
	}
	return r, ipAll(ctx, steps)
}

// Close removes the namespaces r made; it is idempotent.
func (r *rawVeth) Close() error {
	var errs []error
	var left []string
	for _, ns := range r.made {
		// Not the run's context: this must work after an interruption too.
		if _, err := ip(context.Background(), "netns", "del", ns); err != nil {
			errs = append(errs, err)
			left = append(left, ns)
		}
	}
	r.made = left
	return errors.Join(errs...)
}

// handLab is the default lab topology again, with no agent: three
// workloads wa, wb, wc on h1, h2, h3 attached as weft's are (routed veths),
// and the routes weft would make made by hand with ip(8), with no nftables:
// h1-h2 routed directly over their segment, h1-h3 through a point-to-point
// kernel VXLAN device (iproute2's defaults) across the router. It is what
// weft's direct and VXLAN paths cost without weft.
type handLab struct {
	l          *netlab.Lab
	wa, wb, wc netlab.Workload
}

// handSubnets are the hand lab's workload subnets, one per host, from
// outside weft's cluster range; they only exist inside its namespaces.
var handSubnets = map[string]netip.Prefix{
	"h1": netip.MustParsePrefix("10.250.1.0/24"),
	"h2": netip.MustParsePrefix("10.250.2.0/24"),
	"h3": netip.MustParsePrefix("10.250.3.0/24"),
}

// handVXLANAddrs are the addresses of h1's and h3's VXLAN devices.
var handVXLANAddrs = [2]netip.Prefix{netip.MustParsePrefix("10.251.0.1/30"), netip.MustParsePrefix("10.251.0.2/30")}

// handVNI is the hand lab's VXLAN network identifier (weft uses 1; the two
// labs never share a wire anyway).
const handVNI = "2"

// newHandLab builds the hand lab; with ruleset set, it also loads that
// nftables ruleset on h1 and h2. The caller must Close it, also after an
// error (then h.l may be nil).
func newHandLab(ctx context.Context, o options, ruleset string) (h *handLab, err error) {
	h = &handLab{}
	prefix, err := newPrefix()
	if err != nil {
		return h, err
	}
	o.log.Info("build hand-routed lab", "prefix", prefix)
	if h.l, err = netlab.Build(ctx, netlab.DefaultTopology(), netlab.Options{Prefix: prefix}); err != nil {
		return h, err
	}
	l := h.l
	for _, host := range []string{"h1", "h2", "h3"} {
		if out, err := nsCommand(ctx, l.NSName(host), "sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
			return h, fmt.Errorf("enable forwarding on %s: %w: %s", host, err, out)
		}
	}
	h.wa = netlab.Workload{Name: "wa", Host: "h1", Addr: handSubnets["h1"].Addr().Next().Next()}
	h.wb = netlab.Workload{Name: "wb", Host: "h2", Addr: handSubnets["h2"].Addr().Next().Next()}
	h.wc = netlab.Workload{Name: "wc", Host: "h3", Addr: handSubnets["h3"].Addr().Next().Next()}
	for _, w := range []netlab.Workload{h.wa, h.wb, h.wc} {
		if err := l.AddWorkload(ctx, w); err != nil {
			return h, err
		}
	}
	h1, h2, h3 := l.NSName("h1"), l.NSName("h2"), l.NSName("h3")
	for _, ns := range []string{h1, h2} {
		if ruleset == "" {
			break
		}
		cmd := nsCommand(ctx, ns, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(ruleset)
		if out, err := cmd.CombinedOutput(); err != nil {
			return h, fmt.Errorf("load nftables ruleset in %s: %w: %s", ns, err, out)
		}
	}
	a1, a2, a3 := l.HostAddr("h1").String(), l.HostAddr("h2").String(), l.HostAddr("h3").String()
	return h, ipAll(ctx, [][]string{
		{"-n", h1, "route", "add", handSubnets["h2"].String(), "via", a2, "dev", "eth0"},
		{"-n", h2, "route", "add", handSubnets["h1"].String(), "via", a1, "dev", "eth0"},
		{"-n", h1, "link", "add", "vx0", "type", "vxlan", "id", handVNI, "local", a1, "remote", a3, "dstport", "4789", "dev", "eth0"},
		{"-n", h3, "link", "add", "vx0", "type", "vxlan", "id", handVNI, "local", a3, "remote", a1, "dstport", "4789", "dev", "eth0"},
		{"-n", h1, "addr", "add", handVXLANAddrs[0].String(), "dev", "vx0"},
		{"-n", h3, "addr", "add", handVXLANAddrs[1].String(), "dev", "vx0"},
		{"-n", h1, "link", "set", "vx0", "up"},
		{"-n", h3, "link", "set", "vx0", "up"},
		{"-n", h1, "route", "add", handSubnets["h3"].String(), "via", handVXLANAddrs[1].Addr().String(), "dev", "vx0"},
		{"-n", h3, "route", "add", handSubnets["h1"].String(), "via", handVXLANAddrs[0].Addr().String(), "dev", "vx0"},
	})
}

// Close removes the hand lab's namespaces.
func (h *handLab) Close() error {
	if h.l == nil {
		return nil
	}
	return h.l.Close()
}
