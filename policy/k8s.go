package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/weft-net/weft/policy/selector"
)

// KubernetesPolicyOrder is the order Calico gives every translated Kubernetes
// NetworkPolicy (in the default tier).
const KubernetesPolicyOrder = 1000

// KubernetesPolicyPrefix starts the name of a translated Kubernetes policy.
const KubernetesPolicyPrefix = "knp.default."

// TranslateKubernetes returns the Calico NetworkPolicy that Calico makes of a
// Kubernetes NetworkPolicy: named knp.default.<name> in the same namespace,
// in the default tier at order 1000; the pod selector ANDed with
// projectcalico.org/orchestrator == 'k8s'; one Allow rule per protocol and
// peer, with ports merged into ranges; ipBlock as nets and its except as
// notNets; and the policyTypes as types (when omitted, the API server's
// default: Ingress, plus Egress if there are egress rules). np must
// have passed Decode's validation. The result shares nothing with np.
func TranslateKubernetes(np *KubernetesNetworkPolicy) (*NetworkPolicy, error) {
	order := float64(KubernetesPolicyOrder)
	out := &NetworkPolicy{
		TypeMeta: TypeMeta{APIVersion: APIVersionCalico, Kind: KindNetworkPolicy},
		Metadata: ObjectMeta{Name: KubernetesPolicyPrefix + np.Metadata.Name, Namespace: np.Metadata.Namespace},
	}
	out.Spec.Order = &order
	out.Spec.Tier = DefaultTier
	sel, err := ParseSelector(k8sSelector(&np.Spec.PodSelector, true))
	if err != nil {
		return nil, fmt.Errorf("translate spec.podSelector: %w", err)
	}
	out.Spec.Selector = sel
	for i, r := range np.Spec.Ingress {
		rules, err := k8sRules(r.From, r.Ports, true)
		if err != nil {
			return nil, fmt.Errorf("translate spec.ingress[%d]: %w", i, err)
		}
		out.Spec.Ingress = append(out.Spec.Ingress, rules...)
	}
	for i, r := range np.Spec.Egress {
		rules, err := k8sRules(r.To, r.Ports, false)
		if err != nil {
			return nil, fmt.Errorf("translate spec.egress[%d]: %w", i, err)
		}
		out.Spec.Egress = append(out.Spec.Egress, rules...)
	}
	ingress, egress := false, false
	for _, t := range np.Spec.PolicyTypes {
		ingress = ingress || t == PolicyTypeIngress
		egress = egress || t == PolicyTypeEgress
	}
	if len(np.Spec.PolicyTypes) == 0 {
		// The API server's default, which Calico always sees: Ingress, and
		// Egress if there are egress rules.
		ingress, egress = true, len(np.Spec.Egress) > 0
	}
	if ingress || !egress {
		out.Spec.Types = append(out.Spec.Types, PolicyTypeIngress)
	}
	if egress {
		out.Spec.Types = append(out.Spec.Types, PolicyTypeEgress)
	}
	return out, nil
}

// k8sSelector writes a label selector in Calico's syntax. A pod selector
// always requires the Kubernetes orchestrator label; a nil namespace selector
// is "" (the policy's own namespace) and an empty one is all().
func k8sSelector(s *LabelSelector, pod bool) string {
	var terms []string
	if pod {
		terms = append(terms, LabelOrchestrator+" == 'k8s'")
	}
	if s == nil {
		return strings.Join(terms, " && ")
	}
	if !pod && len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0 {
		return "all()"
	}
	keys := make([]string, 0, len(s.MatchLabels))
	for k := range s.MatchLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		terms = append(terms, k+" == '"+s.MatchLabels[k]+"'")
	}
	for _, e := range s.MatchExpressions {
		values := strings.Join(e.Values, "', '")
		switch e.Operator {
		case "In":
			terms = append(terms, e.Key+" in { '"+values+"' }")
		case "NotIn":
			terms = append(terms, e.Key+" not in { '"+values+"' }")
		case "Exists":
			terms = append(terms, "has("+e.Key+")")
		case "DoesNotExist":
			terms = append(terms, "! has("+e.Key+")")
		}
	}
	return strings.Join(terms, " && ")
}

