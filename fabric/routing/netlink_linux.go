package routing

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weft-net/weft/fabric"
)

// listAttempts bounds the retries of a route dump the kernel interrupted
// (NLM_F_DUMP_INTR: the table changed while it was being dumped).
const listAttempts = 5

// ipv6DefaultMetric is the metric the kernel gives an IPv6 route added with
// none (IP6_RT_PRIO_USER); IPv4 routes keep 0.
const ipv6DefaultMetric = 1024

// netlinkKernel is the Kernel of one network namespace, through netlink.
type netlinkKernel struct {
	h *netlink.Handle
}

// NewNetlinkKernel returns the Kernel of the network namespace h is bound
// to (netlink.NewHandleAt; netlink.NewHandle for the current one). It is a
// thin pass-through: one or two netlink requests per call, devices resolved
// by name on every call. h must stay open while the Kernel is used; it is
// safe for concurrent use as the handle is.
func NewNetlinkKernel(h *netlink.Handle) Kernel {
	return &netlinkKernel{h: h}
}

// RouteList implements Kernel. The kernel dumps every route; the handle
// keeps the main table's routes with weft's protocol.
func (k *netlinkKernel) RouteList() ([]fabric.Route, error) {
	filter := &netlink.Route{Protocol: fabric.RouteProtocol, Table: unix.RT_TABLE_MAIN}
	var nrs []netlink.Route
	var err error
	for range listAttempts {
		nrs, err = k.h.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("dump routes with protocol %d: %w", fabric.RouteProtocol, err)
	}
	names := map[int]string{}
	linkName := func(index int) string {
		if name, ok := names[index]; ok {
			return name
		}
		// A link that vanished since the dump leaves its route with no
		// Dev: it is still weft's, and still deletable by Dst.
		name := ""
		if l, err := k.h.LinkByIndex(index); err == nil {
			name = l.Attrs().Name
		}
		names[index] = name
		return name
	}
	routes := make([]fabric.Route, 0, len(nrs))
	for _, nr := range nrs {
		if r, ok := fromNetlink(nr, linkName); ok {
			routes = append(routes, r)
		}
	}
	return routes, nil
}

// RouteReplace implements Kernel. A bare NLM_F_REPLACE would overwrite
// whatever route has the same (table, dst, tos, metric), whoever made it, so
// it first tries an exclusive create and, when something is there, replaces
// it only if it is weft's.
func (k *netlinkKernel) RouteReplace(r fabric.Route) error {
	index, err := k.linkIndex(r.Dev)
	if err != nil {
		return err
	}
	nr := toNetlink(r, index)
	err = k.h.RouteAdd(&nr)
	if !errors.Is(err, unix.EEXIST) {
		if err != nil {
			return fmt.Errorf("add route: %w", err)
		}
		return nil
	}
	if err := k.checkNotForeign(r.Dst); err != nil {
		return err
	}
	nr = toNetlink(r, index)
	if err := k.h.RouteReplace(&nr); err != nil {
		return fmt.Errorf("replace route: %w", err)
	}
	return nil
}

// checkNotForeign returns an error wrapping unix.EEXIST when a route of
// another protocol holds dst in the main table at the metric weft's route
// would get.
func (k *netlinkKernel) checkNotForeign(dst netip.Prefix) error {
	family, metric := netlink.FAMILY_V4, 0
	if dst.Addr().Is6() {
		family, metric = netlink.FAMILY_V6, ipv6DefaultMetric
	}
	filter := &netlink.Route{Dst: prefixToIPNet(dst), Table: unix.RT_TABLE_MAIN}
	nrs, err := k.h.RouteListFiltered(family, filter, netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list routes to %s: %w", dst, err)
	}
	for _, nr := range nrs {
		if int(nr.Protocol) != fabric.RouteProtocol && nr.Priority == metric {
			return fmt.Errorf("route to %s has protocol %s: %w", dst, nr.Protocol, unix.EEXIST)
		}
	}
	return nil
}

