package fabric

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDecide(t *testing.T) {
	quad := subnetPool("10.244.0.0/22", 24) // four subnets: 10.244.0-3.0/24
	tests := []struct {
		name   string
		pool   Pool
		self   Claim
		others []Claim
		want   Decision
	}{
		{
			name: "claim in an empty one-subnet pool",
			pool: subnetPool("10.244.0.0/24", 24),
			self: Claim{Node: "a"},
			want: Decision{Action: ActionClaim, Subnet: subnetPrefix("10.244.0.0/24"), Reason: "claimed free subnet 10.244.0.0/24"},
		},
		{
			name: "claim the only free subnet",
			pool: quad,
			self: Claim{Node: "a"},
			others: []Claim{
				subnetClaim("b", "10.244.0.0/24", 1),
				subnetClaim("c", "10.244.1.0/24", 1),
				subnetClaim("d", "10.244.3.0/24", 1),
			},
			want: Decision{Action: ActionClaim, Subnet: subnetPrefix("10.244.2.0/24"), Reason: "claimed free subnet 10.244.2.0/24"},
		},
		{
			// Pins the seed-to-subnet mapping: a change moves every new node.
			name: "claim in the default pool starts at the seed",
			pool: DefaultPool(),
			self: Claim{Node: "a"},
			want: Decision{Action: ActionClaim, Subnet: subnetPrefix("10.244.248.0/24"), Reason: "claimed free subnet 10.244.248.0/24"},
		},
		{
			name: "claim probes forward from a taken start",
			pool: DefaultPool(),
			self: Claim{Node: "a"},
			others: []Claim{
				subnetClaim("b", "10.244.248.0/24", 1),
				subnetClaim("c", "10.244.249.0/24", 1),
			},
			want: Decision{Action: ActionClaim, Subnet: subnetPrefix("10.244.250.0/24"), Reason: "claimed free subnet 10.244.250.0/24"},
		},
		{
			name: "claim wraps around the end of the pool",
			pool: DefaultPool(),
			self: Claim{Node: "a"},
			others: []Claim{
				subnetClaim("b", "10.244.248.0/21", 1), // misaligned: still not free
				subnetClaim("c", "10.244.0.0/24", 1),
			},
			want: Decision{Action: ActionClaim, Subnet: subnetPrefix("10.244.1.0/24"), Reason: "claimed free subnet 10.244.1.0/24"},
		},
		{
			name:   "keep without conflict",
			pool:   DefaultPool(),
			self:   subnetClaim("a", "10.244.1.0/24", 100),
			others: []Claim{subnetClaim("b", "10.244.2.0/24", 1)},
			want:   Decision{Action: ActionKeep, Subnet: subnetPrefix("10.244.1.0/24"), Reason: "kept 10.244.1.0/24"},
		},
		{
			name: "keep: claimed earlier",
			pool: DefaultPool(),
			self: subnetClaim("z", "10.244.1.0/24", 100),
			others: []Claim{
				subnetClaim("a", "10.244.1.0/24", 101),
				subnetClaim("b", "10.244.1.0/24", 200),
			},
			want: Decision{Action: ActionKeep, Subnet: subnetPrefix("10.244.1.0/24"), Reason: "kept 10.244.1.0/24"},
		},
		{
			name:   "keep: same time, lower name",
			pool:   DefaultPool(),
			self:   subnetClaim("a", "10.244.1.0/24", 100),
			others: []Claim{subnetClaim("b", "10.244.1.0/24", 100)},
			want:   Decision{Action: ActionKeep, Subnet: subnetPrefix("10.244.1.0/24"), Reason: "kept 10.244.1.0/24"},
		},
		{
			name: "keep: invalid claims do not win",
			pool: DefaultPool(),
			self: subnetClaim("b", "10.244.1.0/24", 100),
			others: []Claim{
				subnetClaim("", "10.244.1.0/24", 1),
				subnetClaim("a", "10.244.1.0/24", -5),
				subnetClaim("c", "10.244.0.0/23", 1), // dynamic and misaligned: it has to move, not us
			},
			want: Decision{Action: ActionKeep, Subnet: subnetPrefix("10.244.1.0/24"), Reason: "kept 10.244.1.0/24"},
		},
		{
			name:   "keep: own record echoed back is ignored",
			pool:   DefaultPool(),
			self:   subnetClaim("b", "10.244.1.0/24", 100),
			others: []Claim{subnetClaim("b", "10.244.1.0/24", 1)},
			want:   Decision{Action: ActionKeep, Subnet: subnetPrefix("10.244.1.0/24"), Reason: "kept 10.244.1.0/24"},
		},
		{
			name: "move: lost to an earlier claim",
			pool: quad,
			self: subnetClaim("a", "10.244.1.0/24", 100),
			others: []Claim{
				subnetClaim("b", "10.244.1.0/24", 50),
				subnetClaim("c", "10.244.0.0/24", 1),
				subnetClaim("d", "10.244.2.0/24", 1),
			},
			want: Decision{Action: ActionMove, Subnet: subnetPrefix("10.244.3.0/24"), Reason: "lost 10.244.1.0/24 to node b (claimed earlier)"},
		},
		{
			name: "move: lost to the best of several",
			pool: quad,
			self: subnetClaim("c", "10.244.1.0/24", 100),
			others: []Claim{
				subnetClaim("b", "10.244.1.0/24", 50),
				subnetClaim("a", "10.244.1.0/24", 50),
				subnetClaim("d", "10.244.1.0/24", 70),
				subnetClaim("e", "10.244.0.0/24", 1),
				subnetClaim("f", "10.244.3.0/24", 1),
			},
			want: Decision{Action: ActionMove, Subnet: subnetPrefix("10.244.2.0/24"), Reason: "lost 10.244.1.0/24 to node a (claimed earlier)"},
		},
		{
			name: "move: same time, lower name",
			pool: quad,
			self: subnetClaim("b", "10.244.1.0/24", 100),
			others: []Claim{
				subnetClaim("a", "10.244.1.0/24", 100),
				subnetClaim("c", "10.244.0.0/24", 1),
				subnetClaim("d", "10.244.2.0/24", 1),
			},
			want: Decision{Action: ActionMove, Subnet: subnetPrefix("10.244.3.0/24"), Reason: "lost 10.244.1.0/24 to node a (claimed at the same time, lower name)"},
		},
		{
			name: "move: static beats an earlier dynamic claim",
			pool: quad,
			self: subnetClaim("a", "10.244.1.0/24", 1),
			others: []Claim{
				subnetStatic("s", "10.244.1.0/24", 1000),
				subnetClaim("c", "10.244.0.0/24", 1),
				subnetClaim("d", "10.244.2.0/24", 1),
			},
			want: Decision{Action: ActionMove, Subnet: subnetPrefix("10.244.3.0/24"), Reason: "lost 10.244.1.0/24 to node s (static)"},
		},
		{
			name: "move: a misaligned static claim overlaps",
			pool: quad,
			self: subnetClaim("a", "10.244.1.0/24", 1),
			others: []Claim{
				subnetStatic("s", "10.244.1.128/25", 1000),
				subnetClaim("c", "10.244.0.0/24", 1),
				subnetClaim("d", "10.244.2.0/24", 1),
			},
			want: Decision{Action: ActionMove, Subnet: subnetPrefix("10.244.3.0/24"), Reason: "lost 10.244.1.0/24 to node s (static)"},
		},
		{
			name: "move: pool cut into smaller subnets; old claims of others stay taken",
			pool: subnetPool("10.244.0.0/23", 25), // 10.244.0.0/25, .0.128/25, .1.0/25, .1.128/25
			self: subnetClaim("a", "10.244.1.0/24", 1),
			others: []Claim{
				subnetClaim("b", "10.244.0.0/24", 1),
				subnetClaim("c", "10.244.1.128/25", 5),
			},
			want: Decision{Action: ActionMove, Subnet: subnetPrefix("10.244.1.0/25"), Reason: "subnet 10.244.1.0/24: not a /25 as pool 10.244.0.0/23 cuts"},
		},
		{
			name: "move: pool moved elsewhere",
			pool: subnetPool("10.250.0.0/24", 24),
			self: subnetClaim("a", "10.244.1.0/24", 1),
			want: Decision{Action: ActionMove, Subnet: subnetPrefix("10.250.0.0/24"), Reason: "subnet 10.244.1.0/24: outside pool 10.250.0.0/24"},
		},
		{
			name: "move: host bits in a dynamic subnet",
			pool: subnetPool("10.244.0.0/24", 24),
			self: subnetClaim("a", "10.244.0.7/24", 1),
			want: Decision{Action: ActionMove, Subnet: subnetPrefix("10.244.0.0/24"), Reason: "subnet 10.244.0.7/24: host bits set, want 10.244.0.0/24"},
		},
		{
			name: "static kept without conflict",
			pool: DefaultPool(),
			self: subnetStatic("a", "10.244.7.0/24", 0),
			want: Decision{Action: ActionKeep, Subnet: subnetPrefix("10.244.7.0/24"), Reason: "kept static 10.244.7.0/24"},
		},
		{
			name: "static kept despite conflicts",
			pool: DefaultPool(),
			self: subnetStatic("a", "10.244.7.0/24", 500),
			others: []Claim{
				subnetClaim("c", "10.244.7.0/24", 1),
				subnetStatic("b", "10.244.7.0/24", 1),
				subnetClaim("d", "10.244.7.128/25", 1),
				subnetClaim("c", "10.244.6.0/23", 1),
				subnetClaim("e", "10.244.8.0/24", 1),
			},
			want: Decision{Action: ActionKeep, Subnet: subnetPrefix("10.244.7.0/24"), Reason: "kept static 10.244.7.0/24 despite conflicting claims of node b, c, d"},
		},
		{
			name: "static outside the pool",
			pool: DefaultPool(),
			self: subnetStatic("a", "192.168.7.0/24", 0),
			want: Decision{Action: ActionKeep, Subnet: subnetPrefix("192.168.7.0/24"), Reason: "kept static 192.168.7.0/24 (outside pool 10.244.0.0/16)"},
		},
		{
			name: "static of another size",
			pool: DefaultPool(),
			self: subnetStatic("a", "10.244.7.0/25", 0),
			want: Decision{Action: ActionKeep, Subnet: subnetPrefix("10.244.7.0/25"), Reason: "kept static 10.244.7.0/25 (not a /24 as pool 10.244.0.0/16 cuts)"},
		},
		{
			name: "static without a subnet waits",
			pool: DefaultPool(),
			self: Claim{Node: "a", Static: true},
			want: Decision{Action: ActionWait, Reason: `static subnet "invalid Prefix": not a valid prefix without host bits`},
		},
		{
			name: "static with host bits waits",
			pool: DefaultPool(),
			self: subnetStatic("a", "10.244.7.1/24", 0),
			want: Decision{Action: ActionWait, Subnet: subnetPrefix("10.244.7.1/24"), Reason: `static subnet "10.244.7.1/24": not a valid prefix without host bits`},
		},
		{
			name: "invalid pool waits",
			pool: subnetPool("10.244.0.1/16", 24),
			self: subnetClaim("a", "10.244.1.0/24", 1),
			want: Decision{Action: ActionWait, Subnet: subnetPrefix("10.244.1.0/24"), Reason: "cannot allocate: pool cidr 10.244.0.1/16: host bits set, want 10.244.0.0/16"},
		},
		{
			name: "exhausted",
			pool: quad,
			self: Claim{Node: "e"},
			others: []Claim{
				subnetClaim("a", "10.244.0.0/24", 1),
				subnetClaim("b", "10.244.1.0/24", 1),
				subnetClaim("c", "10.244.2.0/24", 1),
				subnetClaim("d", "10.244.3.0/24", 1),
			},
			want: Decision{Action: ActionExhausted, Reason: "pool 10.244.0.0/22 cut into /24s is exhausted: all 4 subnets are claimed by other nodes"},
		},
		{
			name: "exhausted after losing",
			pool: quad,
			self: subnetClaim("e", "10.244.1.0/24", 9),
			others: []Claim{
				subnetClaim("a", "10.244.0.0/24", 1),
				subnetClaim("b", "10.244.1.0/24", 1),
				subnetClaim("c", "10.244.2.0/24", 1),
				subnetClaim("d", "10.244.3.0/24", 1),
			},
			want: Decision{Action: ActionExhausted, Reason: "lost 10.244.1.0/24 to node b (claimed earlier); pool 10.244.0.0/22 cut into /24s is exhausted: all 4 subnets are claimed by other nodes"},
		},
		{
			name: "exhausted: losing claims are not free either",
			pool: subnetPool("10.244.0.0/23", 24),
			self: Claim{Node: "c"},
			others: []Claim{
				subnetClaim("a", "10.244.0.0/24", 1),
				subnetClaim("b", "10.244.0.0/24", 2), // loses to a, but still holds it
				subnetClaim("d", "10.244.1.0/24", 1),
			},
			want: Decision{Action: ActionExhausted, Reason: "pool 10.244.0.0/23 cut into /24s is exhausted: all 2 subnets are claimed by other nodes"},
		},
		{
			name:   "exhausted: an invalid claim covering the pool",
			pool:   quad,
			self:   Claim{Node: "b"},
			others: []Claim{subnetClaim("a", "10.244.0.0/15", 1)},
			want:   Decision{Action: ActionExhausted, Reason: "pool 10.244.0.0/22 cut into /24s is exhausted: all 4 subnets are claimed by other nodes"},
		},
		{
			name: "claims of others outside the pool are ignored",
			pool: subnetPool("10.244.0.0/24", 24),
			self: Claim{Node: "a"},
			others: []Claim{
				subnetClaim("b", "10.245.0.0/24", 1),
				subnetClaim("c", "10.243.255.0/24", 1),
				subnetClaim("d", "fd00::/120", 1),
				subnetClaim("e", "::ffff:10.244.0.0/120", 1),
				subnetStatic("f", "192.168.0.0/16", 1),
				{Node: "g"},
			},
			want: Decision{Action: ActionClaim, Subnet: subnetPrefix("10.244.0.0/24"), Reason: "claimed free subnet 10.244.0.0/24"},
		},
		{
			name: "ipv6",
			pool: subnetPool("fd00:10::/62", 64),
			self: Claim{Node: "a"},
			others: []Claim{
				subnetClaim("b", "fd00:10::/64", 1),
				subnetClaim("c", "fd00:10:0:1::/64", 1),
				subnetClaim("d", "fd00:10:0:3::/64", 1),
			},
			want: Decision{Action: ActionClaim, Subnet: subnetPrefix("fd00:10:0:2::/64"), Reason: "claimed free subnet fd00:10:0:2::/64"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.others)
			got := Decide(tt.pool, tt.self, NodeSeed(tt.self.Node), in)
			if diff := cmp.Diff(tt.want, got, subnetCmp()); diff != "" {
				t.Errorf("Decide (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.others, in, subnetCmp()); diff != "" {
				t.Errorf("Decide modified others (-before +after):\n%s", diff)
			}
			// The same claims in any order give the same decision.
			r := rand.New(rand.NewPCG(1, 2))
			for range 20 {
				r.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
				if diff := cmp.Diff(got, Decide(tt.pool, tt.self, NodeSeed(tt.self.Node), in), subnetCmp()); diff != "" {
					t.Fatalf("Decide depends on the order of others %v (-first +shuffled):\n%s", in, diff)
				}
			}
		})
	}
}

