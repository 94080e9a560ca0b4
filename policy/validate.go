package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// Name formats, as Calico and Kubernetes validate them.
var (
	nameLabelFmt     = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
	nameSubdomainFmt = nameLabelFmt + `(\.` + nameLabelFmt + ")*"

	labelNameRegex     = regexp.MustCompile("^" + nameLabelFmt + "$")
	subdomainNameRegex = regexp.MustCompile("^" + nameSubdomainFmt + "$")
	// GlobalNetworkPolicy names: a DNS label, or two joined by one dot.
	gnpNameRegex = regexp.MustCompile("^(" + nameLabelFmt + `\.)?` + nameLabelFmt + "$")
	// NetworkPolicy names: as above, or the name Calico gives a translated
	// Kubernetes policy.
	npNameRegex = regexp.MustCompile("^((" + nameLabelFmt + `)(\.` + nameLabelFmt + `)?|((?:knp|ossg)\.default\.(` + nameSubdomainFmt + ")))$")
)

// DefaultTierOrder is the fixed order of Calico's default tier: after every
// tier that has a lower order.
const DefaultTierOrder = 1_000_000

// DefaultTier is the tier of policies that name none, and of every translated
// Kubernetes policy.
const DefaultTier = "default"

// checker collects the validation errors of one object.
type checker struct {
	origin           Origin
	kind, name, base string
	errs             []error
}

func (c *checker) add(path string, value any, format string, args ...any) {
	v := ""
	if value != nil {
		v = quoteRaw(value)
	}
	c.errs = append(c.errs, &FieldError{
		Origin: c.origin, Kind: c.kind, Name: c.name,
		Path: c.base + path, Value: v, Err: fmt.Errorf(format, args...),
	})
}

// validate checks what the field types alone cannot: required fields,
// names, and rules that tie fields together. It fills in defaults (a
// namespaced object with no namespace is in "default", as with calicoctl).
func validate(o Origin, kind, name, prefix string, res Resource) []error {
	c := &checker{origin: o, kind: kind, name: name, base: prefix}
	md := res.Meta()
	c.meta(res, md)
	switch r := res.(type) {
	case *Tier:
		c.tier(r)
	case *GlobalNetworkPolicy:
		c.globalPolicy(&r.Spec)
	case *NetworkPolicy:
		c.policyCommon(r.Spec.Tier, r.Spec.Selector, r.Spec.ServiceAccountSelector, r.Spec.Types, r.Spec.Ingress, r.Spec.Egress)
	case *WorkloadEndpoint:
		c.endpointPorts(r.Spec.Ports)
		if r.Spec.ServiceAccountName != "" && !subdomainNameRegex.MatchString(r.Spec.ServiceAccountName) {
			c.add("spec.serviceAccountName", r.Spec.ServiceAccountName, "invalid service account name")
		}
	case *HostEndpoint:
		c.hostEndpoint(&r.Spec)
	case *GlobalNetworkSet:
		c.networkSetLabels(md.Labels)
	case *NetworkSet:
		c.networkSetLabels(md.Labels)
	case *KubernetesNetworkPolicy:
		c.kubernetesPolicy(&r.Spec)
	}
	return c.errs
}

// meta checks the name and namespace of any object.
func (c *checker) meta(res Resource, md *ObjectMeta) {
	namespaced := false
	switch res.(type) {
	case *NetworkPolicy, *NetworkSet, *WorkloadEndpoint, *KubernetesNetworkPolicy, *ServiceAccount:
		namespaced = true
	}
	if namespaced && md.Namespace == "" {
		md.Namespace = "default"
	}
	if !namespaced && md.Namespace != "" {
		c.add("metadata.namespace", md.Namespace, "not allowed: %s is cluster-wide", c.kind)
	}
	if md.Namespace != "" && (len(md.Namespace) > 63 || !labelNameRegex.MatchString(md.Namespace)) {
		c.add("metadata.namespace", md.Namespace, "invalid namespace name: want a DNS label (%s)", nameLabelFmt)
	}
	if md.Name == "" {
		c.add("metadata.name", nil, "required")
		return
	}
	re, max, what := subdomainNameRegex, 253, "a DNS subdomain"
	switch res.(type) {
	case *Tier, *Namespace:
		re, max, what = labelNameRegex, 63, "a DNS label"
	case *GlobalNetworkPolicy:
		re, what = gnpNameRegex, "a DNS label, or two joined by '.'"
	case *NetworkPolicy:
		re, what = npNameRegex, "a DNS label, or two joined by '.'"
	}
	if len(md.Name) > max || !re.MatchString(md.Name) {
		c.add("metadata.name", md.Name, "invalid name: want %s of lower-case letters, digits and '-'", what)
	}
}

