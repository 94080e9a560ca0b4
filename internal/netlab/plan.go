package netlab

import (
	"fmt"
	"net/netip"
	"strings"
)

// Plan is what [Build] makes of a [Topology]: every node's interfaces,
// addresses and static routes. It is plain data, computed without touching the
// kernel.
type Plan struct {
	// Segments are the topology's segments, in topology order.
	Segments []Segment
	// Nodes holds the routers in topology order, then the hosts.
	Nodes []Node
}

// Node is one host or router of a [Plan].
type Node struct {
	Name string
	// Router reports whether the node forwards (net.ipv4.ip_forward=1).
	Router bool
	// Ifaces are in the order of the node's segments.
	Ifaces []Iface
	// Routes are the static routes besides the connected ones, in segment
	// order (a host has at most a default route).
	Routes []Route
	// NAT holds a NAT router's inside interfaces (see Router.NAT).
	NAT []Iface
}

// Iface is one veth pair joining a node to a segment.
type Iface struct {
	// Name is the node-side end: "eth0", "eth1", ...
	Name string
	// Port is the switch-side end, attached to the segment's bridge:
	// "<node>.<index>".
	Port    string
	Segment string
	// Addr is the node's address with the segment's prefix length.
	Addr netip.Prefix
}

// Route is a static route via a neighbour on a connected segment. Dst is
// 0.0.0.0/0 for a default route.
type Route struct {
	Dst netip.Prefix
	Via netip.Addr
	Dev string
}

// String renders r as `ip route` shows it, e.g.
// "198.18.2.0/24 via 198.18.0.1 dev eth0" or "default via 198.18.1.1 dev eth0".
func (r Route) String() string {
	dst := r.Dst.String()
	if r.Dst.Bits() == 0 {
		dst = "default"
	}
	return fmt.Sprintf("%s via %s dev %s", dst, r.Via, r.Dev)
}

// Node returns the node called name and reports whether it exists.
func (p Plan) Node(name string) (Node, bool) {
	for _, n := range p.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// Iface returns n's interface on segment and reports whether it exists.
func (n Node) Iface(segment string) (Iface, bool) {
	for _, i := range n.Ifaces {
		if i.Segment == segment {
			return i, true
		}
	}
	return Iface{}, false
}

// String renders p one line per interface and route, in node order, e.g.
// "rt1 eth0 198.18.1.1/24 r1a" and "h1 route default via 198.18.1.1 dev eth0".
func (p Plan) String() string {
	var b strings.Builder
	for _, n := range p.Nodes {
		for _, i := range n.Ifaces {
			fmt.Fprintf(&b, "%s %s %s %s\n", n.Name, i.Name, i.Addr, i.Segment)
		}
		for _, r := range n.Routes {
			fmt.Fprintf(&b, "%s route %s\n", n.Name, r)
		}
	}
	return b.String()
}

// Plan validates t and computes its plan. It is pure and deterministic.
//
// Addresses: explicit host addresses are reserved first; then each router, in
// topology order, takes the first free address of each of its segments; then
// each host without an address takes the next free one of its segment.
//
// Routes: a host gets a default route via the first router on its segment,
// if any. A router gets a route to every segment it is not on but can reach,
// along a shortest path in the graph of routers joined by shared segments,
// via the first router of that path on the segment they share. Ties go to the
// neighbour found first: the router's segments in its own order, and the
// routers on each segment in topology order.
func (t Topology) Plan() (Plan, error) {
	if err := t.Validate(); err != nil {
		return Plan{}, fmt.Errorf("validate topology: %w", err)
	}
	alloc := make(map[string]*allocator, len(t.Segments))
	for _, s := range t.Segments {
		alloc[s.Name] = newAllocator(s.Prefix)
	}
	for _, h := range t.Hosts {
		if h.Addr.IsValid() {
			alloc[h.Segment].used[h.Addr] = true
		}
	}
	prefixOf := func(seg string) netip.Prefix { return alloc[seg].prefix }

	plan := Plan{Segments: append([]Segment(nil), t.Segments...)}
	onSeg := make(map[string][]int) // segment -> router indexes, topology order
	for ri, r := range t.Routers {
		n := Node{Name: r.Name, Router: true}
		for i, s := range r.Segments {
			a, ok := alloc[s].next()
			if !ok {
				return Plan{}, fmt.Errorf("routers[%d].segments[%d] %q: no free address left in %s", ri, i, s, prefixOf(s))
			}
			n.Ifaces = append(n.Ifaces, newIface(r.Name, i, s, netip.PrefixFrom(a, prefixOf(s).Bits())))
			onSeg[s] = append(onSeg[s], ri)
		}
		for _, s := range r.NAT {
			i, _ := n.Iface(s)
			n.NAT = append(n.NAT, i)
		}
		plan.Nodes = append(plan.Nodes, n)
	}
	// Routers come first in plan.Nodes, so a router's index is its node's.
	addrOn := func(ri int, seg string) Iface {
		i, _ := plan.Nodes[ri].Iface(seg)
		return i
	}

	for hi, h := range t.Hosts {
		a := h.Addr
		if !a.IsValid() {
			var ok bool
			if a, ok = alloc[h.Segment].next(); !ok {
				return Plan{}, fmt.Errorf("hosts[%d].segment %q: no free address left in %s", hi, h.Segment, prefixOf(h.Segment))
			}
		}
		iface := newIface(h.Name, 0, h.Segment, netip.PrefixFrom(a, prefixOf(h.Segment).Bits()))
		n := Node{Name: h.Name, Ifaces: []Iface{iface}}
		if rs := onSeg[h.Segment]; len(rs) > 0 {
			n.Routes = []Route{{Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0), Via: addrOn(rs[0], h.Segment).Addr.Addr(), Dev: iface.Name}}
		}
		plan.Nodes = append(plan.Nodes, n)
	}

	for ri := range t.Routers {
		plan.Nodes[ri].Routes = routerRoutes(t, ri, onSeg, addrOn)
	}
	return plan, nil
}

