package policystore

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-net/weft/policy"
)

// Every storable object of the policy package's test files survives the
// trip to a store value and back, unchanged.
func TestEncodeDecodeRoundTrip(t *testing.T) {
	objs, err := policy.LoadObjects("../../policy/testdata")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	kinds := map[string]bool{}
	for _, o := range objs {
		key, value, err := Encode(o.Resource)
		if o.Resource.Type().Kind == policy.KindWorkloadEndpoint {
			if err == nil || !strings.Contains(err.Error(), "weft endpoint add") {
				t.Errorf("Encode(%s) = %v, want a refusal naming weft endpoint add", RefOf(o.Resource), err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Encode(%s): %v", RefOf(o.Resource), err)
		}
		back, err := DecodePolicy(key, value)
		if err != nil {
			t.Fatalf("DecodePolicy(%s): %v\n%s", key, err, value)
		}
		_, again, err := Encode(back.Resource)
		if err != nil || string(again) != string(value) {
			t.Errorf("%s: re-encoded differs (%v):\n%s\n%s", key, err, value, again)
		}
		n++
		kinds[o.Resource.Type().Kind] = true
	}
	if n < 10 || len(kinds) < 6 {
		t.Errorf("round-tripped %d objects of %d kinds, want the test files' (>= 10, >= 6)", n, len(kinds))
	}
	// The same meaning: every flow between the files' endpoints gets the
	// same verdict, with the same steps, from the objects as read and
	// from the objects after the trip through the store.
	var back []policy.Object
	var addrs []netip.Addr
	for _, o := range objs {
		switch r := o.Resource.(type) {
		case *policy.WorkloadEndpoint:
			back = append(back, o)
			for _, c := range r.Spec.IPNetworks {
				addrs = append(addrs, c.Addr())
			}
			continue
		case *policy.HostEndpoint:
			for _, ip := range r.Spec.ExpectedIPs {
				addrs = append(addrs, netip.MustParseAddr(ip))
			}
		}
		key, value, _ := Encode(o.Resource)
		b, err := DecodePolicy(key, value)
		if err != nil {
			t.Fatal(err)
		}
		back = append(back, b)
	}
	want, err := policy.NewSet(objs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := policy.NewSet(back)
	if err != nil {
		t.Fatal(err)
	}
	icmp := uint8(8)
	flows := 0
	for _, src := range addrs {
		for _, dst := range addrs {
			if src == dst || src.Is4() != dst.Is4() {
				continue
			}
			for _, f := range []policy.Flow{
				{Src: src, Dst: dst, Protocol: policy.ProtoTCP, DstPort: 80},
				{Src: src, Dst: dst, Protocol: policy.ProtoTCP, DstPort: 5432},
				{Src: src, Dst: dst, Protocol: policy.ProtoUDP, DstPort: 53},
				{Src: src, Dst: dst, Protocol: policy.ProtoICMP, ICMPType: &icmp},
			} {
				flows++
				w, g := policy.Evaluate(want, f, policy.Options{}), policy.Evaluate(got, f, policy.Options{})
				if diff := cmp.Diff(w, g, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
					t.Fatalf("flow %s judged differently after the store (-files +store):\n%s", f, diff)
				}
			}
		}
	}
	if flows < 50 {
		t.Errorf("compared %d flows, want the test files' endpoints to give at least 50", flows)
	}
}

func TestDecodePolicyRefuses(t *testing.T) {
	gnp := `{"apiVersion":"projectcalico.org/v3","kind":"GlobalNetworkPolicy","metadata":{"name":"a"},"spec":{}}`
	tests := []struct {
		name, key, value, want string
	}{
		{"wrong key", "GlobalNetworkPolicy//b", gnp, "whose key is GlobalNetworkPolicy//a"},
		{"not json", "GlobalNetworkPolicy//a", "{", "store GlobalNetworkPolicy//a"},
		{"two objects", "GlobalNetworkPolicy//a", gnp + "\n---\n" + gnp, "holds 2 objects"},
		{"unknown field", "GlobalNetworkPolicy//a", strings.Replace(gnp, `"spec":{}`, `"spec":{"bogus":1}`, 1), "bogus"},
		{"workload endpoint", "WorkloadEndpoint/default/w", `{"apiVersion":"projectcalico.org/v3","kind":"WorkloadEndpoint","metadata":{"name":"w"},"spec":{}}`, "weft endpoint add"},
	}
	for _, tt := range tests {
		_, err := DecodePolicy(tt.key, []byte(tt.value))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: DecodePolicy = %v, want an error with %q", tt.name, err, tt.want)
		}
	}
}

func TestParseRef(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
		kindOnly          bool
	}{
		{in: "GlobalNetworkPolicy/deny", want: "GlobalNetworkPolicy//deny"},
		{in: "gnp/deny", want: "GlobalNetworkPolicy//deny"},
		{in: "networkpolicy/prod/db", want: "NetworkPolicy/prod/db"},
		{in: "np/db", want: "NetworkPolicy/default/db"},
		{in: "tier/security", want: "Tier//security"},
		{in: "sa/prod/builder", want: "ServiceAccount/prod/builder"},
		{in: "gnp", want: "GlobalNetworkPolicy//", kindOnly: true},
		{in: "gnp", wantErr: "want KIND/NAME"},
		{in: "gnp/prod/x", wantErr: "cluster-wide"},
		{in: "WorkloadEndpoint/x", wantErr: "unknown kind"},
		{in: "np//x", wantErr: "empty namespace"},
		{in: "np/a/", wantErr: "empty name"},
		{in: "np/a/b/c", wantErr: "want KIND/NAME"},
	}
	for _, tt := range tests {
		r, err := ParseRef(tt.in, tt.kindOnly)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseRef(%q) = %v, %v; want an error with %q", tt.in, r, err, tt.wantErr)
			}
			continue
		}
		if err != nil || r.Key() != tt.want {
			t.Errorf("ParseRef(%q) = %q, %v; want %q", tt.in, r.Key(), err, tt.want)
		}
		if !tt.kindOnly {
			if k, err := ParseKey(r.Key()); err != nil || k != r {
				t.Errorf("ParseKey(%q) = %v, %v; want %v", r.Key(), k, err, r)
			}
		}
	}
	for _, bad := range []string{"GlobalNetworkPolicy/x/y", "NetworkPolicy//y", "gnp//y", "Tier//", "Tier"} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}

