package fabric

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// subnetClaim builds a dynamic claim.
func subnetClaim(node, subnet string, at int64) Claim {
	return Claim{Node: node, Subnet: subnetPrefix(subnet), ClaimedAt: at}
}

// subnetStatic builds a static claim.
func subnetStatic(node, subnet string, at int64) Claim {
	return Claim{Node: node, Subnet: subnetPrefix(subnet), ClaimedAt: at, Static: true}
}

func TestBeats(t *testing.T) {
	tests := []struct {
		name string
		a, b Claim
		want bool
	}{
		{name: "static beats dynamic", a: subnetStatic("z", "10.244.1.0/24", 900), b: subnetClaim("a", "10.244.1.0/24", 1), want: true},
		{name: "dynamic loses to static", a: subnetClaim("a", "10.244.1.0/24", 1), b: subnetStatic("z", "10.244.1.0/24", 900)},
		{name: "earlier wins", a: subnetClaim("z", "10.244.1.0/24", 1), b: subnetClaim("a", "10.244.1.0/24", 2), want: true},
		{name: "later loses", a: subnetClaim("a", "10.244.1.0/24", 2), b: subnetClaim("z", "10.244.1.0/24", 1)},
		{name: "same time, lower name wins", a: subnetClaim("a", "10.244.1.0/24", 5), b: subnetClaim("b", "10.244.1.0/24", 5), want: true},
		{name: "same time, higher name loses", a: subnetClaim("b", "10.244.1.0/24", 5), b: subnetClaim("a", "10.244.1.0/24", 5)},
		{name: "two statics, earlier wins", a: subnetStatic("b", "10.244.1.0/24", 1), b: subnetStatic("a", "10.244.1.0/24", 2), want: true},
		{name: "two statics, same time, lower name wins", a: subnetStatic("a", "10.244.1.0/24", 1), b: subnetStatic("b", "10.244.1.0/24", 1), want: true},
		{name: "itself", a: subnetClaim("a", "10.244.1.0/24", 1), b: subnetClaim("a", "10.244.1.0/24", 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Beats(tt.a, tt.b); got != tt.want {
				t.Errorf("Beats(%+v, %+v) = %t, want %t", tt.a, tt.b, got, tt.want)
			}
			if tt.a.Node != tt.b.Node && Beats(tt.b, tt.a) == tt.want {
				t.Errorf("Beats(b, a) = Beats(a, b) = %t: not a total order", tt.want)
			}
		})
	}
}

