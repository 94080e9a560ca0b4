package fabric

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Subnet allocation.
//
// Every node holds one workload subnet cut from the cluster's Pool. There is
// no coordinator: each node publishes its Claim in its gossip record, and every
// node resolves conflicts the same way from the same claims (Beats). A node
// keeps the subnet it had (from its state dir), else claims a free one; the
// loser of a conflict (concurrent start, healed partition) moves; a statically
// configured subnet is honoured. Decide is the whole decision and is pure:
// the caller supplies the time (ClaimedAt of the claim it then publishes), the
// seed and the view of the other nodes, and persists the result (SaveState).

// Claim is one node's claim on a subnet as the node's gossip record states it.
type Claim struct {
	// Node is the claiming node's name.
	Node string
	// Subnet is the claimed subnet; the zero Prefix means the node claims none.
	Subnet netip.Prefix
	// ClaimedAt is when the node claimed Subnet, in Unix milliseconds.
	ClaimedAt int64
	// Static reports whether the subnet was configured by hand; a static
	// claim beats every dynamic one.
	Static bool
}

// Beats reports whether a wins over b for the same subnet: a static claim
// beats a dynamic one; then the earlier ClaimedAt wins; then the lower Node
// name. For claims of different nodes exactly one of Beats(a, b) and
// Beats(b, a) holds, so every node that sees the same claims picks the same
// winner. Beats(a, a) is false.
func Beats(a, b Claim) bool {
	if a.Static != b.Static {
		return a.Static
	}
	if a.ClaimedAt != b.ClaimedAt {
		return a.ClaimedAt < b.ClaimedAt
	}
	return a.Node < b.Node
}

// why says in a few words why winner beats loser; Beats(winner, loser) must hold.
func why(winner, loser Claim) string {
	switch {
	case winner.Static && !loser.Static:
		return "static"
	case winner.ClaimedAt < loser.ClaimedAt:
		return "claimed earlier"
	default:
		return "claimed at the same time, lower name"
	}
}

// checkClaim returns why c cannot own a subnet of the valid pool p, or nil.
// c.Subnet must be valid.
func checkClaim(p Pool, c Claim) error {
	switch {
	case c.Node == "":
		return fmt.Errorf("claim of node %q: node: name is empty", c.Node)
	case c.ClaimedAt < 0:
		return fmt.Errorf("claim of node %q: claimedAt %d: negative", c.Node, c.ClaimedAt)
	}
	if why := misfit(p, c.Subnet); why != "" {
		return fmt.Errorf("claim of node %q: subnet %s: %s", c.Node, c.Subnet, why)
	}
	return nil
}

// misfit returns why s is not a subnet of the valid pool p, or "".
func misfit(p Pool, s netip.Prefix) string {
	switch {
	case p.containsValid(s):
		return ""
	case s.Addr().BitLen() != p.CIDR.Addr().BitLen() || s.Addr().Is4In6() != p.CIDR.Addr().Is4In6():
		return fmt.Sprintf("other address family than pool %s", p.CIDR)
	case s.Bits() != p.Bits:
		return fmt.Sprintf("not a /%d as pool %s cuts", p.Bits, p.CIDR)
	case s.Masked() != s:
		return fmt.Sprintf("host bits set, want %s", s.Masked())
	default:
		return fmt.Sprintf("outside pool %s", p.CIDR)
	}
}

// Owners resolves claims: for every subnet of p that is claimed, the winning
// claim by Beats. Claims with a zero Subnet (nodes that claim nothing) are
// skipped. Claims that cannot own a subnet (empty node name, negative
// ClaimedAt, subnet outside the pool, of another length or with host bits
// set) are left out of owners and returned in invalid, in input order, each
// error naming the node, the field and the value. When p itself is invalid,
// owners is empty and invalid holds the pool's error alone.
//
// Owners is pure; it does not modify or retain claims. The same claims in any
// order give the same owners.
func Owners(p Pool, claims []Claim) (owners map[netip.Prefix]Claim, invalid []error) {
	owners = make(map[netip.Prefix]Claim)
	if err := p.Validate(); err != nil {
		return owners, []error{fmt.Errorf("resolve subnet claims: %w", err)}
	}
	for _, c := range claims {
		if !c.Subnet.IsValid() {
			continue
		}
		if err := checkClaim(p, c); err != nil {
			invalid = append(invalid, err)
			continue
		}
		if cur, ok := owners[c.Subnet]; !ok || Beats(c, cur) {
			owners[c.Subnet] = c
		}
	}
	return owners, invalid
}

