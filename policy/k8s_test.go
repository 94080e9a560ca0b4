package policy

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TranslateKubernetes gives what Calico's K8sNetworkPolicyToCalico gives.
func TestTranslateKubernetes(t *testing.T) {
	const podK8s = "projectcalico.org/orchestrator == 'k8s'"
	tcpP, udpP := &Protocol{Name: "TCP", Num: ProtoTCP}, &Protocol{Name: "UDP", Num: ProtoUDP}
	cidr := func(s string) CIDR { c, _ := ParseCIDR(s); return c }
	policy := func(spec NetworkPolicySpec) *NetworkPolicy {
		order := float64(KubernetesPolicyOrder)
		spec.Order, spec.Tier = &order, DefaultTier
		return &NetworkPolicy{
			TypeMeta: TypeMeta{APIVersion: APIVersionCalico, Kind: KindNetworkPolicy},
			Metadata: ObjectMeta{Name: "knp.default.web", Namespace: "prod"},
			Spec:     spec,
		}
	}
	cases := []struct {
		name string
		spec string
		want *NetworkPolicy
	}{{
		name: "empty podSelector, no rules: ingress isolation",
		spec: "podSelector: {}",
		want: policy(NetworkPolicySpec{Selector: mustSelector(podK8s), Types: []PolicyType{PolicyTypeIngress}}),
	}, {
		name: "matchLabels sorted, matchExpressions in order",
		spec: "podSelector: {matchLabels: {z: '1', a: '2'}, matchExpressions: [{key: t, operator: NotIn, values: [x1, y1]}, {key: u, operator: DoesNotExist}, {key: v, operator: Exists}, {key: w, operator: In, values: [q]}]}",
		want: policy(NetworkPolicySpec{
			Selector: mustSelector(podK8s + " && a == '2' && z == '1' && t not in { 'x1', 'y1' } && ! has(u) && has(v) && w in { 'q' }"),
			Types:    []PolicyType{PolicyTypeIngress},
		}),
	}, {
		name: "one rule per protocol and peer; ports merged into ranges after named ports",
		spec: `podSelector: {}
ingress:
- from: [{podSelector: {matchLabels: {app: a}}}, {namespaceSelector: {matchLabels: {env: dev}}}]
  ports: [{port: 82}, {port: 80}, {port: 81}, {protocol: UDP, port: 9090}, {port: http}]`,
		want: policy(NetworkPolicySpec{
			Selector: mustSelector(podK8s),
			Types:    []PolicyType{PolicyTypeIngress},
			Ingress: []Rule{
				{Action: ActionAllow, Protocol: tcpP, Source: EntityRule{Selector: mustSelector(podK8s + " && app == 'a'")},
					Destination: EntityRule{Ports: []Port{{Name: "http"}, {Min: 80, Max: 82}}}},
				{Action: ActionAllow, Protocol: tcpP, Source: EntityRule{Selector: mustSelector(podK8s), NamespaceSelector: mustSelector("env == 'dev'")},
					Destination: EntityRule{Ports: []Port{{Name: "http"}, {Min: 80, Max: 82}}}},
				{Action: ActionAllow, Protocol: udpP, Source: EntityRule{Selector: mustSelector(podK8s + " && app == 'a'")},
					Destination: EntityRule{Ports: []Port{{Min: 9090, Max: 9090}}}},
				{Action: ActionAllow, Protocol: udpP, Source: EntityRule{Selector: mustSelector(podK8s), NamespaceSelector: mustSelector("env == 'dev'")},
					Destination: EntityRule{Ports: []Port{{Min: 9090, Max: 9090}}}},
			},
		}),
	}, {
		name: "a protocol without a port allows all its ports",
		spec: "podSelector: {}\ningress: [{ports: [{port: 80}, {protocol: TCP}]}]",
		want: policy(NetworkPolicySpec{
			Selector: mustSelector(podK8s),
			Types:    []PolicyType{PolicyTypeIngress},
			Ingress:  []Rule{{Action: ActionAllow, Protocol: tcpP}},
		}),
	}, {
		name: "egress to an ipBlock with except and an endPort; types defaulted as the API server does",
		spec: "podSelector: {}\negress: [{to: [{ipBlock: {cidr: 10.1.2.3/8, except: [10.1.0.0/16]}}, {namespaceSelector: {}}], ports: [{port: 1000, endPort: 2000}]}]",
		want: policy(NetworkPolicySpec{
			Selector: mustSelector(podK8s),
			Types:    []PolicyType{PolicyTypeIngress, PolicyTypeEgress},
			Egress: []Rule{
				{Action: ActionAllow, Protocol: tcpP, Destination: EntityRule{Nets: []CIDR{cidr("10.0.0.0/8")}, NotNets: []CIDR{cidr("10.1.0.0/16")}, Ports: []Port{{Min: 1000, Max: 2000}}}},
				{Action: ActionAllow, Protocol: tcpP, Destination: EntityRule{Selector: mustSelector(podK8s), NamespaceSelector: mustSelector("all()"), Ports: []Port{{Min: 1000, Max: 2000}}}},
			},
		}),
	}, {
		name: "policyTypes Egress only",
		spec: "podSelector: {}\npolicyTypes: [Egress]",
		want: policy(NetworkPolicySpec{Selector: mustSelector(podK8s), Types: []PolicyType{PolicyTypeEgress}}),
	}, {
		name: "an empty rule allows everything",
		spec: "podSelector: {}\ningress: [{}]",
		want: policy(NetworkPolicySpec{Selector: mustSelector(podK8s), Types: []PolicyType{PolicyTypeIngress}, Ingress: []Rule{{Action: ActionAllow}}}),
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: prod}\nspec:\n  " +
				indent(tc.spec, "  ")
			objs, err := Decode("k.yaml", []byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			got, err := TranslateKubernetes(objs[0].Resource.(*KubernetesNetworkPolicy))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("translation (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSimplifyPorts(t *testing.T) {
	cases := []struct {
		name     string
		in, want []Port
	}{
		{"none", nil, nil},
		{"one", []Port{{Min: 80, Max: 80}}, []Port{{Min: 80, Max: 80}}},
		{"one numeric and a name: unchanged", []Port{{Min: 80, Max: 80}, {Name: "a"}}, []Port{{Min: 80, Max: 80}, {Name: "a"}}},
		{"adjacent and duplicate", []Port{{Min: 3, Max: 3}, {Min: 1, Max: 2}, {Min: 2, Max: 2}, {Min: 7, Max: 7}}, []Port{{Min: 1, Max: 3}, {Min: 7, Max: 7}}},
		{"names first", []Port{{Min: 5, Max: 5}, {Name: "b"}, {Min: 6, Max: 6}, {Name: "a"}}, []Port{{Name: "b"}, {Name: "a"}, {Min: 5, Max: 6}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, simplifyPorts(tc.in)); diff != "" {
				t.Errorf("simplifyPorts (-want +got):\n%s", diff)
			}
		})
	}
}

// mustSelector parses a selector a test wrote.
func mustSelector(s string) Selector {
	sel, err := ParseSelector(s)
	if err != nil {
		panic(fmt.Sprintf("selector %q: %v", s, err))
	}
	return sel
}

// indent puts prefix before every line of s after the first.
func indent(s, prefix string) string {
	out := []byte{}
	for i := 0; i < len(s); i++ {
		out = append(out, s[i])
		if s[i] == '\n' {
			out = append(out, prefix...)
		}
	}
	return string(out) + "\n"
}