// hop is the first step from a router towards another router.
type hop struct {
	via netip.Addr
	dev string
}

// routerRoutes computes router src's routes by breadth-first search over the
// routers, visiting segments and routers in topology order so that ties are
// broken deterministically.
func routerRoutes(t Topology, src int, onSeg map[string][]int, addrOn func(int, string) Iface) []Route {
	first := map[int]hop{src: {}}
	order := []int{src}
	for q := 0; q < len(order); q++ {
		cur := order[q]
		for _, s := range t.Routers[cur].Segments {
			for _, nb := range onSeg[s] {
				if _, seen := first[nb]; seen {
					continue
				}
				if cur == src {
					first[nb] = hop{via: addrOn(nb, s).Addr.Addr(), dev: addrOn(src, s).Name}
				} else {
					first[nb] = first[cur]
				}
				order = append(order, nb)
			}
		}
	}

	direct := make(map[string]bool, len(t.Routers[src].Segments))
	for _, s := range t.Routers[src].Segments {
		direct[s] = true
	}
	// Segments behind another router's NAT are private: no route to them.
	for ri, r := range t.Routers {
		for _, s := range r.NAT {
			if ri != src {
				direct[s] = true
			}
		}
	}
	var routes []Route
	for _, s := range t.Segments {
		if direct[s.Name] {
			continue
		}
		// order is by non-decreasing distance: the first router found on s is
		// the nearest.
		for _, r := range order[1:] {
			if isOn(t.Routers[r], s.Name) {
				h := first[r]
				routes = append(routes, Route{Dst: s.Prefix, Via: h.via, Dev: h.dev})
				break
			}
		}
	}
	return routes
}

// isOn reports whether router r has an interface on segment seg.
func isOn(r Router, seg string) bool {
	for _, s := range r.Segments {
		if s == seg {
			return true
		}
	}
	return false
}

func newIface(node string, i int, seg string, addr netip.Prefix) Iface {
	return Iface{
		Name:    fmt.Sprintf("eth%d", i),
		Port:    fmt.Sprintf("%s.%d", node, i),
		Segment: seg,
		Addr:    addr,
	}
}

// allocator hands out the free host addresses of one segment in order.
type allocator struct {
	prefix netip.Prefix
	cur    netip.Addr // last address handed out or skipped
	last   netip.Addr // broadcast address, never handed out
	used   map[netip.Addr]bool
}

func newAllocator(p netip.Prefix) *allocator {
	return &allocator{prefix: p, cur: p.Addr(), last: lastAddr(p), used: map[netip.Addr]bool{}}
}

// next returns the next free address and reports whether there was one.
func (a *allocator) next() (netip.Addr, bool) {
	for {
		a.cur = a.cur.Next()
		if !a.cur.IsValid() || a.cur.Compare(a.last) >= 0 {
			a.cur = a.last.Prev()
			return netip.Addr{}, false
		}
		if !a.used[a.cur] {
			a.used[a.cur] = true
			return a.cur, true
		}
	}
}
