// Package routingtest provides an in-memory routing.Kernel for tests.
package routingtest

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/weft-net/weft/fabric"
	"github.com/weft-net/weft/fabric/routing"
)

// The kinds of Kernel calls, for FailNext and Calls.
const (
	OpRouteList    = "RouteList"
	OpRouteReplace = "RouteReplace"
	OpRouteDel     = "RouteDel"
)

var _ routing.Kernel = (*Kernel)(nil)

// entry is one route in the table with the protocol that made it.
type entry struct {
	route    fabric.Route
	protocol int
}

// Kernel is an in-memory main routing table that holds weft's routes and
// "foreign" routes of other protocols, one route per destination prefix, as
// the kernel's with a single metric. It implements routing.Kernel with the
// real one's semantics (foreign routes are never listed, replaced or
// deleted; a missing route is unix.ESRCH), counts every call by kind, and
// can fail the next call of a kind. The zero value is not usable: call
// NewKernel. Safe for concurrent use.
type Kernel struct {
	mu     sync.Mutex
	routes map[netip.Prefix]entry
	calls  map[string]int
	fail   map[string]error
}

// NewKernel returns an empty table.
func NewKernel() *Kernel {
	return &Kernel{routes: map[netip.Prefix]entry{}, calls: map[string]int{}, fail: map[string]error{}}
}

// AddRoute puts r into the table with the given protocol (fabric.RouteProtocol
// for weft's, anything else for a foreign route), replacing what was at
// r.Dst, as somebody else would; it counts as no call.
func (k *Kernel) AddRoute(r fabric.Route, protocol int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.routes[r.Dst] = entry{route: r, protocol: protocol}
}

// DeleteRoute removes whatever route is at dst, as somebody else would; it
// counts as no call.
func (k *Kernel) DeleteRoute(dst netip.Prefix) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.routes, dst)
}

// FailNext makes the next call of kind (OpRouteList, OpRouteReplace or
// OpRouteDel) return err and change nothing; the call is still counted. It
// panics on an unknown kind, a mistake in the test.
func (k *Kernel) FailNext(kind string, err error) {
	switch kind {
	case OpRouteList, OpRouteReplace, OpRouteDel:
	default:
		panic(fmt.Sprintf("routingtest: FailNext of unknown call kind %q", kind))
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.fail[kind] = err
}

// Calls returns how many calls of kind were made since the last ResetCalls.
func (k *Kernel) Calls(kind string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls[kind]
}

// Mutations returns how many RouteReplace and RouteDel calls were made since
// the last ResetCalls, failed ones included.
func (k *Kernel) Mutations() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls[OpRouteReplace] + k.calls[OpRouteDel]
}

// ResetCalls sets every call count to zero.
func (k *Kernel) ResetCalls() {
	k.mu.Lock()
	defer k.mu.Unlock()
	clear(k.calls)
}

// String renders the whole table, foreign routes included, one route per
// line in `ip route` syntax followed by its protocol, sorted by destination:
//
//	blackhole 10.244.1.0/24 proto 87
//	10.244.5.0/24 via 198.18.0.2 dev eth0 proto 87
//	10.244.9.0/24 via 198.18.0.3 dev eth0 proto static
func (k *Kernel) String() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	es := slices.Collect(maps.Values(k.routes))
	slices.SortFunc(es, func(a, b entry) int { return routing.Compare(a.route, b.route) })
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "%s proto %s\n", routing.Format(e.route), protoName(e.protocol))
	}
	return b.String()
}

// protoName names a route protocol as iproute2 does.
func protoName(p int) string {
	switch p {
	case unix.RTPROT_KERNEL:
		return "kernel"
	case unix.RTPROT_BOOT:
		return "boot"
	case unix.RTPROT_STATIC:
		return "static"
	case unix.RTPROT_DHCP:
		return "dhcp"
	}
	return fmt.Sprint(p)
}

// callLocked counts a call of kind and returns the failure set for it, if any.
// The caller holds k.mu.
func (k *Kernel) callLocked(kind string) error {
	k.calls[kind]++
	err := k.fail[kind]
	delete(k.fail, kind)
	return err
}

// RouteList implements routing.Kernel.
func (k *Kernel) RouteList() ([]fabric.Route, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.callLocked(OpRouteList); err != nil {
		return nil, err
	}
	var rs []fabric.Route
	for _, e := range k.routes {
		if e.protocol == fabric.RouteProtocol {
			rs = append(rs, e.route)
		}
	}
	return rs, nil
}

// RouteReplace implements routing.Kernel.
func (k *Kernel) RouteReplace(r fabric.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.callLocked(OpRouteReplace); err != nil {
		return err
	}
	if e, ok := k.routes[r.Dst]; ok && e.protocol != fabric.RouteProtocol {
		return fmt.Errorf("route to %s has protocol %s: %w", r.Dst, protoName(e.protocol), unix.EEXIST)
	}
	k.routes[r.Dst] = entry{route: r, protocol: fabric.RouteProtocol}
	return nil
}

// RouteDel implements routing.Kernel.
func (k *Kernel) RouteDel(r fabric.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.callLocked(OpRouteDel); err != nil {
		return err
	}
	if e, ok := k.routes[r.Dst]; !ok || e.protocol != fabric.RouteProtocol {
		return fmt.Errorf("delete route to %s: %w", r.Dst, unix.ESRCH)
	}
	delete(k.routes, r.Dst)
	return nil
}