// TestDecideOrderIndependent checks on many random views that the order of
// the claims of others never changes the decision.
func TestDecideOrderIndependent(t *testing.T) {
	p := subnetPool("10.244.0.0/20", 24) // 16 subnets: collisions are common
	r := rand.New(rand.NewPCG(7, 11))
	for i := range 300 {
		others := make([]Claim, r.IntN(20))
		for j := range others {
			s, _ := p.Subnet(r.IntN(p.Size()))
			others[j] = Claim{Node: fmt.Sprintf("n%d", r.IntN(12)), Subnet: s, ClaimedAt: r.Int64N(4), Static: r.IntN(10) == 0}
		}
		self := Claim{Node: fmt.Sprintf("n%d", r.IntN(12))}
		if r.IntN(3) > 0 {
			self.Subnet, _ = p.Subnet(r.IntN(p.Size()))
			self.ClaimedAt = r.Int64N(4)
		}
		want := Decide(p, self, NodeSeed(self.Node), others)
		for range 5 {
			r.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
			if diff := cmp.Diff(want, Decide(p, self, NodeSeed(self.Node), others), subnetCmp()); diff != "" {
				t.Fatalf("case %d: self %+v, others %+v: Decide depends on order (-first +shuffled):\n%s", i, self, others, diff)
			}
		}
	}
}

// TestDecideHugePool checks that the allocator does not enumerate the pool:
// a /8 cut into /28s (2^20 subnets) with thousands of claims, and an IPv6
// pool capped at MaxPoolSize, both mostly full around the start point.
func TestDecideHugePool(t *testing.T) {
	tests := []struct {
		name string
		pool Pool
	}{
		{name: "slash 8 into slash 28", pool: subnetPool("10.0.0.0/8", 28)},
		{name: "ipv6 capped", pool: subnetPool("fd00::/16", 112)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.pool
			seed := NodeSeed("new")
			start := int(mix64(seed) % uint64(p.Size()))
			// Fill 5000 subnets from the start point on, and a few elsewhere.
			var others []Claim
			for i := range 5000 {
				s, _ := p.Subnet((start + i) % p.Size())
				others = append(others, Claim{Node: fmt.Sprintf("n%d", i), Subnet: s, ClaimedAt: 1})
			}
			want, _ := p.Subnet((start + 5000) % p.Size())
			got := Decide(p, Claim{Node: "new"}, seed, others)
			if got.Action != ActionClaim || got.Subnet != want {
				t.Errorf("Decide = %+v, want claim of %s", got, want)
			}
		})
	}
}
