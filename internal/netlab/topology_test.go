package netlab

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidate(t *testing.T) {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	seg := func(name, prefix string) Segment { return Segment{Name: name, Prefix: p(prefix)} }
	tests := []struct {
		name string
		topo Topology
		want []string // error lines; nil means valid
	}{
		{name: "default", topo: DefaultTopology()},
		{name: "empty", topo: Topology{}},
		{
			name: "segment prefixes",
			topo: Topology{Segments: []Segment{
				seg("a", "10.0.0.0/24"),
				seg("b", "198.20.0.0/24"),
				seg("c", "198.16.0.0/14"),
				seg("d", "198.18.1.1/24"),
				seg("e", "198.18.2.0/31"),
				{Name: "f"},
				{Name: "g", Prefix: p("2001:db8::/64")},
				seg("h", "198.18.3.0/24"),
				seg("i", "198.18.3.128/25"),
			}},
			want: []string{
				"segments[0].prefix 10.0.0.0/24: outside the lab range 198.18.0.0/15",
				"segments[1].prefix 198.20.0.0/24: outside the lab range 198.18.0.0/15",
				"segments[2].prefix 198.16.0.0/14: outside the lab range 198.18.0.0/15",
				"segments[3].prefix 198.18.1.1/24: host bits set (want 198.18.1.0/24)",
				"segments[4].prefix 198.18.2.0/31: too small, at most /30",
				"segments[5].prefix: missing or not a valid prefix",
				"segments[6].prefix 2001:db8::/64: not IPv4",
				`segments[8].prefix 198.18.3.128/25: overlaps segments[7] "h" (198.18.3.0/24)`,
			},
		},
		{
			name: "segment names",
			topo: Topology{Segments: []Segment{
				seg("a", "198.18.1.0/24"),
				seg("a", "198.18.2.0/24"),
				seg("", "198.18.3.0/24"),
				seg("sixteen-chars-xx", "198.18.4.0/24"),
				seg("a.b", "198.18.5.0/24"),
				seg("lo", "198.18.6.0/24"),
			}},
			want: []string{
				`segments[1].name "a": duplicate segment name`,
				"segments[2].name: empty name",
				`segments[3].name "sixteen-chars-xx": longer than 15 bytes`,
				`segments[4].name "a.b": character '.' not allowed (use letters, digits, '-', '_')`,
				`segments[5].name "lo": reserved (loopback of the switch namespace)`,
			},
		},
		{
			name: "nodes",
			topo: Topology{
				Segments: []Segment{seg("a", "198.18.1.0/24"), seg("b", "198.18.2.0/24")},
				Routers: []Router{
					{Name: "r1", Segments: []string{"a", "x", "a"}},
					{Name: "r2"},
					{Name: "sw", Segments: []string{"a"}},
				},
				Hosts: []Host{
					{Name: "r1", Segment: "a"},
					{Name: "thirteen-char", Segment: "a"},
					{Name: "h1", Segment: "y"},
					{Name: "h2", Segment: "a", Addr: a("198.18.2.5")},
					{Name: "h3", Segment: "a", Addr: a("198.18.1.0")},
					{Name: "h4", Segment: "a", Addr: a("198.18.1.255")},
					{Name: "h5", Segment: "b", Addr: a("198.18.2.5")},
					{Name: "h6", Segment: "y", Addr: a("198.18.9.9")},
				},
			},
			want: []string{
				`routers[0].segments[1] "x": unknown segment`,
				`routers[0].segments[2] "a": router "r1" is on this segment twice`,
				`routers[1].segments: router "r2" has no segment`,
				`routers[2].name "sw": reserved for the switch namespace`,
				`hosts[0].name "r1": duplicate node name (also routers[0].name)`,
				`hosts[1].name "thirteen-char": longer than 12 bytes`,
				`hosts[2].segment "y": unknown segment`,
				`hosts[3].addr 198.18.2.5: outside segment "a" (198.18.1.0/24)`,
				`hosts[4].addr 198.18.1.0: network address of segment "a"`,
				`hosts[5].addr 198.18.1.255: broadcast address of segment "a"`,
				`hosts[6].addr 198.18.2.5: address already used by hosts[3]`,
				`hosts[7].segment "y": unknown segment`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			if err := tt.topo.Validate(); err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate() errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDefaultTopologyFresh(t *testing.T) {
	a := DefaultTopology()
	a.Routers[0].Segments[0] = "changed"
	if diff := cmp.Diff("r1a", DefaultTopology().Routers[0].Segments[0]); diff != "" {
		t.Errorf("DefaultTopology shares slices between calls (-want +got):\n%s", diff)
	}
}

func TestLastAddr(t *testing.T) {
	tests := []struct {
		prefix string
		want   string
	}{
		{"198.18.0.0/15", "198.19.255.255"},
		{"198.18.1.0/24", "198.18.1.255"},
		{"198.18.1.4/30", "198.18.1.7"},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			got := lastAddr(netip.MustParsePrefix(tt.prefix)).String()
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("lastAddr(%s) (-want +got):\n%s", tt.prefix, diff)
			}
		})
	}
}

func TestRandomPrefix(t *testing.T) {
	p, err := randomPrefix()
	if err != nil {
		t.Fatalf("randomPrefix: %v", err)
	}
	if len(p) != 6 || !strings.HasPrefix(p, "wl") || strings.Trim(p[2:], "0123456789abcdef") != "" {
		t.Errorf("randomPrefix() = %q, want \"wl\" and 4 hex digits", p)
	}
	if err := checkName("options.prefix", p, maxPrefix); err != nil {
		t.Errorf("generated prefix rejected: %v", err)
	}
}
