package nft

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/weft-net/weft/policy"
)

// TableName is weft's policy table, family inet. No other weft table uses
// that family and name (fabric/masq owns "ip weft-nat"). Apply owns its
// whole content (anything foreign in it goes at the next full replace);
// Remove deletes it.
const TableName = "weft"

// rulesetVersion is written into Ruleset.Version. Bump it whenever the
// encoding of a Ruleset changes shape, so that agents running the new code
// replace tables written by the old.
const rulesetVersion = 2

// passMark is the packet mark bit by which a policy chain's Pass rule tells
// the endpoint chain that jumped to it to skip the rest of the tier: a
// chain can only return to its caller, not past it. The bit is cleared
// before the first policy that may set it and whenever it is acted on, so
// packets leave with it clear. It lies outside the bits kube-proxy
// (0x4000, 0x8000), Calico (0xffff0000 by default is configurable; weft
// replaces Calico) and WireGuard tools use.
const passMark uint32 = 0x00100000

// Names of the dispatch maps and sets.
const (
	mapWlEgress4  = "wl-egress4"  // iifname . ip saddr: goto the source's egress chain
	mapWlEgress6  = "wl-egress6"  //
	mapWlIngress4 = "wl-ingress4" // oifname . ip daddr: goto the destination's ingress chain
	mapWlIngress6 = "wl-ingress6"
	setWlIfaces   = "wl-ifaces" // every workload interface: the rest of their traffic is dropped
	mapHepIngress = "hep-ingress"
	mapHepEgress  = "hep-egress"
	setHepAddrs   = "hep-addrs"    // the local host endpoints' addresses
	setWlEps      = "wl-endpoints" // oifname . ip daddr of local workload endpoints
)

// HostInfo is what Compile needs to know of the host it compiles for.
type HostInfo struct {
	// Node is the host's node name: host endpoints whose spec.node is Node
	// are enforced on it (none when Node is "").
	Node string
	// Workloads are the workloads attached to the host.
	Workloads []Workload
}

// Workload is a workload attached to the host by a routed interface.
type Workload struct {
	// Interface is the host side of the workload's veth, e.g. "wlw1".
	Interface string
	// Addrs are the workload's addresses. Traffic from Interface with
	// another source address is dropped (anti-spoofing); each address is
	// judged by the endpoint that the policy Set has at it, as Evaluate
	// does; an address with no endpoint is not filtered.
	Addrs []netip.Addr
}

// Compile compiles the policies of set into the ruleset of table inet weft
// for the workloads and host endpoints of one host. Layout:
//
//   - base chains at the forward, input and output hooks accept established
//     and related packets, then dispatch: the source endpoint's egress at
//     priority filter, the destination's ingress at filter + 1, so that a
//     packet between two local endpoints passes both;
//   - workload packets are dispatched by verdict maps keyed by interface and
//     address (wl-egress4, wl-ingress4, ...); host endpoints by address;
//     the per-packet cost does not grow with the number of endpoints;
//   - the endpoint chains (shared by endpoints with the same policies) run
//     the tiers in order, jumping to one chain per policy and direction;
//     Allow accepts, Deny drops, Pass sets passMark and returns, and the end
//     of a tier that applies drops (or goes on, if its default is Pass);
//   - selectors are named interval sets of the addresses of the endpoints
//     and network sets they match; nets and ports are anonymous sets;
//   - host endpoints first accept the failsafe ports of opts.
//
// Compile is pure: set and host are only read. Errors are validation
// errors of host, naming the field and the value.
func Compile(set *policy.Set, host HostInfo, opts policy.Options) (Ruleset, error) {
	if err := validateHost(host); err != nil {
		return Ruleset{}, err
	}
	c := &compiler{set: set, prog: set.Program(), opts: opts, node: host.Node,
		sets: map[string]*Set{}, chains: map[string]*Chain{}, policyChains: map[string]policyChain{}}
	var rs Ruleset
	wl, err := c.workloads(host.Workloads)
	if err != nil {
		return Ruleset{}, err
	}
	hep := c.hostEndpoints()
	rs.Chains = append([]Chain{versionChain()}, c.baseChains(len(hep) > 0)...)
	for _, s := range append(wl, hep...) {
		c.sets[s.Name] = s
	}
	for _, name := range sortedKeys(c.sets) {
		rs.Sets = append(rs.Sets, *c.sets[name])
	}
	for _, name := range sortedKeys(c.chains) {
		rs.Chains = append(rs.Chains, *c.chains[name])
	}
	rs.Version = versionOf(&rs)
	rs.digests = digestsOf(&rs)
	return rs, nil
}

