package policy

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/weft-net/weft/policy/selector"
)

// compiledPolicy is a policy as the evaluator reads it: selectors scoped and
// rewritten as Calico's update processors do, types defaulted.
type compiledPolicy struct {
	kind            string // KindGlobalNetworkPolicy or KindNetworkPolicy
	name, namespace string
	tier            string
	order           *float64
	sel             *match
	ingress, egress []compiledRule
	// hasIngress and hasEgress are the policy's types.
	hasIngress, hasEgress bool
	doNotTrack, preDNAT   bool
	origin                Origin
	tierIndex             int // the tier's place in Set.tiers
}

// key is the policy's name as Felix keys it: "name", or "namespace/name".
func (p *compiledPolicy) key() string {
	if p.namespace != "" {
		return p.namespace + "/" + p.name
	}
	return p.name
}

// compiledRule is one rule with its source and destination resolved.
type compiledRule struct {
	action                Action
	protocol, notProtocol *Protocol
	icmp, notICMP         *ICMPFields
	ipVersion             int // 0 for either
	src, dst              compiledEntity
}

// compiledEntity is a rule's source or destination.
type compiledEntity struct {
	nets, notNets   []netip.Prefix
	sel             *match            // nil: no selector
	notSel          selector.Selector // nil: no notSelector
	ports, notPorts []Port
}

// defaultTypes applies Calico's rule for omitted types: Egress alone if there
// are only egress rules, Ingress and Egress if both, else Ingress.
func defaultTypes(types []PolicyType, ingress, egress []Rule) (in, eg bool) {
	if len(types) == 0 {
		return len(ingress) > 0 || len(egress) == 0, len(egress) > 0
	}
	for _, t := range types {
		in = in || t == PolicyTypeIngress
		eg = eg || t == PolicyTypeEgress
	}
	return in, eg
}

func compileGlobalPolicy(r *GlobalNetworkPolicy, origin Origin) (*compiledPolicy, error) {
	s := &r.Spec
	p := &compiledPolicy{kind: KindGlobalNetworkPolicy, name: r.Metadata.Name, tier: orDefaultTier(s.Tier),
		order: s.Order, doNotTrack: s.DoNotTrack, preDNAT: s.PreDNAT, origin: origin}
	p.hasIngress, p.hasEgress = defaultTypes(s.Types, s.Ingress, s.Egress)
	var err error
	if p.sel, err = globalPolicyMatch(s.Selector, s.NamespaceSelector, s.ServiceAccountSelector); err != nil {
		return p, fmt.Errorf("spec.selector: %w", err)
	}
	if p.ingress, err = compileRules("spec.ingress", s.Ingress, ""); err != nil {
		return p, err
	}
	if p.egress, err = compileRules("spec.egress", s.Egress, ""); err != nil {
		return p, err
	}
	return p, nil
}

func compileNamespacedPolicy(r *NetworkPolicy, origin Origin) (*compiledPolicy, error) {
	s, ns := &r.Spec, r.Metadata.Namespace
	p := &compiledPolicy{kind: KindNetworkPolicy, name: r.Metadata.Name, namespace: ns,
		tier: orDefaultTier(s.Tier), order: s.Order, origin: origin}
	p.hasIngress, p.hasEgress = defaultTypes(s.Types, s.Ingress, s.Egress)
	p.sel = namespacedPolicyMatch(ns, s.Selector, s.ServiceAccountSelector)
	var err error
	if p.ingress, err = compileRules("spec.ingress", s.Ingress, ns); err != nil {
		return p, err
	}
	if p.egress, err = compileRules("spec.egress", s.Egress, ns); err != nil {
		return p, err
	}
	return p, nil
}

func orDefaultTier(t string) string {
	if t == "" {
		return DefaultTier
	}
	return t
}

func compileRules(path string, rules []Rule, ns string) ([]compiledRule, error) {
	out := make([]compiledRule, len(rules))
	for i := range rules {
		r := &rules[i]
		c := compiledRule{action: r.Action, protocol: r.Protocol, notProtocol: r.NotProtocol,
			icmp: r.ICMP, notICMP: r.NotICMP}
		if r.IPVersion != nil {
			c.ipVersion = *r.IPVersion
		}
		var err error
		p := path + "[" + strconv.Itoa(i) + "]"
		if c.src, err = compileEntity(&r.Source, ns); err != nil {
			return nil, fmt.Errorf("%s.source: %w", p, err)
		}
		if c.dst, err = compileEntity(&r.Destination, ns); err != nil {
			return nil, fmt.Errorf("%s.destination: %w", p, err)
		}
		out[i] = c
	}
	return out, nil
}

func compileEntity(e *EntityRule, ns string) (compiledEntity, error) {
	c := compiledEntity{nets: masked(e.Nets), notNets: masked(e.NotNets), ports: e.Ports, notPorts: e.NotPorts}
	if len(c.nets) == 0 {
		c.nets = nil
	}
	if len(c.notNets) == 0 {
		c.notNets = nil
	}
	if !e.NotSelector.IsZero() {
		c.notSel = e.NotSelector.sel
	}
	var err error
	c.sel, err = entityMatch(e, ns)
	return c, err
}