func validEndpoint() Endpoint {
	return Endpoint{Name: "w1", Node: "h1", Interface: "wlw1", Addrs: []netip.Addr{netip.MustParseAddr("10.244.1.2")},
		Labels: map[string]string{"app": "web"}}
}

func TestEndpointValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Endpoint)
		want string
	}{
		{"bad name", func(e *Endpoint) { e.Name = "W_1" }, `name: "W_1"`},
		{"no node", func(e *Endpoint) { e.Node = "" }, `node: ""`},
		{"long interface", func(e *Endpoint) { e.Interface = "abcdefghijklmnop" }, `interface: "abcdefghijklmnop"`},
		{"interface with slash", func(e *Endpoint) { e.Interface = "a/b" }, "not allowed"},
		{"no address", func(e *Endpoint) { e.Addrs = nil }, "at least one address"},
		{"multicast", func(e *Endpoint) { e.Addrs = []netip.Addr{netip.MustParseAddr("224.0.0.1")} }, `addrs[0]: "224.0.0.1"`},
		{"twice", func(e *Endpoint) { e.Addrs = append(e.Addrs, e.Addrs[0]) }, "given twice"},
		{"bad label key", func(e *Endpoint) { e.Labels = map[string]string{"-x": "y"} }, `labels: "-x"`},
		{"bad label value", func(e *Endpoint) { e.Labels = map[string]string{"x": "a b"} }, `labels["x"]: "a b"`},
		{"bad namespace", func(e *Endpoint) { e.Namespace = "Prod" }, `namespace: "Prod"`},
		{"bad port protocol", func(e *Endpoint) { e.Ports = []EndpointPort{{Name: "http", Protocol: "icmp", Port: 80}} }, "ports[0].protocol"},
		{"bad port name", func(e *Endpoint) { e.Ports = []EndpointPort{{Name: "http-", Protocol: "TCP", Port: 80}} }, "spec.ports[0].name"},
	}
	for _, tt := range tests {
		e := validEndpoint()
		tt.edit(&e)
		err := e.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate = %v, want an error with %q", tt.name, err, tt.want)
		}
	}
	e := validEndpoint()
	if err := e.Validate(); err != nil {
		t.Fatalf("valid endpoint: %v", err)
	}
	key, value, err := EncodeEndpoint(e)
	if err != nil || key != "h1/w1" {
		t.Fatalf("EncodeEndpoint = %q, %v", key, err)
	}
	back, err := DecodeEndpoint(key, value)
	if err != nil {
		t.Fatal(err)
	}
	e.Namespace, e.Orchestrator = "default", "k8s"
	if diff := cmp.Diff(e, back, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if _, err := DecodeEndpoint("h2/w1", value); err == nil || !strings.Contains(err.Error(), "holds endpoint h1/w1") {
		t.Errorf("DecodeEndpoint under another node's key: %v", err)
	}
	if _, err := DecodeEndpoint(key, []byte(strings.Replace(string(value), `"name"`, `"nom":1,"name"`, 1))); err == nil {
		t.Error("DecodeEndpoint accepted an unknown field")
	}
	o := back.Object()
	if n := o.Resource.Meta().Name; n != "h1.w1" {
		t.Errorf("WorkloadEndpoint name %q, want h1.w1", n)
	}
}

