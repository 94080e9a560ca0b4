package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"testing"
)

// benchSet builds 10,000 workload endpoints in 10 namespaces and 1,000
// policies: 100 GlobalNetworkPolicies in a security tier (Deny or Pass), 600
// Calico NetworkPolicies and 300 Kubernetes NetworkPolicies in the default
// tier, each selecting one of 100 apps.
func benchSet(tb testing.TB) (*Set, []*object) {
	tb.Helper()
	var objs []Object
	add := func(r Resource) { objs = append(objs, Object{Origin: Origin{File: "bench", Item: -1}, Resource: r}) }
	sel := func(s string) Selector {
		p, err := ParseSelector(s)
		if err != nil {
			tb.Fatal(err)
		}
		return p
	}
	tcpP := &Protocol{Name: "TCP", Num: ProtoTCP}
	for n := range 10 {
		add(&Namespace{TypeMeta: TypeMeta{APIVersion: "v1", Kind: KindNamespace},
			Metadata: ObjectMeta{Name: "ns" + strconv.Itoa(n), Labels: Labels{"env": []string{"prod", "dev"}[n%2]}}})
	}
	add(&Tier{Metadata: ObjectMeta{Name: "security"}, Spec: TierSpec{Order: ptr(100.0)}})
	for i := range 10000 {
		app := "app" + strconv.Itoa(i%100)
		add(&WorkloadEndpoint{Metadata: ObjectMeta{Name: "wep" + strconv.Itoa(i), Namespace: "ns" + strconv.Itoa(i%10),
			Labels: Labels{"app": app, "role": []string{"web", "api", "db"}[i%3], "version": "v" + strconv.Itoa(i%4)}},
			Spec: WorkloadEndpointSpec{Orchestrator: "k8s", IPNetworks: []CIDR{{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i / 256), byte(i % 256)}), 32)}},
				Ports: []EndpointPort{{Name: "http", Protocol: *tcpP, Port: 8080}}}})
	}
	for i := range 100 {
		action := ActionPass
		if i%10 == 0 {
			action = ActionDeny
		}
		add(&GlobalNetworkPolicy{Metadata: ObjectMeta{Name: "security.p" + strconv.Itoa(i)}, Spec: GlobalNetworkPolicySpec{
			Tier: "security", Order: ptr(float64(i)), Selector: sel(fmt.Sprintf("app == 'app%d' || role == 'db'", i)),
			Types: []PolicyType{PolicyTypeIngress, PolicyTypeEgress},
			Ingress: []Rule{{Action: ActionDeny, Source: EntityRule{Nets: []CIDR{{netip.MustParsePrefix("192.0.2.0/24")}}}},
				{Action: action, Source: EntityRule{Selector: sel(fmt.Sprintf("app == 'app%d'", (i+1)%100))}}, {Action: ActionPass}},
			Egress: []Rule{{Action: ActionPass}},
		}})
	}
	for i := range 600 {
		add(&NetworkPolicy{Metadata: ObjectMeta{Name: "np" + strconv.Itoa(i), Namespace: "ns" + strconv.Itoa(i%10)}, Spec: NetworkPolicySpec{
			Order: ptr(float64(500 + i%7)), Selector: sel(fmt.Sprintf("app == 'app%d'", i%100)),
			Ingress: []Rule{
				{Action: ActionAllow, Protocol: tcpP, Source: EntityRule{Selector: sel(fmt.Sprintf("app == 'app%d'", (i+3)%100))}, Destination: EntityRule{Ports: []Port{{Name: "http"}}}},
				{Action: ActionAllow, Protocol: tcpP, Source: EntityRule{NamespaceSelector: sel("env == 'dev'"), Selector: sel("role == 'web'")}, Destination: EntityRule{Ports: []Port{{Min: 8080, Max: 8080}}}},
			},
			Egress: []Rule{{Action: ActionAllow, Destination: EntityRule{NotNets: []CIDR{{netip.MustParsePrefix("192.0.2.0/24")}}}}},
		}})
	}
	for i := range 300 {
		add(&KubernetesNetworkPolicy{Metadata: ObjectMeta{Name: "k" + strconv.Itoa(i), Namespace: "ns" + strconv.Itoa(i%10)}, Spec: KubernetesNetworkPolicySpec{
			PodSelector: LabelSelector{MatchLabels: Labels{"app": "app" + strconv.Itoa((i*7)%100)}},
			Ingress: []KubernetesNetworkPolicyIngress{{From: []KubernetesNetworkPolicyPeer{{PodSelector: &LabelSelector{MatchLabels: Labels{"role": "api"}}}},
				Ports: []KubernetesNetworkPolicyPort{{Port: &IntOrString{Int: 8080}}}}},
		}})
	}
	set, err := NewSet(objs)
	if err != nil {
		tb.Fatal(err)
	}
	return set, set.endpoints
}

// BenchmarkEvaluate measures decisions per second with 1,000 policies and
// 10,000 endpoints: flows between random pairs of endpoints on TCP 8080,
// with the full trace.
func BenchmarkEvaluate(b *testing.B) {
	set, eps := benchSet(b)
	rng := rand.New(rand.NewPCG(1, 2))
	flows := make([]Flow, 1024)
	for i := range flows {
		src, dst := eps[rng.IntN(len(eps))], eps[rng.IntN(len(eps))]
		flows[i] = Flow{Src: src.nets[0].Addr(), Dst: dst.nets[0].Addr(), Protocol: ProtoTCP, SrcPort: 40000, DstPort: 8080}
	}
	opts := DefaultOptions(DefaultGossipPort, DefaultWireGuardPort)
	allowed := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if Evaluate(set, flows[i%len(flows)], opts).Allowed() {
			allowed++
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	if allowed == 0 || allowed == b.N {
		b.Fatalf("%d of %d flows allowed: the benchmark should see both verdicts", allowed, b.N)
	}
}
