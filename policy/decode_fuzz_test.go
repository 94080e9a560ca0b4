package policy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzDecode: Decode never panics and is deterministic; what it accepts
// encodes to JSON and decodes back to the same objects; NewSet and Evaluate
// do not panic on it.
func FuzzDecode(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		gnpHead + "  selector: app == 'db'\n  ingress: [{action: Allow, protocol: TCP, source: {nets: [10.0.0.1]}, destination: {ports: [80, '1:2', http]}}]\n",
		gnpHead + "  order: 1e400\n",
		"apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: Namespace, metadata: {name: a, labels: {x: y1}}}]\n",
		"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: k}\nspec: {podSelector: {}, ingress: [{ports: [{port: 80, endPort: 90}], from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]}]}\n",
		"--- {a: 1}\n...\n---\n- 1\n",
		"a: &x [*x]\n",
		"",
	} {
		f.Add([]byte(s))
	}
	flow := tcp("10.0.1.1", "10.0.1.3", 80)
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Decode("fuzz.yaml", data)
		objs2, err2 := Decode("fuzz.yaml", data)
		if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("Decode is not deterministic: %v, then %v", err, err2)
		}
		if err != nil {
			return
		}
		if diff := cmp.Diff(objs, objs2); diff != "" {
			t.Fatalf("Decode is not deterministic (-first +second):\n%s", diff)
		}
		for _, o := range objs {
			j, err := json.Marshal(o.Resource)
			if err != nil {
				t.Fatalf("encode %s: %v", o.Origin, err)
			}
			back, err := Decode("roundtrip.json", j)
			if err != nil {
				t.Fatalf("decode the encoding of %s: %v\n%s", o.Origin, err, j)
			}
			if len(back) != 1 {
				t.Fatalf("the encoding of %s decodes to %d objects", o.Origin, len(back))
			}
			if diff := cmp.Diff(o.Resource, back[0].Resource); diff != "" {
				t.Fatalf("round trip of %s (-decoded +re-decoded):\n%s\n%s", o.Origin, diff, j)
			}
		}
		if set, err := NewSet(objs); err == nil {
			Evaluate(set, flow, DefaultOptions(DefaultGossipPort, DefaultWireGuardPort))
		}
	})
}