// Action is what Decide tells a node to do about its own subnet.
type Action int

// Actions of a Decision.
const (
	// ActionWait: no decision can be made from the inputs (the pool or the
	// node's static subnet is misconfigured, see Reason); change nothing.
	ActionWait Action = iota
	// ActionKeep: keep the current subnet.
	ActionKeep
	// ActionClaim: the node had no subnet; claim Decision.Subnet.
	ActionClaim
	// ActionMove: the node lost its subnet or it no longer fits the pool;
	// give it up and claim Decision.Subnet.
	ActionMove
	// ActionExhausted: the node has no subnet it may keep and no subnet is
	// free; give up any subnet held and hold none.
	ActionExhausted
)

// String returns the action's lower-case name, e.g. "keep".
func (a Action) String() string {
	switch a {
	case ActionWait:
		return "wait"
	case ActionKeep:
		return "keep"
	case ActionClaim:
		return "claim"
	case ActionMove:
		return "move"
	case ActionExhausted:
		return "exhausted"
	default:
		return fmt.Sprintf("action(%d)", int(a))
	}
}

// Decision is what a node must do about its own subnet.
type Decision struct {
	// Action is what to do.
	Action Action
	// Subnet is the subnet to hold after the decision: the current one for
	// Keep and Wait, the new one for Claim and Move, zero for Exhausted.
	Subnet netip.Prefix
	// Reason says why, for people: e.g. "lost 10.244.3.0/24 to node b (claimed earlier)".
	Reason string
}

// NodeSeed derives an allocation seed for Decide from a node name (64-bit
// FNV-1a). Any seed works; distinct seeds make concurrent claims collide less.
func NodeSeed(node string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(node); i++ {
		h ^= uint64(node[i])
		h *= prime
	}
	return h
}

// Decide is the allocator: given the pool, this node's current claim (self;
// a zero Subnet when it has none; from its state dir or its configuration), a
// per-node seed (NodeSeed of the node's name, say) and the claims of all other
// known nodes (alive ones and reserved dead ones), it returns what the node
// must do:
//
//   - self static: Keep, even outside the pool or in conflict with another
//     claim (named in Reason). Static claims are honoured.
//   - self dynamic, a subnet of the pool, and it beats every other valid claim
//     on that subnet and no other static claim overlaps it: Keep.
//   - self dynamic but it loses, or it no longer fits the pool (a pool change):
//     Move to a free subnet.
//   - self holds none: Claim a free subnet.
//   - no free subnet: Exhausted, with a Reason naming the pool.
//   - the pool is invalid, or self is static without a valid masked subnet:
//     Wait, with the error in Reason.
//
// Free subnets are the pool's subnets that no other claim overlaps, whether
// that claim wins or not and whether it is aligned or not. The pick starts at
// a point derived from the seed (and from the lost subnet when moving) and
// probes forward, wrapping around, so that nodes starting together rarely
// collide; its cost grows with len(others), not with the pool's size.
//
// Claims in others that name self.Node are ignored (the node's own record
// echoed back). Decide is pure and deterministic: no clock, no randomness, no
// I/O; it does not modify or retain others, and the same others in any order
// give the same Decision. The caller stamps ClaimedAt when it acts on a Claim
// or Move.
func Decide(p Pool, self Claim, seed uint64, others []Claim) Decision {
	if err := p.Validate(); err != nil {
		return Decision{Action: ActionWait, Subnet: self.Subnet, Reason: fmt.Sprintf("cannot allocate: %v", err)}
	}
	if self.Static {
		return decideStatic(p, self, others)
	}
	if !self.Subnet.IsValid() {
		return pick(p, self, seed, others, ActionClaim, "")
	}
	if why := misfit(p, self.Subnet); why != "" {
		return pick(p, self, seed, others, ActionMove, fmt.Sprintf("subnet %s: %s", self.Subnet, why))
	}
	if w, ok := strongest(p, self, others); ok {
		return pick(p, self, seed, others, ActionMove,
			fmt.Sprintf("lost %s to node %s (%s)", self.Subnet, w.Node, why(w, self)))
	}
	return Decision{Action: ActionKeep, Subnet: self.Subnet, Reason: fmt.Sprintf("kept %s", self.Subnet)}
}

