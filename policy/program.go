package policy

import (
	"net/netip"
	"slices"
)

// Program is a Set flattened for a data plane compiler (package policy/nft):
// tiers and their policies in evaluation order, every rule's selectors
// resolved to the addresses of the objects they match, and every endpoint
// with the policies that select it. A compiler that matches packets by these
// addresses judges flows as Evaluate does. It is plain data, made afresh by
// each call to Set.Program and owned by the caller.
type Program struct {
	Tiers []ProgramTier
	// Endpoints are the workload and host endpoints in input order; the
	// indexes are those of Set.EndpointAt.
	Endpoints []ProgramEndpoint
}

// ProgramTier is a tier with its policies in evaluation order.
type ProgramTier struct {
	Name string
	// DefaultAction is what the end of the tier does to an endpoint that
	// its policies select but do not decide: ActionDeny or ActionPass.
	DefaultAction Action
	Policies      []ProgramPolicy
}

// ProgramPolicy is one policy of a tier.
type ProgramPolicy struct {
	Kind string // KindGlobalNetworkPolicy or KindNetworkPolicy
	// Key is the policy's name as Felix keys it: "name" or "namespace/name".
	Key       string
	Namespace string
	// Ingress and Egress are the policy's types (defaulted as Calico does).
	Ingress, Egress     bool
	DoNotTrack, PreDNAT bool
	IngressRules        []ProgramRule
	EgressRules         []ProgramRule
}

// ProgramRule is one rule, its match criteria all ANDed.
type ProgramRule struct {
	Action                Action
	Protocol, NotProtocol *Protocol   // nil: not given
	ICMP, NotICMP         *ICMPFields // nil: not given
	IPVersion             int         // 4, 6, or 0 for either
	Source, Destination   ProgramEntity
}

// ProgramEntity is a rule's source or destination. A packet's address and
// port there match when every criterion that is given holds.
type ProgramEntity struct {
	// Nets and NotNets are masked; nil when not given.
	Nets, NotNets []netip.Prefix
	// Selector describes the positive selector (its namespace scoping
	// included); "" when the entity has none. Otherwise the address must be
	// in one of Selected (possibly empty): the nets of every endpoint and
	// network set it matches.
	Selector string
	Selected []netip.Prefix
	// NotSelector is the notSelector's canonical text, "" when none; the
	// address must be in none of NotSelected: the nets of every endpoint
	// and network set it matches.
	NotSelector string
	NotSelected []netip.Prefix
	// Ports and NotPorts are as written, numeric and named. A numeric port
	// matches only protocols that have ports. A named port matches through
	// NamedPorts (NotNamedPorts): the endpoint nets, protocol and port number
	// of every endpoint the Selector matches (any endpoint without one) that
	// declares a port of that name.
	Ports, NotPorts           []Port
	NamedPorts, NotNamedPorts []NamedPortNet
}

// NamedPortNet is a named port resolved: the packet's address in Net, its
// protocol Protocol and its port Port.
type NamedPortNet struct {
	Net      netip.Prefix
	Protocol uint8
	Port     uint16
}

// ProgramEndpoint is a workload or host endpoint.
type ProgramEndpoint struct {
	Kind      string // KindWorkloadEndpoint or KindHostEndpoint
	Namespace string // "" for host endpoints
	Name      string
	Node      string
	Nets      []netip.Prefix
	// DefaultAllow is set for a host endpoint with the
	// projectcalico-default-allow profile.
	DefaultAllow bool
	// Policies are the policies whose selector selects the endpoint, in
	// evaluation order, whatever their types, doNotTrack and preDNAT.
	Policies []PolicyRef
}

// PolicyRef names a policy of a Program: Tiers[Tier].Policies[Index].
type PolicyRef struct{ Tier, Index int }

// String returns e.g. "WorkloadEndpoint prod/web-1".
func (e ProgramEndpoint) String() string {
	if e.Namespace != "" {
		return e.Kind + " " + e.Namespace + "/" + e.Name
	}
	return e.Kind + " " + e.Name
}

// EndpointAt returns the index in Program().Endpoints of the endpoint that
// Evaluate judges a flow from or to addr by, or -1 when addr is no
// endpoint's.
func (s *Set) EndpointAt(addr netip.Addr) int {
	ep := firstEndpoint(s.objectsAt(addr))
	if ep == nil {
		return -1
	}
	return slices.Index(s.endpoints, ep)
}

