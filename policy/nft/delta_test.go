package nft

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"

	"github.com/weft-net/weft/policy"
)

// summary renders a delta as one line per operation, in the order
// queueDelta sends them.
func summary(d delta) []string {
	if d.Full != "" {
		return []string{"full: " + d.Full}
	}
	var out []string
	for _, c := range d.NewChains {
		out = append(out, "add chain "+c)
	}
	for _, s := range d.NewSets {
		out = append(out, fmt.Sprintf("add set %s (%d elements)", s.Name, len(s.Elements)))
	}
	for _, e := range d.Elements {
		if e.DelZeroEnd {
			out = append(out, "delete zero end "+e.Set.Name)
		}
		for _, el := range e.Del {
			out = append(out, "delete element "+e.Set.Name+" "+formatElement(e.Set.Key, el))
		}
	}
	for _, e := range d.Elements {
		if e.AddZeroEnd {
			out = append(out, "add zero end "+e.Set.Name)
		}
		for _, el := range e.Add {
			out = append(out, "add element "+e.Set.Name+" "+formatElement(e.Set.Key, el))
		}
	}
	for i, c := range d.Fill {
		verb := "fill"
		if d.Flush[i] {
			verb = "flush and fill"
		}
		out = append(out, fmt.Sprintf("%s chain %s (%d rules)", verb, c.Name, len(c.Rules)))
	}
	for _, c := range d.DelChains {
		out = append(out, "delete chain "+c)
	}
	for _, s := range d.DelSets {
		out = append(out, "delete set "+s)
	}
	return out
}

// ipSet returns a ruleset with one base chain and an interval set of the
// ranges given as "a-b" (IPv4 addresses).
func ipSet(ranges ...string) Ruleset {
	s := Set{Name: "s", Key: []KeyType{KeyIPv4}, Interval: true}
	for _, r := range ranges {
		from, to, _ := strings.Cut(r, "-")
		s.Elements = append(s.Elements, Element{Key: []Range{{From: netip.MustParseAddr(from).AsSlice(), To: netip.MustParseAddr(to).AsSlice()}}})
	}
	rs := Ruleset{Sets: []Set{s}, Chains: []Chain{{Name: "forward-egress", Hook: &Hook{Hook: "forward"},
		Rules: []Rule{{Matches: []Match{&Lookup{Fields: []Field{FieldSaddr4}, Set: "s"}}, Verdict: Verdict{Kind: VerdictDrop}}}}}}
	rs.Version = versionOf(&rs)
	return rs
}

