package fabric

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestComputeFields checks every field of one plan with a direct, a VXLAN and
// a PathNone peer: what the text forms of TestCompute do not show.
func TestComputeFields(t *testing.T) {
	mac1 := net.HardwareAddr{0x0a, 0, 0, 0, 0, 1}
	mac3 := net.HardwareAddr{0x0a, 0, 0, 0, 0, 3}
	local := planLocal(t, "h1")
	local.VTEPMAC = mac1
	local.UnderlayMTU = 9000
	peers := []Peer{
		planPeer(t, "h4"),
		planPeer(t, "h3", planMAC(mac3), planSubnets("10.244.3.0/24", "10.244.30.0/24")),
		planPeer(t, "h2"),
	}
	a := netip.MustParseAddr
	p := netip.MustParsePrefix
	want := Plan{
		Peers: []PeerPlan{
			{Name: "h2", Path: PathDirect, Reason: "same L2 segment", Subnets: []netip.Prefix{p("10.244.2.0/24")},
				Dev: "eth0", Via: a("198.18.1.3"), Remote: a("198.18.1.3"), MTU: 9000, Candidates: []PathKind{PathDirect, PathVXLAN}, MaxMTU: 9000},
			{Name: "h3", Path: PathVXLAN, Reason: "different L2 segment", Subnets: []netip.Prefix{p("10.244.3.0/24"), p("10.244.30.0/24")},
				Dev: "weft.vxlan", Via: a("10.244.3.0"), Remote: a("198.18.2.2"), MTU: 8950, Candidates: []PathKind{PathVXLAN}, MaxMTU: 8950},
			{Name: "h4", Path: PathNone, Reason: "other cloud or region (encryption cross-region); needs WireGuard, which is off on this node; never plaintext",
				Subnets: []netip.Prefix{p("10.244.4.0/24")}, Remote: a("198.19.1.2")},
		},
		Routes: []Route{
			{Dst: p("10.244.1.0/24"), Blackhole: true},
			{Dst: p("10.244.2.0/24"), Via: a("198.18.1.3"), Dev: "eth0"},
			{Dst: p("10.244.3.0/24"), Via: a("10.244.3.0"), Dev: "weft.vxlan", OnLink: true},
			{Dst: p("10.244.30.0/24"), Via: a("10.244.3.0"), Dev: "weft.vxlan", OnLink: true},
		},
		VXLAN: &VXLANDevice{Name: "weft.vxlan", VNI: 1, Port: 4789, Local: a("198.18.1.2"), Dev: "eth0",
			MAC: mac1, MTU: 8950, Addr: p("10.244.1.0/32")},
		Neighbors:  []Neighbor{{Dev: "weft.vxlan", IP: a("10.244.3.0"), MAC: mac3}},
		FDB:        []FDBEntry{{Dev: "weft.vxlan", MAC: mac3, Dst: a("198.18.2.2")}},
		Masquerade: p("10.244.0.0/16"),
	}
	if diff := cmp.Diff(want, Compute(local, peers, DefaultOptions()), planCmp()); diff != "" {
		t.Errorf("Compute (-want +got):\n%s", diff)
	}
}

func TestComputeMasquerade(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want netip.Prefix
	}{
		{name: "default", opts: DefaultOptions(), want: netip.MustParsePrefix("10.244.0.0/16")},
		{name: "other cluster CIDR", opts: planOpts(func(o *Options) { o.ClusterCIDR = netip.MustParsePrefix("10.32.0.0/12") }),
			want: netip.MustParsePrefix("10.32.0.0/12")},
		{name: "off", opts: planOpts(func(o *Options) { o.IPMasq = false })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Compute(planLocal(t, "h1"), nil, tt.opts)
			if diff := cmp.Diff(tt.want, got.Masquerade, planCmp()); diff != "" {
				t.Errorf("Masquerade (-want +got):\n%s", diff)
			}
		})
	}
}

