package fabric

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestComputeFallback checks the fallback order under Peer.Avoid: each row
// is one peer of wgLocal (h1, region r1, with WireGuard) and the paths
// health found down; want is the peer's plan line and its candidates.
func TestComputeFallback(t *testing.T) {
	same := wgPeer("h2", "198.18.1.3", "10.244.2.0/24", "r1", 2)
	other := wgPeer("h3", "198.18.2.2", "10.244.3.0/24", "r1", 3)
	far := wgPeer("h4", "198.19.1.2", "10.244.4.0/24", "r2", 4)
	sameNoKey := wgPeer("h2", "198.18.1.3", "10.244.2.0/24", "r1", 0)
	avoid := func(p Peer, kinds ...PathKind) Peer { p.Avoid = kinds; return p }
	tests := []struct {
		name      string
		opts      Options
		local     func(*Local)
		peer      Peer
		want      string
		wantCands []PathKind
	}{
		{
			name: "same segment, nothing down: direct", peer: same,
			want:      "h2 direct via 198.18.1.3 dev eth0 mtu 1500 (same L2 segment)",
			wantCands: []PathKind{PathDirect, PathVXLAN, PathWireGuard},
		},
		{
			name: "direct down: overlay", peer: avoid(same, PathDirect),
			want:      "h2 vxlan via 10.244.2.0 dev weft.vxlan remote 198.18.1.3 mtu 1450 (fallback: direct down)",
			wantCands: []PathKind{PathDirect, PathVXLAN, PathWireGuard},
		},
		{
			name: "direct and overlay down: WireGuard", peer: avoid(same, PathDirect, PathVXLAN),
			want:      "h2 wireguard dev weft.wg remote 198.18.1.3 mtu 1420 (fallback: direct, vxlan down)",
			wantCands: []PathKind{PathDirect, PathVXLAN, PathWireGuard},
		},
		{
			name: "only the overlay down: direct stays", peer: avoid(same, PathVXLAN),
			want:      "h2 direct via 198.18.1.3 dev eth0 mtu 1500 (same L2 segment)",
			wantCands: []PathKind{PathDirect, PathVXLAN, PathWireGuard},
		},
		{
			name: "every path down: the cheapest, said so", peer: avoid(same, PathDirect, PathVXLAN, PathWireGuard),
			want:      "h2 direct via 198.18.1.3 dev eth0 mtu 1500 (same L2 segment; every allowed path is down)",
			wantCands: []PathKind{PathDirect, PathVXLAN, PathWireGuard},
		},
		{
			name: "other segment, overlay down: WireGuard", peer: avoid(other, PathVXLAN),
			want:      "h3 wireguard dev weft.wg remote 198.18.2.2 mtu 1420 (fallback: vxlan down)",
			wantCands: []PathKind{PathVXLAN, PathWireGuard},
		},
		{
			name: "peer without WireGuard: no encrypted fallback", peer: avoid(sameNoKey, PathDirect, PathVXLAN),
			want:      "h2 direct via 198.18.1.3 dev eth0 mtu 1500 (same L2 segment; every allowed path is down)",
			wantCands: []PathKind{PathDirect, PathVXLAN},
		},
		{
			name: "encryption never: no WireGuard device, no encrypted fallback", opts: planOpts(planEncrypt(EncryptionNever)),
			peer:      avoid(same, PathDirect),
			want:      "h2 vxlan via 10.244.2.0 dev weft.vxlan remote 198.18.1.3 mtu 1450 (fallback: direct down)",
			wantCands: []PathKind{PathDirect, PathVXLAN},
		},
		{
			name: "encrypted pair never falls back to plaintext", peer: avoid(far, PathWireGuard),
			want:      "h4 wireguard dev weft.wg remote 198.19.1.2 mtu 1420 (other cloud or region (encryption cross-region); every allowed path is down)",
			wantCands: []PathKind{PathWireGuard},
		},
		{
			name: "overlay always: overlay then WireGuard", opts: planOpts(planMode(OverlayAlways)), peer: avoid(same, PathVXLAN),
			want:      "h2 wireguard dev weft.wg remote 198.18.1.3 mtu 1420 (fallback: vxlan down)",
			wantCands: []PathKind{PathVXLAN, PathWireGuard},
		},
		{
			name: "overlay never: direct then WireGuard", opts: planOpts(planMode(OverlayNever)), peer: avoid(same, PathDirect),
			want:      "h2 wireguard dev weft.wg remote 198.18.1.3 mtu 1420 (fallback: direct down)",
			wantCands: []PathKind{PathDirect, PathWireGuard},
		},
		{
			name: "overlay never, off-link: no path, WireGuard is no first choice", opts: planOpts(planMode(OverlayNever)), peer: other,
			want: "h3 none remote 198.18.2.2 (not on-link and overlayMode is never)",
		},
		{
			name: "ipip overlay falls back from direct", opts: planOpts(planOverlay(OverlayIPIP)), peer: avoid(same, PathDirect),
			want:      "h2 ipip via 198.18.1.3 dev weft.ipip mtu 1480 (fallback: direct down)",
			wantCands: []PathKind{PathDirect, PathIPIP, PathWireGuard},
		},
		{
			name: "native down: overlay", peer: avoid(other, PathNative),
			local: func(l *Local) {
				l.Gateway = netipAddr("198.18.1.1")
				l.Native = map[netipPrefix]bool{netipPrefixOf("10.244.3.0/24"): true}
			},
			want:      "h3 vxlan via 10.244.3.0 dev weft.vxlan remote 198.18.2.2 mtu 1450 (fallback: native down)",
			wantCands: []PathKind{PathNative, PathVXLAN, PathWireGuard},
		},
		{
			name: "avoiding a path not allowed changes nothing", peer: avoid(other, PathDirect),
			want:      "h3 vxlan via 10.244.3.0 dev weft.vxlan remote 198.18.2.2 mtu 1450 (different L2 segment)",
			wantCands: []PathKind{PathVXLAN, PathWireGuard},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			if opts.Overlay == "" {
				opts = DefaultOptions()
			}
			local := wgLocal()
			if tt.local != nil {
				tt.local(&local)
			}
			peer := tt.peer
			peer.VTEPMAC = VTEPMAC(peer.Name) // as planCheckConsistent expects
			plan := Compute(local, []Peer{peer}, opts)
			planCheckConsistent(t, plan)
			pp := plan.Peers[0]
			if diff := cmp.Diff(tt.want, pp.String()); diff != "" {
				t.Errorf("peer plan (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantCands, pp.Candidates); diff != "" {
				t.Errorf("candidates (-want +got):\n%s", diff)
			}
		})
	}
}

