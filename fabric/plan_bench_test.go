package fabric

import (
	"fmt"
	"net/netip"
	"testing"
)

// planBenchPeers returns n peers of a local node on 198.18.0.0/16: the even
// ones on-link (198.18.x.y, direct), the odd ones behind a router
// (198.19.x.y, VXLAN), each with a /24 of 10.0.0.0/8.
func planBenchPeers(n int) []Peer {
	peers := make([]Peer, n)
	for i := range peers {
		j := i + 1 // 10.0.0.0/24 is the local node's
		under := netip.AddrFrom4([4]byte{198, 18, byte(j >> 8), byte(j)})
		if i%2 == 1 {
			under = netip.AddrFrom4([4]byte{198, 19, byte(j >> 8), byte(j)})
		}
		name := fmt.Sprintf("node-%05d", i)
		peers[i] = Peer{
			Name:     name,
			Underlay: []netip.Addr{under},
			Location: Location{Cloud: "lab", Region: "r1"},
			Subnets:  []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(j >> 8), byte(j), 0}), 24)},
			VTEPMAC:  VTEPMAC(name),
		}
	}
	return peers
}

// planBenchLocal returns the benchmark's local node: 198.18.0.1 on
// 198.18.0.0/16, subnet 10.0.0.0/24.
func planBenchLocal() Local {
	return Local{
		Name:         "local",
		Subnets:      []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")},
		UnderlayDev:  "eth0",
		UnderlayAddr: netip.MustParseAddr("198.18.0.1"),
		UnderlayMTU:  1500,
		Connected:    []netip.Prefix{netip.MustParsePrefix("198.18.0.0/16")},
		Location:     Location{Cloud: "lab", Region: "r1"},
		VTEPMAC:      VTEPMAC("local"),
	}
}

func BenchmarkCompute(b *testing.B) {
	local := planBenchLocal()
	opts := DefaultOptions()
	opts.ClusterCIDR = netip.MustParsePrefix("10.0.0.0/8")
	for _, n := range []int{1000, 5000} {
		peers := planBenchPeers(n)
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				plan := Compute(local, peers, opts)
				if len(plan.Peers) != n {
					b.Fatalf("%d peer plans, want %d", len(plan.Peers), n)
				}
			}
		})
	}
}

// TestBenchPeersPaths checks that the benchmark's input is what it claims:
// half the peers direct, half VXLAN, none without a path.
func TestBenchPeersPaths(t *testing.T) {
	local := planBenchLocal()
	count := make(map[PathKind]int)
	for _, pp := range Compute(local, planBenchPeers(1000), DefaultOptions()).Peers {
		count[pp.Path]++
	}
	if count[PathDirect] != 500 || count[PathVXLAN] != 500 {
		t.Errorf("paths %v, want 500 direct and 500 vxlan", count)
	}
}