func entry(t *testing.T, doc string) Entry {
	t.Helper()
	objs, err := policy.Decode("test", []byte(doc))
	if err != nil || len(objs) != 1 {
		t.Fatalf("decode %s: %v", doc, err)
	}
	k, v, err := Encode(objs[0].Resource)
	if err != nil {
		t.Fatal(err)
	}
	return Entry{Key: k, Value: v}
}

func endpointEntry(t *testing.T, e Endpoint) Entry {
	t.Helper()
	k, v, err := EncodeEndpoint(e)
	if err != nil {
		t.Fatal(err)
	}
	return Entry{Key: k, Value: v}
}

// Build leaves out what does not decode or resolve, says why, and keeps
// the rest in force.
func TestBuildSkipsBadEntries(t *testing.T) {
	deny := entry(t, `{"apiVersion":"projectcalico.org/v3","kind":"GlobalNetworkPolicy","metadata":{"name":"deny"},"spec":{"selector":"all()","types":["Ingress"]}}`)
	orphan := entry(t, `{"apiVersion":"projectcalico.org/v3","kind":"GlobalNetworkPolicy","metadata":{"name":"gone.x"},"spec":{"tier":"gone","selector":"all()"}}`)
	garbage := Entry{Key: "GlobalNetworkPolicy//junk", Value: []byte("{not json")}
	w1, w2 := validEndpoint(), validEndpoint()
	w2.Name, w2.Interface, w2.Addrs = "w2", "wlw2", []netip.Addr{netip.MustParseAddr("10.244.1.3")}
	badEp := Entry{Key: "h1/w3", Value: []byte(`{"name":"w3","node":"h9","interface":"x","addrs":["10.0.0.9"]}`)}
	b := Build([]Entry{deny, orphan, garbage}, []Entry{endpointEntry(t, w1), endpointEntry(t, w2), badEp})
	if b.Set == nil {
		t.Fatal("no Set")
	}
	if len(b.Policies) != 1 || len(b.Endpoints) != 2 {
		t.Errorf("kept %d policies and %d endpoints, want 1 and 2", len(b.Policies), len(b.Endpoints))
	}
	text := strings.Join(b.Problems, "\n")
	for _, want := range []string{"GlobalNetworkPolicy//junk", "gone", "h1/w3"} {
		if !strings.Contains(text, want) {
			t.Errorf("problems do not mention %q:\n%s", want, text)
		}
	}
	// The policy in force denies ingress to w1.
	v := policy.Evaluate(b.Set, policy.Flow{Src: w2.Addrs[0], Dst: w1.Addrs[0], Protocol: policy.ProtoTCP, DstPort: 80}, policy.Options{})
	if v.Allowed() {
		t.Errorf("flow allowed, want denied by deny:\n%+v", v)
	}
}

