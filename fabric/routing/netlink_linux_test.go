package routing

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weft-net/weft/fabric"
)

func ipNet(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

// names is a link table for fromNetlink: 1 lo, 7 eth0; others vanished.
func names(index int) string {
	return map[int]string{1: "lo", 7: "eth0"}[index]
}

var (
	addrCmp   = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	prefixCmp = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })
)

func TestToNetlink(t *testing.T) {
	tests := []struct {
		name  string
		route fabric.Route
		index int
		want  netlink.Route
	}{
		{
			name:  "via",
			route: fabric.Route{Dst: netip.MustParsePrefix("10.244.5.0/24"), Via: netip.MustParseAddr("198.18.0.5"), Dev: "eth0", MTU: 1400},
			index: 7,
			want: netlink.Route{Dst: ipNet("10.244.5.0/24"), Gw: net.ParseIP("198.18.0.5").To4(), LinkIndex: 7, MTU: 1400,
				Protocol: fabric.RouteProtocol, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST, Scope: netlink.SCOPE_UNIVERSE},
		},
		{
			name:  "onlink",
			route: fabric.Route{Dst: netip.MustParsePrefix("10.244.6.0/24"), Via: netip.MustParseAddr("10.244.6.0"), Dev: "eth0", OnLink: true},
			index: 7,
			want: netlink.Route{Dst: ipNet("10.244.6.0/24"), Gw: net.ParseIP("10.244.6.0").To4(), LinkIndex: 7, Flags: int(netlink.FLAG_ONLINK),
				Protocol: fabric.RouteProtocol, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST, Scope: netlink.SCOPE_UNIVERSE},
		},
		{
			name:  "IPv4 device route has link scope",
			route: fabric.Route{Dst: netip.MustParsePrefix("10.244.3.4/32"), Dev: "eth0"},
			index: 7,
			want: netlink.Route{Dst: ipNet("10.244.3.4/32"), LinkIndex: 7,
				Protocol: fabric.RouteProtocol, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST, Scope: netlink.SCOPE_LINK},
		},
		{
			name:  "IPv6 device route has universe scope",
			route: fabric.Route{Dst: netip.MustParsePrefix("fd00::/64"), Dev: "eth0"},
			index: 7,
			want: netlink.Route{Dst: ipNet("fd00::/64"), LinkIndex: 7,
				Protocol: fabric.RouteProtocol, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST, Scope: netlink.SCOPE_UNIVERSE},
		},
		{
			name:  "blackhole",
			route: fabric.Route{Dst: netip.MustParsePrefix("10.244.0.0/16"), Blackhole: true},
			want: netlink.Route{Dst: ipNet("10.244.0.0/16"),
				Protocol: fabric.RouteProtocol, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_BLACKHOLE, Scope: netlink.SCOPE_UNIVERSE},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := toNetlink(tt.route, tt.index)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("toNetlink (-want +got):\n%s", diff)
			}
			back, ok := fromNetlink(got, names)
			if !ok {
				t.Fatalf("fromNetlink(%v) refused the route", got)
			}
			if diff := cmp.Diff(tt.route, back, addrCmp, prefixCmp); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFromNetlink(t *testing.T) {
	tests := []struct {
		name string
		nr   netlink.Route
		want fabric.Route
		ok   bool
	}{
		{
			name: "IPv6 blackhole reported on lo",
			nr:   netlink.Route{Dst: ipNet("fd00:244::/48"), LinkIndex: 1, Type: unix.RTN_BLACKHOLE, Family: netlink.FAMILY_V6},
			want: fabric.Route{Dst: netip.MustParsePrefix("fd00:244::/48"), Blackhole: true},
			ok:   true,
		},
		{
			name: "default route has no RTA_DST",
			nr:   netlink.Route{Gw: net.ParseIP("198.18.0.1"), LinkIndex: 7, Type: unix.RTN_UNICAST, Family: netlink.FAMILY_V4},
			want: fabric.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: netip.MustParseAddr("198.18.0.1"), Dev: "eth0"},
			ok:   true,
		},
		{
			name: "IPv6 default route",
			nr:   netlink.Route{Gw: net.ParseIP("fe80::1"), LinkIndex: 7, Type: unix.RTN_UNICAST, Family: netlink.FAMILY_V6},
			want: fabric.Route{Dst: netip.MustParsePrefix("::/0"), Via: netip.MustParseAddr("fe80::1"), Dev: "eth0"},
			ok:   true,
		},
		{
			name: "linkdown is not onlink",
			nr: netlink.Route{Dst: ipNet("10.244.5.0/24"), Gw: net.ParseIP("198.18.0.5"), LinkIndex: 7, Type: unix.RTN_UNICAST,
				Flags: unix.RTNH_F_LINKDOWN | unix.RTNH_F_DEAD, Family: netlink.FAMILY_V4},
			want: fabric.Route{Dst: netip.MustParsePrefix("10.244.5.0/24"), Via: netip.MustParseAddr("198.18.0.5"), Dev: "eth0"},
			ok:   true,
		},
		{
			name: "vanished link leaves Dev empty",
			nr:   netlink.Route{Dst: ipNet("10.244.3.4/32"), LinkIndex: 42, Type: unix.RTN_UNICAST, Family: netlink.FAMILY_V4},
			want: fabric.Route{Dst: netip.MustParsePrefix("10.244.3.4/32")},
			ok:   true,
		},
		{
			name: "MPLS is not weft's",
			nr:   netlink.Route{Family: unix.AF_MPLS},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := fromNetlink(tt.nr, names)
			if ok != tt.ok {
				t.Fatalf("fromNetlink ok = %v, want %v", ok, tt.ok)
			}
			if diff := cmp.Diff(tt.want, got, addrCmp, prefixCmp); diff != "" {
				t.Errorf("fromNetlink (-want +got):\n%s", diff)
			}
		})
	}
}
