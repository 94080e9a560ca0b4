package policy

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func decodeAll(t *testing.T, files map[string]string) []Object {
	t.Helper()
	var objs []Object
	for _, name := range []string{"a.yaml", "b.yaml"} {
		o, err := Decode(name, []byte(files[name]))
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o...)
	}
	return objs
}

// References that do not resolve and names used twice are errors that name
// both places.
func TestNewSetErrors(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		want  []string
	}{{
		name: "duplicate across files",
		files: map[string]string{
			"a.yaml": gnpHead + "  selector: all()\n",
			"b.yaml": "---\n" + gnpHead + "  selector: all()\n",
		},
		want: []string{`b.yaml: document 1 (GlobalNetworkPolicy p): metadata.name: duplicate: already defined at a.yaml: document 1`},
	}, {
		name: "a Kubernetes policy and a Calico policy of the same translated name",
		files: map[string]string{
			"a.yaml": "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: knp.default.x, namespace: prod}\n",
			"b.yaml": "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: prod}\nspec: {podSelector: {}}\n",
		},
		want: []string{`b.yaml: document 1 (NetworkPolicy prod/knp.default.x): metadata.name: duplicate: already defined at a.yaml: document 1`},
	}, {
		name: "a tier that does not exist",
		files: map[string]string{
			"a.yaml": "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: np1, namespace: prod}\nspec: {tier: security}\n",
		},
		want: []string{`a.yaml: document 1 (NetworkPolicy prod/np1): spec.tier: "security": no such Tier`},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewSet(decodeAll(t, tc.files))
			if err == nil {
				t.Fatal("NewSet succeeded, want errors")
			}
			if diff := cmp.Diff(tc.want, strings.Split(err.Error(), "\n")); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

// Workload endpoints get the labels Felix sees: their own (less pcns./pcsa.
// ones), the namespace, orchestrator and service account, and the namespace's
// and service account's labels under pcns. and pcsa.
func TestNewSetLabels(t *testing.T) {
	objs := decodeAll(t, map[string]string{"a.yaml": `
apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {env: prod}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: api, namespace: prod, labels: {tier: core}}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: w, namespace: prod, labels: {app: x, pcns.env: forged, projectcalico.org/namespace: other}}
spec: {orchestrator: k8s, serviceAccountName: api, ipNetworks: [10.0.0.1/32]}
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: set1, namespace: prod, labels: {a: b}}
spec: {nets: [10.1.0.0/16]}
`})
	set, err := NewSet(objs)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]string{}
	for _, o := range append(set.endpoints, set.netsets...) {
		got[o.String()] = o.labels
	}
	want := map[string]map[string]string{
		"WorkloadEndpoint prod/w": {
			"app": "x", LabelNamespace: "prod", LabelOrchestrator: "k8s", LabelServiceAccount: "api",
			"pcns.env": "prod", "pcns.projectcalico.org/name": "prod",
			"pcsa.tier": "core", "pcsa.projectcalico.org/name": "api",
		},
		"NetworkSet prod/set1": {"a": "b", LabelNamespace: "prod", "pcns.env": "prod", "pcns.projectcalico.org/name": "prod"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
}

// Load reads a directory's YAML and JSON files, recursively and in order.
func TestLoad(t *testing.T) {
	dir := t.TempDir()
	world, err := os.ReadFile("testdata/world.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"world.yaml":          string(world),
		"sub/policy.json":     `{"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy", "metadata": {"name": "db"}, "spec": {"selector": "app == 'db'"}}`,
		"sub/deeper/tier.yml": "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\n",
		"README.md":           "not a resource",
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	set, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	v := Evaluate(set, tcp(feIP, dbIP, 5432), Options{})
	if diff := cmp.Diff(outcome{Deny, profileAllow, "deny | tier default: deny: end of tier: the tier's policies apply to the endpoint but no rule decided"}, outcomeOf(v)); diff != "" {
		t.Errorf("outcome (-want +got):\n%s", diff)
	}
	var tiers []string
	for _, tr := range set.tiers {
		tiers = append(tiers, tr.name)
	}
	if diff := cmp.Diff([]string{"default", "t"}, tiers); diff != "" {
		t.Errorf("tiers (-want +got):\n%s", diff)
	}

	for _, bad := range []struct{ path, want string }{
		{filepath.Join(dir, "missing"), "read policy resources: stat "},
		{filepath.Join(dir, "sub", "deeper", "tier.yml", "x"), "read policy resources: stat "},
	} {
		if _, err := Load(bad.path); err == nil || !strings.HasPrefix(err.Error(), bad.want) {
			t.Errorf("Load(%s): %v, want an error starting %q", bad.path, err, bad.want)
		}
	}
	empty := t.TempDir()
	if _, err := Load(empty); err == nil || !strings.Contains(err.Error(), "no .yaml, .yml or .json files") {
		t.Errorf("Load(empty dir): %v, want 'no .yaml, .yml or .json files'", err)
	}
}

// Evaluate only reads the Set: concurrent calls agree with sequential ones
// (run with -race).
func TestEvaluateConcurrent(t *testing.T) {
	set, eps := benchSet(t)
	flows := make([]Flow, 200)
	for i := range flows {
		flows[i] = tcp(eps[i*37%len(eps)].nets[0].Addr().String(), eps[i*101%len(eps)].nets[0].Addr().String(), 8080)
	}
	want := make([]Verdict, len(flows))
	for i, f := range flows {
		want[i] = Evaluate(set, f, Options{})
	}
	var wg sync.WaitGroup
	got := make([][]Verdict, 4)
	for g := range got {
		wg.Go(func() {
			for _, f := range flows {
				got[g] = append(got[g], Evaluate(set, f, Options{}))
			}
		})
	}
	wg.Wait()
	for g := range got {
		if diff := cmp.Diff(want, got[g], cmp.Comparer(func(a, b Flow) bool { return a.String() == b.String() })); diff != "" {
			t.Fatalf("goroutine %d (-sequential +concurrent):\n%s", g, diff)
		}
	}
}

// The examples of Calico's and Kubernetes' documentation load unchanged.
func TestLoadDocsExamples(t *testing.T) {
	set, err := Load("testdata/docs-examples.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, tr := range set.tiers {
		for _, p := range tr.policies {
			got[tr.name] = append(got[tr.name], p.kind+" "+p.key())
		}
	}
	want := map[string][]string{
		"devops": {"GlobalNetworkPolicy devops.stage-env"},
		"default": {
			"GlobalNetworkPolicy failsafe",
			"NetworkPolicy default/knp.default.multi-port-egress",
			"NetworkPolicy default/knp.default.test-network-policy",
			"GlobalNetworkPolicy allow-ping-in-cluster",
			"GlobalNetworkPolicy allow-tcp-6379",
			"NetworkPolicy production/allow-tcp-6379",
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("policies by tier (-want +got):\n%s", diff)
	}
}
