package netlab

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// LabRange returns the only address range lab segments may use:
// 198.18.0.0/15, set aside for benchmark networks (RFC 2544), so lab addresses
// never clash with a real network.
func LabRange() netip.Prefix { return netip.MustParsePrefix("198.18.0.0/15") }

const (
	// maxNodeName keeps the switch-side port name "<node>.<i>" within the
	// kernel's 15-byte interface name limit (IFNAMSIZ-1) with up to two digits.
	maxNodeName = 12
	// maxSegmentName is IFNAMSIZ-1: the segment name is the bridge's name.
	maxSegmentName = 15
	// maxRouterSegments keeps the interface index within two digits.
	maxRouterSegments = 100
	// maxSegmentBits leaves room for at least two usable addresses next to the
	// network and broadcast addresses.
	maxSegmentBits = 30
	// switchNode is the node-name suffix of the switch namespace, so no host or
	// router may use it.
	switchNode = "sw"
)

// Segment is one L2 segment: a bridge in the switch namespace. Prefix must be
// an IPv4 network (masked) inside [LabRange], at most /30.
type Segment struct {
	Name   string
	Prefix netip.Prefix
}

// Host is an end host with one interface on Segment. Addr is optional: when
// zero it is assigned from the segment prefix after the router addresses.
type Host struct {
	Name    string
	Segment string
	Addr    netip.Addr
}

// Router has one interface per entry of Segments, forwards IPv4, and takes
// the first free addresses of each segment (.1 for the first router on a
// segment, unless a host claimed it explicitly).
type Router struct {
	Name     string
	Segments []string
	// NAT lists the router's inside segments: it masquerades what leaves
	// them through its other interfaces and drops connections opened from
	// outside, as a home or cloud NAT gateway does. Other routers get no
	// route to them: hosts inside are reachable only through what they open.
	NAT []string
	// Forward lists ports (TCP and UDP) the NAT router forwards from its
	// outside address to a host inside, as a port forward does.
	Forward []Forward
}

// Forward is a port forward on a NAT router.
type Forward struct {
	Port int
	Host string
}

// Topology declares a lab. Host and router names share one name space (each
// becomes a namespace); segment names are separate.
type Topology struct {
	Segments []Segment
	Routers  []Router
	Hosts    []Host
}

// DefaultTopology returns the lab of DESIGN.md: region 1 has two L2 segments
// (r1a, r1b) joined by router rt1; rt1 and rt2 share the WAN segment; region
// 2 has segment r2a behind rt2, and behind NAT gateway nat2 on r2a a private
// segment r2n. Hosts h1 and h2 are on r1a, h3 on r1b, h4 on r2a, and h5 on
// r2n, behind the NAT: nat2 forwards only the gossip port (7946) to it, so
// the other hosts reach it over tunnels it opens. Each call returns fresh
// slices owned by the caller.
func DefaultTopology() Topology {
	return Topology{
		Segments: []Segment{
			{Name: "r1a", Prefix: netip.MustParsePrefix("198.18.1.0/24")},
			{Name: "r1b", Prefix: netip.MustParsePrefix("198.18.2.0/24")},
			{Name: "wan", Prefix: netip.MustParsePrefix("198.18.0.0/24")},
			{Name: "r2a", Prefix: netip.MustParsePrefix("198.19.1.0/24")},
			{Name: "r2n", Prefix: netip.MustParsePrefix("198.19.2.0/24")},
		},
		Routers: []Router{
			{Name: "rt1", Segments: []string{"r1a", "r1b", "wan"}},
			{Name: "rt2", Segments: []string{"wan", "r2a"}},
			{Name: "nat2", Segments: []string{"r2a", "r2n"}, NAT: []string{"r2n"}, Forward: []Forward{{Port: 7946, Host: "h5"}}},
		},
		Hosts: []Host{
			{Name: "h1", Segment: "r1a"},
			{Name: "h2", Segment: "r1a"},
			{Name: "h3", Segment: "r1b"},
			{Name: "h4", Segment: "r2a"},
			{Name: "h5", Segment: "r2n"},
		},
	}
}