// versionOf returns the version comment of rs: the encoding version and a
// hash of its text without a version.
func versionOf(rs *Ruleset) string {
	text := *rs
	text.Version = ""
	sum := sha256.Sum256([]byte(text.String()))
	return fmt.Sprintf("weft policy v%d %s", rulesetVersion, hex.EncodeToString(sum[:8]))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// validateHost checks interface names as the kernel does (and rejects the
// characters that nft cannot quote) and that no address is used twice.
func validateHost(h HostInfo) error {
	ifaces := map[string]bool{}
	addrs := map[netip.Addr]bool{}
	for i, w := range h.Workloads {
		field := fmt.Sprintf("workloads[%d].interface", i)
		switch {
		case w.Interface == "" || len(w.Interface) > 15 || w.Interface == "." || w.Interface == "..":
			return fmt.Errorf("%s %q: want 1-15 bytes, not . or ..", field, w.Interface)
		case strings.ContainsAny(w.Interface, "/:\"\\ \t\n\r\v\f\x00"):
			return fmt.Errorf("%s %q: contains a character not allowed in an interface name", field, w.Interface)
		case ifaces[w.Interface]:
			return fmt.Errorf("%s %q: used twice", field, w.Interface)
		}
		ifaces[w.Interface] = true
		for j, a := range w.Addrs {
			field := fmt.Sprintf("workloads[%d].addrs[%d]", i, j)
			switch {
			case !a.IsValid() || a.Zone() != "" || a.Is4In6():
				return fmt.Errorf("%s %q: want an IPv4 or IPv6 address without zone", field, a)
			case addrs[a]:
				return fmt.Errorf("%s %s: used twice", field, a)
			}
			addrs[a] = true
		}
	}
	return nil
}

// compiler holds one compilation.
type compiler struct {
	set          *policy.Set
	prog         policy.Program
	opts         policy.Options
	node         string
	sets         map[string]*Set
	chains       map[string]*Chain
	policyChains map[string]policyChain // by chain name
}

// workloads returns the workload dispatch maps and makes the chains their
// elements go to.
func (c *compiler) workloads(ws []Workload) ([]*Set, error) {
	eg := [2]*Set{{Name: mapWlEgress4, Key: []KeyType{KeyIfname, KeyIPv4}, Verdict: true},
		{Name: mapWlEgress6, Key: []KeyType{KeyIfname, KeyIPv6}, Verdict: true}}
	in := [2]*Set{{Name: mapWlIngress4, Key: []KeyType{KeyIfname, KeyIPv4}, Verdict: true},
		{Name: mapWlIngress6, Key: []KeyType{KeyIfname, KeyIPv6}, Verdict: true}}
	ifaces := &Set{Name: setWlIfaces, Key: []KeyType{KeyIfname}}
	eps := [2]*Set{{Name: setWlEps + "4", Key: []KeyType{KeyIfname, KeyIPv4}},
		{Name: setWlEps + "6", Key: []KeyType{KeyIfname, KeyIPv6}}}
	order := make([]int, len(ws)) // indexes of ws by interface name
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(ws[a].Interface, ws[b].Interface) })
	for _, i := range order {
		w := ws[i]
		ifaces.Elements = append(ifaces.Elements, Element{Key: []Range{single(ifname(w.Interface))}})
		addrs := slices.Clone(w.Addrs)
		slices.SortFunc(addrs, netip.Addr.Compare)
		for _, a := range addrs {
			f := 0
			if a.Is6() {
				f = 1
			}
			key := []Range{single(ifname(w.Interface)), single(a.AsSlice())}
			egress, ingress := Verdict{Kind: VerdictAccept}, Verdict{Kind: VerdictAccept}
			comment := "no endpoint"
			if idx := c.set.EndpointAt(a); idx >= 0 {
				ep := c.prog.Endpoints[idx]
				if ep.Kind != policy.KindWorkloadEndpoint {
					return nil, fmt.Errorf("workloads[%d].addrs %s: is the address of %s", i, a, ep)
				}
				comment = sanitize(ep.Namespace + "/" + ep.Name)
				egress = Verdict{Kind: VerdictGoto, Chain: c.sequence(idx, false)}
				ingress = Verdict{Kind: VerdictGoto, Chain: c.sequence(idx, true)}
				eps[f].Elements = append(eps[f].Elements, Element{Key: key})
			}
			eg[f].Elements = append(eg[f].Elements, Element{Key: key, Verdict: &egress, Comment: comment})
			in[f].Elements = append(in[f].Elements, Element{Key: key, Verdict: &ingress, Comment: comment})
		}
	}
	out := []*Set{eg[0], eg[1], in[0], in[1], ifaces}
	if c.localHEPs() {
		out = append(out, eps[0], eps[1])
	}
	return out, nil
}