// k8sRules makes Calico's rules of one Kubernetes rule: for each protocol (in
// name order, none first), one Allow rule per peer.
func k8sRules(peers []KubernetesNetworkPolicyPeer, ports []KubernetesNetworkPolicyPort, ingress bool) ([]Rule, error) {
	byProto := map[string][]Port{}
	if len(ports) == 0 {
		byProto[""] = nil
	}
	for _, p := range ports {
		proto := "TCP"
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		if p.Port == nil {
			byProto[proto] = nil // all ports of the protocol
			continue
		}
		s := p.Port.String()
		if p.EndPort != nil {
			s += ":" + strconv.Itoa(int(*p.EndPort))
		}
		port, err := ParsePort(s)
		if err != nil {
			return nil, fmt.Errorf("port %q: %w", s, err)
		}
		if have, ok := byProto[proto]; !ok || len(have) > 0 {
			byProto[proto] = append(have, port)
		}
	}
	protos := make([]string, 0, len(byProto))
	for p := range byProto {
		protos = append(protos, p)
	}
	sort.Strings(protos)

	if len(peers) == 0 {
		peers = []KubernetesNetworkPolicyPeer{{}}
	}
	var rules []Rule
	for _, ps := range protos {
		var proto *Protocol
		if ps != "" {
			p, err := ParseProtocol(ps)
			if err != nil {
				return nil, fmt.Errorf("protocol %q: %w", ps, err)
			}
			proto = &p
		}
		ports := simplifyPorts(byProto[ps])
		for _, peer := range peers {
			peerRule, err := k8sPeer(peer)
			if err != nil {
				return nil, err
			}
			r := Rule{Action: ActionAllow, Protocol: proto}
			if ingress {
				r.Source = peerRule
				r.Destination.Ports = ports
			} else {
				r.Destination = peerRule
				r.Destination.Ports = ports
			}
			rules = append(rules, r)
		}
	}
	return rules, nil
}

// k8sPeer makes the EntityRule of one peer; the zero peer matches anything.
func k8sPeer(p KubernetesNetworkPolicyPeer) (EntityRule, error) {
	var e EntityRule
	if p.IPBlock != nil {
		pfx, err := netip.ParsePrefix(p.IPBlock.CIDR)
		if err != nil {
			return e, fmt.Errorf("ipBlock.cidr %q: invalid CIDR", p.IPBlock.CIDR)
		}
		e.Nets = []CIDR{{pfx.Masked()}}
		for _, x := range p.IPBlock.Except {
			xp, err := netip.ParsePrefix(x)
			if err != nil {
				return e, fmt.Errorf("ipBlock.except %q: invalid CIDR", x)
			}
			e.NotNets = append(e.NotNets, CIDR{xp.Masked()})
		}
		return e, nil
	}
	if p.PodSelector == nil && p.NamespaceSelector == nil {
		return e, nil
	}
	var err error
	if e.Selector, err = ParseSelector(k8sSelector(p.PodSelector, true)); err != nil {
		return e, fmt.Errorf("podSelector: %w", err)
	}
	if e.NamespaceSelector, err = ParseSelector(k8sSelector(p.NamespaceSelector, false)); err != nil {
		return e, fmt.Errorf("namespaceSelector: %w", err)
	}
	return e, nil
}

// simplifyPorts merges numeric ports into the fewest ranges, after the named
// ports, as Calico's SimplifyPorts does; one numeric port or none is left as is.
func simplifyPorts(ports []Port) []Port {
	if len(ports) <= 1 {
		return ports
	}
	var nums []int
	var out []Port
	for _, p := range ports {
		if p.Name != "" {
			out = append(out, p)
			continue
		}
		for i := int(p.Min); i <= int(p.Max); i++ {
			nums = append(nums, i)
		}
	}
	if len(nums) <= 1 {
		return ports
	}
	sort.Ints(nums)
	for len(nums) > 0 {
		first, last := nums[0], nums[0]
		nums = nums[1:]
		for len(nums) > 0 && nums[0] <= last+1 {
			last = nums[0]
			nums = nums[1:]
		}
		out = append(out, Port{Min: uint16(first), Max: uint16(last)})
	}
	return out
}

