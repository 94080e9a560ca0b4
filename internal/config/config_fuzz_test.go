package config

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

// FuzzParse checks that Parse never panics, returns the zero Config with
// every error, and that a Config that parses and validates comes back
// unchanged from a trip through YAML.
func FuzzParse(f *testing.F) {
	for _, doc := range []string{
		"",
		"nodeName: n1\n",
		"nodeName: n1\njoin: [198.18.0.1, \"[2001:db8::1]:7946\", seed.example.com:8000]\nlabels: {tier: edge, example.com/rack: r12}\n",
		"nodeName: n1\nclusterCIDR: 10.32.0.0/12\nsubnetSize: 26\nsubnet: 10.33.4.64/26\nadvertiseAddress: 198.18.0.10\npublicAddress: 2001:db8::10\n",
		"nodeName: n1\nlocation: {cloud: aws, region: eu-west-1, zone: eu-west-1a}\nunderlayInterface: ens5\ninsecure: true\n",
		"nodeName: n1\ngossip: {probeInterval: 1s, probeTimeout: 999ms, suspicionMult: 10, deadReservation: 2562047h}\n",
		"nodeName: n1\nlogLevel: debug\nlogFormat: json\nstateDir: /srv/weft\nrunDir: /run/x\n",
		`{"nodeName": "n1", "bindPort": 8000, "bindAddress": "::"}`,
		"nodeName: n1\nsubnet: ~\njoin: []\nlabels: {}\n",
		"nodeName: n1\noverlay: ipip\noverlayMode: never\nencryption: always\nvxlan: {vni: 16777215, port: 8472, device: vx0}\nipMasq: false\nresyncPeriod: 1s\n",
		"nodeName: n1\nvxlan: {vni: 0, port: 7946, device: \"\"}\nresyncPeriod: 999ms\noverlay: VXLAN\n",
		"nodeName: 123\n",
		"NodeName: n1\n",
		"clusterCIDR: 10.0.0.0/33\n",
		"gossip: {probeInterval: 5}\n",
		"labels: {a: 1, b: [x]}\n",
		"nodeName: a\n---\nnodeName: b\n",
		"nodeName: a\nnodeName: b\n",
		"- a\n",
		"a: &x [1]\nb: *x\n",
	} {
		f.Add([]byte(doc))
	}
	if example, err := os.ReadFile(examplePath); err == nil {
		f.Add(example)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if diff := cmp.Diff(Config{}, c, cmpOpts...); diff != "" {
				t.Fatalf("Parse returned a Config with its error %v (-want +got):\n%s", err, diff)
			}
			return
		}
		if c.Validate() != nil {
			return
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", c, err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse of marshalled config:\n%s\nerror: %v", out, err)
		}
		if diff := cmp.Diff(c, back, cmpOpts...); diff != "" {
			t.Fatalf("round trip through\n%s\nchanged the config (-before +after):\n%s", out, diff)
		}
		if err := back.Validate(); err != nil {
			t.Fatalf("round-tripped config does not validate: %v", err)
		}
	})
}