// Validate reports every problem of t, joined, each naming the field and the
// value: bad or duplicate names, prefixes outside [LabRange] or overlapping,
// unknown segments, host addresses outside their segment or in use twice. It
// does not check that free addresses suffice; [Topology.Plan] does.
func (t Topology) Validate() error {
	var errs []error
	segs := make(map[string]netip.Prefix, len(t.Segments))
	var good []int // indexes of segments with a usable prefix
	for i, s := range t.Segments {
		field := fmt.Sprintf("segments[%d]", i)
		if err := checkName(field+".name", s.Name, maxSegmentName); err != nil {
			errs = append(errs, err)
		} else if s.Name == "lo" {
			errs = append(errs, fmt.Errorf("%s.name %q: reserved (loopback of the switch namespace)", field, s.Name))
		} else if _, dup := segs[s.Name]; dup {
			errs = append(errs, fmt.Errorf("%s.name %q: duplicate segment name", field, s.Name))
		}
		if err := checkPrefix(field+".prefix", s.Prefix); err != nil {
			errs = append(errs, err)
		} else {
			for _, j := range good {
				if o := t.Segments[j]; o.Prefix.Overlaps(s.Prefix) {
					errs = append(errs, fmt.Errorf("%s.prefix %s: overlaps segments[%d] %q (%s)", field, s.Prefix, j, o.Name, o.Prefix))
				}
			}
			good = append(good, i)
		}
		if _, dup := segs[s.Name]; !dup {
			segs[s.Name] = s.Prefix
		}
	}

	nodes := make(map[string]string, len(t.Routers)+len(t.Hosts))
	checkNode := func(field, name string) {
		if err := checkName(field, name, maxNodeName); err != nil {
			errs = append(errs, err)
			return
		}
		if name == switchNode {
			errs = append(errs, fmt.Errorf("%s %q: reserved for the switch namespace", field, name))
			return
		}
		if prev, dup := nodes[name]; dup {
			errs = append(errs, fmt.Errorf("%s %q: duplicate node name (also %s)", field, name, prev))
			return
		}
		nodes[name] = field
	}

	for i, r := range t.Routers {
		field := fmt.Sprintf("routers[%d]", i)
		checkNode(field+".name", r.Name)
		if len(r.Segments) == 0 {
			errs = append(errs, fmt.Errorf("%s.segments: router %q has no segment", field, r.Name))
		}
		if len(r.Segments) > maxRouterSegments {
			errs = append(errs, fmt.Errorf("%s.segments: router %q has %d segments, at most %d", field, r.Name, len(r.Segments), maxRouterSegments))
		}
		seen := make(map[string]bool, len(r.Segments))
		for j, s := range r.Segments {
			sf := fmt.Sprintf("%s.segments[%d]", field, j)
			if _, ok := segs[s]; !ok {
				errs = append(errs, fmt.Errorf("%s %q: unknown segment", sf, s))
			}
			if seen[s] {
				errs = append(errs, fmt.Errorf("%s %q: router %q is on this segment twice", sf, s, r.Name))
			}
			seen[s] = true
		}
		for j, s := range r.NAT {
			if !seen[s] {
				errs = append(errs, fmt.Errorf("%s.nat[%d] %q: not one of the router's segments", field, j, s))
			}
		}
		for j, f := range r.Forward {
			ff := fmt.Sprintf("%s.forward[%d]", field, j)
			if f.Port < 1 || f.Port > 65535 {
				errs = append(errs, fmt.Errorf("%s.port %d: want 1 to 65535", ff, f.Port))
			}
			inside := false
			for _, h := range t.Hosts {
				if h.Name == f.Host && slices.Contains(r.NAT, h.Segment) {
					inside = true
				}
			}
			if !inside {
				errs = append(errs, fmt.Errorf("%s.host %q: not a host on one of the router's NAT segments", ff, f.Host))
			}
		}
		if len(r.NAT) > 0 && len(r.NAT) >= len(r.Segments) {
			errs = append(errs, fmt.Errorf("%s.nat: router %q needs at least one outside segment", field, r.Name))
		}
	}

	addrs := make(map[netip.Addr]string, len(t.Hosts))
	for i, h := range t.Hosts {
		field := fmt.Sprintf("hosts[%d]", i)
		checkNode(field+".name", h.Name)
		p, ok := segs[h.Segment]
		if !ok {
			errs = append(errs, fmt.Errorf("%s.segment %q: unknown segment", field, h.Segment))
		}
		if !h.Addr.IsValid() {
			continue
		}
		af := field + ".addr"
		switch {
		case !ok || !p.IsValid():
			// The segment error is enough.
		case !p.Contains(h.Addr):
			errs = append(errs, fmt.Errorf("%s %s: outside segment %q (%s)", af, h.Addr, h.Segment, p))
		case h.Addr == p.Addr():
			errs = append(errs, fmt.Errorf("%s %s: network address of segment %q", af, h.Addr, h.Segment))
		case h.Addr == lastAddr(p):
			errs = append(errs, fmt.Errorf("%s %s: broadcast address of segment %q", af, h.Addr, h.Segment))
		}
		if prev, dup := addrs[h.Addr]; dup {
			errs = append(errs, fmt.Errorf("%s %s: address already used by %s", af, h.Addr, prev))
		} else {
			addrs[h.Addr] = field
		}
	}
	return errors.Join(errs...)
}

// checkName reports whether name is a usable name of at most max bytes made of
// ASCII letters, digits, '-' and '_' (no '.', which the switch port names
// use, and nothing the kernel rejects in an interface name).
func checkName(field, name string, max int) error {
	if name == "" {
		return fmt.Errorf("%s: empty name", field)
	}
	if len(name) > max {
		return fmt.Errorf("%s %q: longer than %d bytes", field, name, max)
	}
	for _, c := range name {
		if !isNameChar(c) {
			return fmt.Errorf("%s %q: character %q not allowed (use letters, digits, '-', '_')", field, name, c)
		}
	}
	return nil
}

func isNameChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func checkPrefix(field string, p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return fmt.Errorf("%s: missing or not a valid prefix", field)
	case !p.Addr().Is4():
		return fmt.Errorf("%s %s: not IPv4", field, p)
	case p != p.Masked():
		return fmt.Errorf("%s %s: host bits set (want %s)", field, p, p.Masked())
	case p.Bits() < LabRange().Bits() || !LabRange().Contains(p.Addr()):
		return fmt.Errorf("%s %s: outside the lab range %s", field, p, LabRange())
	case p.Bits() > maxSegmentBits:
		return fmt.Errorf("%s %s: too small, at most /%d", field, p, maxSegmentBits)
	}
	return nil
}

// lastAddr returns the broadcast address of the IPv4 prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
