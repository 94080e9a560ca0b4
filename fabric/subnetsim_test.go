package fabric

import (
	"fmt"
	"net/netip"
	"testing"
)

// subnetSim is a cluster whose nodes allocate in synchronous rounds: in each
// round every node decides against the claims that all nodes held at the end
// of the previous round, as gossip would show them.
type subnetSim struct {
	t        *testing.T
	pool     Pool
	reserved []Claim    // claims of dead nodes: in every view, never change
	claims   []Claim    // the live nodes' current claims
	last     []Decision // each live node's latest decision
}

// newSubnetSim returns a cluster of the named nodes, none holding a subnet.
func newSubnetSim(t *testing.T, p Pool, reserved []Claim, names []string) *subnetSim {
	s := &subnetSim{t: t, pool: p, reserved: reserved, last: make([]Decision, len(names))}
	for _, n := range names {
		s.claims = append(s.claims, Claim{Node: n})
	}
	return s
}

// round lets every node decide once, stamping new claims with now. A blind
// node sees no claims at all (all start at once); otherwise each sees every
// claim, its own included (Decide skips it). It reports whether any claim
// changed.
func (s *subnetSim) round(now int64, blind bool) bool {
	s.t.Helper()
	var view []Claim
	if !blind {
		view = append(append(view, s.reserved...), s.claims...)
	}
	next := make([]Claim, len(s.claims))
	changed := false
	for i, c := range s.claims {
		d := Decide(s.pool, c, NodeSeed(c.Node), view)
		s.last[i] = d
		switch d.Action {
		case ActionKeep:
			next[i] = c
		case ActionClaim, ActionMove:
			next[i] = Claim{Node: c.Node, Subnet: d.Subnet, ClaimedAt: now}
		case ActionExhausted:
			next[i] = Claim{Node: c.Node}
		default:
			s.t.Fatalf("node %s: unexpected decision %+v", c.Node, d)
		}
		changed = changed || next[i] != c
	}
	s.claims = next
	return changed
}

// converge runs rounds from time now on until one changes nothing, and
// returns how many rounds changed something.
func (s *subnetSim) converge(now int64, maxRounds int) int {
	s.t.Helper()
	for r := range maxRounds {
		if !s.round(now+int64(r), false) {
			return r
		}
	}
	s.t.Fatalf("no stable allocation after %d rounds: %+v", maxRounds, s.claims)
	return 0
}

// check asserts the allocation's invariants: every live subnet is in the
// pool, no two nodes (live or reserved) share one, and a node holds none only
// when no free subnet remains. It returns the names of nodes without one.
func (s *subnetSim) check() []string {
	s.t.Helper()
	owner := make(map[netip.Prefix]string)
	for _, c := range s.reserved {
		owner[c.Subnet] = c.Node
	}
	var without []string
	for i, c := range s.claims {
		if !c.Subnet.IsValid() {
			if s.last[i].Action != ActionExhausted {
				s.t.Errorf("node %s holds no subnet, last decision %+v", c.Node, s.last[i])
			}
			without = append(without, c.Node)
			continue
		}
		if !s.pool.Contains(c.Subnet) {
			s.t.Errorf("node %s holds %s, outside pool %v", c.Node, c.Subnet, s.pool)
		}
		if o, dup := owner[c.Subnet]; dup {
			s.t.Errorf("nodes %s and %s both hold %s", o, c.Node, c.Subnet)
		}
		owner[c.Subnet] = c.Node
	}
	if len(without) > 0 && len(owner) < s.pool.Size() {
		s.t.Errorf("nodes %v hold no subnet while %d of %d are free", without, s.pool.Size()-len(owner), s.pool.Size())
	}
	return without
}

// collisions counts the live nodes whose subnet another live node also holds.
func (s *subnetSim) collisions() int {
	seen := make(map[netip.Prefix]int)
	for _, c := range s.claims {
		if c.Subnet.IsValid() {
			seen[c.Subnet]++
		}
	}
	n := 0
	for _, k := range seen {
		if k > 1 {
			n += k
		}
	}
	return n
}

// subnetNames returns n node names with the given prefix.
func subnetNames(prefix string, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s%02d", prefix, i)
	}
	return names
}

// subnetReserved returns claims of n dead nodes on every other subnet of p,
// from the first on, so that the free ones are scattered.
func subnetReserved(p Pool, n int) []Claim {
	var out []Claim
	for i := range n {
		s, ok := p.Subnet(2 * i)
		if !ok {
			panic(fmt.Sprintf("pool %v has no subnet %d", p, 2*i))
		}
		out = append(out, Claim{Node: fmt.Sprintf("dead%02d", i), Subnet: s, ClaimedAt: 1})
	}
	return out
}