func (c *checker) tier(t *Tier) {
	switch t.Spec.DefaultAction {
	case "", ActionDeny, ActionPass:
	default:
		c.add("spec.defaultAction", string(t.Spec.DefaultAction), "invalid default action: want Deny or Pass")
	}
	if t.Metadata.Name == DefaultTier && t.Spec.Order != nil && *t.Spec.Order != DefaultTierOrder {
		c.add("spec.order", strconv.FormatFloat(*t.Spec.Order, 'g', -1, 64), "the default tier's order is fixed at %d", DefaultTierOrder)
	}
}

func (c *checker) globalPolicy(s *GlobalNetworkPolicySpec) {
	c.policyCommon(s.Tier, s.Selector, s.ServiceAccountSelector, s.Types, s.Ingress, s.Egress)
	c.noGlobal("spec.namespaceSelector", s.NamespaceSelector)
	if s.DoNotTrack && s.PreDNAT {
		c.add("spec.preDNAT", true, "doNotTrack and preDNAT cannot both be true")
	}
	if (s.DoNotTrack || s.PreDNAT) && !s.ApplyOnForward {
		c.add("spec.applyOnForward", false, "must be true when doNotTrack or preDNAT is")
	}
	if s.PreDNAT {
		if len(s.Egress) > 0 {
			c.add("spec.egress", nil, "a preDNAT policy may only have ingress rules")
		}
		for i, t := range s.Types {
			if t == PolicyTypeEgress {
				c.add("spec.types["+strconv.Itoa(i)+"]", string(t), "a preDNAT policy may only apply to ingress")
			}
		}
	}
}

func (c *checker) policyCommon(tier string, sel, saSel Selector, types []PolicyType, ingress, egress []Rule) {
	if tier != "" && (len(tier) > 63 || !labelNameRegex.MatchString(tier)) {
		c.add("spec.tier", tier, "invalid tier name: want a DNS label")
	}
	c.noGlobal("spec.selector", sel)
	c.noGlobal("spec.serviceAccountSelector", saSel)
	seen := map[PolicyType]bool{}
	for i, t := range types {
		if seen[t] {
			c.add("spec.types["+strconv.Itoa(i)+"]", string(t), "duplicate policy type")
		}
		seen[t] = true
	}
	for i := range ingress {
		c.rule("spec.ingress["+strconv.Itoa(i)+"]", &ingress[i])
	}
	for i := range egress {
		c.rule("spec.egress["+strconv.Itoa(i)+"]", &egress[i])
	}
}

// noGlobal rejects global() where Calico allows only a rule's namespaceSelector.
func (c *checker) noGlobal(path string, s Selector) {
	if !s.IsZero() && s.sel.UsesGlobal() {
		c.add(path, s.Text, "global() can only be used in a rule's namespaceSelector")
	}
}

func (c *checker) rule(p string, r *Rule) {
	if r.Action == "" {
		c.add(p+".action", nil, "required")
	}
	if r.HTTP != nil {
		c.add(p+".http", nil, "application-layer policy is not supported by weft")
	}
	ends := []struct {
		name string
		e    *EntityRule
	}{{"source", &r.Source}, {"destination", &r.Destination}}
	for _, end := range ends {
		for _, l := range []struct {
			field string
			ports []Port
		}{{"ports", end.e.Ports}, {"notPorts", end.e.NotPorts}} {
			for i, port := range l.ports {
				path := p + "." + end.name + "." + l.field + "[" + strconv.Itoa(i) + "]"
				switch {
				case r.Protocol == nil && port.Name == "":
					c.add(path, port.String(), "rules that match numeric ports must set protocol to TCP, UDP, SCTP or UDPLite")
				case r.Protocol != nil && !r.Protocol.SupportsPorts():
					c.add(path, port.String(), "protocol %s has no ports", r.Protocol)
				}
			}
		}
	}
	c.icmp(p+".icmp", r.ICMP, r.Protocol)
	c.icmp(p+".notICMP", r.NotICMP, r.Protocol)
	if r.IPVersion != nil && *r.IPVersion != 4 && *r.IPVersion != 6 {
		c.add(p+".ipVersion", *r.IPVersion, "invalid IP version: want 4 or 6")
	}
	if r.IPVersion != nil && r.Protocol != nil {
		if (r.Protocol.Num == ProtoICMP && *r.IPVersion != 4) || (r.Protocol.Num == ProtoICMPv6 && *r.IPVersion != 6) {
			c.add(p+".ipVersion", *r.IPVersion, "does not match protocol %s", r.Protocol)
		}
	}
	var seen4, seen6 bool
	for _, end := range ends {
		c.entity(p+"."+end.name, end.e, r.IPVersion, &seen4, &seen6)
	}
}

