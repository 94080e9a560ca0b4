package policy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const gnpHead = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec:\n"

// Every bad input names the file, the document, the object, the field and
// the value.
func TestDecodeErrors(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string // one line per error
	}{{
		name: "the issue's example: a bad named port in the third document",
		yaml: "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n# only a comment\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n---\n" +
			"apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: default-deny}\nspec:\n  ingress:\n  - action: Allow\n    protocol: TCP\n    destination:\n      ports: [80, http-]\n",
		want: []string{`policies.yaml: document 3 (GlobalNetworkPolicy default-deny): spec.ingress[0].destination.ports[1]: "http-": invalid port name: want 1-15 of a-z, 0-9 and '-', with a letter, no '-' at either end and no '--'`},
	}, {
		name: "unknown field",
		yaml: gnpHead + "  selectr: all()\n",
		want: []string{`policies.yaml: document 1 (GlobalNetworkPolicy p): spec.selectr: unknown field`},
	}, {
		name: "unknown field in a rule",
		yaml: gnpHead + "  egress: [{action: Allow, destination: {net: 10.0.0.0/8}}]\n",
		want: []string{`policies.yaml: document 1 (GlobalNetworkPolicy p): spec.egress[0].destination.net: unknown field`},
	}, {
		name: "wrong type",
		yaml: gnpHead + "  order: first\n",
		want: []string{`policies.yaml: document 1 (GlobalNetworkPolicy p): spec.order: "first": wrong type: want number, got string`},
	}, {
		name: "wrong type: a list for an object",
		yaml: gnpHead + "  ingress: {action: Allow}\n",
		want: []string{`policies.yaml: document 1 (GlobalNetworkPolicy p): spec.ingress: wrong type: want list, got object`},
	}, {
		name: "bad action",
		yaml: gnpHead + "  ingress: [{action: allow}]\n",
		want: []string{`policies.yaml: document 1 (GlobalNetworkPolicy p): spec.ingress[0].action: "allow": invalid action: want Allow, Deny, Log or Pass`},
	}, {
		name: "bad selector",
		yaml: gnpHead + "  selector: app == \n",
		want: []string{`policies.yaml: document 1 (GlobalNetworkPolicy p): spec.selector: "app ==": invalid selector: `},
	}, {
		name: "bad CIDR",
		yaml: gnpHead + "  ingress: [{action: Allow, source: {nets: [10.0.0.0/33]}}]\n",
		want: []string{`policies.yaml: document 1 (GlobalNetworkPolicy p): spec.ingress[0].source.nets[0]: "10.0.0.0/33": invalid CIDR`},
	}, {
		name: "bad protocol",
		yaml: gnpHead + "  ingress: [{action: Allow, protocol: 256}]\n",
		want: []string{`policies.yaml: document 1 (GlobalNetworkPolicy p): spec.ingress[0].protocol: 256: invalid protocol number: want 1-255`},
	}, {
		name: "numeric ports need a protocol with ports",
		yaml: gnpHead + "  ingress: [{action: Allow, protocol: ICMP, destination: {ports: [80]}}, {action: Allow, source: {notPorts: ['1:2']}}]\n",
		want: []string{
			`policies.yaml: document 1 (GlobalNetworkPolicy p): spec.ingress[0].destination.ports[0]: "80": protocol ICMP has no ports`,
			`policies.yaml: document 1 (GlobalNetworkPolicy p): spec.ingress[1].source.notPorts[0]: "1:2": rules that match numeric ports must set protocol to TCP, UDP, SCTP or UDPLite`,
		},
	}, {
		name: "port range backwards",
		yaml: gnpHead + "  ingress: [{action: Allow, protocol: TCP, destination: {ports: ['90:80']}}]\n",
		want: []string{`policies.yaml: document 1 (GlobalNetworkPolicy p): spec.ingress[0].destination.ports[0]: "90:80": invalid port range: min is greater than max`},
	}, {
		name: "ICMP code without type, ICMP fields without ICMP",
		yaml: gnpHead + "  ingress: [{action: Allow, protocol: ICMP, icmp: {code: 1}}, {action: Allow, protocol: TCP, notICMP: {type: 8}}]\n",
		want: []string{
			`policies.yaml: document 1 (GlobalNetworkPolicy p): spec.ingress[0].icmp.code: 1: ICMP code specified without an ICMP type`,
			`policies.yaml: document 1 (GlobalNetworkPolicy p): spec.ingress[1].notICMP: rules that match ICMP fields must set protocol to ICMP or ICMPv6`,
		},
	}, {
		name: "IPv4 and IPv6 nets in one rule",
		yaml: gnpHead + "  ingress: [{action: Allow, source: {nets: [10.0.0.0/8]}, destination: {nets: ['fd00::/8']}}]\n",
		want: []string{`policies.yaml: document 1 (GlobalNetworkPolicy p): spec.ingress[0].destination.nets[0]: "fd00::/8": a rule cannot mix IPv4 and IPv6 CIDRs`},
	}, {
		name: "global() outside a rule's namespaceSelector",
		yaml: gnpHead + "  selector: global()\n  ingress: [{action: Allow, source: {namespaceSelector: global() && a == 'b'}}]\n",
		want: []string{
			`policies.yaml: document 1 (GlobalNetworkPolicy p): spec.selector: "global()": global() can only be used in a rule's namespaceSelector`,
			`policies.yaml: document 1 (GlobalNetworkPolicy p): spec.ingress[0].source.namespaceSelector: "global() && a == 'b'": global() cannot be combined with other selectors`,
		},
	}, {
		name: "preDNAT rules",
		yaml: gnpHead + "  preDNAT: true\n  doNotTrack: true\n  egress: [{action: Allow}]\n",
		want: []string{
			`policies.yaml: document 1 (GlobalNetworkPolicy p): spec.preDNAT: true: doNotTrack and preDNAT cannot both be true`,
			`policies.yaml: document 1 (GlobalNetworkPolicy p): spec.applyOnForward: false: must be true when doNotTrack or preDNAT is`,
			`policies.yaml: document 1 (GlobalNetworkPolicy p): spec.egress: a preDNAT policy may only have ingress rules`,
		},
	}, {
		name: "application-layer and service matches are refused",
		yaml: gnpHead + "  ingress: [{action: Allow, http: {methods: [GET]}, source: {services: {name: x, namespace: y}}}]\n",
		want: []string{
			`policies.yaml: document 1 (GlobalNetworkPolicy p): spec.ingress[0].http: application-layer policy is not supported by weft`,
			`policies.yaml: document 1 (GlobalNetworkPolicy p): spec.ingress[0].source.services: Kubernetes Service matches are not supported by weft`,
		},
	}, {
		name: "names and namespaces",
		yaml: "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: Bad_Name, namespace: prod}\n---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: a.b}\nspec: {defaultAction: Allow}\n---\napiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {}\nspec: {expectedIPs: [1.2.3]}\n",
		want: []string{
			`policies.yaml: document 1 (GlobalNetworkPolicy prod/Bad_Name): metadata.namespace: "prod": not allowed: GlobalNetworkPolicy is cluster-wide`,
			`policies.yaml: document 1 (GlobalNetworkPolicy prod/Bad_Name): metadata.name: "Bad_Name": invalid name: want a DNS label, or two joined by '.' of lower-case letters, digits and '-'`,
			`policies.yaml: document 2 (Tier a.b): metadata.name: "a.b": invalid name: want a DNS label of lower-case letters, digits and '-'`,
			`policies.yaml: document 2 (Tier a.b): spec.defaultAction: "Allow": invalid default action: want Deny or Pass`,
			`policies.yaml: document 3 (HostEndpoint): metadata.name: required`,
			`policies.yaml: document 3 (HostEndpoint): spec.expectedIPs[0]: "1.2.3": invalid IP address`,
		},
	}, {
		name: "labels",
		yaml: "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: s, labels: {a: 1}}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: s, labels: {-a: b}}\n",
		want: []string{
			`policies.yaml: document 1 (GlobalNetworkSet s): metadata.labels["a"]: 1: wrong type: want string, got number`,
			`policies.yaml: document 2 (GlobalNetworkSet s): metadata.labels: "-a": invalid label key: `,
		},
	}, {
		name: "unsupported kind and missing kind",
		yaml: "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {name: p}\n---\n[1, 2]\n",
		want: []string{
			`policies.yaml: document 1 (Profile p): kind: "projectcalico.org/v3 Profile": unsupported resource: `,
			`policies.yaml: document 2: [1,2]: wrong type: want object, got list`,
		},
	}, {
		name: "a bad item of a List",
		yaml: "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: ok}\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: x, labelz: {}}\n",
		want: []string{`policies.yaml: document 1 (Namespace x): items[1].metadata.labelz: unknown field`},
	}, {
		name: "not YAML",
		yaml: "a: [\n",
		want: []string{`policies.yaml: document 1: `},
	}, {
		name: "Kubernetes NetworkPolicy",
		yaml: "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: k}\nspec:\n  podSelector: {matchExpressions: [{key: a, operator: Has}]}\n" +
			"  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}, podSelector: {}}, {}]\n    ports: [{protocol: ICMP}, {port: http, endPort: 90}, {port: 0}]\n",
		want: []string{
			`policies.yaml: document 1 (NetworkPolicy k): spec.podSelector.matchExpressions[0].operator: "Has": invalid operator: want In, NotIn, Exists or DoesNotExist`,
			`policies.yaml: document 1 (NetworkPolicy k): spec.ingress[0].from[0].ipBlock: cannot be combined with podSelector or namespaceSelector`,
			`policies.yaml: document 1 (NetworkPolicy k): spec.ingress[0].from[0].ipBlock.except[0]: "11.0.0.0/16": must be a strict subset of cidr 10.0.0.0/8`,
			`policies.yaml: document 1 (NetworkPolicy k): spec.ingress[0].from[1]: must set podSelector, namespaceSelector or ipBlock`,
			`policies.yaml: document 1 (NetworkPolicy k): spec.ingress[0].ports[0].protocol: "ICMP": invalid protocol: want TCP, UDP or SCTP`,
			`policies.yaml: document 1 (NetworkPolicy k): spec.ingress[0].ports[1].endPort: 90: requires a numeric port`,
			`policies.yaml: document 1 (NetworkPolicy k): spec.ingress[0].ports[2].port: 0: invalid port: want 1-65535`,
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := Decode("policies.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("Decode succeeded with %d objects, want errors", len(objs))
			}
			got := strings.Split(err.Error(), "\n")
			if len(got) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%s", len(got), len(tc.want), err)
			}
			for i := range got {
				// A want ending in ": " checks the prefix: the rest comes
				// from another package (selector, YAML).
				if strings.HasSuffix(tc.want[i], ": ") && strings.HasPrefix(got[i], tc.want[i]) {
					continue
				}
				if diff := cmp.Diff(tc.want[i], got[i]); diff != "" {
					t.Errorf("error %d (-want +got):\n%s", i, diff)
				}
			}
			if objs != nil {
				t.Errorf("Decode returned objects with an error")
			}
		})
	}
}