// TestSubnetSimConcurrentStart starts nodes at once, each blind to the
// others, then lets them re-decide against everyone's claims until stable.
// Each case runs for many clusters (other node names, hence other seeds).
func TestSubnetSimConcurrentStart(t *testing.T) {
	tests := []struct {
		name        string
		pool        Pool
		reserved    int // dead nodes' claims
		nodes       int
		wantWithout int // nodes left without a subnet (Exhausted)
		maxRounds   int // rounds that change something, at most, in every cluster
	}{
		{name: "20 nodes in 256 subnets", pool: DefaultPool(), nodes: 20, maxRounds: 3},
		{name: "100 nodes in 256 subnets", pool: DefaultPool(), nodes: 100, maxRounds: 5},
		{name: "20 nodes in exactly 20 free subnets", pool: subnetPool("10.244.0.0/19", 24), reserved: 12, nodes: 20, maxRounds: 8},
		{name: "21 nodes in exactly 20 free subnets", pool: subnetPool("10.244.0.0/19", 24), reserved: 12, nodes: 21, wantWithout: 1, maxRounds: 8},
		{name: "16 nodes in 16 subnets", pool: subnetPool("10.244.0.0/20", 24), nodes: 16, maxRounds: 8},
		{name: "40 nodes in 32 subnets", pool: subnetPool("10.244.0.0/19", 24), nodes: 40, wantWithout: 8, maxRounds: 8},
	}
	const clusters = 50
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			worst, collided := 0, 0
			for c := range clusters {
				names := subnetNames(fmt.Sprintf("c%d-node-", c), tt.nodes)
				s := newSubnetSim(t, tt.pool, subnetReserved(tt.pool, tt.reserved), names)
				s.round(1000, true)
				if s.collisions() > 0 {
					collided++
				}
				rounds := s.converge(1001, 100)
				worst = max(worst, rounds)
				if without := s.check(); len(without) != tt.wantWithout {
					t.Errorf("cluster %d: nodes without a subnet %v, want %d of them", c, without, tt.wantWithout)
				}
			}
			if collided == 0 {
				t.Errorf("no cluster had a collision after the blind start: the test shows nothing")
			}
			if worst > tt.maxRounds {
				t.Errorf("worst cluster needed %d rounds to settle, want at most %d", worst, tt.maxRounds)
			}
			t.Logf("%d of %d clusters collided at start; worst cluster settled in %d rounds", collided, clusters, worst)
		})
	}
}

// TestSubnetSimPartitionHeal lets two groups allocate without seeing each
// other, then merges their views: no subnet is held twice afterwards, the
// older group keeps every subnet, and of the younger group only the nodes
// that collided move.
func TestSubnetSimPartitionHeal(t *testing.T) {
	tests := []struct {
		name    string
		pool    Pool
		older   int
		younger int
	}{
		{name: "10 and 6 in 16 subnets", pool: subnetPool("10.244.0.0/20", 24), older: 10, younger: 6},
		{name: "8 and 8 in 32 subnets", pool: subnetPool("10.244.0.0/19", 24), older: 8, younger: 8},
		{name: "100 and 100 in 256 subnets", pool: DefaultPool(), older: 100, younger: 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newSubnetSim(t, tt.pool, nil, subnetNames("a", tt.older))
			a.round(1000, true)
			a.converge(1001, 50)
			b := newSubnetSim(t, tt.pool, nil, subnetNames("b", tt.younger))
			b.round(5000, true)
			b.converge(5001, 50)

			before := make(map[string]netip.Prefix)
			held := make(map[netip.Prefix]bool)
			for _, c := range a.claims {
				before[c.Node] = c.Subnet
				held[c.Subnet] = true
			}
			collided := make(map[string]bool)
			for _, c := range b.claims {
				before[c.Node] = c.Subnet
				collided[c.Node] = held[c.Subnet]
			}

			merged := newSubnetSim(t, tt.pool, nil, nil)
			merged.claims = append(append(merged.claims, a.claims...), b.claims...)
			merged.last = make([]Decision, len(merged.claims))
			rounds := merged.converge(9000, 50)
			if without := merged.check(); len(without) != 0 {
				t.Errorf("nodes without a subnet after the merge: %v", without)
			}
			moved := 0
			for _, c := range merged.claims {
				kept := c.Subnet == before[c.Node]
				switch {
				case c.Node[0] == 'a' && !kept:
					t.Errorf("older node %s moved from %s to %s", c.Node, before[c.Node], c.Subnet)
				case c.Node[0] == 'b' && kept == collided[c.Node]:
					t.Errorf("younger node %s: collided %t, yet kept its subnet %t (%s -> %s)", c.Node, collided[c.Node], kept, before[c.Node], c.Subnet)
				}
				if !kept {
					moved++
				}
			}
			if moved == 0 {
				t.Errorf("no node collided at the merge: the test shows nothing")
			}
			t.Logf("%d nodes moved; settled in %d rounds", moved, rounds)
		})
	}
}
