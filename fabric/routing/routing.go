// Package routing keeps the kernel's main routing table holding exactly the
// routes weft wants, and watches the kernel for drift.
//
// Data flow: the planner's fabric.Plan.Routes go to [Applier.Apply], which
// reads weft's routes back through a [Kernel] (only routes whose protocol is
// [fabric.RouteProtocol]), diffs them against the wanted set, replaces what
// is missing or different and then deletes what is stale. weft recognises
// its routes by that protocol number alone, so a restarted agent converges
// without memory and never touches a route somebody else made. [Watch]
// turns netlink route, neighbour and link events into a coalesced drift
// signal; the reconciler answers it with another Apply, which is cheap when
// nothing changed (one dump, no mutating call).
package routing

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/weft-net/weft/fabric"
)

// Kernel is the seam between the applier and the kernel's main routing
// table. Every method blocks until the kernel has answered, is safe for
// concurrent use, and sees or changes only routes whose protocol is
// fabric.RouteProtocol in the main table: a route of another protocol is
// never listed, replaced or deleted. A Kernel holds at most one weft route
// per destination prefix, the key of every method.
type Kernel interface {
	// RouteList returns weft's routes of the main table, IPv4 and IPv6, in
	// no particular order. A route whose device vanished while listing is
	// still returned, with an empty Dev, so it can be deleted. The caller
	// owns the returned slice.
	RouteList() ([]fabric.Route, error)
	// RouteReplace creates weft's route to r.Dst, or replaces weft's route
	// to r.Dst with r. It is idempotent. When a route of another protocol
	// holds r.Dst (same table and metric), it changes nothing and returns
	// an error wrapping unix.EEXIST.
	RouteReplace(r fabric.Route) error
	// RouteDel deletes weft's route to r.Dst (r as RouteList returned it).
	// When there is no such weft route it returns an error wrapping
	// unix.ESRCH, as the kernel does.
	RouteDel(r fabric.Route) error
}

// Format renders r in `ip route` syntax without the protocol, as in
// "10.244.5.0/24 via 198.18.0.2 dev eth0 onlink mtu 1450" or
// "blackhole 10.244.1.0/24", for logs, errors and listings.
func Format(r fabric.Route) string {
	var b strings.Builder
	if r.Blackhole {
		b.WriteString("blackhole ")
	}
	b.WriteString(r.Dst.String())
	if r.Via.IsValid() {
		b.WriteString(" via " + r.Via.String())
	}
	if r.Dev != "" {
		b.WriteString(" dev " + r.Dev)
	}
	if r.OnLink {
		b.WriteString(" onlink")
	}
	if r.MTU != 0 {
		b.WriteString(" mtu " + strconv.Itoa(r.MTU))
	}
	return b.String()
}

// Compare orders routes by destination (IPv4 before IPv6, then address,
// then prefix length) and then by their rendering, so that sorted route
// lists are stable. It returns -1, 0 or +1.
func Compare(a, b fabric.Route) int {
	if c := comparePrefix(a.Dst, b.Dst); c != 0 {
		return c
	}
	return strings.Compare(Format(a), Format(b))
}

// comparePrefix orders prefixes by address, then by length.
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	switch {
	case a.Bits() < b.Bits():
		return -1
	case a.Bits() > b.Bits():
		return 1
	}
	return 0
}

// validate reports what is wrong with the wanted route want[i], naming the
// field and its value, or nil. A route the kernel would store differently
// from how it was asked (a host part in Dst, a mapped IPv4 gateway) would
// never compare equal on read-back and be replaced on every pass, so those
// are refused here.
func validate(i int, r fabric.Route) error {
	field := func(name string) string { return fmt.Sprintf("want[%d].%s", i, name) }
	switch {
	case !r.Dst.IsValid():
		return fmt.Errorf("%s %s: not a valid prefix", field("Dst"), r.Dst)
	case r.Dst.Addr().Zone() != "":
		return fmt.Errorf("%s %s: has a zone", field("Dst"), r.Dst)
	case r.Dst != r.Dst.Masked():
		return fmt.Errorf("%s %s: host bits set (the network is %s)", field("Dst"), r.Dst, r.Dst.Masked())
	case r.MTU < 0:
		return fmt.Errorf("%s %d: negative", field("MTU"), r.MTU)
	}
	if r.Blackhole {
		switch {
		case r.Via.IsValid():
			return fmt.Errorf("%s %s: a blackhole route has no next hop", field("Via"), r.Via)
		case r.Dev != "":
			return fmt.Errorf("%s %q: a blackhole route has no device", field("Dev"), r.Dev)
		case r.OnLink:
			return fmt.Errorf("%s true: a blackhole route has no next hop", field("OnLink"))
		}
		return nil
	}
	if r.Via.IsValid() && r.Via.Is4() != r.Dst.Addr().Is4() {
		return fmt.Errorf("%s %s: not the family of Dst %s", field("Via"), r.Via, r.Dst)
	}
	switch {
	case r.Dev == "" && !r.Via.IsValid():
		return fmt.Errorf("%s %s: needs Dev, Via or Blackhole", field("Dst"), r.Dst)
	case r.OnLink && (r.Dev == "" || !r.Via.IsValid()):
		return fmt.Errorf("%s true: needs both Dev (%q) and Via (%s)", field("OnLink"), r.Dev, r.Via)
	}
	return nil
}