// Program flattens s for a data plane compiler. Selectors are resolved
// once per distinct selector. It is pure; s is only read.
func (s *Set) Program() Program {
	var pr Program
	refs := map[*compiledPolicy]PolicyRef{}
	r := &resolver{set: s, sel: map[string][]netip.Prefix{}, notSel: map[string][]netip.Prefix{}}
	for ti, t := range s.tiers {
		pt := ProgramTier{Name: t.name, DefaultAction: t.defaultAction}
		for pi, p := range t.policies {
			refs[p] = PolicyRef{Tier: ti, Index: pi}
			pt.Policies = append(pt.Policies, ProgramPolicy{
				Kind: p.kind, Key: p.key(), Namespace: p.namespace,
				Ingress: p.hasIngress, Egress: p.hasEgress, DoNotTrack: p.doNotTrack, PreDNAT: p.preDNAT,
				IngressRules: r.rules(p.ingress), EgressRules: r.rules(p.egress),
			})
		}
		pr.Tiers = append(pr.Tiers, pt)
	}
	for _, ep := range s.endpoints {
		pe := ProgramEndpoint{Kind: objectKindNames[ep.kind], Namespace: ep.namespace, Name: ep.name,
			Node: ep.node, Nets: slices.Clone(ep.nets), DefaultAllow: ep.defaultAllow}
		for _, p := range ep.policies {
			pe.Policies = append(pe.Policies, refs[p])
		}
		pr.Endpoints = append(pr.Endpoints, pe)
	}
	return pr
}

// resolver resolves selectors to nets, caching by the selector's text.
type resolver struct {
	set         *Set
	sel, notSel map[string][]netip.Prefix
}

func (r *resolver) rules(rules []compiledRule) []ProgramRule {
	out := make([]ProgramRule, len(rules))
	for i := range rules {
		c := &rules[i]
		out[i] = ProgramRule{Action: c.action, Protocol: clonePtr(c.protocol), NotProtocol: clonePtr(c.notProtocol),
			ICMP: cloneICMP(c.icmp), NotICMP: cloneICMP(c.notICMP), IPVersion: c.ipVersion,
			Source: r.entity(&c.src), Destination: r.entity(&c.dst)}
	}
	return out
}

func (r *resolver) entity(c *compiledEntity) ProgramEntity {
	e := ProgramEntity{Nets: slices.Clone(c.nets), NotNets: slices.Clone(c.notNets),
		Ports: slices.Clone(c.ports), NotPorts: slices.Clone(c.notPorts)}
	if c.sel != nil {
		e.Selector = c.sel.String()
		nets, ok := r.sel[e.Selector]
		if !ok {
			nets = r.nets(c.sel.matches)
			r.sel[e.Selector] = nets
		}
		e.Selected = slices.Clone(nets)
	}
	if c.notSel != nil {
		e.NotSelector = c.notSel.String()
		nets, ok := r.notSel[e.NotSelector]
		if !ok {
			nets = r.nets(func(o *object) bool { return c.notSel.Evaluate(o.labels) })
			r.notSel[e.NotSelector] = nets
		}
		e.NotSelected = slices.Clone(nets)
	}
	e.NamedPorts = r.namedPorts(c, c.ports)
	e.NotNamedPorts = r.namedPorts(c, c.notPorts)
	return e
}

// nets returns the nets of every endpoint and network set that match.
func (r *resolver) nets(match func(*object) bool) []netip.Prefix {
	var out []netip.Prefix
	for _, list := range [][]*object{r.set.endpoints, r.set.netsets} {
		for _, o := range list {
			if match(o) {
				out = append(out, o.nets...)
			}
		}
	}
	return out
}

// namedPorts resolves the named ports among ports as Evaluate's anyPort
// does: endpoints (not network sets) that the entity's selector matches.
func (r *resolver) namedPorts(c *compiledEntity, ports []Port) []NamedPortNet {
	var out []NamedPortNet
	for _, p := range ports {
		if p.Name == "" {
			continue
		}
		for _, o := range r.set.endpoints {
			if c.sel != nil && !c.sel.matches(o) {
				continue
			}
			for _, np := range o.ports {
				if np.Name != p.Name {
					continue
				}
				for _, n := range o.nets {
					out = append(out, NamedPortNet{Net: n, Protocol: np.Protocol.Num, Port: np.Port})
				}
			}
		}
	}
	return out
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func cloneICMP(f *ICMPFields) *ICMPFields {
	if f == nil {
		return nil
	}
	return &ICMPFields{Type: clonePtr(f.Type), Code: clonePtr(f.Code)}
}
