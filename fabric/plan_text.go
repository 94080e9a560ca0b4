package fabric

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// Text forms of the plan, for golden files, logs and `weft routes`. Routes,
// neighbours and FDB entries read as `ip route`, `ip neigh` and `bridge fdb`
// print them.

// String renders p as readable text, one section per part (peers, routes,
// vxlan, neigh, fdb, masquerade), one line per item, in the Plan's order.
// Equal plans render as equal text.
func (p Plan) String() string {
	var b strings.Builder
	b.WriteString("# peers\n")
	for _, pp := range p.Peers {
		b.WriteString(pp.String())
		b.WriteByte('\n')
	}
	b.WriteString("# routes\n")
	for _, r := range p.Routes {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	b.WriteString("# vxlan\n")
	if p.VXLAN != nil {
		b.WriteString(p.VXLAN.String())
		b.WriteByte('\n')
	}
	b.WriteString("# neigh\n")
	for _, n := range p.Neighbors {
		b.WriteString(n.String())
		b.WriteByte('\n')
	}
	b.WriteString("# fdb\n")
	for _, f := range p.FDB {
		b.WriteString(f.String())
		b.WriteByte('\n')
	}
	b.WriteString("# masquerade\n")
	if p.Masquerade.IsValid() {
		fmt.Fprintf(&b, "from %s to !%s\n", p.Masquerade, p.Masquerade)
	}
	if p.WireGuard != nil || len(p.WireGuardPeers) > 0 {
		b.WriteString("# wireguard\n")
		if d := p.WireGuard; d != nil {
			fmt.Fprintf(&b, "%s listen-port %d mtu %d\n", d.Name, d.Port, d.MTU)
		}
		for _, wp := range p.WireGuardPeers {
			b.WriteString(wp.String())
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// String renders wp as `wg show` would, on one line: name, key, endpoint,
// allowed IPs and keepalive.
func (wp WireGuardPeer) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "peer %s %s", wp.Name, base64.StdEncoding.EncodeToString(wp.PublicKey))
	if wp.Endpoint.IsValid() {
		fmt.Fprintf(&b, " endpoint %s", wp.Endpoint)
	} else {
		b.WriteString(" endpoint (learnt)")
	}
	ips := make([]string, len(wp.AllowedIPs))
	for i, a := range wp.AllowedIPs {
		ips[i] = a.String()
	}
	fmt.Fprintf(&b, " allowed-ips %s", strings.Join(ips, ","))
	if wp.Keepalive > 0 {
		fmt.Fprintf(&b, " keepalive %s", wp.Keepalive)
	}
	return b.String()
}

// String renders pp on one line: name, path, next hop, device, remote
// underlay address (when it is not the next hop), MTU and the reason, e.g.
// "h2 direct via 198.18.1.3 dev eth0 mtu 1500 (same L2 segment)".
func (pp PeerPlan) String() string {
	var b strings.Builder
	b.WriteString(pp.Name)
	b.WriteByte(' ')
	b.WriteString(string(pp.Path))
	if pp.Via.IsValid() {
		fmt.Fprintf(&b, " via %s", pp.Via)
	}
	if pp.Dev != "" {
		fmt.Fprintf(&b, " dev %s", pp.Dev)
	}
	if pp.Remote.IsValid() && pp.Remote != pp.Via {
		fmt.Fprintf(&b, " remote %s", pp.Remote)
	}
	if pp.MTU > 0 {
		fmt.Fprintf(&b, " mtu %d", pp.MTU)
	}
	if pp.Reason != "" {
		fmt.Fprintf(&b, " (%s)", pp.Reason)
	}
	return b.String()
}

// String renders r as `ip route` prints it (with the protocol every weft
// route carries), e.g. "10.244.5.0/24 via 10.244.5.0 dev weft.vxlan onlink
// proto 87" or "blackhole 10.244.1.0/24 proto 87".
func (r Route) String() string {
	var b strings.Builder
	if r.Blackhole {
		b.WriteString("blackhole ")
	}
	b.WriteString(r.Dst.String())
	switch {
	case r.Via.IsValid() && r.Dst.Addr().Is4() && r.Via.Is6():
		// An IPv4 route via an IPv6 next hop (RTA_VIA, Linux 5.2+).
		fmt.Fprintf(&b, " via inet6 %s", r.Via)
	case r.Via.IsValid() && r.Dst.Addr().Is6() && r.Via.Is4():
		fmt.Fprintf(&b, " via inet %s", r.Via)
	case r.Via.IsValid():
		fmt.Fprintf(&b, " via %s", r.Via)
	}
	if r.Dev != "" {
		fmt.Fprintf(&b, " dev %s", r.Dev)
	}
	if r.OnLink {
		b.WriteString(" onlink")
	}
	fmt.Fprintf(&b, " proto %d", RouteProtocol)
	if r.MTU > 0 {
		fmt.Fprintf(&b, " mtu %d", r.MTU)
	}
	return b.String()
}

// String renders d as one line in the words of `ip link add ... type
// vxlan`, followed by its MTU, MAC and VTEP address, e.g. "weft.vxlan vxlan
// id 1 local 198.18.1.2 dev eth0 dstport 4789 nolearning mtu 1450 address
// 0a:...:01 addr 10.244.1.0/32".
func (d VXLANDevice) String() string {
	return fmt.Sprintf("%s vxlan id %d local %s dev %s dstport %d nolearning mtu %d address %s addr %s",
		d.Name, d.VNI, d.Local, d.Dev, d.Port, d.MTU, d.MAC, d.Addr)
}

// String renders n as `ip neigh` prints a static entry, e.g.
// "10.244.3.0 dev weft.vxlan lladdr 0a:...:03 PERMANENT".
func (n Neighbor) String() string {
	return fmt.Sprintf("%s dev %s lladdr %s PERMANENT", n.IP, n.Dev, n.MAC)
}

// String renders f as `bridge fdb` prints a static VXLAN entry, e.g.
// "0a:...:03 dev weft.vxlan dst 198.18.2.2 self permanent".
func (f FDBEntry) String() string {
	return fmt.Sprintf("%s dev %s dst %s self permanent", f.MAC, f.Dev, f.Dst)
}
