package policystore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/weft-net/weft/policy"
	"github.com/weft-net/weft/policy/selector"
)

// Limits of one endpoint, so that an entry stays small enough to gossip.
const (
	MaxEndpointAddrs  = 16
	MaxEndpointLabels = 64
	MaxEndpointPorts  = 64
)

// dnsLabel is a DNS label: what endpoint, node and namespace names are.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// Endpoint is a workload attached to a host, as `weft endpoint add`
// registers it and an endpoint entry holds it (as JSON): the host side of
// its interface, its addresses, and the labels that policy selectors match.
// It becomes a policy WorkloadEndpoint named "<node>.<name>" in Namespace.
type Endpoint struct {
	// Name is unique on its node: a DNS label.
	Name string `json:"name"`
	// Node is the host that runs the workload; only it writes the entry.
	Node string `json:"node"`
	// Interface is the host side of the workload's routed veth, e.g. "wlw1".
	Interface string `json:"interface"`
	// Addrs are the workload's addresses (IPv4 or IPv6).
	Addrs []netip.Addr `json:"addrs"`
	// Labels are what selectors match.
	Labels map[string]string `json:"labels,omitempty"`
	// Namespace is the endpoint's namespace ("default" when empty), which
	// namespaced policies and namespaceSelectors see.
	Namespace string `json:"namespace,omitempty"`
	// ServiceAccount is the endpoint's service account, for
	// serviceAccountSelectors.
	ServiceAccount string `json:"serviceAccount,omitempty"`
	// Orchestrator is the endpoint's orchestrator label
	// (projectcalico.org/orchestrator): "k8s" (the default) lets
	// Kubernetes NetworkPolicies select the endpoint, which, as in Calico,
	// select only Kubernetes pods.
	Orchestrator string `json:"orchestrator,omitempty"`
	// Ports are named ports that rules may refer to by name.
	Ports []EndpointPort `json:"ports,omitempty"`
}

// EndpointPort is a named port of an Endpoint.
type EndpointPort struct {
	Name     string `json:"name"`
	Protocol string `json:"protocol"` // TCP, UDP or SCTP
	Port     uint16 `json:"port"`
}

// EndpointKey returns the store key of node's endpoint name: "<node>/<name>".
func EndpointKey(node, name string) string { return node + "/" + name }

// Key returns the store key of e.
func (e *Endpoint) Key() string { return EndpointKey(e.Node, e.Name) }