// localHEPs reports whether any host endpoint is this node's.
func (c *compiler) localHEPs() bool {
	for _, ep := range c.prog.Endpoints {
		if c.isLocalHEP(ep) {
			return true
		}
	}
	return false
}

func (c *compiler) isLocalHEP(ep policy.ProgramEndpoint) bool {
	return c.node != "" && ep.Kind == policy.KindHostEndpoint && ep.Node == c.node
}

// hostEndpoints returns the host endpoint dispatch maps (none when this
// node has no host endpoints) and makes their chains.
func (c *compiler) hostEndpoints() []*Set {
	if !c.localHEPs() {
		return nil
	}
	var out []*Set
	for _, fk := range []struct {
		fam int
		key KeyType
	}{{4, KeyIPv4}, {6, KeyIPv6}} {
		fam, key, suffix := fk.fam, fk.key, fmt.Sprint(fk.fam)
		in := &Set{Name: mapHepIngress + suffix, Key: []KeyType{key}, Verdict: true}
		eg := &Set{Name: mapHepEgress + suffix, Key: []KeyType{key}, Verdict: true}
		addrs := &Set{Name: setHepAddrs + suffix, Key: []KeyType{key}}
		for idx, ep := range c.prog.Endpoints {
			if !c.isLocalHEP(ep) {
				continue
			}
			for _, n := range prefixesOf(ep.Nets, fam) {
				// Host endpoints have single addresses (expectedIPs); judge
				// each by the endpoint Evaluate finds there.
				if !n.IsSingleIP() || c.set.EndpointAt(n.Addr()) != idx {
					continue
				}
				key := []Range{single(n.Addr().AsSlice())}
				comment := sanitize(ep.Name)
				in.Elements = append(in.Elements, Element{Key: key, Comment: comment,
					Verdict: &Verdict{Kind: VerdictGoto, Chain: c.sequence(idx, true)}})
				eg.Elements = append(eg.Elements, Element{Key: key, Comment: comment,
					Verdict: &Verdict{Kind: VerdictGoto, Chain: c.sequence(idx, false)}})
				addrs.Elements = append(addrs.Elements, Element{Key: key})
			}
		}
		for _, s := range []*Set{in, eg, addrs} {
			slices.SortFunc(s.Elements, func(a, b Element) int { return slices.Compare(a.Key[0].From, b.Key[0].From) })
		}
		out = append(out, in, eg, addrs)
	}
	return out
}

// versionChainName is the chain that carries the ruleset's version.
const versionChainName = "weft-version"

// versionChain returns the first chain of every ruleset: never hooked nor
// jumped to, it only carries the version comment on its one rule (a
// counter, which never counts). It is a chain of its own, and its rule has
// no verdict, so that rewriting it with every update does not make the
// kernel validate the whole table: a transaction that adds a rule with a
// verdict or lookup, or a map element with a jump, makes it walk every
// chain reachable from the base chains (about 3 ms at 10,000 endpoints),
// and one that only deletes elements and rewrites this chain does not.
func versionChain() Chain {
	return Chain{Name: versionChainName, Rules: []Rule{{Counter: true}}}
}

