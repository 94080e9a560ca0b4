package agent

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Underlay is what the agent learns about the interface that carries its
// gossip and tunnel traffic.
type Underlay struct {
	Interface string
	Addrs     []netip.Addr // global unicast addresses, IPv4 first
	// Prefixes are the same addresses with their prefix lengths: the
	// segments this node is on (a peer inside one is on-link).
	Prefixes []netip.Prefix
	MTU      int
}

// Host is the agent's view of the kernel at start: the seam that lets unit
// tests run without netlink. Methods are read-only and concurrency-safe.
type Host interface {
	// DefaultRouteInterface returns the name of the interface of the IPv4 default route.
	DefaultRouteInterface() (string, error)
	// Interface returns the addresses and MTU of the named interface.
	Interface(name string) (Underlay, error)
	// DefaultGateway returns the gateway of the IPv4 default route, or an
	// invalid address when there is none.
	DefaultGateway() netip.Addr
}

// netlinkHost is Host on the real kernel, in the agent's network namespace.
type netlinkHost struct{}

var _ Host = netlinkHost{}

func (netlinkHost) DefaultRouteInterface() (string, error) {
	routes, err := netlink.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return "", fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst != nil && r.Dst.IP != nil && !r.Dst.IP.IsUnspecified() {
			continue
		}
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		l, err := netlink.LinkByIndex(r.LinkIndex)
		if err != nil {
			return "", fmt.Errorf("look up link %d of the default route: %w", r.LinkIndex, err)
		}
		return l.Attrs().Name, nil
	}
	return "", errors.New("no IPv4 default route: set underlayInterface")
}

func (netlinkHost) DefaultGateway() netip.Addr {
	routes, err := netlink.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return netip.Addr{}
	}
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw != nil {
			if ones, _ := maskOf(r); ones == 0 {
				gw, _ := netip.AddrFromSlice(r.Gw)
				return gw.Unmap()
			}
		}
	}
	return netip.Addr{}
}

func maskOf(r netlink.Route) (int, int) {
	if r.Dst == nil {
		return 0, 32
	}
	return r.Dst.Mask.Size()
}

func (netlinkHost) Interface(name string) (Underlay, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return Underlay{}, fmt.Errorf("look up underlay interface %s: %w", name, err)
	}
	u := Underlay{Interface: name, MTU: l.Attrs().MTU}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		addrs, err := netlink.AddrList(l, fam)
		if err != nil {
			return Underlay{}, fmt.Errorf("list addresses of %s: %w", name, err)
		}
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok || !ip.Unmap().IsGlobalUnicast() {
				continue
			}
			u.Addrs = append(u.Addrs, ip.Unmap())
			ones, _ := a.Mask.Size()
			u.Prefixes = append(u.Prefixes, netip.PrefixFrom(ip.Unmap(), ones))
		}
	}
	return u, nil
}