// Validate checks every field, naming the field and the value in the error
// (all errors joined). It fills in nothing: see Normalize.
func (e *Endpoint) Validate() error {
	var errs []error
	bad := func(field string, value any, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", field, quoteValue(value), fmt.Sprintf(format, args...)))
	}
	if !isLabel(e.Name) {
		bad("name", e.Name, "want a DNS label of 1-63 lower-case letters, digits and '-'")
	}
	if !isLabel(e.Node) {
		bad("node", e.Node, "want a node name (a DNS label)")
	}
	switch i := e.Interface; {
	case i == "" || len(i) > 15 || i == "." || i == "..":
		bad("interface", i, "want an interface name of 1-15 bytes, not . or ..")
	case strings.ContainsAny(i, "/:\"\\ \t\n\r\v\f\x00") || strings.ContainsFunc(i, func(r rune) bool { return r < 0x20 || r > 0x7e }):
		bad("interface", i, "contains a character not allowed in an interface name")
	}
	switch {
	case len(e.Addrs) == 0:
		bad("addrs", "", "at least one address is required")
	case len(e.Addrs) > MaxEndpointAddrs:
		bad("addrs", fmt.Sprint(len(e.Addrs)), "at most %d addresses", MaxEndpointAddrs)
	}
	seen := map[netip.Addr]bool{}
	for i, a := range e.Addrs {
		f := fmt.Sprintf("addrs[%d]", i)
		switch {
		case !a.IsValid() || a.Zone() != "" || a.Is4In6():
			bad(f, a.String(), "want an IPv4 or IPv6 address without zone")
		case a.IsUnspecified() || a.IsMulticast() || a.IsLoopback():
			bad(f, a.String(), "want a unicast address")
		case seen[a]:
			bad(f, a.String(), "given twice")
		}
		seen[a] = true
	}
	if len(e.Labels) > MaxEndpointLabels {
		bad("labels", fmt.Sprint(len(e.Labels)), "at most %d labels", MaxEndpointLabels)
	}
	for _, k := range slices.Sorted(maps.Keys(e.Labels)) {
		if err := selector.ValidateLabelKey(k); err != nil {
			bad("labels", k, "%v", err)
		} else if err := selector.ValidateLabelValue(e.Labels[k]); err != nil {
			bad(fmt.Sprintf("labels[%q]", k), e.Labels[k], "%v", err)
		}
	}
	if e.Orchestrator != "" && !isLabel(e.Orchestrator) {
		bad("orchestrator", e.Orchestrator, "want a DNS label, e.g. k8s")
	}
	if e.Namespace != "" && !isLabel(e.Namespace) {
		bad("namespace", e.Namespace, "want a DNS label")
	}
	if len(e.Ports) > MaxEndpointPorts {
		bad("ports", fmt.Sprint(len(e.Ports)), "at most %d ports", MaxEndpointPorts)
	}
	for i, p := range e.Ports {
		if _, err := policy.ParseProtocol(p.Protocol); err != nil || !slices.Contains([]string{"TCP", "UDP", "SCTP"}, strings.ToUpper(p.Protocol)) {
			bad(fmt.Sprintf("ports[%d].protocol", i), p.Protocol, "want TCP, UDP or SCTP")
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// What the policy model checks beyond this (port names, service
	// account name): decode the endpoint as the policy Set will see it.
	data, err := json.Marshal(e.Object().Resource)
	if err != nil {
		return fmt.Errorf("encode endpoint %s: %w", e.Key(), err)
	}
	if _, err := policy.Decode("endpoint "+e.Key(), data); err != nil {
		return err
	}
	return nil
}

// DefaultOrchestrator is the orchestrator of endpoints that name none.
const DefaultOrchestrator = "k8s"

// Normalize fills in defaults: the namespace "default", the orchestrator
// k8s, addresses unmapped and sorted, protocols upper case. It is
// idempotent.
func (e *Endpoint) Normalize() {
	if e.Namespace == "" {
		e.Namespace = "default"
	}
	if e.Orchestrator == "" {
		e.Orchestrator = DefaultOrchestrator
	}
	for i, a := range e.Addrs {
		e.Addrs[i] = a.Unmap()
	}
	slices.SortFunc(e.Addrs, netip.Addr.Compare)
	if len(e.Labels) == 0 {
		e.Labels = nil
	}
	for i := range e.Ports {
		e.Ports[i].Protocol = strings.ToUpper(e.Ports[i].Protocol)
	}
}

// Object returns e as the policy model's WorkloadEndpoint, named
// "<node>.<name>" so that endpoints of different nodes never clash, with
// Origin "store <node>/<name>". e must be valid.
func (e *Endpoint) Object() policy.Object {
	ns, orch := e.Namespace, e.Orchestrator
	if ns == "" {
		ns = "default"
	}
	if orch == "" {
		orch = DefaultOrchestrator
	}
	w := &policy.WorkloadEndpoint{
		TypeMeta: policy.TypeMeta{APIVersion: policy.APIVersionCalico, Kind: policy.KindWorkloadEndpoint},
		Metadata: policy.ObjectMeta{Name: e.Node + "." + e.Name, Namespace: ns, Labels: policy.Labels(e.Labels)},
		Spec: policy.WorkloadEndpointSpec{
			Node: e.Node, Endpoint: e.Name, InterfaceName: e.Interface, Orchestrator: orch,
			ServiceAccountName: e.ServiceAccount,
		},
	}
	for _, a := range e.Addrs {
		w.Spec.IPNetworks = append(w.Spec.IPNetworks, policy.CIDR{Prefix: netip.PrefixFrom(a, a.BitLen())})
	}
	for _, p := range e.Ports {
		proto, _ := policy.ParseProtocol(p.Protocol)
		w.Spec.Ports = append(w.Spec.Ports, policy.EndpointPort{Name: p.Name, Protocol: proto, Port: p.Port})
	}
	return policy.Object{Origin: policy.Origin{File: "store " + e.Key(), Document: 1, Item: -1}, Resource: w}
}

// EncodeEndpoint validates and normalizes e and returns its key and value.
func EncodeEndpoint(e Endpoint) (key string, value []byte, err error) {
	e.Normalize()
	if err := e.Validate(); err != nil {
		return "", nil, err
	}
	value, err = json.Marshal(e)
	if err != nil {
		return "", nil, fmt.Errorf("encode endpoint %s: %w", e.Key(), err)
	}
	return e.Key(), value, nil
}

// DecodeEndpoint decodes and validates the value of the endpoint entry at
// key. Decoding is strict: unknown fields are errors; the key must be the
// endpoint's "<node>/<name>".
func DecodeEndpoint(key string, value []byte) (Endpoint, error) {
	var e Endpoint
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Endpoint{}, fmt.Errorf("endpoint entry %s: %w", key, err)
	}
	if dec.More() {
		return Endpoint{}, fmt.Errorf("endpoint entry %s: data after the JSON object", key)
	}
	e.Normalize()
	if err := e.Validate(); err != nil {
		return Endpoint{}, fmt.Errorf("endpoint entry %s: %w", key, err)
	}
	if e.Key() != key {
		return Endpoint{}, fmt.Errorf("endpoint entry %s: holds endpoint %s", key, e.Key())
	}
	return e, nil
}

func isLabel(s string) bool { return len(s) <= 63 && dnsLabel.MatchString(s) }

func quoteValue(v any) string {
	if s, ok := v.(string); ok {
		if len(s) > 80 {
			s = s[:80] + "..."
		}
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprint(v)
}
