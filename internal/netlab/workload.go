package netlab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// WorkloadGateway is the address a workload's default route points at. No
// interface has it: the host side of the workload's veth answers ARP for
// every address (proxy ARP), as Calico's routed veths do, so the workload's
// traffic always enters the host's forward path.
var WorkloadGateway = netip.MustParseAddr("169.254.1.1")

// Workload is a workload namespace attached to a host as a routed veth:
// Addr/32 on eth0 inside the workload, a /32 route to it on the host.
type Workload struct {
	Name string
	Host string
	Addr netip.Addr
	// Labels are carried for the caller (weft lab prints them); netlab ignores them.
	Labels map[string]string
}

// HostVeth returns the name of the host side of w's veth.
func (w Workload) HostVeth() string { return "wl" + w.Name }

func (l *Lab) isWorkload(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.workloads[name]
	return ok
}

// Workloads returns the workloads added so far, in name order.
func (l *Lab) Workloads() []Workload {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Workload, 0, len(l.workloads))
	for _, w := range l.workloads {
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b Workload) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// AddWorkload makes a namespace for w and attaches it to its host as a
// routed veth, as a CNI plugin would: the workload gets w.Addr/32 and a
// default route via WorkloadGateway; the host gets proxy ARP on its side and
// a /32 route to w.Addr. The namespace is removed by Close. Command and Do
// accept w.Name as a node.
func (l *Lab) AddWorkload(ctx context.Context, w Workload) error {
	if err := checkName("workload name", w.Name, maxNodeName); err != nil {
		return err
	}
	if _, ok := l.plan.Node(w.Name); ok || w.Name == switchNode || l.isWorkload(w.Name) {
		return fmt.Errorf("workload name %q: already in use", w.Name)
	}
	if n, ok := l.plan.Node(w.Host); !ok || n.Router {
		return fmt.Errorf("workload %s: host %q: no such host", w.Name, w.Host)
	}
	if !w.Addr.Is4() {
		return fmt.Errorf("workload %s: addr %q: want an IPv4 address", w.Name, w.Addr)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("add workload %s: %w", w.Name, err)
	}
	b := &builder{lab: l}
	ns, err := b.newNS(l.prefix + "-" + w.Name)
	if err != nil {
		return err
	}
	defer ns.Close()
	l.mu.Lock()
	if l.workloads == nil {
		l.workloads = map[string]Workload{}
	}
	l.workloads[w.Name] = w
	l.mu.Unlock()

	wh, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("open netlink in workload %s: %w", w.Name, err)
	}
	defer wh.Close()
	hostNS, err := openNS(l.NetNSPath(w.Host))
	if err != nil {
		return err
	}
	defer hostNS.Close()
	hh, err := netlink.NewHandleAt(hostNS)
	if err != nil {
		return fmt.Errorf("open netlink in host %s: %w", w.Host, err)
	}
	defer hh.Close()

	if err := setUp(wh, "lo"); err != nil {
		return err
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: "eth0"},
		PeerName:      w.HostVeth(),
		PeerNamespace: netlink.NsFd(hostNS),
	}
	if err := wh.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth of workload %s (host side %s): %w", w.Name, w.HostVeth(), err)
	}
	eth0, err := wh.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("find eth0 of workload %s: %w", w.Name, err)
	}
	addr := netip.PrefixFrom(w.Addr, 32)
	if err := wh.AddrAdd(eth0, &netlink.Addr{IPNet: ipNet(addr)}); err != nil {
		return fmt.Errorf("add address %s to workload %s: %w", addr, w.Name, err)
	}
	if err := wh.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("set eth0 of workload %s up: %w", w.Name, err)
	}
	gw := net.IP(WorkloadGateway.AsSlice())
	if err := wh.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: ipNet(netip.PrefixFrom(WorkloadGateway, 32)), Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("add gateway route in workload %s: %w", w.Name, err)
	}
	if err := wh.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: gw}); err != nil {
		return fmt.Errorf("add default route in workload %s: %w", w.Name, err)
	}

	hv, err := hh.LinkByName(w.HostVeth())
	if err != nil {
		return fmt.Errorf("find %s on host %s: %w", w.HostVeth(), w.Host, err)
	}
	err = inNetNS(l.NetNSPath(w.Host), func() error {
		// Proxy ARP answers after a random delay of up to proxy_delay
		// (0.8 s by default): Calico sets it to 0 on its host-side veths,
		// or a workload's first packets wait for the gateway's address.
		if err := os.WriteFile("/proc/sys/net/ipv4/neigh/"+w.HostVeth()+"/proxy_delay", []byte("0\n"), 0o644); err != nil {
			return err
		}
		return os.WriteFile("/proc/sys/net/ipv4/conf/"+w.HostVeth()+"/proxy_arp", []byte("1\n"), 0o644)
	})
	if err != nil {
		return fmt.Errorf("enable proxy_arp on %s: %w", w.HostVeth(), err)
	}
	if err := hh.LinkSetUp(hv); err != nil {
		return fmt.Errorf("set %s up on host %s: %w", w.HostVeth(), w.Host, err)
	}
	r := &netlink.Route{LinkIndex: hv.Attrs().Index, Dst: ipNet(addr), Scope: netlink.SCOPE_LINK, Protocol: unix.RTPROT_STATIC}
	if err := hh.RouteAdd(r); err != nil {
		return fmt.Errorf("add route %s dev %s on host %s: %w", addr, w.HostVeth(), w.Host, err)
	}
	l.log.Info("workload added", "workload", w.Name, "host", w.Host, "addr", w.Addr)
	return nil
}

// openNS opens the namespace bound at path.
func openNS(path string) (netns.NsHandle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return netns.None(), fmt.Errorf("open netns %s: %w", path, err)
	}
	return ns, nil
}