func FuzzDecodePolicy(f *testing.F) {
	f.Add("GlobalNetworkPolicy//a", []byte(`{"apiVersion":"projectcalico.org/v3","kind":"GlobalNetworkPolicy","metadata":{"name":"a"},"spec":{"selector":"app == 'x'","ingress":[{"action":"Allow","protocol":"TCP","destination":{"ports":[80,"8000:8080"]}}]}}`))
	f.Add("NetworkPolicy/default/k", []byte(`{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"k"},"spec":{"podSelector":{}}}`))
	f.Add("Tier//t", []byte(`{"apiVersion":"projectcalico.org/v3","kind":"Tier","metadata":{"name":"t"},"spec":{"order":10}}`))
	f.Add("x", []byte("{"))
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		o, err := DecodePolicy(key, value)
		if err != nil {
			return
		}
		k, v, err := Encode(o.Resource)
		if err != nil || k != key {
			t.Fatalf("decoded %s, re-encoded as %q: %v", key, k, err)
		}
		if _, err := DecodePolicy(k, v); err != nil {
			t.Fatalf("re-encoded value does not decode: %v\n%s", err, v)
		}
	})
}

func FuzzDecodeEndpoint(f *testing.F) {
	f.Add("h1/w1", []byte(`{"name":"w1","node":"h1","interface":"wlw1","addrs":["10.0.0.1","fd00::1"],"labels":{"app":"web"},"ports":[{"name":"http","protocol":"tcp","port":80}]}`))
	f.Add("h1/w1", []byte(`{}`))
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		e, err := DecodeEndpoint(key, value)
		if err != nil {
			return
		}
		k, v, err := EncodeEndpoint(e)
		if err != nil || k != key {
			t.Fatalf("decoded %s, re-encoded as %q: %v", key, k, err)
		}
		if _, err := DecodeEndpoint(k, v); err != nil {
			t.Fatalf("re-encoded value does not decode: %v", err)
		}
		if _, err := policy.NewSet([]policy.Object{e.Object()}); err != nil {
			t.Fatalf("a valid endpoint does not resolve: %v", err)
		}
	})
}

func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"gnp/a", "np/prod/db", "Tier", "x/y/z/w", "np//"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s, false)
		if err != nil {
			return
		}
		if back, err := ParseKey(r.Key()); err != nil || back != r {
			t.Fatalf("ParseRef(%q) = %v; ParseKey(%q) = %v, %v", s, r, r.Key(), back, err)
		}
	})
}

// A Cache gives what a fresh Build gives, step by step through changes.
func TestCacheBuildsAsBuild(t *testing.T) {
	deny := entry(t, `{"apiVersion":"projectcalico.org/v3","kind":"GlobalNetworkPolicy","metadata":{"name":"deny"},"spec":{"selector":"all()","types":["Ingress"]}}`)
	tier := entry(t, `{"apiVersion":"projectcalico.org/v3","kind":"Tier","metadata":{"name":"t"},"spec":{"order":1}}`)
	inTier := entry(t, `{"apiVersion":"projectcalico.org/v3","kind":"GlobalNetworkPolicy","metadata":{"name":"t.a"},"spec":{"tier":"t","selector":"all()"}}`)
	w1 := validEndpoint()
	w1b := validEndpoint()
	w1b.Labels = map[string]string{"app": "db"}
	steps := []struct{ pols, eps []Entry }{
		{[]Entry{deny}, []Entry{endpointEntry(t, w1)}},
		{[]Entry{deny, inTier}, []Entry{endpointEntry(t, w1)}},            // tier missing: left out
		{[]Entry{deny, inTier, tier}, []Entry{endpointEntry(t, w1b)}},     // now resolves; label changed
		{[]Entry{inTier, tier, {Key: deny.Key, Value: []byte("{")}}, nil}, // deny broken, endpoint gone
		{[]Entry{deny}, []Entry{endpointEntry(t, w1), {Key: "h1/x", Value: []byte("{}")}}},
	}
	var c Cache
	for i, st := range steps {
		got, want := c.Build(st.pols, st.eps), Build(st.pols, st.eps)
		if diff := cmp.Diff(want.Problems, got.Problems); diff != "" {
			t.Errorf("step %d: problems (-fresh +cached):\n%s", i, diff)
		}
		if len(got.Policies) != len(want.Policies) || len(got.Endpoints) != len(want.Endpoints) {
			t.Errorf("step %d: %d policies, %d endpoints; fresh Build: %d, %d", i, len(got.Policies), len(got.Endpoints), len(want.Policies), len(want.Endpoints))
		}
		for j, e := range want.Endpoints {
			if !cmp.Equal(e.Labels, got.Endpoints[j].Labels) {
				t.Errorf("step %d: endpoint %s labels %v, fresh Build %v", i, e.Key(), got.Endpoints[j].Labels, e.Labels)
			}
		}
	}
}
