package nft

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/weft-net/weft/policy"
)

// maxChainName keeps chain names well inside the kernel's limit
// (NFT_CHAIN_MAXNAMELEN, 256 bytes with the terminating NUL).
const maxChainName = 200

// segment is one tier, of one stage, that applies to an endpoint in one
// direction: the policies that select it, in order, then the end of the
// tier.
type segment struct {
	tier     string
	stage    string        // "untracked " or "preDNAT " for those host endpoint stages
	policies []policyChain // only those with rules in the direction
	// deny makes the end of the tier drop; otherwise it goes on with the
	// next segment (Pass, or untracked and preDNAT policy).
	deny bool
}

// policyChain is the chain of one policy in one direction.
type policyChain struct {
	name string
	pass bool // it has a Pass rule, which sets passMark
}

// sequence returns the name of the chain that judges endpoint idx in one
// direction, making it, its continuation chains and the policy chains it
// jumps to unless an endpoint with the same policies made them already.
//
// The chain is named after a hash of what it does, so endpoints with the
// same policies share it. A tier after the first starts a continuation
// chain (".1", ".2", ...) that Pass and tier ends reach by goto: nftables
// has no jump within a chain.
func (c *compiler) sequence(idx int, ingress bool) string {
	ep := c.prog.Endpoints[idx]
	host := ep.Kind == policy.KindHostEndpoint
	normal := func(p *policy.ProgramPolicy) bool { return !p.DoNotTrack && !p.PreDNAT }
	final := Verdict{Kind: VerdictAccept}
	var segs []segment
	if host {
		segs = c.tiers(ep, ingress, "untracked ", func(p *policy.ProgramPolicy) bool { return p.DoNotTrack }, false)
		if ingress {
			segs = append(segs, c.tiers(ep, ingress, "preDNAT ", func(p *policy.ProgramPolicy) bool { return p.PreDNAT }, false)...)
		}
		segs = append(segs, c.tiers(ep, ingress, "", normal, true)...)
		if !ep.DefaultAllow {
			final = Verdict{Kind: VerdictDrop}
		}
	} else {
		segs = c.tiers(ep, ingress, "", normal, true)
		if c.opts.DefaultDenyWorkloads {
			final = Verdict{Kind: VerdictDrop}
		}
	}

	kind, dir := "wl", "out"
	if host {
		kind = "hep"
	}
	if ingress {
		dir = "in"
	}
	var sig strings.Builder
	fmt.Fprintf(&sig, "%s %s", kind, dir)
	anyPass := false
	for _, s := range segs {
		fmt.Fprintf(&sig, "|%s%s deny=%v:", s.stage, s.tier, s.deny)
		for _, p := range s.policies {
			sig.WriteString(" " + p.name)
			anyPass = anyPass || p.pass
		}
	}
	fmt.Fprintf(&sig, "|%s", final)
	base := kind + "-" + dir + "-" + nameHash(sig.String())
	if _, ok := c.chains[base]; ok {
		return base
	}

	name := func(k int) string {
		if k == 0 {
			return base
		}
		return fmt.Sprintf("%s.%d", base, k)
	}
	next := func(k int) Verdict {
		if k+1 < len(segs) {
			return Verdict{Kind: VerdictGoto, Chain: name(k + 1)}
		}
		return final
	}
	var head []Rule
	if host {
		head = c.failsafeRules(ingress)
	}
	head = append(head, Rule{Matches: []Match{&CtState{States: []string{"invalid"}}}, Counter: true, Verdict: Verdict{Kind: VerdictDrop}})
	if len(segs) == 0 {
		c.chains[base] = &Chain{Name: base, Rules: append(head, Rule{Counter: true, Verdict: final, Comment: "no policy applies"})}
		return base
	}
	if anyPass {
		head = append(head, Rule{Mark: &MarkSet{Bit: passMark}})
	}
	for k, s := range segs {
		var rules []Rule
		if k == 0 {
			rules = head
		}
		for _, p := range s.policies {
			rules = append(rules, Rule{Verdict: Verdict{Kind: VerdictJump, Chain: p.name}})
			if p.pass {
				rules = append(rules, Rule{Matches: []Match{&MarkTest{Bit: passMark}},
					Mark: &MarkSet{Bit: passMark}, Verdict: next(k)})
			}
		}
		tier := "end of " + s.stage + "tier " + sanitize(s.tier)
		end := Rule{Counter: true, Verdict: next(k), Comment: tier + ": go on"}
		switch {
		case s.deny:
			end = Rule{Counter: true, Verdict: Verdict{Kind: VerdictDrop}, Comment: tier + ": deny"}
		case k+1 == len(segs):
			end.Comment = tier + ": go on; no tier left: " + map[VerdictKind]string{VerdictAccept: "allow", VerdictDrop: "deny"}[final.Kind]
		}
		c.chains[name(k)] = &Chain{Name: name(k), Rules: append(rules, end)}
	}
	return base
}

