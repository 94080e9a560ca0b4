package fabric

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Test helpers of the plan files carry a "plan" prefix so they do not clash
// with helpers of other files in this package.

// planHost is one host of the lab of DESIGN.md (netlab.DefaultTopology with
// lab.DefaultRegions): hN has underlay address addr on segment and subnet
// 10.244.N.0/24.
type planHost struct {
	name, addr, segment, region string
}

// planLab returns the lab's hosts: h1 and h2 on r1a, h3 on r1b (region r1,
// joined to r1a by a router), h4 and h5 on r2a (region r2, across the WAN).
func planLab() []planHost {
	return []planHost{
		{"h1", "198.18.1.2", "198.18.1.0/24", "r1"},
		{"h2", "198.18.1.3", "198.18.1.0/24", "r1"},
		{"h3", "198.18.2.2", "198.18.2.0/24", "r1"},
		{"h4", "198.19.1.2", "198.19.1.0/24", "r2"},
		{"h5", "198.19.1.3", "198.19.1.0/24", "r2"},
	}
}

func planLabHost(t testing.TB, name string) planHost {
	t.Helper()
	for _, h := range planLab() {
		if h.name == name {
			return h
		}
	}
	t.Fatalf("no lab host %q", name)
	return planHost{}
}

func planSubnet(name string) netip.Prefix {
	return netip.MustParsePrefix("10.244." + strings.TrimPrefix(name, "h") + ".0/24")
}

// planLocal returns lab host name as the local node.
func planLocal(t testing.TB, name string) Local {
	h := planLabHost(t, name)
	return Local{
		Name:         name,
		Subnets:      []netip.Prefix{planSubnet(name)},
		UnderlayDev:  "eth0",
		UnderlayAddr: netip.MustParseAddr(h.addr),
		UnderlayMTU:  1500,
		Connected:    []netip.Prefix{netip.MustParsePrefix(h.segment)},
		Location:     Location{Cloud: "lab", Region: h.region},
		VTEPMAC:      VTEPMAC(name),
	}
}

// planPeer returns lab host name as a peer, changed by each of mods.
func planPeer(t testing.TB, name string, mods ...func(*Peer)) Peer {
	h := planLabHost(t, name)
	p := Peer{
		Name:     name,
		Underlay: []netip.Addr{netip.MustParseAddr(h.addr)},
		Location: Location{Cloud: "lab", Region: h.region},
		Subnets:  []netip.Prefix{planSubnet(name)},
		VTEPMAC:  VTEPMAC(name),
	}
	for _, m := range mods {
		m(&p)
	}
	return p
}

// planPeers returns the named lab hosts as peers.
func planPeers(t testing.TB, names ...string) []Peer {
	var ps []Peer
	for _, n := range names {
		ps = append(ps, planPeer(t, n))
	}
	return ps
}

func planUnderlay(addrs ...string) func(*Peer) {
	return func(p *Peer) {
		p.Underlay = nil
		for _, a := range addrs {
			p.Underlay = append(p.Underlay, netip.MustParseAddr(a))
		}
	}
}

func planSubnets(prefixes ...string) func(*Peer) {
	return func(p *Peer) {
		p.Subnets = nil
		for _, s := range prefixes {
			p.Subnets = append(p.Subnets, netip.MustParsePrefix(s))
		}
	}
}

func planMAC(mac net.HardwareAddr) func(*Peer) { return func(p *Peer) { p.VTEPMAC = mac } }

func planName(name string) func(*Peer) { return func(p *Peer) { p.Name = name } }

func planLocation(cloud, region string) func(*Peer) {
	return func(p *Peer) { p.Location = Location{Cloud: cloud, Region: region} }
}

// planOpts returns DefaultOptions changed by each of mods.
func planOpts(mods ...func(*Options)) Options {
	o := DefaultOptions()
	for _, m := range mods {
		m(&o)
	}
	return o
}