// Each kind decodes to its type, with defaults filled in; Lists, typed Lists,
// "--- inline" documents and empty documents are handled.
func TestDecodeKinds(t *testing.T) {
	data := `---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: np}
--- {apiVersion: v1, kind: ServiceAccount, metadata: {name: sa, namespace: prod}}
...
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicyList
items:
- metadata: {name: a}
  spec: {order: 1}
- apiVersion: projectcalico.org/v3
  kind: Tier
  metadata: {name: t}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: k
  namespace: prod
  uid: "1234"
  resourceVersion: "5"
  creationTimestamp: "2024-01-01T00:00:00Z"
  managedFields: [{manager: kubectl}]
spec: {podSelector: {}}
status: {}
`
	objs, err := Decode("all.yaml", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Origin          Origin
		Type            string
		Name, Namespace string
	}
	var got []row
	for _, o := range objs {
		md := o.Resource.Meta()
		got = append(got, row{o.Origin, o.Resource.Type().APIVersion + " " + o.Resource.Type().Kind + " " + strings.TrimPrefix(typeName(o.Resource), "*policy."), md.Name, md.Namespace})
	}
	want := []row{
		{Origin{"all.yaml", 1, -1}, "projectcalico.org/v3 NetworkPolicy NetworkPolicy", "np", "default"},
		{Origin{"all.yaml", 2, -1}, "v1 ServiceAccount ServiceAccount", "sa", "prod"},
		{Origin{"all.yaml", 3, 0}, "projectcalico.org/v3 GlobalNetworkPolicy GlobalNetworkPolicy", "a", ""},
		{Origin{"all.yaml", 3, 1}, "projectcalico.org/v3 Tier Tier", "t", ""},
		{Origin{"all.yaml", 4, -1}, "networking.k8s.io/v1 NetworkPolicy KubernetesNetworkPolicy", "k", "prod"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
}

func TestSplitDocuments(t *testing.T) {
	cases := []struct {
		name, in string
		want     []string
	}{
		{"one", "a: 1\n", []string{"a: 1\n"}},
		{"leading marker", "---\na: 1\n", []string{"", "a: 1\n"}},
		{"marker with spaces and CRLF", "a: 1\r\n---  \r\nb: 2\r\n", []string{"a: 1\r\n", "b: 2\r\n"}},
		{"inline document", "--- {a: 1}\n", []string{"", "{a: 1}\n"}},
		{"end marker", "a: 1\n...\n", []string{"a: 1\n", ""}},
		{"not a marker", "a: '---'\n----\n", []string{"a: '---'\n----\n"}},
		{"byte order mark", "\xef\xbb\xbfa: 1", []string{"a: 1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, d := range splitDocuments([]byte(tc.in)) {
				got = append(got, string(d))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("documents (-want +got):\n%s", diff)
			}
		})
	}
}

func typeName(v any) string { return fmt.Sprintf("%T", v) }