// baseChains returns the chains hooked into the kernel.
func (c *compiler) baseChains(hep bool) []Chain {
	est := Rule{Matches: []Match{&CtState{States: []string{"established", "related"}}}, Verdict: Verdict{Kind: VerdictAccept}}
	// Neighbour discovery and multicast listener messages between a
	// workload and its host are below policy (as Calico allows them).
	var ndTypes []Range
	for _, typ := range []uint8{130, 131, 132, 133, 134, 135, 136, 143} {
		ndTypes = append(ndTypes, single(u8(typ)))
	}
	nd := Rule{Family: 6, Matches: []Match{&Cmp{Field: FieldL4Proto, Value: u8(policy.ProtoICMPv6)},
		&Lookup{Fields: []Field{FieldICMPv6Type}, Inline: &Set{Key: []KeyType{KeyICMPv6Type}, Elements: rangeElements(ndTypes)}}},
		Verdict: Verdict{Kind: VerdictAccept}}
	vmap := func(fields []Field, set string) Rule {
		fam := 0
		for _, f := range fields {
			fam = max(fam, f.family())
		}
		return Rule{Family: fam, Matches: []Match{&Lookup{Fields: fields, Set: set, Vmap: true}}}
	}
	spoof := func(f Field) Rule {
		return Rule{Matches: []Match{&Lookup{Fields: []Field{f}, Set: setWlIfaces}}, Counter: true,
			Verdict: Verdict{Kind: VerdictDrop}}
	}
	egress := []Rule{vmap([]Field{FieldIIFName, FieldSaddr4}, mapWlEgress4),
		vmap([]Field{FieldIIFName, FieldSaddr6}, mapWlEgress6), spoof(FieldIIFName)}
	ingress := []Rule{vmap([]Field{FieldOIFName, FieldDaddr4}, mapWlIngress4),
		vmap([]Field{FieldOIFName, FieldDaddr6}, mapWlIngress6), spoof(FieldOIFName)}
	chains := []Chain{
		{Name: "forward-egress", Hook: &Hook{Hook: "forward"}, Rules: append([]Rule{est}, egress...)},
		{Name: "forward-ingress", Hook: &Hook{Hook: "forward", Priority: 1}, Rules: append([]Rule{est}, ingress...)},
		{Name: "input-egress", Hook: &Hook{Hook: "input"}, Rules: append([]Rule{est, nd}, egress...)},
	}
	out := Chain{Name: "output-ingress", Hook: &Hook{Hook: "output", Priority: 1}, Rules: []Rule{est, nd}}
	if hep {
		// Evaluate: traffic from a host endpoint to a workload on the same
		// node is always allowed, on both sides.
		in := Chain{Name: "input-ingress", Hook: &Hook{Hook: "input", Priority: 1}, Rules: []Rule{est,
			vmap([]Field{FieldDaddr4}, mapHepIngress+"4"), vmap([]Field{FieldDaddr6}, mapHepIngress+"6")}}
		eg := Chain{Name: "output-egress", Hook: &Hook{Hook: "output"}, Rules: []Rule{est,
			{Family: 4, Matches: []Match{&Lookup{Fields: []Field{FieldOIFName, FieldDaddr4}, Set: setWlEps + "4"}}, Verdict: Verdict{Kind: VerdictAccept}},
			{Family: 6, Matches: []Match{&Lookup{Fields: []Field{FieldOIFName, FieldDaddr6}, Set: setWlEps + "6"}}, Verdict: Verdict{Kind: VerdictAccept}},
			vmap([]Field{FieldSaddr4}, mapHepEgress+"4"), vmap([]Field{FieldSaddr6}, mapHepEgress+"6")}}
		out.Rules = append(out.Rules,
			Rule{Family: 4, Matches: []Match{&Lookup{Fields: []Field{FieldSaddr4}, Set: setHepAddrs + "4"}}, Verdict: Verdict{Kind: VerdictAccept}},
			Rule{Family: 6, Matches: []Match{&Lookup{Fields: []Field{FieldSaddr6}, Set: setHepAddrs + "6"}}, Verdict: Verdict{Kind: VerdictAccept}})
		chains = append(chains, in, eg)
	}
	out.Rules = append(out.Rules, ingress...)
	return append(chains, out)
}

// nameHash returns a short stable hash of s for set and chain names.
func nameHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:5])
}