// RouteDel implements Kernel. The kernel deletes only a route whose
// protocol, type, gateway and device match the request's when they are set
// (fib_table_delete, ip6_route_del), so setting weft's protocol makes the
// delete unable to hit another's route. Scope nowhere matches any scope.
func (k *netlinkKernel) RouteDel(r fabric.Route) error {
	index, err := k.linkIndex(r.Dev)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		index = 0 // the device went with its routes, or was renamed: match any
	} else if err != nil {
		return err
	}
	if r.Blackhole {
		index = 0 // IPv6 reports blackholes on lo; match any device
	}
	nr := toNetlink(r, index)
	nr.Scope = netlink.SCOPE_NOWHERE
	nr.MTU = 0 // with metrics set the kernel also requires them to match
	if err := k.h.RouteDel(&nr); err != nil {
		return fmt.Errorf("delete route: %w", err)
	}
	return nil
}

// linkIndex resolves a device name; "" is 0 (no device).
func (k *netlinkKernel) linkIndex(dev string) (int, error) {
	if dev == "" {
		return 0, nil
	}
	l, err := k.h.LinkByName(dev)
	if err != nil {
		return 0, fmt.Errorf("find link %s: %w", dev, err)
	}
	return l.Attrs().Index, nil
}

// toNetlink converts r to the netlink route weft installs, with the device
// already resolved to linkIndex (0 for none).
func toNetlink(r fabric.Route, linkIndex int) netlink.Route {
	nr := netlink.Route{
		Dst:       prefixToIPNet(r.Dst),
		LinkIndex: linkIndex,
		Protocol:  fabric.RouteProtocol,
		Table:     unix.RT_TABLE_MAIN,
		Type:      unix.RTN_UNICAST,
		Scope:     netlink.SCOPE_UNIVERSE,
		MTU:       r.MTU,
	}
	switch {
	case r.Blackhole:
		nr.Type = unix.RTN_BLACKHOLE
		nr.LinkIndex = 0
	case r.Via.IsValid():
		nr.Gw = net.IP(r.Via.AsSlice())
	case r.Dst.Addr().Is4():
		// A device route reaches its destinations directly: link scope,
		// as `ip route add ... dev X` makes it. IPv6 has no route scopes.
		nr.Scope = netlink.SCOPE_LINK
	}
	if r.OnLink {
		nr.Flags = int(netlink.FLAG_ONLINK)
	}
	return nr
}

// fromNetlink converts a route read from the kernel back, naming its device
// with linkName. It reports false for a route with no destination family
// weft knows (MPLS).
func fromNetlink(nr netlink.Route, linkName func(int) string) (fabric.Route, bool) {
	var r fabric.Route
	switch {
	case nr.Dst != nil:
		addr, ok := netip.AddrFromSlice(nr.Dst.IP)
		if !ok {
			return r, false
		}
		ones, _ := nr.Dst.Mask.Size()
		r.Dst = netip.PrefixFrom(addr.Unmap(), ones)
	case nr.Family == netlink.FAMILY_V4:
		r.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0) // default route
	case nr.Family == netlink.FAMILY_V6:
		r.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	default:
		return r, false
	}
	r.MTU = nr.MTU
	if nr.Type == unix.RTN_BLACKHOLE {
		// The kernel reports IPv6 blackholes on lo; weft's have no device.
		r.Blackhole = true
		return r, true
	}
	if via, ok := netip.AddrFromSlice(nr.Gw); ok {
		if r.Dst.Addr().Is4() {
			via = via.Unmap()
		}
		r.Via = via
	}
	if nr.LinkIndex > 0 {
		r.Dev = linkName(nr.LinkIndex)
	}
	r.OnLink = nr.Flags&int(netlink.FLAG_ONLINK) != 0
	return r, true
}

// prefixToIPNet converts a prefix to the *net.IPNet netlink wants.
func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