func TestOwners(t *testing.T) {
	tests := []struct {
		name        string
		pool        Pool
		claims      []Claim
		want        map[netip.Prefix]Claim
		wantInvalid []string
	}{
		{
			name: "no claims",
			pool: DefaultPool(),
			want: map[netip.Prefix]Claim{},
		},
		{
			name: "distinct",
			pool: DefaultPool(),
			claims: []Claim{
				subnetClaim("a", "10.244.1.0/24", 10),
				subnetClaim("b", "10.244.2.0/24", 10),
			},
			want: map[netip.Prefix]Claim{
				subnetPrefix("10.244.1.0/24"): subnetClaim("a", "10.244.1.0/24", 10),
				subnetPrefix("10.244.2.0/24"): subnetClaim("b", "10.244.2.0/24", 10),
			},
		},
		{
			name: "conflicts resolved by Beats",
			pool: DefaultPool(),
			claims: []Claim{
				subnetClaim("c", "10.244.1.0/24", 30),
				subnetClaim("a", "10.244.1.0/24", 20),
				subnetClaim("b", "10.244.1.0/24", 20),
				subnetClaim("d", "10.244.2.0/24", 1),
				subnetStatic("e", "10.244.2.0/24", 99),
			},
			want: map[netip.Prefix]Claim{
				subnetPrefix("10.244.1.0/24"): subnetClaim("a", "10.244.1.0/24", 20),
				subnetPrefix("10.244.2.0/24"): subnetStatic("e", "10.244.2.0/24", 99),
			},
		},
		{
			name: "two statics",
			pool: DefaultPool(),
			claims: []Claim{
				subnetStatic("b", "10.244.1.0/24", 5),
				subnetStatic("a", "10.244.1.0/24", 5),
			},
			want: map[netip.Prefix]Claim{
				subnetPrefix("10.244.1.0/24"): subnetStatic("a", "10.244.1.0/24", 5),
			},
		},
		{
			name: "nodes without a subnet are skipped",
			pool: DefaultPool(),
			claims: []Claim{
				{Node: "a"},
				{Node: "b", Static: true},
				subnetClaim("c", "10.244.9.0/24", 1),
			},
			want: map[netip.Prefix]Claim{
				subnetPrefix("10.244.9.0/24"): subnetClaim("c", "10.244.9.0/24", 1),
			},
		},
		{
			name: "invalid claims",
			pool: DefaultPool(),
			claims: []Claim{
				subnetClaim("out", "10.245.1.0/24", 1),
				subnetClaim("long", "10.244.1.0/25", 1),
				subnetClaim("short", "10.244.0.0/23", 1),
				subnetClaim("hostbits", "10.244.1.1/24", 1),
				subnetClaim("v6", "fd00::/24", 1),
				subnetClaim("mapped", "::ffff:10.244.1.0/120", 1),
				subnetClaim("", "10.244.1.0/24", 1),
				subnetClaim("negative", "10.244.1.0/24", -1),
				subnetStatic("staticout", "192.168.0.0/24", 1),
				subnetClaim("ok", "10.244.1.0/24", 7),
			},
			want: map[netip.Prefix]Claim{
				subnetPrefix("10.244.1.0/24"): subnetClaim("ok", "10.244.1.0/24", 7),
			},
			wantInvalid: []string{
				`claim of node "out": subnet 10.245.1.0/24: outside pool 10.244.0.0/16`,
				`claim of node "long": subnet 10.244.1.0/25: not a /24 as pool 10.244.0.0/16 cuts`,
				`claim of node "short": subnet 10.244.0.0/23: not a /24 as pool 10.244.0.0/16 cuts`,
				`claim of node "hostbits": subnet 10.244.1.1/24: host bits set, want 10.244.1.0/24`,
				`claim of node "v6": subnet fd00::/24: other address family than pool 10.244.0.0/16`,
				`claim of node "mapped": subnet ::ffff:10.244.1.0/120: other address family than pool 10.244.0.0/16`,
				`claim of node "": node: name is empty`,
				`claim of node "negative": claimedAt -1: negative`,
				`claim of node "staticout": subnet 192.168.0.0/24: outside pool 10.244.0.0/16`,
			},
		},
		{
			name:        "invalid pool",
			pool:        subnetPool("10.244.0.0/16", 8),
			claims:      []Claim{subnetClaim("a", "10.244.1.0/24", 1)},
			want:        map[netip.Prefix]Claim{},
			wantInvalid: []string{"resolve subnet claims: pool bits 8: not in 16..30 for cidr 10.244.0.0/16"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.claims)
			got, invalid := Owners(tt.pool, in)
			if diff := cmp.Diff(tt.want, got, subnetCmp()); diff != "" {
				t.Errorf("Owners owners (-want +got):\n%s", diff)
			}
			var gotInvalid []string
			for _, err := range invalid {
				gotInvalid = append(gotInvalid, err.Error())
			}
			if diff := cmp.Diff(tt.wantInvalid, gotInvalid); diff != "" {
				t.Errorf("Owners invalid (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.claims, in, subnetCmp()); diff != "" {
				t.Errorf("Owners modified its input (-before +after):\n%s", diff)
			}
			rev := slices.Clone(tt.claims)
			slices.Reverse(rev)
			gotRev, _ := Owners(tt.pool, rev)
			if diff := cmp.Diff(got, gotRev, subnetCmp()); diff != "" {
				t.Errorf("Owners depends on input order (-forward +reversed):\n%s", diff)
			}
		})
	}
}

func TestActionString(t *testing.T) {
	got := []string{ActionWait.String(), ActionKeep.String(), ActionClaim.String(), ActionMove.String(), ActionExhausted.String(), Action(42).String()}
	want := []string{"wait", "keep", "claim", "move", "exhausted", "action(42)"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Action.String (-want +got):\n%s", diff)
	}
}

func TestNodeSeed(t *testing.T) {
	// FNV-1a 64 test vectors.
	tests := []struct {
		node string
		want uint64
	}{
		{node: "", want: 0xcbf29ce484222325},
		{node: "a", want: 0xaf63dc4c8601ec8c},
		{node: "foobar", want: 0x85944171f73967e8},
	}
	for _, tt := range tests {
		if got := NodeSeed(tt.node); got != tt.want {
			t.Errorf("NodeSeed(%q) = %#x, want %#x", tt.node, got, tt.want)
		}
	}
}
