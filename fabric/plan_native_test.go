package fabric

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestComputeNative: a pair in one VPC on different subnets routes natively
// once the cloud carries the peer's subnet, the overlay until then; a pair
// on one segment stays direct, and encryption still wins.
func TestComputeNative(t *testing.T) {
	near := wgPeer("h2", "198.18.1.3", "10.244.2.0/24", "r1", 2)
	far := wgPeer("h3", "198.18.2.2", "10.244.3.0/24", "r1", 3)
	other := wgPeer("h4", "198.19.1.2", "10.244.4.0/24", "r2", 4)
	native := map[netip.Prefix]bool{
		netip.MustParsePrefix("10.244.2.0/24"): true,
		netip.MustParsePrefix("10.244.3.0/24"): true,
		netip.MustParsePrefix("10.244.4.0/24"): true,
	}
	tests := []struct {
		name   string
		native map[netip.Prefix]bool
		gw     string
		want   []string
	}{
		{
			name:   "cloud route in place: native",
			native: native, gw: "198.18.1.1",
			want: []string{
				"h2 direct via 198.18.1.3 dev eth0 mtu 1500 (same L2 segment)",
				"h3 native via 198.18.1.1 dev eth0 remote 198.18.2.2 mtu 1500 (same VPC, cloud route in place)",
				"h4 wireguard dev weft.wg remote 198.19.1.2 mtu 1420 (other cloud or region (encryption cross-region))",
			},
		},
		{
			name:   "route missing: the overlay",
			native: map[netip.Prefix]bool{netip.MustParsePrefix("10.244.2.0/24"): true}, gw: "198.18.1.1",
			want: []string{
				"h2 direct via 198.18.1.3 dev eth0 mtu 1500 (same L2 segment)",
				"h3 vxlan via 10.244.3.0 dev weft.vxlan remote 198.18.2.2 mtu 1450 (different L2 segment)",
				"h4 wireguard dev weft.wg remote 198.19.1.2 mtu 1420 (other cloud or region (encryption cross-region))",
			},
		},
		{
			name:   "no gateway: the overlay",
			native: native,
			want: []string{
				"h2 direct via 198.18.1.3 dev eth0 mtu 1500 (same L2 segment)",
				"h3 vxlan via 10.244.3.0 dev weft.vxlan remote 198.18.2.2 mtu 1450 (different L2 segment)",
				"h4 wireguard dev weft.wg remote 198.19.1.2 mtu 1420 (other cloud or region (encryption cross-region))",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := wgLocal()
			l.Native = tc.native
			if tc.gw != "" {
				l.Gateway = netip.MustParseAddr(tc.gw)
			}
			p := Compute(l, []Peer{near, far, other}, DefaultOptions())
			var got []string
			for _, pp := range p.Peers {
				got = append(got, pp.String())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("peers (-want +got):\n%s", diff)
			}
		})
	}
}