// decideStatic honours a static claim, naming conflicts in the reason.
func decideStatic(p Pool, self Claim, others []Claim) Decision {
	s := self.Subnet
	if !s.IsValid() || s.Masked() != s {
		return Decision{Action: ActionWait, Subnet: s,
			Reason: fmt.Sprintf("static subnet %q: not a valid prefix without host bits", s.String())}
	}
	var conflicts []string
	for _, o := range others {
		if o.Node != self.Node && o.Subnet.IsValid() && o.Subnet.Overlaps(s) {
			conflicts = append(conflicts, o.Node)
		}
	}
	slices.Sort(conflicts)
	conflicts = slices.Compact(conflicts)
	reason := fmt.Sprintf("kept static %s", s)
	if why := misfit(p, s); why != "" {
		reason += " (" + why + ")"
	}
	if len(conflicts) > 0 {
		reason += fmt.Sprintf(" despite conflicting claims of node %s", strings.Join(conflicts, ", "))
	}
	return Decision{Action: ActionKeep, Subnet: s, Reason: reason}
}

// strongest returns the best claim (by Beats) among the claims in others that
// take the dynamic claim self's subnet from it: any static claim that
// overlaps it, aligned or not (static claims are honoured), and any valid
// claim on the same subnet that Beats self. Dynamic claims that are invalid
// in the pool do not count: their nodes have to move. ok is false when self
// keeps its subnet.
func strongest(p Pool, self Claim, others []Claim) (best Claim, ok bool) {
	for _, o := range others {
		if o.Node == self.Node || !o.Subnet.IsValid() {
			continue
		}
		beats := false
		switch {
		case o.Static:
			beats = o.Subnet.Overlaps(self.Subnet)
		case o.Subnet == self.Subnet:
			beats = checkClaim(p, o) == nil && Beats(o, self)
		}
		if beats && (!ok || Beats(o, best)) {
			best, ok = o, true
		}
	}
	return best, ok
}

// pick returns a Decision of the given action (Claim or Move) for a free
// subnet, or Exhausted when there is none. lost says why self's subnet went,
// for Move.
func pick(p Pool, self Claim, seed uint64, others []Claim, action Action, lost string) Decision {
	taken := make([]span, 0, len(others))
	for _, o := range others {
		if o.Node == self.Node {
			continue
		}
		if sp, ok := p.span(o.Subnet); ok {
			taken = append(taken, sp)
		}
	}
	taken = mergeSpans(taken)
	size := uint64(p.sizeValid())
	key := mix64(seed)
	if action == ActionMove {
		// Nodes that lost the same subnet must not probe from the same point.
		key = mix64(key ^ prefixHash(self.Subnet))
	}
	i, ok := firstFree(taken, key%size, size)
	if !ok {
		reason := fmt.Sprintf("pool %s is exhausted: all %d subnets are claimed by other nodes", p, size)
		if lost != "" {
			reason = lost + "; " + reason
		}
		return Decision{Action: ActionExhausted, Reason: reason}
	}
	s := p.at(i)
	if lost == "" {
		return Decision{Action: action, Subnet: s, Reason: fmt.Sprintf("claimed free subnet %s", s)}
	}
	return Decision{Action: action, Subnet: s, Reason: lost}
}

// span is a half-open range [lo, hi) of subnet indexes in a pool.
type span struct{ lo, hi uint64 }

// mergeSpans sorts spans and joins those that overlap or touch, in place.
func mergeSpans(spans []span) []span {
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.lo, b.lo) })
	out := spans[:0]
	for _, s := range spans {
		if n := len(out); n > 0 && s.lo <= out[n-1].hi {
			out[n-1].hi = max(out[n-1].hi, s.hi)
			continue
		}
		out = append(out, s)
	}
	return out
}

// firstFree returns the first index at or after start, wrapping around at
// size, that no span in merged (sorted, disjoint, not touching) covers.
func firstFree(merged []span, start, size uint64) (uint64, bool) {
	i := start
	// The first span that ends after i; i is free unless that span holds it.
	j, _ := slices.BinarySearchFunc(merged, i, func(s span, i uint64) int { return cmp.Compare(s.hi, i+1) })
	if j < len(merged) && merged[j].lo <= i {
		i = merged[j].hi // free: spans do not touch
	}
	if i < size {
		return i, true
	}
	if len(merged) == 0 || merged[0].lo > 0 {
		return 0, true
	}
	if merged[0].hi < size {
		return merged[0].hi, true
	}
	return 0, false
}

// mix64 is the splitmix64 finalizer: it spreads seeds that differ in a few
// bits over the whole range.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// prefixHash hashes a prefix's address and length.
func prefixHash(s netip.Prefix) uint64 {
	u := addrBits(s.Addr())
	return mix64(u.hi ^ mix64(u.lo^uint64(s.Bits()+1)))
}