// tiers returns a segment for every tier in which a policy that passes
// filter selects ep for the direction, as Evaluate's tiers walks them.
// With endDeny false (untracked and preDNAT policy) no tier end denies.
func (c *compiler) tiers(ep policy.ProgramEndpoint, ingress bool, stage string, filter func(*policy.ProgramPolicy) bool, endDeny bool) []segment {
	var segs []segment
	for i := 0; i < len(ep.Policies); {
		ti := ep.Policies[i].Tier
		t := &c.prog.Tiers[ti]
		s := segment{tier: t.Name, stage: stage, deny: endDeny && t.DefaultAction != policy.ActionPass}
		selected := false
		for ; i < len(ep.Policies) && ep.Policies[i].Tier == ti; i++ {
			p := &t.Policies[ep.Policies[i].Index]
			if !filter(p) || (ingress && !p.Ingress) || (!ingress && !p.Egress) {
				continue
			}
			selected = true
			if pc, ok := c.policyChain(p, ingress); ok {
				s.policies = append(s.policies, pc)
			}
		}
		if selected {
			segs = append(segs, s)
		}
	}
	return segs
}

// policyChain makes the chain of p's rules in one direction, unless made,
// and returns it; false when the chain would be empty (no rules, or none
// that can match).
func (c *compiler) policyChain(p *policy.ProgramPolicy, ingress bool) (policyChain, bool) {
	dir, rules := "egress", p.EgressRules
	if ingress {
		dir, rules = "ingress", p.IngressRules
	}
	name := policyChainName(p, dir)
	if pc, ok := c.policyChains[name]; ok {
		return pc, c.chains[name] != nil
	}
	pc := policyChain{name: name}
	var out []Rule
	for i := range rules {
		rs := c.rule(p, dir, i, &rules[i])
		if len(rs) > 0 && rules[i].Action == policy.ActionPass {
			pc.pass = true
		}
		out = append(out, rs...)
	}
	c.policyChains[name] = pc
	if len(out) == 0 {
		return pc, false
	}
	c.chains[name] = &Chain{Name: name, Rules: out}
	return pc, true
}

// policyChainName returns e.g. "gnp/allow-dns/egress" or
// "np/prod/allow-web/ingress". Names cannot collide: namespaces and
// policy names contain no '/'.
func policyChainName(p *policy.ProgramPolicy, dir string) string {
	kind := "gnp"
	if p.Kind == policy.KindNetworkPolicy {
		kind = "np"
	}
	name := sanitize(kind + "/" + p.Key + "/" + dir)
	if len(name) > maxChainName {
		name = name[:maxChainName-11] + "~" + nameHash(name)
	}
	return name
}

// failsafeRules accepts the failsafe ports of host endpoints: inbound
// (ingress) by destination port and source net, outbound by destination
// port and destination net.
func (c *compiler) failsafeRules(ingress bool) []Rule {
	list, word := c.opts.FailsafeOutbound, "outbound"
	if ingress {
		list, word = c.opts.FailsafeInbound, "inbound"
	}
	var out []Rule
	for _, f := range list {
		r := Rule{Matches: []Match{&Cmp{Field: FieldL4Proto, Value: u8(f.Protocol)}, &Cmp{Field: FieldDport, Value: u16(f.Port)}},
			Verdict: Verdict{Kind: VerdictAccept}, Comment: "failsafe " + word + " " + f.String()}
		if f.Net.IsValid() {
			fam := addrFamily(f.Net.Addr().Unmap())
			field := map[[2]bool]Field{{true, true}: FieldSaddr4, {true, false}: FieldSaddr6,
				{false, true}: FieldDaddr4, {false, false}: FieldDaddr6}[[2]bool{ingress, fam == 4}]
			r.Family = fam
			r.Matches = append(r.Matches, inlineMatch(field, false, addrElements([]netip.Prefix{f.Net}, fam)))
		}
		out = append(out, r)
	}
	return out
}