func (c *checker) icmp(p string, f *ICMPFields, proto *Protocol) {
	if f == nil {
		return
	}
	if proto == nil || (proto.Num != ProtoICMP && proto.Num != ProtoICMPv6) {
		c.add(p, nil, "rules that match ICMP fields must set protocol to ICMP or ICMPv6")
	}
	if f.Type != nil && (*f.Type < 0 || *f.Type > 254) {
		c.add(p+".type", *f.Type, "invalid ICMP type: want 0-254")
	}
	if f.Code != nil && (*f.Code < 0 || *f.Code > 255) {
		c.add(p+".code", *f.Code, "invalid ICMP code: want 0-255")
	}
	if f.Code != nil && f.Type == nil {
		c.add(p+".code", *f.Code, "ICMP code specified without an ICMP type")
	}
}

func (c *checker) entity(p string, e *EntityRule, ipVersion *int, seen4, seen6 *bool) {
	for _, l := range []struct {
		field string
		nets  []CIDR
	}{{"nets", e.Nets}, {"notNets", e.NotNets}} {
		for i, n := range l.nets {
			path := p + "." + l.field + "[" + strconv.Itoa(i) + "]"
			v4 := n.Addr().Is4()
			if ipVersion != nil && (v4 && *ipVersion != 4 || !v4 && *ipVersion != 6) {
				c.add(path, n.String(), "does not match the rule's ipVersion %d", *ipVersion)
			}
			if v4 && *seen6 || !v4 && *seen4 {
				c.add(path, n.String(), "a rule cannot mix IPv4 and IPv6 CIDRs")
			}
			*seen4, *seen6 = *seen4 || v4, *seen6 || !v4
			if l.field == "notNets" && n.Bits() == 0 {
				c.add(path, n.String(), "a catch-all CIDR in notNets matches no traffic")
			}
		}
	}
	c.noGlobal(p+".selector", e.Selector)
	c.noGlobal(p+".notSelector", e.NotSelector)
	if ns := e.NamespaceSelector; !ns.IsZero() && ns.sel.UsesGlobal() && ns.String() != "global()" {
		c.add(p+".namespaceSelector", ns.Text, "global() cannot be combined with other selectors")
	}
	if e.ServiceAccounts != nil {
		c.noGlobal(p+".serviceAccounts.selector", e.ServiceAccounts.Selector)
		for i, n := range e.ServiceAccounts.Names {
			if n == "" || strings.ContainsAny(n, "'\"") {
				c.add(p+".serviceAccounts.names["+strconv.Itoa(i)+"]", n, "invalid service account name")
			}
		}
	}
	if e.Services != nil {
		c.add(p+".services", nil, "Kubernetes Service matches are not supported by weft")
	}
}

func (c *checker) endpointPorts(ports []EndpointPort) {
	names := map[string]bool{}
	for i, port := range ports {
		p := "spec.ports[" + strconv.Itoa(i) + "]"
		if port.Name == "" && port.HostPort == 0 {
			c.add(p+".name", nil, "required")
		} else if port.Name != "" {
			if err := validPortName(port.Name); err != nil {
				c.add(p+".name", port.Name, "%v", err)
			}
			if names[port.Name] {
				c.add(p+".name", port.Name, "duplicate port name")
			}
			names[port.Name] = true
		}
		if !port.Protocol.SupportsPorts() {
			c.add(p+".protocol", port.Protocol.String(), "invalid protocol: want TCP, UDP, SCTP or UDPLite")
		}
		if port.Port == 0 {
			c.add(p+".port", port.Port, "invalid port: want 1-65535")
		}
	}
}

func (c *checker) hostEndpoint(s *HostEndpointSpec) {
	if s.InterfaceName == "" && len(s.ExpectedIPs) == 0 {
		c.add("spec", nil, "interfaceName or expectedIPs is required")
	}
	for i, ip := range s.ExpectedIPs {
		if a, err := netip.ParseAddr(ip); err != nil || a.Zone() != "" {
			c.add("spec.expectedIPs["+strconv.Itoa(i)+"]", ip, "invalid IP address")
		}
	}
	c.endpointPorts(s.Ports)
}

func (c *checker) networkSetLabels(l Labels) {
	if _, ok := l[LabelNamespace]; ok {
		c.add("metadata.labels", LabelNamespace, "reserved label: Calico sets it from the namespace")
	}
}

// errNoPeer is the error of a Kubernetes peer with nothing in it.
var errNoPeer = errors.New("must set podSelector, namespaceSelector or ipBlock")