func planMode(mode string) func(*Options)  { return func(o *Options) { o.OverlayMode = mode } }
func planEncrypt(e string) func(*Options)  { return func(o *Options) { o.Encryption = e } }
func planOverlay(ov string) func(*Options) { return func(o *Options) { o.Overlay = ov } }

// planCmp returns the cmp options for plans (netip values compare with ==).
func planCmp() cmp.Options {
	return cmp.Options{
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	}
}

// planLines renders items one String per line.
func planLines[T interface{ String() string }](items []T) []string {
	var lines []string
	for _, it := range items {
		lines = append(lines, it.String())
	}
	return lines
}

// planCheckConsistent checks what every plan must hold: a neighbour and an
// FDB entry for each VXLAN peer and for nothing else, and each route for an
// own subnet (blackhole) or a subnet of a peer with a path.
func planCheckConsistent(t *testing.T, plan Plan) {
	t.Helper()
	var wantNeigh, wantFDB, wantRoutes []string
	for _, s := range plan.blackholed() {
		wantRoutes = append(wantRoutes, Route{Dst: s, Blackhole: true}.String())
	}
	for _, pp := range plan.Peers {
		if pp.Path == PathNone {
			if pp.Reason == "" || pp.Dev != "" || pp.Via.IsValid() || pp.MTU != 0 {
				t.Errorf("peer %s: path none with reason %q, dev %q, via %s, mtu %d", pp.Name, pp.Reason, pp.Dev, pp.Via, pp.MTU)
			}
			continue
		}
		for _, s := range pp.Subnets {
			wantRoutes = append(wantRoutes, Route{Dst: s, Via: pp.Via, Dev: pp.Dev, OnLink: pp.Path == PathVXLAN || pp.Path == PathIPIP}.String())
		}
		if pp.Path == PathVXLAN {
			mac := VTEPMAC(pp.Name) // the fixtures' MACs
			wantNeigh = append(wantNeigh, Neighbor{Dev: pp.Dev, IP: pp.Via, MAC: mac}.String())
			wantFDB = append(wantFDB, FDBEntry{Dev: pp.Dev, MAC: mac, Dst: pp.Remote}.String())
		}
	}
	for _, c := range []struct {
		what      string
		want, got []string
	}{
		{"routes", wantRoutes, planLines(plan.Routes)},
		{"neighbors", wantNeigh, planLines(plan.Neighbors)},
		{"fdb", wantFDB, planLines(plan.FDB)},
	} {
		if diff := cmp.Diff(planSorted(c.want), planSorted(c.got)); diff != "" {
			t.Errorf("%s do not match the peer plans (-want +got):\n%s", c.what, diff)
		}
	}
}

// blackholed returns the destinations of p's blackhole routes.
func (p Plan) blackholed() []netip.Prefix {
	var s []netip.Prefix
	for _, r := range p.Routes {
		if r.Blackhole {
			s = append(s, r.Dst)
		}
	}
	return s
}

