package netlab

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// lines is a readable multi-line golden: one entry per line of Plan.String.
func lines(s ...string) string { return strings.Join(s, "\n") + "\n" }

func TestPlan(t *testing.T) {
	p := netip.MustParsePrefix
	seg := func(name, prefix string) Segment { return Segment{Name: name, Prefix: p(prefix)} }
	tests := []struct {
		name string
		topo Topology
		want string
	}{
		{
			name: "default",
			topo: DefaultTopology(),
			want: lines(
				"rt1 eth0 198.18.1.1/24 r1a",
				"rt1 eth1 198.18.2.1/24 r1b",
				"rt1 eth2 198.18.0.1/24 wan",
				"rt1 route 198.19.1.0/24 via 198.18.0.2 dev eth2",
				"rt2 eth0 198.18.0.2/24 wan",
				"rt2 eth1 198.19.1.1/24 r2a",
				"rt2 route 198.18.1.0/24 via 198.18.0.1 dev eth0",
				"rt2 route 198.18.2.0/24 via 198.18.0.1 dev eth0",
				"nat2 eth0 198.19.1.2/24 r2a",
				"nat2 eth1 198.19.2.1/24 r2n",
				"nat2 route 198.18.1.0/24 via 198.19.1.1 dev eth0",
				"nat2 route 198.18.2.0/24 via 198.19.1.1 dev eth0",
				"nat2 route 198.18.0.0/24 via 198.19.1.1 dev eth0",
				"h1 eth0 198.18.1.2/24 r1a",
				"h1 route default via 198.18.1.1 dev eth0",
				"h2 eth0 198.18.1.3/24 r1a",
				"h2 route default via 198.18.1.1 dev eth0",
				"h3 eth0 198.18.2.2/24 r1b",
				"h3 route default via 198.18.2.1 dev eth0",
				"h4 eth0 198.19.1.3/24 r2a",
				"h4 route default via 198.19.1.1 dev eth0",
				"h5 eth0 198.19.2.2/24 r2n",
				"h5 route default via 198.19.2.1 dev eth0",
			),
		},
		{
			name: "chain of three routers",
			topo: Topology{
				Segments: []Segment{seg("a", "198.18.1.0/24"), seg("b", "198.18.2.0/24"), seg("c", "198.18.3.0/24"), seg("d", "198.18.4.0/24")},
				Routers: []Router{
					{Name: "ra", Segments: []string{"a", "b"}},
					{Name: "rb", Segments: []string{"b", "c"}},
					{Name: "rc", Segments: []string{"c", "d"}},
				},
			},
			want: lines(
				"ra eth0 198.18.1.1/24 a",
				"ra eth1 198.18.2.1/24 b",
				"ra route 198.18.3.0/24 via 198.18.2.2 dev eth1",
				"ra route 198.18.4.0/24 via 198.18.2.2 dev eth1",
				"rb eth0 198.18.2.2/24 b",
				"rb eth1 198.18.3.1/24 c",
				"rb route 198.18.1.0/24 via 198.18.2.1 dev eth0",
				"rb route 198.18.4.0/24 via 198.18.3.2 dev eth1",
				"rc eth0 198.18.3.2/24 c",
				"rc eth1 198.18.4.1/24 d",
				"rc route 198.18.1.0/24 via 198.18.3.1 dev eth0",
				"rc route 198.18.2.0/24 via 198.18.3.1 dev eth0",
			),
		},
		{
			// Ring a-(r1)-b-(r2)-c-(r3)-a plus a stub segment d behind r3:
			// r1 reaches c through r2 or r3 (one hop either way); r3 wins
			// because r1 lists segment a (where it meets r3) first.
			name: "ring with tie",
			topo: Topology{
				Segments: []Segment{seg("a", "198.18.1.0/24"), seg("b", "198.18.2.0/24"), seg("c", "198.18.3.0/24"), seg("d", "198.18.4.0/24")},
				Routers: []Router{
					{Name: "r1", Segments: []string{"a", "b"}},
					{Name: "r2", Segments: []string{"b", "c"}},
					{Name: "r3", Segments: []string{"c", "a", "d"}},
				},
			},
			want: lines(
				"r1 eth0 198.18.1.1/24 a",
				"r1 eth1 198.18.2.1/24 b",
				"r1 route 198.18.3.0/24 via 198.18.1.2 dev eth0",
				"r1 route 198.18.4.0/24 via 198.18.1.2 dev eth0",
				"r2 eth0 198.18.2.2/24 b",
				"r2 eth1 198.18.3.1/24 c",
				"r2 route 198.18.1.0/24 via 198.18.2.1 dev eth0",
				"r2 route 198.18.4.0/24 via 198.18.3.2 dev eth1",
				"r3 eth0 198.18.3.2/24 c",
				"r3 eth1 198.18.1.2/24 a",
				"r3 eth2 198.18.4.1/24 d",
				"r3 route 198.18.2.0/24 via 198.18.3.1 dev eth0",
			),
		},
		{
			// An explicit host address takes .1, so the router gets the first
			// free one; auto hosts skip both. A segment without a router
			// gives its hosts no default route; an isolated router gets no
			// route to what it cannot reach.
			name: "explicit addresses, no router, unreachable",
			topo: Topology{
				Segments: []Segment{seg("a", "198.18.1.0/29"), seg("lone", "198.19.0.0/30"), seg("x", "198.18.9.0/24")},
				Routers: []Router{
					{Name: "r1", Segments: []string{"a"}},
					{Name: "r2", Segments: []string{"a"}},
					{Name: "rx", Segments: []string{"x"}},
				},
				Hosts: []Host{
					{Name: "auto", Segment: "a"},
					{Name: "fixed", Segment: "a", Addr: netip.MustParseAddr("198.18.1.1")},
					{Name: "fixed2", Segment: "a", Addr: netip.MustParseAddr("198.18.1.4")},
					{Name: "auto2", Segment: "a"},
					{Name: "l1", Segment: "lone"},
					{Name: "l2", Segment: "lone"},
				},
			},
			want: lines(
				"r1 eth0 198.18.1.2/29 a",
				"r2 eth0 198.18.1.3/29 a",
				"rx eth0 198.18.9.1/24 x",
				"auto eth0 198.18.1.5/29 a",
				"auto route default via 198.18.1.2 dev eth0",
				"fixed eth0 198.18.1.1/29 a",
				"fixed route default via 198.18.1.2 dev eth0",
				"fixed2 eth0 198.18.1.4/29 a",
				"fixed2 route default via 198.18.1.2 dev eth0",
				"auto2 eth0 198.18.1.6/29 a",
				"auto2 route default via 198.18.1.2 dev eth0",
				"l1 eth0 198.19.0.1/30 lone",
				"l2 eth0 198.19.0.2/30 lone",
			),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := tt.topo.Plan()
			if err != nil {
				t.Fatalf("Plan(): %v", err)
			}
			if diff := cmp.Diff(tt.want, plan.String()); diff != "" {
				t.Errorf("Plan() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlanPorts(t *testing.T) {
	plan, err := DefaultTopology().Plan()
	if err != nil {
		t.Fatalf("Plan(): %v", err)
	}
	var got []string
	for _, n := range plan.Nodes {
		for _, i := range n.Ifaces {
			got = append(got, i.Port+" "+i.Segment)
		}
	}
	want := []string{"rt1.0 r1a", "rt1.1 r1b", "rt1.2 wan", "rt2.0 wan", "rt2.1 r2a", "nat2.0 r2a", "nat2.1 r2n", "h1.0 r1a", "h2.0 r1a", "h3.0 r1b", "h4.0 r2a", "h5.0 r2n"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("switch ports (-want +got):\n%s", diff)
	}
}

func TestPlanErrors(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		name string
		topo Topology
		want string
	}{
		{
			name: "invalid",
			topo: Topology{Hosts: []Host{{Name: "h1", Segment: "nope"}}},
			want: `validate topology: hosts[0].segment "nope": unknown segment`,
		},
		{
			name: "segment full for routers",
			topo: Topology{
				Segments: []Segment{{Name: "s", Prefix: p("198.18.0.0/30")}},
				Routers:  []Router{{Name: "r1", Segments: []string{"s"}}, {Name: "r2", Segments: []string{"s"}}, {Name: "r3", Segments: []string{"s"}}},
			},
			want: `routers[2].segments[0] "s": no free address left in 198.18.0.0/30`,
		},
		{
			name: "segment full for hosts",
			topo: Topology{
				Segments: []Segment{{Name: "s", Prefix: p("198.18.0.0/30")}},
				Routers:  []Router{{Name: "r1", Segments: []string{"s"}}},
				Hosts:    []Host{{Name: "h1", Segment: "s"}, {Name: "h2", Segment: "s"}},
			},
			want: `hosts[1].segment "s": no free address left in 198.18.0.0/30`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.topo.Plan()
			got := "<nil>"
			if err != nil {
				got = err.Error()
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Plan() error (-want +got):\n%s", diff)
			}
		})
	}
}