// TestComputePeerChanges computes the plan of h1 before and after one
// peer's record changes and checks exactly which lines of the plan's text
// go and come.
func TestComputePeerChanges(t *testing.T) {
	mac := func(name string) string { return VTEPMAC(name).String() }
	tests := []struct {
		name          string
		opts          Options
		before, after Peer
		gone, added   []string
	}{
		{
			name:   "h2 moves to another segment: direct to vxlan",
			opts:   planOpts(),
			before: planPeer(t, "h2"),
			after:  planPeer(t, "h2", planUnderlay("198.18.2.3")),
			gone: []string{
				"h2 direct via 198.18.1.3 dev eth0 mtu 1500 (same L2 segment)",
				"10.244.2.0/24 via 198.18.1.3 dev eth0 proto 87",
			},
			added: []string{
				"h2 vxlan via 10.244.2.0 dev weft.vxlan remote 198.18.2.3 mtu 1450 (different L2 segment)",
				"10.244.2.0/24 via 10.244.2.0 dev weft.vxlan onlink proto 87",
				"10.244.2.0 dev weft.vxlan lladdr " + mac("h2") + " PERMANENT",
				mac("h2") + " dev weft.vxlan dst 198.18.2.3 self permanent",
			},
		},
		{
			name:   "h3 moves within its segment: only the FDB entry changes",
			opts:   planOpts(),
			before: planPeer(t, "h3"),
			after:  planPeer(t, "h3", planUnderlay("198.18.2.7")),
			gone: []string{
				"h3 vxlan via 10.244.3.0 dev weft.vxlan remote 198.18.2.2 mtu 1450 (different L2 segment)",
				mac("h3") + " dev weft.vxlan dst 198.18.2.2 self permanent",
			},
			added: []string{
				"h3 vxlan via 10.244.3.0 dev weft.vxlan remote 198.18.2.7 mtu 1450 (different L2 segment)",
				mac("h3") + " dev weft.vxlan dst 198.18.2.7 self permanent",
			},
		},
		{
			name:   "h3 changes subnet: route and neighbour follow",
			opts:   planOpts(),
			before: planPeer(t, "h3"),
			after:  planPeer(t, "h3", planSubnets("10.244.9.0/24")),
			gone: []string{
				"h3 vxlan via 10.244.3.0 dev weft.vxlan remote 198.18.2.2 mtu 1450 (different L2 segment)",
				"10.244.3.0/24 via 10.244.3.0 dev weft.vxlan onlink proto 87",
				"10.244.3.0 dev weft.vxlan lladdr " + mac("h3") + " PERMANENT",
			},
			added: []string{
				"h3 vxlan via 10.244.9.0 dev weft.vxlan remote 198.18.2.2 mtu 1450 (different L2 segment)",
				"10.244.9.0/24 via 10.244.9.0 dev weft.vxlan onlink proto 87",
				"10.244.9.0 dev weft.vxlan lladdr " + mac("h3") + " PERMANENT",
			},
		},
		{
			name:   "h4 moves into this region: none to vxlan",
			opts:   planOpts(),
			before: planPeer(t, "h4"),
			after:  planPeer(t, "h4", planLocation("lab", "r1")),
			gone: []string{
				"h4 none remote 198.19.1.2 (other cloud or region (encryption cross-region); needs WireGuard, which is off on this node; never plaintext)",
			},
			added: []string{
				"h4 vxlan via 10.244.4.0 dev weft.vxlan remote 198.19.1.2 mtu 1450 (different L2 segment)",
				"10.244.4.0/24 via 10.244.4.0 dev weft.vxlan onlink proto 87",
				"10.244.4.0 dev weft.vxlan lladdr " + mac("h4") + " PERMANENT",
				mac("h4") + " dev weft.vxlan dst 198.19.1.2 self permanent",
			},
		},
		{
			name:   "h3 loses its VTEP MAC: everything of it goes",
			opts:   planOpts(),
			before: planPeer(t, "h3"),
			after:  planPeer(t, "h3", planMAC(nil)),
			gone: []string{
				"h3 vxlan via 10.244.3.0 dev weft.vxlan remote 198.18.2.2 mtu 1450 (different L2 segment)",
				"10.244.3.0/24 via 10.244.3.0 dev weft.vxlan onlink proto 87",
				"10.244.3.0 dev weft.vxlan lladdr " + mac("h3") + " PERMANENT",
				mac("h3") + " dev weft.vxlan dst 198.18.2.2 self permanent",
			},
			added: []string{"h3 none remote 198.18.2.2 (no VTEP MAC (VXLAN needs one))"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			local := planLocal(t, "h1")
			others := planPeers(t, "h2", "h3", "h5")
			others = slices.DeleteFunc(others, func(p Peer) bool { return p.Name == tt.before.Name })
			before := Compute(local, append(slices.Clone(others), tt.before), tt.opts)
			after := Compute(local, append(slices.Clone(others), tt.after), tt.opts)
			gone, added := planLineDiff(before.String(), after.String())
			if diff := cmp.Diff(planSorted(tt.gone), gone); diff != "" {
				t.Errorf("lines gone (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(planSorted(tt.added), added); diff != "" {
				t.Errorf("lines added (-want +got):\n%s", diff)
			}
		})
	}
}

// planLineDiff returns the lines only in a and the lines only in b, sorted.
func planLineDiff(a, b string) (onlyA, onlyB []string) {
	count := make(map[string]int)
	for l := range strings.Lines(a) {
		count[l]++
	}
	for l := range strings.Lines(b) {
		count[l]--
	}
	for l, n := range count {
		for ; n > 0; n-- {
			onlyA = append(onlyA, strings.TrimSuffix(l, "\n"))
		}
		for ; n < 0; n++ {
			onlyB = append(onlyB, strings.TrimSuffix(l, "\n"))
		}
	}
	return planSorted(onlyA), planSorted(onlyB)
}

// planMessyPeers returns the lab peers of h1 plus peers that exercise every
// tie and conflict rule: duplicate names, overlapping subnets, a shared VTEP
// MAC, several addresses.
func planMessyPeers(t *testing.T) []Peer {
	return append(planPeers(t, "h2", "h3", "h4", "h5"),
		planPeer(t, "h3", planUnderlay("198.18.2.9")),
		planPeer(t, "h3", planUnderlay("198.18.2.9"), planSubnets("10.244.33.0/24")),
		planPeer(t, "h5", planName("h6"), planSubnets("10.244.5.128/25")),
		planPeer(t, "h5", planName("h0"), planSubnets("10.244.50.0/24")),
		planPeer(t, "h2", planName("h7"), planSubnets("10.244.7.0/24"), planUnderlay("2001:db8::7", "198.19.7.7", "198.18.1.7")),
		planPeer(t, "h2", planName("h8"), planSubnets("10.244.8.0/24"), planMAC(VTEPMAC("h3")), planUnderlay("198.18.2.8")),
		planPeer(t, "h2", planName("h9"), planSubnets()),
	)
}

func TestComputeDeterministic(t *testing.T) {
	opts := planOpts(planMode(OverlayAlways), planEncrypt(EncryptionNever))
	local := planLocal(t, "h1")
	peers := planMessyPeers(t)
	want := Compute(local, peers, opts)
	r := rand.New(rand.NewPCG(3, 5))
	for i := range 200 {
		shuffled := slices.Clone(peers)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if diff := cmp.Diff(want, Compute(local, shuffled, opts), planCmp()); diff != "" {
			t.Fatalf("shuffle %d: plan differs (-first +shuffled):\n%s", i, diff)
		}
	}
}

// TestComputeInputs checks that Compute neither modifies its inputs nor
// keeps them: changing the plan leaves the inputs alone, and changing the
// inputs leaves the plan alone.
func TestComputeInputs(t *testing.T) {
	opts := planOpts(planMode(OverlayAlways), planEncrypt(EncryptionNever))
	local, peers := planLocal(t, "h1"), planMessyPeers(t)
	wantLocal, wantPeers := planLocal(t, "h1"), planMessyPeers(t)
	plan := Compute(local, peers, opts)
	wantPlan := Compute(planLocal(t, "h1"), planMessyPeers(t), opts)
	if diff := cmp.Diff(wantPeers, peers, planCmp()); diff != "" {
		t.Fatalf("Compute changed peers (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(wantLocal, local, planCmp()); diff != "" {
		t.Fatalf("Compute changed local (-before +after):\n%s", diff)
	}

	for i := range plan.Peers {
		for j := range plan.Peers[i].Subnets {
			plan.Peers[i].Subnets[j] = netip.Prefix{}
		}
	}
	for _, n := range plan.Neighbors {
		clear(n.MAC)
	}
	for _, f := range plan.FDB {
		clear(f.MAC)
	}
	clear(plan.VXLAN.MAC)
	if diff := cmp.Diff(wantPeers, peers, planCmp()); diff != "" {
		t.Errorf("changing the plan changed peers (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(wantLocal, local, planCmp()); diff != "" {
		t.Errorf("changing the plan changed local (-before +after):\n%s", diff)
	}

	plan = Compute(local, peers, opts)
	for i := range peers {
		clear(peers[i].VTEPMAC)
		clear(peers[i].Subnets)
		clear(peers[i].Underlay)
	}
	clear(local.VTEPMAC)
	clear(local.Subnets)
	if diff := cmp.Diff(wantPlan, plan, planCmp()); diff != "" {
		t.Errorf("changing the inputs changed the plan (-before +after):\n%s", diff)
	}
}

// FuzzCompute builds peers of h1 from the fuzzer's bytes, 5 bytes each (name,
// underlay, subnet, subnet length and MAC, region), and checks that Compute
// does not panic, that its plan is consistent, that no two routes overlap,
// and that the reversed input gives the same plan.
func FuzzCompute(f *testing.F) {
	f.Add([]byte{2, 0, 2, 0, 0, 3, 1, 3, 1, 0})
	f.Add([]byte{2, 0, 1, 2, 1, 3, 1, 1, 1, 1, 3, 2, 1, 0, 0})
	f.Add([]byte{0, 0, 7, 4, 1, 1, 1, 7, 1, 1, 2, 2, 6, 7, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		underlays := []string{"198.18.1.9", "198.18.2.9", "2001:db8::9", ""}
		var peers []Peer
		for i := 0; i+5 <= len(data) && len(peers) < 16; i += 5 {
			b := data[i : i+5]
			name := fmt.Sprintf("h%d", b[0]%8)
			p := Peer{Name: name, Location: Location{Cloud: "lab", Region: fmt.Sprint("r", b[4]%2)}}
			if u := underlays[b[1]%4]; u != "" {
				p.Underlay = []netip.Addr{netip.MustParseAddr(u)}
			}
			if b[3]%4 != 0 {
				bits := []int{16, 24, 25}[b[3]%4-1]
				p.Subnets = []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, b[2] % 8, 0}), bits).Masked()}
			}
			switch b[3] / 4 % 3 {
			case 1:
				p.VTEPMAC = VTEPMAC(name)
			case 2:
				p.VTEPMAC = VTEPMAC("h1")
			}
			peers = append(peers, p)
		}
		for _, opts := range []Options{planOpts(), planOpts(planMode(OverlayAlways), planEncrypt(EncryptionNever))} {
			plan := Compute(planLocal(t, "h1"), peers, opts)
			planCheckConsistent(t, plan)
			for i, r := range plan.Routes {
				for _, o := range plan.Routes[:i] {
					if r.Dst.Overlaps(o.Dst) {
						t.Errorf("routes %s and %s overlap", o, r)
					}
				}
			}
			reversed := slices.Clone(peers)
			slices.Reverse(reversed)
			if diff := cmp.Diff(plan, Compute(planLocal(t, "h1"), reversed, opts), planCmp()); diff != "" {
				t.Errorf("reversed input gives another plan (-in order +reversed):\n%s", diff)
			}
		}
	})
}