// kubernetesPolicy validates a Kubernetes NetworkPolicy as the API server would.
func (c *checker) kubernetesPolicy(s *KubernetesNetworkPolicySpec) {
	c.labelSelector("spec.podSelector", &s.PodSelector)
	for i, r := range s.Ingress {
		p := "spec.ingress[" + strconv.Itoa(i) + "]"
		c.k8sPeers(p+".from", r.From)
		c.k8sPorts(p+".ports", r.Ports)
	}
	for i, r := range s.Egress {
		p := "spec.egress[" + strconv.Itoa(i) + "]"
		c.k8sPeers(p+".to", r.To)
		c.k8sPorts(p+".ports", r.Ports)
	}
}

func (c *checker) labelSelector(p string, s *LabelSelector) {
	if s == nil {
		return
	}
	for i, e := range s.MatchExpressions {
		ep := p + ".matchExpressions[" + strconv.Itoa(i) + "]"
		if err := selector.ValidateLabelKey(e.Key); err != nil {
			c.add(ep+".key", e.Key, "invalid label key: %v", err)
		}
		switch e.Operator {
		case "In", "NotIn":
			if len(e.Values) == 0 {
				c.add(ep+".values", nil, "required for operator %s", e.Operator)
			}
		case "Exists", "DoesNotExist":
			if len(e.Values) > 0 {
				c.add(ep+".values", nil, "must be empty for operator %s", e.Operator)
			}
		default:
			c.add(ep+".operator", e.Operator, "invalid operator: want In, NotIn, Exists or DoesNotExist")
		}
		for j, v := range e.Values {
			if err := selector.ValidateLabelValue(v); err != nil {
				c.add(ep+".values["+strconv.Itoa(j)+"]", v, "invalid label value: %v", err)
			}
		}
	}
}

func (c *checker) k8sPeers(p string, peers []KubernetesNetworkPolicyPeer) {
	for i, peer := range peers {
		pp := p + "[" + strconv.Itoa(i) + "]"
		c.labelSelector(pp+".podSelector", peer.PodSelector)
		c.labelSelector(pp+".namespaceSelector", peer.NamespaceSelector)
		switch {
		case peer.IPBlock != nil && (peer.PodSelector != nil || peer.NamespaceSelector != nil):
			c.add(pp+".ipBlock", nil, "cannot be combined with podSelector or namespaceSelector")
		case peer.IPBlock == nil && peer.PodSelector == nil && peer.NamespaceSelector == nil:
			c.add(pp, nil, "%v", errNoPeer)
		}
		if peer.IPBlock == nil {
			continue
		}
		cidr, err := netip.ParsePrefix(peer.IPBlock.CIDR)
		if err != nil {
			c.add(pp+".ipBlock.cidr", peer.IPBlock.CIDR, "invalid CIDR")
			continue
		}
		for j, x := range peer.IPBlock.Except {
			xp, err := netip.ParsePrefix(x)
			xpath := pp + ".ipBlock.except[" + strconv.Itoa(j) + "]"
			switch {
			case err != nil:
				c.add(xpath, x, "invalid CIDR")
			case xp.Addr().Is4() != cidr.Addr().Is4() || xp.Bits() <= cidr.Bits() || !cidr.Masked().Contains(xp.Addr()):
				c.add(xpath, x, "must be a strict subset of cidr %s", peer.IPBlock.CIDR)
			}
		}
	}
}

func (c *checker) k8sPorts(p string, ports []KubernetesNetworkPolicyPort) {
	for i, port := range ports {
		pp := p + "[" + strconv.Itoa(i) + "]"
		if port.Protocol != nil {
			switch *port.Protocol {
			case "TCP", "UDP", "SCTP":
			default:
				c.add(pp+".protocol", *port.Protocol, "invalid protocol: want TCP, UDP or SCTP")
			}
		}
		if port.Port != nil {
			if port.Port.IsString {
				if err := validPortName(port.Port.Str); err != nil {
					c.add(pp+".port", port.Port.Str, "%v", err)
				}
			} else if port.Port.Int < 1 || port.Port.Int > 65535 {
				c.add(pp+".port", port.Port.Int, "invalid port: want 1-65535")
			}
		}
		if port.EndPort != nil {
			switch {
			case port.Port == nil || port.Port.IsString:
				c.add(pp+".endPort", *port.EndPort, "requires a numeric port")
			case *port.EndPort < port.Port.Int || *port.EndPort > 65535:
				c.add(pp+".endPort", *port.EndPort, "must be between port and 65535")
			}
		}
	}
}