func TestDiff(t *testing.T) {
	tiny := func(ifaces ...string) Ruleset { return tinyRuleset(t, ifaces...) }
	relabel := tiny("wl1", "wl2")
	// wl2's endpoint no longer matches the policy: its ingress goes to
	// another endpoint chain.
	set2, err := policy.NewSet(mustDecode(t, strings.Replace(tinySet, "ipNetworks: [10.0.0.1/32]", "ipNetworks: [10.0.0.1/32]}\n---\n"+
		"apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: db, namespace: prod, labels: {app: db}}\n"+
		"spec: {node: h1, ipNetworks: [10.0.0.2/32]", 1)))
	if err != nil {
		t.Fatal(err)
	}
	relabel, err = Compile(set2, HostInfo{Workloads: []Workload{{Interface: "wl1", Addrs: addrs("10.0.0.1")},
		{Interface: "wl2", Addrs: addrs("10.0.0.2")}}}, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	withHEP := tiny("wl1")
	withHEP.Chains = append(slices.Clone(withHEP.Chains), Chain{Name: "input-ingress", Hook: &Hook{Hook: "input", Priority: 1}})
	setDef := tiny("wl1")
	setDef.Sets = slices.Clone(setDef.Sets)
	setDef.Sets[0].Comment = "changed"

	for _, tt := range []struct {
		name     string
		old, new Ruleset
		want     []string
	}{
		{"no previous", Ruleset{}, tiny("wl1"), []string{"full: no previous ruleset"}},
		{"unchanged: the version chain only", tiny("wl1"), tiny("wl1"), []string{"flush and fill chain weft-version (1 rules)"}},
		{"endpoint added", tiny("wl1"), tiny("wl1", "wl2"), []string{
			`add element wl-egress4 "wl2" . 10.0.0.2 comment "no endpoint" : accept`,
			`add element wl-ifaces "wl2"`,
			`add element wl-ingress4 "wl2" . 10.0.0.2 comment "no endpoint" : accept`,
			"flush and fill chain weft-version (1 rules)",
		}},
		{"endpoint removed", tiny("wl1", "wl2"), tiny("wl1"), []string{
			`delete element wl-egress4 "wl2" . 10.0.0.2 comment "no endpoint" : accept`,
			`delete element wl-ifaces "wl2"`,
			`delete element wl-ingress4 "wl2" . 10.0.0.2 comment "no endpoint" : accept`,
			"flush and fill chain weft-version (1 rules)",
		}},
		{"last endpoint removed: its chains go", tiny("wl1"), tiny(), []string{
			`delete element wl-egress4 "wl1" . 10.0.0.1 comment "prod/web" : goto wl-out-fdae941b06`,
			`delete element wl-ifaces "wl1"`,
			`delete element wl-ingress4 "wl1" . 10.0.0.1 comment "prod/web" : goto wl-in-ed7d2a0dda`,
			"flush and fill chain weft-version (1 rules)",
			"delete chain gnp/web/ingress",
			"delete chain wl-in-ed7d2a0dda",
			"delete chain wl-out-fdae941b06",
		}},
		{"endpoint relabelled: map entries change, chains come", tiny("wl1", "wl2"), relabel, []string{
			"add chain wl-in-d21b8f0633",
			`delete element wl-egress4 "wl2" . 10.0.0.2 comment "no endpoint" : accept`,
			`delete element wl-ingress4 "wl2" . 10.0.0.2 comment "no endpoint" : accept`,
			`add element wl-egress4 "wl2" . 10.0.0.2 comment "prod/db" : goto wl-out-fdae941b06`,
			`add element wl-ingress4 "wl2" . 10.0.0.2 comment "prod/db" : goto wl-in-d21b8f0633`,
			"flush and fill chain weft-version (1 rules)",
			"fill chain wl-in-d21b8f0633 (2 rules)",
		}},
		{"base chains changed", tiny("wl1"), withHEP, []string{"full: base chains changed"}},
		{"set definition changed", tiny("wl1"), setDef, []string{"full: set wl-egress4 changed its definition"}},
		{"range grows: deleted and added whole", ipSet("10.0.0.0-10.0.0.9"), ipSet("10.0.0.0-10.0.0.19"), []string{
			"delete element s 10.0.0.0-10.0.0.9",
			"add element s 10.0.0.0-10.0.0.19",
			"flush and fill chain forward-egress (1 rules)",
		}},
		{"range split", ipSet("10.0.0.0-10.0.0.9"), ipSet("10.0.0.0-10.0.0.3", "10.0.0.5-10.0.0.9"), []string{
			"delete element s 10.0.0.0-10.0.0.9",
			"add element s 10.0.0.0/30",
			"add element s 10.0.0.5-10.0.0.9",
			"flush and fill chain forward-egress (1 rules)",
		}},
		{"first range reaches zero: the zero end goes", ipSet("10.0.0.0-10.0.0.9"), ipSet("0.0.0.0-10.0.0.9"), []string{
			"delete zero end s",
			"delete element s 10.0.0.0-10.0.0.9",
			"add element s 0.0.0.0-10.0.0.9",
			"flush and fill chain forward-egress (1 rules)",
		}},
		{"set emptied, then the zero end goes too", ipSet("10.0.0.0-10.0.0.9"), ipSet(), []string{
			"delete zero end s",
			"delete element s 10.0.0.0-10.0.0.9",
			"flush and fill chain forward-egress (1 rules)",
		}},
		{"first element of an empty set brings the zero end", ipSet(), ipSet("10.0.0.0-10.0.0.9"), []string{
			"add zero end s",
			"add element s 10.0.0.0-10.0.0.9",
			"flush and fill chain forward-egress (1 rules)",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := diff(&tt.old, &tt.new)
			if diff := cmp.Diff(tt.want, summary(d)); diff != "" {
				t.Errorf("diff (-want +got):\n%s", diff)
			}
			if d.Full == "" {
				if err := checkModel(tt.old, d, tt.new); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// TestDiffLarge: a delta larger than half the table (and minFullDelta) is
// a full replace; one endpoint more in 3,000 is not.
func TestDiffLarge(t *testing.T) {
	set, host := bigSet(t, 3000, 10)
	full, err := Compile(set, host, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	few, err := Compile(set, HostInfo{Workloads: host.Workloads[:10]}, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	most, err := Compile(set, HostInfo{Workloads: host.Workloads[1:]}, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d := diff(&few, &full); !strings.HasPrefix(d.Full, "delta of ") {
		t.Errorf("10 to 3,000 endpoints: Full %q, want a delta too large", d.Full)
	}
	d := diff(&full, &most)
	if d.Full != "" || d.Size() != 3+len(full.Chains[0].Rules) {
		t.Errorf("3,000 to 2,999 endpoints: Full %q, %d operations:\n%s", d.Full, d.Size(), strings.Join(summary(d), "\n"))
	}
}

func mustDecode(t *testing.T, text string) []policy.Object {
	t.Helper()
	objs, err := policy.Decode("test.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// model is a kernel's view of a table, for checking deltas: each set's
// kernel elements (rbtree ranges as start and end elements) and each
// chain's rules, as text.
type model struct {
	sets   map[string]map[string]string // kernel element -> verdict
	defs   map[string]Set
	chains map[string][]string
}

func modelOf(rs *Ruleset) *model {
	m := &model{sets: map[string]map[string]string{}, defs: map[string]Set{}, chains: map[string][]string{}}
	for _, c := range rs.Chains {
		m.chains[c.Name] = nil
	}
	for _, s := range rs.Sets {
		m.defs[s.Name] = s
		m.sets[s.Name] = map[string]string{}
		if err := m.elements(s, kernelElements(s, s.Elements, zeroEnd(&s, s.Elements)), true); err != nil {
			panic(err)
		}
	}
	for i, c := range rs.Chains {
		m.fill(c, i == 0, rs.Version)
	}
	return m
}

func (m *model) fill(c Chain, first bool, version string) {
	m.chains[c.Name] = nil
	for j, r := range c.Rules {
		if first && j == 0 {
			r.Comment = version
		}
		m.chains[c.Name] = append(m.chains[c.Name], r.String())
	}
}

// elements adds or deletes kernel elements of s, checking as the kernel
// does: no element twice, no delete of an absent one, map verdicts name
// chains that exist.
func (m *model) elements(s Set, groups [][]nftables.SetElement, add bool) error {
	for _, g := range groups {
		for _, e := range g {
			k := elementKey(e)
			_, ok := m.sets[s.Name][k]
			switch {
			case add && ok:
				return fmt.Errorf("add element %s to %s: exists", k, s.Name)
			case add && e.VerdictData != nil && e.VerdictData.Chain != "" && m.chains[e.VerdictData.Chain] == nil && !m.hasChain(e.VerdictData.Chain):
				return fmt.Errorf("add element %s to %s: no chain %s", k, s.Name, e.VerdictData.Chain)
			case add:
				m.sets[s.Name][k] = elementValue(e)
			case !ok:
				return fmt.Errorf("delete element %s of %s: absent", k, s.Name)
			default:
				delete(m.sets[s.Name], k)
			}
		}
	}
	return nil
}

func (m *model) hasChain(name string) bool {
	_, ok := m.chains[name]
	return ok
}

// refersTo reports whether a rule or a map element names chain or set.
func (m *model) refersTo(name string) bool {
	for _, rules := range m.chains {
		for _, r := range rules {
			if strings.Contains(r+" ", " "+name+" ") || strings.Contains(r+" ", "@"+name+" ") {
				return true
			}
		}
	}
	for _, els := range m.sets {
		for _, v := range els {
			if strings.HasSuffix(v, " "+name) {
				return true
			}
		}
	}
	return false
}

// apply runs d in queueDelta's order against the model.
func (m *model) apply(d delta) error {
	for _, c := range d.NewChains {
		if m.hasChain(c) {
			return fmt.Errorf("add chain %s: exists", c)
		}
		m.chains[c] = nil
	}
	for _, s := range d.NewSets {
		if _, ok := m.sets[s.Name]; ok {
			return fmt.Errorf("add set %s: exists", s.Name)
		}
		m.defs[s.Name], m.sets[s.Name] = s, map[string]string{}
		if err := m.elements(s, kernelElements(s, s.Elements, zeroEnd(&s, s.Elements)), true); err != nil {
			return err
		}
	}
	for _, e := range d.Elements {
		if _, ok := m.sets[e.Set.Name]; !ok {
			return fmt.Errorf("delete elements of %s: no set", e.Set.Name)
		}
		if err := m.elements(e.Set, keysOnly(kernelElements(e.Set, e.Del, e.DelZeroEnd)), false); err != nil {
			return err
		}
	}
	for _, e := range d.Elements {
		if err := m.elements(e.Set, kernelElements(e.Set, e.Add, e.AddZeroEnd), true); err != nil {
			return err
		}
	}
	for i, c := range d.Fill {
		if !m.hasChain(c.Name) {
			return fmt.Errorf("fill chain %s: absent", c.Name)
		}
		for _, r := range c.Rules {
			if l := r.Verdict.Chain; l != "" && !m.hasChain(l) {
				return fmt.Errorf("fill chain %s: jump to absent %s", c.Name, l)
			}
			for _, mt := range r.Matches {
				if l, ok := mt.(*Lookup); ok && l.Set != "" {
					if _, ok := m.sets[l.Set]; !ok {
						return fmt.Errorf("fill chain %s: lookup in absent %s", c.Name, l.Set)
					}
				}
			}
		}
		m.fill(c, i == 0, d.Version)
	}
	for _, c := range d.DelChains {
		m.chains[c] = nil
	}
	for _, c := range d.DelChains {
		if m.refersTo(c) {
			return fmt.Errorf("delete chain %s: still referred to", c)
		}
		delete(m.chains, c)
	}
	for _, s := range d.DelSets {
		if m.refersTo(s) {
			return fmt.Errorf("delete set %s: still referred to", s)
		}
		delete(m.sets, s)
		delete(m.defs, s)
	}
	return nil
}

// checkModel applies d to a model of old and compares it with a model of
// new.
func checkModel(old Ruleset, d delta, new Ruleset) error {
	m := modelOf(&old)
	if err := m.apply(d); err != nil {
		return fmt.Errorf("applying the delta: %w\n%s", err, strings.Join(summary(d), "\n"))
	}
	want := modelOf(&new)
	if diff := cmp.Diff(want.sets, m.sets); diff != "" {
		return fmt.Errorf("sets after the delta (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want.chains, m.chains); diff != "" {
		return fmt.Errorf("chains after the delta (-want +got):\n%s", diff)
	}
	return nil
}

// diffWorldN returns a differential-test world with n workloads (no
// kernel behind it).
func diffWorldN(n int) diffWorld {
	w := diffWorld{hostNode: "h", hostAddr: netip.MustParseAddr("198.18.77.1"), extNode: "x",
		extAddr: netip.MustParseAddr("198.18.77.2")}
	for i := 1; i <= n; i++ {
		w.workloads = append(w.workloads, diffWorkload{node: fmt.Sprintf("w%d", i), iface: fmt.Sprintf("wlw%d", i),
			addr: netip.AddrFrom4([4]byte{198, 19, 200, byte(i)})})
	}
	return w
}

// randomSequence yields n compiled rulesets, each a random mutation of
// the one before (and, now and then, with a workload interface fewer or
// more on the host), starting from a random case.
func randomSequence(t testing.TB, seed uint64, w diffWorld, n int, yield func(i int, c diffCase, set *policy.Set, rs Ruleset)) {
	t.Helper()
	g := &caseGen{r: rand.New(rand.NewPCG(seed, 7)), w: w}
	var c diffCase
	var set *policy.Set
	for {
		c = g.newCase()
		if s, ok := decodeSet(c.yaml); ok {
			set = s
			break
		}
	}
	for i := range n {
		host := w.host()
		if g.chance(0.3) {
			k := g.r.IntN(len(host.Workloads))
			host.Workloads = slices.Delete(host.Workloads, k, k+1)
		}
		rs, err := Compile(set, host, c.opts)
		if err != nil {
			t.Fatalf("step %d: Compile: %v\n%s", i, err, c.yaml)
		}
		yield(i, c, set, rs)
		for range 100 {
			next := g.mutate(c)
			if s, ok := decodeSet(next.yaml); ok {
				c, set = next, s
				break
			}
		}
	}
}

// decodeSet returns the Set of the resources in text, and whether they
// decode.
func decodeSet(text string) (*policy.Set, bool) {
	objs, err := policy.Decode("case.yaml", []byte(text))
	if err != nil {
		return nil, false
	}
	set, err := policy.NewSet(objs)
	return set, err == nil
}

// TestDiffModel is the property test: for random pairs of successive
// rulesets, applying diff's delta to a model of the old one, with the
// kernel's reference checks at every step, gives the new one.
func TestDiffModel(t *testing.T) {
	incremental := 0
	for seed := range uint64(20) {
		var prev Ruleset
		randomSequence(t, seed, diffWorldN(8), 30, func(i int, c diffCase, _ *policy.Set, rs Ruleset) {
			d := diff(&prev, &rs)
			if d.Full == "" {
				incremental++
				if err := checkModel(prev, d, rs); err != nil {
					t.Fatalf("seed %d step %d: %v\nold:\n%s\nnew:\n%s", seed, i, err, prev.String(), rs.String())
				}
			}
			prev = rs
		})
	}
	if incremental < 20*29*3/4 {
		t.Errorf("only %d of %d steps were incremental", incremental, 20*29)
	}
}

// TestApplyIncrementalFake applies random sequences to a fake kernel: each
// step must leave the same state as a full load of the same ruleset, with
// one transaction per step, and a replace only at the first.
func TestApplyIncrementalFake(t *testing.T) {
	ctx := context.Background()

	for seed := range uint64(10) {
		f := newFakeConn()
		a := New(Config{Conn: f})
		var prev Ruleset
		randomSequence(t, seed, diffWorldN(8), 25, func(i int, _ diffCase, _ *policy.Set, rs Ruleset) {
			d := diff(&prev, &rs)
			prev = rs
			writes, replaces := f.writes, f.replaces
			if err := a.Apply(ctx, rs); err != nil {
				t.Fatalf("seed %d step %d: Apply: %v", seed, i, err)
			}
			ref := newFakeConn()
			if err := New(Config{Conn: ref}).Apply(ctx, rs); err != nil {
				t.Fatalf("seed %d step %d: full Apply: %v", seed, i, err)
			}
			if diff := cmp.Diff(ref.dump(), f.dump()); diff != "" {
				t.Fatalf("seed %d step %d: incremental state differs from a full load (-full +incremental):\n%s", seed, i, diff)
			}
			if f.writes-writes > 1 {
				t.Errorf("seed %d step %d: %d transactions", seed, i, f.writes-writes)
			}
			if replaced := f.replaces != replaces; replaced != (d.Full != "") {
				t.Errorf("seed %d step %d: replaced %v, want %v (diff says %q)", seed, i, replaced, !replaced, d.Full)
			}
			if i > 0 && d.Full != "" {
				t.Errorf("seed %d step %d: a full replace (%s), want a delta", seed, i, d.Full)
			}
		})
	}
}

// TestDiffDigests: with the digests Compile attaches, diff must find the
// same delta as without them (element by element), for endpoints removed
// and added at random places of a large table, and a stale digest (a
// Ruleset changed after Compile, with a new Version) must be ignored.
func TestDiffDigests(t *testing.T) {
	set, host := bigSet(t, 3000, 30)
	r := rand.New(rand.NewPCG(3, 4))
	prev, err := Compile(set, host, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for step := range 30 {
		h := HostInfo{Workloads: slices.Clone(host.Workloads)}
		for range 1 + r.IntN(5) {
			k := r.IntN(len(h.Workloads))
			h.Workloads = slices.Delete(h.Workloads, k, k+1)
		}
		rs, err := Compile(set, h, policy.Options{})
		if err != nil {
			t.Fatal(err)
		}
		plainOld, plainNew := prev, rs
		plainOld.digests, plainNew.digests = nil, nil
		with, without := diff(&prev, &rs), diff(&plainOld, &plainNew)
		if diff := cmp.Diff(summary(without), summary(with)); diff != "" {
			t.Fatalf("step %d: delta with digests differs (-without +with):\n%s", step, diff)
		}
		if err := checkModel(prev, with, rs); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		prev = rs
	}
	// A Ruleset changed after Compile keeps a stale digest; with a new
	// Version diff must not trust it.
	changed := prev
	changed.Sets = slices.Clone(prev.Sets)
	i := slices.IndexFunc(changed.Sets, func(s Set) bool { return s.Name == mapWlEgress4 })
	changed.Sets[i].Elements = changed.Sets[i].Elements[1:]
	changed.Version = versionOf(&changed)
	if d := diff(&prev, &changed); len(d.Elements) != 1 || len(d.Elements[0].Del) != 1 {
		t.Errorf("a changed Ruleset with its old digests: delta %v, want the one element deleted", summary(d))
	}
}

// TestElementsDiffUnsorted: elements out of key order (a hand-made
// Ruleset; Compile sorts them) take the map path and give the same delta.
func TestElementsDiffUnsorted(t *testing.T) {
	el := func(name string, verdict string) Element {
		return Element{Key: []Range{single(ifname(name))}, Verdict: &Verdict{Kind: VerdictGoto, Chain: verdict}}
	}
	old := &Set{Name: "m", Key: []KeyType{KeyIfname}, Verdict: true, Elements: []Element{el("c", "x"), el("a", "x"), el("b", "x")}}
	new := &Set{Name: "m", Key: []KeyType{KeyIfname}, Verdict: true, Elements: []Element{el("d", "x"), el("b", "y"), el("c", "x")}}
	ed, changed := elementsDiff(old, new, 0, 0)
	got := summary(delta{Elements: []elementDelta{ed}})
	want := []string{
		`delete element m "a" : goto x`,
		`delete element m "b" : goto x`,
		`add element m "d" : goto x`,
		`add element m "b" : goto y`,
	}
	if diff := cmp.Diff(want, got); !changed || diff != "" {
		t.Errorf("changed %v, delta (-want +got):\n%s", changed, diff)
	}
}
