package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// TestSelectorGroupsMatchNaive checks NewSet's sharing of resolved policies
// between endpoints with the same labels: every endpoint must get exactly
// the policies whose selector matches it, as if resolved one by one.
func TestSelectorGroupsMatchNaive(t *testing.T) {
	objs, err := LoadObjects("testdata/world.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pols, err := Decode("policies.yaml", []byte(`
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: web}
spec: {selector: app == 'web', ingress: [{action: Allow}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: sa}
spec: {selector: has(tier), serviceAccountSelector: "", ingress: [{action: Allow}]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: front, namespace: prod}
spec: {selector: tier == 'frontend' && app != 'db', egress: [{action: Allow}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: cache, namespace: dev}
spec: {podSelector: {matchLabels: {app: cache}}, policyTypes: [Ingress]}
`))
	if err != nil {
		t.Fatal(err)
	}
	objs = append(objs, pols...)
	// Add endpoints drawn from a small label pool, so that many share a
	// label set and some differ only by namespace or one label.
	r := rand.New(rand.NewPCG(1, 2))
	apps := []string{"web", "db", "cache"}
	for i := range 200 {
		ns := []string{"default", "prod", "dev"}[r.IntN(3)]
		labels := map[string]string{"app": apps[r.IntN(len(apps))]}
		if r.IntN(2) == 0 {
			labels["tier"] = "frontend"
		}
		objs = append(objs, Object{Origin: Origin{File: "generated"}, Resource: &WorkloadEndpoint{
			TypeMeta: TypeMeta{APIVersion: "projectcalico.org/v3", Kind: "WorkloadEndpoint"},
			Metadata: ObjectMeta{Name: fmt.Sprintf("grp-%d", i), Namespace: ns, Labels: labels},
			Spec: WorkloadEndpointSpec{
				Orchestrator:       []string{"k8s", "other"}[r.IntN(2)],
				ServiceAccountName: []string{"", "sa1"}[r.IntN(2)],
				IPNetworks:         []CIDR{{netip.MustParsePrefix(fmt.Sprintf("10.99.%d.%d/32", i/250, i%250+1))}},
			},
		}})
	}
	s, err := NewSet(objs)
	if err != nil {
		t.Fatal(err)
	}
	shared := 0
	for _, ep := range s.endpoints {
		var want []*compiledPolicy
		for _, tr := range s.tiers {
			for _, p := range tr.policies {
				if p.sel.matches(ep) {
					want = append(want, p)
				}
			}
		}
		if !slices.Equal(ep.policies, want) {
			t.Errorf("%s: %d policies, want %d", ep, len(ep.policies), len(want))
		}
		if len(ep.policies) > 0 {
			shared++
		}
	}
	if shared == 0 {
		t.Fatal("no endpoint is selected by any policy: the test checks nothing")
	}
}
