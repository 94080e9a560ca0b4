package ipip

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func prefixes(ss ...string) []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range ss {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}

func TestTableLookup(t *testing.T) {
	tab := newTable([]Peer{
		{Remote: netip.MustParseAddr("198.18.1.2"), Subnets: prefixes("10.244.0.0/16")},
		{Remote: netip.MustParseAddr("198.18.1.3"), Subnets: prefixes("10.244.3.0/24", "10.250.0.0/24")},
		{Remote: netip.MustParseAddr("198.18.2.9"), Subnets: prefixes("10.244.3.7/32", "10.251.0.1/24")}, // not masked: as 10.251.0.0/24
	}, 1480)
	for _, c := range []struct {
		dst, want string // want "" for no peer
	}{
		{"10.244.9.9", "198.18.1.2"},
		{"10.244.3.5", "198.18.1.3"}, // /24 over /16
		{"10.244.3.7", "198.18.2.9"}, // /32 over /24
		{"10.250.0.255", "198.18.1.3"},
		{"10.251.0.77", "198.18.2.9"},
		{"10.245.0.1", ""},
		{"192.0.2.1", ""},
	} {
		remote, ok := tab.lookup(netip.MustParseAddr(c.dst).As4())
		got := ""
		if ok {
			got = netip.AddrFrom4(remote).String()
		}
		if got != c.want {
			t.Errorf("lookup(%s) = %q, want %q", c.dst, got, c.want)
		}
	}
	for addr, want := range map[string]bool{"198.18.1.2": true, "198.18.2.9": true, "198.18.1.9": false} {
		if got := tab.isPeer(netip.MustParseAddr(addr).As4()); got != want {
			t.Errorf("isPeer(%s) = %t, want %t", addr, got, want)
		}
	}
	if got := newTable(nil, 0); got.key != "" || len(got.lens) != 0 {
		t.Errorf("empty table: key %q, lens %v", got.key, got.lens)
	}
}

func TestPeersKey(t *testing.T) {
	a := []Peer{
		{Remote: netip.MustParseAddr("198.18.1.3"), Subnets: prefixes("10.244.4.0/24", "10.244.3.0/24")},
		{Remote: netip.MustParseAddr("198.18.1.2"), Subnets: prefixes("10.244.2.9/24")},
	}
	b := []Peer{a[1], {Remote: a[0].Remote, Subnets: prefixes("10.244.3.0/24", "10.244.4.0/24")}}
	want := "198.18.1.2 10.244.2.0/24\n198.18.1.3 10.244.3.0/24,10.244.4.0/24"
	if diff := cmp.Diff(want, peersKey(a)); diff != "" {
		t.Errorf("peersKey (-want +got):\n%s", diff)
	}
	if peersKey(a) != peersKey(b) {
		t.Errorf("peersKey depends on order: %q vs %q", peersKey(a), peersKey(b))
	}
}

func TestValidate(t *testing.T) {
	dev := func(f func(*Device)) *Device {
		d := &Device{Name: DefaultDevice, Local: netip.MustParseAddr("198.18.1.1"), MTU: 1480, Addr: netip.MustParsePrefix("10.244.1.0/32")}
		if f != nil {
			f(d)
		}
		return d
	}
	peer := Peer{Remote: netip.MustParseAddr("198.18.1.2"), Subnets: prefixes("10.244.2.0/24")}
	for _, c := range []struct {
		name string
		want Want
		err  string
	}{
		{"nothing", Want{}, ""},
		{"full", Want{Device: dev(nil), Peers: []Peer{peer}}, ""},
		{"zero mtu, no local, no address", Want{Device: dev(func(d *Device) { d.MTU, d.Local, d.Addr = 0, netip.Addr{}, netip.Prefix{} })}, ""},
		{"peers without device", Want{Peers: []Peer{peer}}, "ipip want: Peers: 1 peers but no Device"},
		{"empty name", Want{Device: dev(func(d *Device) { d.Name = "" })}, `ipip want: Device.Name "": empty`},
		{"long name", Want{Device: dev(func(d *Device) { d.Name = "weft.ipip.toolong" })}, `ipip want: Device.Name "weft.ipip.toolong": longer than 15 bytes`},
		{"name with slash", Want{Device: dev(func(d *Device) { d.Name = "weft/ipip" })}, `ipip want: Device.Name "weft/ipip": contains '/'`},
		{"IPv6 local", Want{Device: dev(func(d *Device) { d.Local = netip.MustParseAddr("fd00::1") })}, "ipip want: Device.Local fd00::1: not a unicast IPv4 address"},
		{"multicast local", Want{Device: dev(func(d *Device) { d.Local = netip.MustParseAddr("239.1.1.1") })}, "ipip want: Device.Local 239.1.1.1: not a unicast IPv4 address"},
		{"small mtu", Want{Device: dev(func(d *Device) { d.MTU = 67 })}, "ipip want: Device.MTU 67: outside 68..65515"},
		{"big mtu", Want{Device: dev(func(d *Device) { d.MTU = 65516 })}, "ipip want: Device.MTU 65516: outside 68..65515"},
		{"address not /32", Want{Device: dev(func(d *Device) { d.Addr = netip.MustParsePrefix("10.244.1.0/24") })}, "ipip want: Device.Addr 10.244.1.0/24: not a single IPv4 address (/32)"},
		{"bad remote", Want{Device: dev(nil), Peers: []Peer{{Subnets: prefixes("10.244.2.0/24")}}}, "ipip want: Peers[0].Remote invalid IP: not a unicast IPv4 address"},
		{"same remote twice", Want{Device: dev(nil), Peers: []Peer{peer, {Remote: peer.Remote}}}, "ipip want: Peers[1].Remote 198.18.1.2: also Peers[0].Remote"},
		{"IPv6 subnet", Want{Device: dev(nil), Peers: []Peer{{Remote: peer.Remote, Subnets: prefixes("fd00::/64")}}}, "ipip want: Peers[0].Subnets[0] fd00::/64: not an IPv4 prefix"},
		{"subnet of two peers", Want{Device: dev(nil), Peers: []Peer{peer, {Remote: netip.MustParseAddr("198.18.1.3"), Subnets: prefixes("10.244.2.1/24")}}}, "ipip want: Peers[1].Subnets[0] 10.244.2.0/24: also routed to 198.18.1.2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := ""
			if err := c.want.Validate(); err != nil {
				got = err.Error()
			}
			if got != c.err {
				t.Errorf("Validate() = %q, want %q", got, c.err)
			}
		})
	}
}