// TestComputeFallbackOthersUnchanged checks that avoiding paths of one peer
// changes nothing for the others.
func TestComputeFallbackOthersUnchanged(t *testing.T) {
	peers := []Peer{
		wgPeer("h2", "198.18.1.3", "10.244.2.0/24", "r1", 2),
		wgPeer("h3", "198.18.2.2", "10.244.3.0/24", "r1", 3),
		wgPeer("h4", "198.19.1.2", "10.244.4.0/24", "r2", 4),
	}
	before := Compute(wgLocal(), peers, DefaultOptions())
	peers[0].Avoid = []PathKind{PathDirect}
	after := Compute(wgLocal(), peers, DefaultOptions())
	gone, added := planLineDiff(before.String(), after.String())
	wantGone := []string{
		"10.244.2.0/24 via 198.18.1.3 dev eth0 proto 87",
		"h2 direct via 198.18.1.3 dev eth0 mtu 1500 (same L2 segment)",
	}
	wantAdded := []string{
		"0a:00:00:00:00:02 dev weft.vxlan dst 198.18.1.3 self permanent",
		"10.244.2.0 dev weft.vxlan lladdr 0a:00:00:00:00:02 PERMANENT",
		"10.244.2.0/24 via 10.244.2.0 dev weft.vxlan onlink proto 87",
		"h2 vxlan via 10.244.2.0 dev weft.vxlan remote 198.18.1.3 mtu 1450 (fallback: direct down)",
	}
	if diff := cmp.Diff(planSorted(wantGone), gone); diff != "" {
		t.Errorf("gone (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(planSorted(wantAdded), added); diff != "" {
		t.Errorf("added (-want +got):\n%s", diff)
	}
}

type netipPrefix = netip.Prefix

func netipAddr(s string) netip.Addr       { return netip.MustParseAddr(s) }
func netipPrefixOf(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// TestComputePathMTU: a path MTU found below the path's own goes on the
// peer's routes and PeerPlan.MTU; one above it, or for another path, does
// not.
func TestComputePathMTU(t *testing.T) {
	same := wgPeer("h2", "198.18.1.3", "10.244.2.0/24", "r1", 2)
	other := wgPeer("h3", "198.18.2.2", "10.244.3.0/24", "r1", 3)
	other.Subnets = append(other.Subnets, netipPrefixOf("10.244.30.0/24"))
	tests := []struct {
		name   string
		peer   Peer
		mtu    map[PathKind]int
		want   string
		routes []string
	}{
		{"vxlan lowered", other, map[PathKind]int{PathVXLAN: 1350},
			"h3 vxlan via 10.244.3.0 dev weft.vxlan remote 198.18.2.2 mtu 1350 (different L2 segment)",
			[]string{"10.244.3.0/24 via 10.244.3.0 dev weft.vxlan onlink proto 87 mtu 1350", "10.244.30.0/24 via 10.244.3.0 dev weft.vxlan onlink proto 87 mtu 1350"}},
		{"above the path's own: ignored", other, map[PathKind]int{PathVXLAN: 1500},
			"h3 vxlan via 10.244.3.0 dev weft.vxlan remote 198.18.2.2 mtu 1450 (different L2 segment)",
			[]string{"10.244.3.0/24 via 10.244.3.0 dev weft.vxlan onlink proto 87", "10.244.30.0/24 via 10.244.3.0 dev weft.vxlan onlink proto 87"}},
		{"found for another path: ignored", same, map[PathKind]int{PathVXLAN: 1300},
			"h2 direct via 198.18.1.3 dev eth0 mtu 1500 (same L2 segment)",
			[]string{"10.244.2.0/24 via 198.18.1.3 dev eth0 proto 87"}},
		{"direct lowered", same, map[PathKind]int{PathDirect: 1400},
			"h2 direct via 198.18.1.3 dev eth0 mtu 1400 (same L2 segment)",
			[]string{"10.244.2.0/24 via 198.18.1.3 dev eth0 proto 87 mtu 1400"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.peer
			p.PathMTU = tt.mtu
			plan := Compute(wgLocal(), []Peer{p}, DefaultOptions())
			if diff := cmp.Diff(tt.want, plan.Peers[0].String()); diff != "" {
				t.Errorf("peer plan (-want +got):\n%s", diff)
			}
			var routes []string
			for _, r := range plan.Routes {
				if !r.Blackhole {
					routes = append(routes, r.String())
				}
			}
			if diff := cmp.Diff(tt.routes, routes); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
			if plan.Peers[0].MaxMTU < plan.Peers[0].MTU {
				t.Errorf("MaxMTU %d below MTU %d", plan.Peers[0].MaxMTU, plan.Peers[0].MTU)
			}
		})
	}
}