func planSorted(s []string) []string {
	s = append([]string(nil), s...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

func TestCompute(t *testing.T) {
	const h1Blackhole = "blackhole 10.244.1.0/24 proto 87"
	v6Local := planLocal(t, "h1")
	v6Local.UnderlayAddr = netip.MustParseAddr("2001:db8:1::2")
	v6Local.Connected = []netip.Prefix{netip.MustParsePrefix("2001:db8:1::/64")}
	noSubnetLocal := planLocal(t, "h1")
	noSubnetLocal.Subnets = nil
	noAddrLocal := planLocal(t, "h1")
	noAddrLocal.UnderlayAddr = netip.Addr{}

	tests := []struct {
		name       string
		local      Local // zero: lab host h1
		peers      []Peer
		opts       Options
		wantPeers  []string
		wantRoutes []string
		wantVXLAN  bool
	}{
		{
			name: "same segment: direct", peers: planPeers(t, "h2"), opts: planOpts(),
			wantPeers:  []string{"h2 direct via 198.18.1.3 dev eth0 mtu 1500 (same L2 segment)"},
			wantRoutes: []string{h1Blackhole, "10.244.2.0/24 via 198.18.1.3 dev eth0 proto 87"},
			wantVXLAN:  true,
		},
		{
			name: "other segment: vxlan", peers: planPeers(t, "h3"), opts: planOpts(),
			wantPeers:  []string{"h3 vxlan via 10.244.3.0 dev weft.vxlan remote 198.18.2.2 mtu 1450 (different L2 segment)"},
			wantRoutes: []string{h1Blackhole, "10.244.3.0/24 via 10.244.3.0 dev weft.vxlan onlink proto 87"},
			wantVXLAN:  true,
		},
		{
			name: "overlayMode always", peers: planPeers(t, "h3", "h2"), opts: planOpts(planMode(OverlayAlways)),
			wantPeers: []string{
				"h2 vxlan via 10.244.2.0 dev weft.vxlan remote 198.18.1.3 mtu 1450 (overlayMode always)",
				"h3 vxlan via 10.244.3.0 dev weft.vxlan remote 198.18.2.2 mtu 1450 (overlayMode always)",
			},
			wantRoutes: []string{h1Blackhole,
				"10.244.2.0/24 via 10.244.2.0 dev weft.vxlan onlink proto 87",
				"10.244.3.0/24 via 10.244.3.0 dev weft.vxlan onlink proto 87"},
			wantVXLAN: true,
		},
		{
			name: "overlayMode never: no VXLAN device", peers: planPeers(t, "h2", "h3"), opts: planOpts(planMode(OverlayNever)),
			wantPeers: []string{
				"h2 direct via 198.18.1.3 dev eth0 mtu 1500 (same L2 segment)",
				"h3 none remote 198.18.2.2 (not on-link and overlayMode is never)",
			},
			wantRoutes: []string{h1Blackhole, "10.244.2.0/24 via 198.18.1.3 dev eth0 proto 87"},
		},
		{
			name: "encryption cross-region: other region has no path yet", peers: planPeers(t, "h2", "h3", "h4"), opts: planOpts(),
			wantPeers: []string{
				"h2 direct via 198.18.1.3 dev eth0 mtu 1500 (same L2 segment)",
				"h3 vxlan via 10.244.3.0 dev weft.vxlan remote 198.18.2.2 mtu 1450 (different L2 segment)",
				"h4 none remote 198.19.1.2 (other cloud or region (encryption cross-region); needs WireGuard, which is off on this node; never plaintext)",
			},
			wantRoutes: []string{h1Blackhole, "10.244.2.0/24 via 198.18.1.3 dev eth0 proto 87",
				"10.244.3.0/24 via 10.244.3.0 dev weft.vxlan onlink proto 87"},
			wantVXLAN: true,
		},
		{
			name:  "encryption cross-region: same region name in another cloud",
			peers: []Peer{planPeer(t, "h2", planLocation("aws", "r1")), planPeer(t, "h3", planLocation("lab", "R1"))},
			opts:  planOpts(),
			wantPeers: []string{
				"h2 none remote 198.18.1.3 (other cloud or region (encryption cross-region); needs WireGuard, which is off on this node; never plaintext)",
				"h3 none remote 198.18.2.2 (other cloud or region (encryption cross-region); needs WireGuard, which is off on this node; never plaintext)",
			},
			wantRoutes: []string{h1Blackhole},
			wantVXLAN:  true,
		},
		{
			name: "encryption always: even on the same segment", peers: planPeers(t, "h2"), opts: planOpts(planEncrypt(EncryptionAlways)),
			wantPeers:  []string{"h2 none remote 198.18.1.3 (encryption always; needs WireGuard, which is off on this node; never plaintext)"},
			wantRoutes: []string{h1Blackhole},
			wantVXLAN:  true,
		},
		{
			name: "encryption never: other region over vxlan", peers: planPeers(t, "h4"), opts: planOpts(planEncrypt(EncryptionNever)),
			wantPeers:  []string{"h4 vxlan via 10.244.4.0 dev weft.vxlan remote 198.19.1.2 mtu 1450 (different L2 segment)"},
			wantRoutes: []string{h1Blackhole, "10.244.4.0/24 via 10.244.4.0 dev weft.vxlan onlink proto 87"},
			wantVXLAN:  true,
		},
		{
			name:       "several addresses: the on-link one is preferred, the wrong family skipped",
			peers:      []Peer{planPeer(t, "h2", planUnderlay("198.19.9.9", "2001:db8:1::3", "198.18.1.3"))},
			opts:       planOpts(),
			wantPeers:  []string{"h2 direct via 198.18.1.3 dev eth0 mtu 1500 (same L2 segment)"},
			wantRoutes: []string{h1Blackhole, "10.244.2.0/24 via 198.18.1.3 dev eth0 proto 87"},
			wantVXLAN:  true,
		},
		{
			name:       "several addresses, none on-link: the first of the family",
			peers:      []Peer{planPeer(t, "h3", planUnderlay("2001:db8:2::2", "198.18.2.2", "198.18.2.9"))},
			opts:       planOpts(),
			wantPeers:  []string{"h3 vxlan via 10.244.3.0 dev weft.vxlan remote 198.18.2.2 mtu 1450 (different L2 segment)"},
			wantRoutes: []string{h1Blackhole, "10.244.3.0/24 via 10.244.3.0 dev weft.vxlan onlink proto 87"},
			wantVXLAN:  true,
		},
		{
			name:  "no address of this node's family",
			peers: []Peer{planPeer(t, "h2", planUnderlay("2001:db8:1::3")), planPeer(t, "h3", planUnderlay())},
			opts:  planOpts(),
			wantPeers: []string{
				"h2 none (no IPv4 underlay address)",
				"h3 none (no underlay address)",
			},
			wantRoutes: []string{h1Blackhole},
			wantVXLAN:  true,
		},
		{
			name:  "IPv6 underlay: VXLAN overhead 70",
			local: v6Local,
			peers: []Peer{
				planPeer(t, "h2", planUnderlay("198.18.1.3", "2001:db8:1::3")),
				planPeer(t, "h3", planUnderlay("2001:db8:2::2")),
				planPeer(t, "h5", planUnderlay("198.19.1.3"), planLocation("lab", "r1")),
			},
			opts: planOpts(),
			wantPeers: []string{
				"h2 direct via 2001:db8:1::3 dev eth0 mtu 1500 (same L2 segment)",
				"h3 vxlan via 10.244.3.0 dev weft.vxlan remote 2001:db8:2::2 mtu 1430 (different L2 segment)",
				"h5 none (no IPv6 underlay address)",
			},
			wantRoutes: []string{h1Blackhole, "10.244.2.0/24 via inet6 2001:db8:1::3 dev eth0 proto 87",
				"10.244.3.0/24 via 10.244.3.0 dev weft.vxlan onlink proto 87"},
			wantVXLAN: true,
		},
		{
			name:  "VTEP MAC missing or malformed",
			peers: []Peer{planPeer(t, "h3", planMAC(nil)), planPeer(t, "h2", planMAC(net.HardwareAddr{2, 0, 0, 0, 1}))},
			opts:  planOpts(planMode(OverlayAlways)),
			wantPeers: []string{
				"h2 none remote 198.18.1.3 (no VTEP MAC (VXLAN needs one))",
				"h3 none remote 198.18.2.2 (no VTEP MAC (VXLAN needs one))",
			},
			wantRoutes: []string{h1Blackhole},
			wantVXLAN:  true,
		},
		{
			name:  "VTEP MAC already used: the first by name keeps it",
			peers: []Peer{planPeer(t, "h5", planMAC(VTEPMAC("h3"))), planPeer(t, "h3"), planPeer(t, "h4", planMAC(VTEPMAC("h1")))},
			opts:  planOpts(planEncrypt(EncryptionNever)),
			wantPeers: []string{
				"h3 vxlan via 10.244.3.0 dev weft.vxlan remote 198.18.2.2 mtu 1450 (different L2 segment)",
				"h4 none remote 198.19.1.2 (VTEP MAC " + VTEPMAC("h1").String() + " also used by this node)",
				"h5 none remote 198.19.1.3 (VTEP MAC " + VTEPMAC("h3").String() + " also used by peer h3)",
			},
			wantRoutes: []string{h1Blackhole, "10.244.3.0/24 via 10.244.3.0 dev weft.vxlan onlink proto 87"},
			wantVXLAN:  true,
		},
		{
			name:       "peer without subnet",
			peers:      []Peer{planPeer(t, "h2", planSubnets())},
			opts:       planOpts(),
			wantPeers:  []string{"h2 none (no subnet yet)"},
			wantRoutes: []string{h1Blackhole},
			wantVXLAN:  true,
		},
		{
			name:       "peer subnet with host bits",
			peers:      []Peer{planPeer(t, "h2", planSubnets("10.244.2.1/24"))},
			opts:       planOpts(),
			wantPeers:  []string{"h2 none (invalid subnet 10.244.2.1/24)"},
			wantRoutes: []string{h1Blackhole},
			wantVXLAN:  true,
		},
		{
			name:  "peer subnets overlapping this node's",
			peers: []Peer{planPeer(t, "h2", planSubnets("10.244.1.128/25")), planPeer(t, "h3", planSubnets("10.244.0.0/16"))},
			opts:  planOpts(),
			wantPeers: []string{
				"h2 none (subnet 10.244.1.128/25 overlaps 10.244.1.0/24 of this node)",
				"h3 none (subnet 10.244.0.0/16 overlaps 10.244.1.0/24 of this node)",
			},
			wantRoutes: []string{h1Blackhole},
			wantVXLAN:  true,
		},
		{
			name: "peers overlapping each other: the first by name wins, a loser claims nothing",
			peers: []Peer{
				planPeer(t, "h5", planSubnets("10.244.8.0/24")),
				planPeer(t, "h3", planSubnets("10.244.7.0/25")),
				planPeer(t, "h2", planSubnets("10.244.7.0/24", "10.244.1.0/24", "10.244.8.0/24")),
				planPeer(t, "h4", planSubnets("10.244.4.0/24", "10.244.4.128/25")),
			},
			opts: planOpts(planEncrypt(EncryptionNever)),
			wantPeers: []string{
				"h2 none (subnet 10.244.1.0/24 overlaps 10.244.1.0/24 of this node)",
				"h3 vxlan via 10.244.7.0 dev weft.vxlan remote 198.18.2.2 mtu 1450 (different L2 segment)",
				"h4 none (subnet 10.244.4.128/25 overlaps its subnet 10.244.4.0/24)",
				"h5 vxlan via 10.244.8.0 dev weft.vxlan remote 198.19.1.3 mtu 1450 (different L2 segment)",
			},
			wantRoutes: []string{h1Blackhole, "10.244.7.0/25 via 10.244.7.0 dev weft.vxlan onlink proto 87",
				"10.244.8.0/24 via 10.244.8.0 dev weft.vxlan onlink proto 87"},
			wantVXLAN: true,
		},
		{
			name:  "peers overlapping each other: nested",
			peers: []Peer{planPeer(t, "h3", planSubnets("10.244.7.0/25")), planPeer(t, "h2", planSubnets("10.244.6.0/23"))},
			opts:  planOpts(),
			wantPeers: []string{
				"h2 direct via 198.18.1.3 dev eth0 mtu 1500 (same L2 segment)",
				"h3 none (subnet 10.244.7.0/25 overlaps 10.244.6.0/23 of peer h2)",
			},
			wantRoutes: []string{h1Blackhole, "10.244.6.0/23 via 198.18.1.3 dev eth0 proto 87"},
			wantVXLAN:  true,
		},
		{
			name:       "several subnets: a route each, one VTEP",
			peers:      []Peer{planPeer(t, "h3", planSubnets("10.244.3.0/24", "10.244.33.0/24"))},
			opts:       planOpts(),
			wantPeers:  []string{"h3 vxlan via 10.244.3.0 dev weft.vxlan remote 198.18.2.2 mtu 1450 (different L2 segment)"},
			wantRoutes: []string{h1Blackhole, "10.244.3.0/24 via 10.244.3.0 dev weft.vxlan onlink proto 87", "10.244.33.0/24 via 10.244.3.0 dev weft.vxlan onlink proto 87"},
			wantVXLAN:  true,
		},
		{
			name: "overlay ipip: direct on the segment, IP-in-IP across", peers: planPeers(t, "h2", "h3"), opts: planOpts(planOverlay(OverlayIPIP)),
			wantPeers: []string{
				"h2 direct via 198.18.1.3 dev eth0 mtu 1500 (same L2 segment)",
				"h3 ipip via 198.18.2.2 dev weft.ipip mtu 1480 (different L2 segment)",
			},
			wantRoutes: []string{h1Blackhole, "10.244.2.0/24 via 198.18.1.3 dev eth0 proto 87", "10.244.3.0/24 via 198.18.2.2 dev weft.ipip onlink proto 87"},
		},
		{
			name:  "duplicate and own names",
			peers: []Peer{planPeer(t, "h3", planUnderlay("198.18.2.9")), planPeer(t, "h2", planName("h1")), planPeer(t, "h3")},
			opts:  planOpts(),
			wantPeers: []string{
				"h1 none (same name as this node)",
				"h3 vxlan via 10.244.3.0 dev weft.vxlan remote 198.18.2.2 mtu 1450 (different L2 segment)",
				"h3 none (duplicate peer name)",
			},
			wantRoutes: []string{h1Blackhole, "10.244.3.0/24 via 10.244.3.0 dev weft.vxlan onlink proto 87"},
			wantVXLAN:  true,
		},
		{
			name: "this node has no subnet: direct only, no blackhole", local: noSubnetLocal, peers: planPeers(t, "h2", "h3"), opts: planOpts(),
			wantPeers: []string{
				"h2 direct via 198.18.1.3 dev eth0 mtu 1500 (same L2 segment)",
				"h3 none remote 198.18.2.2 (this node has no subnet yet (the VXLAN device needs its address))",
			},
			wantRoutes: []string{"10.244.2.0/24 via 198.18.1.3 dev eth0 proto 87"},
		},
		{
			name: "this node has no underlay address", local: noAddrLocal, peers: planPeers(t, "h2"), opts: planOpts(),
			wantPeers:  []string{"h2 none (this node has no underlay address)"},
			wantRoutes: []string{h1Blackhole},
		},
		{
			name: "invalid options: no path at all", peers: planPeers(t, "h2"), opts: planOpts(planOverlay("geneve"), planMode("sometimes")),
			wantPeers:  []string{`h2 none (invalid options: overlay: "geneve": want vxlan or ipip; overlayMode: "sometimes": want always, cross-subnet or never)`},
			wantRoutes: []string{h1Blackhole},
		},
		{
			name: "no peers", opts: planOpts(),
			wantRoutes: []string{h1Blackhole},
			wantVXLAN:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			local := tt.local
			if local.Name == "" {
				local = planLocal(t, "h1")
			}
			got := Compute(local, tt.peers, tt.opts)
			if diff := cmp.Diff(tt.wantPeers, planLines(got.Peers)); diff != "" {
				t.Errorf("peers (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantRoutes, planLines(got.Routes)); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
			if gotVXLAN := got.VXLAN != nil; gotVXLAN != tt.wantVXLAN {
				t.Errorf("VXLAN device %v, want one: %v", got.VXLAN, tt.wantVXLAN)
			}
			planCheckConsistent(t, got)
		})
	}
}
