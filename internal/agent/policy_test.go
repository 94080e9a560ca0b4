package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-net/weft/internal/api"
	"github.com/weft-net/weft/internal/policystore"
	"github.com/weft-net/weft/policy"
	"github.com/weft-net/weft/policy/nft"
)

// fakeApplier records the rulesets it is given and can fail.
type fakeApplier struct {
	mu       sync.Mutex
	applied  []nft.Ruleset
	replaced int // how many of applied were full replaces
	fail     error
}

var _ PolicyApplier = (*fakeApplier)(nil)

func (f *fakeApplier) Apply(ctx context.Context, rs nft.Ruleset) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.applied = append(f.applied, rs)
	return nil
}

func (f *fakeApplier) Replace(ctx context.Context, rs nft.Ruleset) error {
	if err := f.Apply(ctx, rs); err != nil {
		return err
	}
	f.mu.Lock()
	f.replaced++
	f.mu.Unlock()
	return nil
}

func (f *fakeApplier) Stats(ctx context.Context) ([]nft.RuleStats, error) {
	return []nft.RuleStats{{Kind: "GlobalNetworkPolicy", Policy: "deny", Rule: "ingress[0]", Packets: 3, Bytes: 180}}, nil
}

func (f *fakeApplier) last() *nft.Ruleset {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.applied) == 0 {
		return &nft.Ruleset{}
	}
	rs := f.applied[len(f.applied)-1]
	return &rs
}

func newTestEngine(t *testing.T, node string, store policyStore) (*policyEngine, *fakeApplier) {
	t.Helper()
	fa := &fakeApplier{}
	return newPolicyEngine(policyEngineConfig{Store: store, Applier: fa, Node: node}), fa
}

func obj(file, doc string) api.PolicyObject {
	return api.PolicyObject{File: file, Document: 1, Item: -1, Object: json.RawMessage(doc)}
}

const (
	tierSec   = `{"apiVersion":"projectcalico.org/v3","kind":"Tier","metadata":{"name":"sec"},"spec":{"order":10}}`
	gnpInSec  = `{"apiVersion":"projectcalico.org/v3","kind":"GlobalNetworkPolicy","metadata":{"name":"sec.no-db"},"spec":{"tier":"sec","selector":"app == 'db'","ingress":[{"action":"Deny","source":{"selector":"app == 'web'"}},{"action":"Pass"}]}}`
	denyWebDB = `{"apiVersion":"projectcalico.org/v3","kind":"GlobalNetworkPolicy","metadata":{"name":"deny"},"spec":{"selector":"app == 'db'","ingress":[{"action":"Deny"}]}}`
)

func addEndpoint(t *testing.T, e *policyEngine, name, iface, addr string, labels map[string]string) api.PolicyResult {
	t.Helper()
	res, err := e.EndpointPut(context.Background(), policystore.Endpoint{Name: name, Interface: iface,
		Addrs: []netip.Addr{netip.MustParseAddr(addr)}, Labels: labels})
	if err != nil {
		t.Fatalf("EndpointPut %s: %v", name, err)
	}
	return res
}

func TestPolicyEngineApplyValidatesWholeSet(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	e, _ := newTestEngine(t, "h1", store)

	// A policy in a tier the store does not have: refused, nothing stored.
	_, err := e.PolicyApply(ctx, api.PolicyApplyRequest{Objects: []api.PolicyObject{obj("p.yaml", gnpInSec)}})
	if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), "p.yaml: document 1") || !strings.Contains(err.Error(), "no such Tier") {
		t.Fatalf("apply without its tier: %v", err)
	}
	if n := len(store.List(kindPolicy)); n != 0 {
		t.Fatalf("store holds %d entries after a refused apply", n)
	}
	// With its tier: both created; again: unchanged.
	req := api.PolicyApplyRequest{Objects: []api.PolicyObject{obj("p.yaml", tierSec), obj("p.yaml", gnpInSec)}}
	res, err := e.PolicyApply(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if got := results(res); got != "Tier/sec created, GlobalNetworkPolicy/sec.no-db created" {
		t.Errorf("first apply: %s", got)
	}
	res, _ = e.PolicyApply(ctx, req)
	if got := results(res); got != "Tier/sec unchanged, GlobalNetworkPolicy/sec.no-db unchanged" {
		t.Errorf("second apply: %s", got)
	}
	// The tier cannot go while a policy is in it.
	_, err = e.PolicyDelete(ctx, api.PolicyDeleteRequest{Keys: []string{"Tier//sec"}})
	if !errors.Is(err, api.ErrInvalid) || len(store.List(kindPolicy)) != 2 {
		t.Fatalf("delete of a tier in use: %v", err)
	}
	res, err = e.PolicyDelete(ctx, api.PolicyDeleteRequest{Keys: []string{"GlobalNetworkPolicy//sec.no-db", "Tier//sec", "GlobalNetworkPolicy//none"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := results(res); got != "GlobalNetworkPolicy/sec.no-db deleted, Tier/sec deleted, GlobalNetworkPolicy/none not found" {
		t.Errorf("delete: %s", got)
	}
	// A malformed object and a workload endpoint: refused as a whole.
	_, err = e.PolicyApply(ctx, api.PolicyApplyRequest{Objects: []api.PolicyObject{obj("a.yaml", denyWebDB), obj("b.yaml", `{"kind":"GlobalNetworkPolicy"}`)}})
	if !errors.Is(err, api.ErrInvalid) || len(store.List(kindPolicy)) != 0 {
		t.Fatalf("malformed apply: %v; store %d", err, len(store.List(kindPolicy)))
	}
}

func results(rs []api.PolicyResult) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Ref+" "+r.Result)
	}
	return strings.Join(out, ", ")
}

func TestPolicyEngineEndpoints(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	e1, _ := newTestEngine(t, "h1", store)
	e2, _ := newTestEngine(t, "h2", store) // another host on the same (replicated) store

	if r := addEndpoint(t, e1, "w1", "wlw1", "10.244.1.2", map[string]string{"app": "web"}); r.Result != api.ResultCreated || r.Ref != "h1/w1" {
		t.Errorf("add: %+v", r)
	}
	if r := addEndpoint(t, e1, "w1", "wlw1", "10.244.1.2", map[string]string{"app": "web"}); r.Result != api.ResultUnchanged {
		t.Errorf("same again: %+v", r)
	}
	if r := addEndpoint(t, e1, "w1", "wlw1", "10.244.1.2", map[string]string{"app": "db"}); r.Result != api.ResultUpdated {
		t.Errorf("label change: %+v", r)
	}
	for _, tc := range []struct {
		e                 *policyEngine
		name, iface, addr string
		node, want        string
	}{
		{e1, "w2", "wlw1", "10.244.1.3", "", `interface: "wlw1": endpoint h1/w1 has it already`},
		{e2, "w9", "wlw9", "10.244.1.2", "", "addrs: 10.244.1.2: endpoint h1/w1 has it already"},
		{e1, "w3", "wlw3", "10.244.1.4", "h2", `node: "h2": this agent is "h1"`},
		{e1, "W3", "wlw3", "10.244.1.4", "", `name: "W3"`},
	} {
		_, err := tc.e.EndpointPut(ctx, policystore.Endpoint{Name: tc.name, Node: tc.node, Interface: tc.iface, Addrs: []netip.Addr{netip.MustParseAddr(tc.addr)}})
		if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("EndpointPut %s: %v, want an invalid error with %q", tc.name, err, tc.want)
		}
	}
	addEndpoint(t, e2, "w1", "wlw1", "10.244.2.2", map[string]string{"app": "web"}) // same name and interface on another host
	eps, _ := e1.EndpointList(ctx)
	if len(eps) != 2 || eps[0].Key() != "h1/w1" || eps[1].Key() != "h2/w1" {
		t.Errorf("list: %+v", eps)
	}
	if _, err := e1.EndpointDelete(ctx, "w7"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("delete of a missing endpoint: %v", err)
	}
	if r, err := e2.EndpointDelete(ctx, "w1"); err != nil || r.Ref != "h2/w1" {
		t.Errorf("delete: %+v, %v", r, err)
	}
	// Leaving the cluster removes the node's own endpoints, no others.
	addEndpoint(t, e2, "w2", "wlw2", "10.244.2.3", nil)
	addEndpoint(t, e1, "w5", "wlw5", "10.244.1.5", nil)
	if n := e1.removeOwnEndpoints(); n != 2 {
		t.Errorf("removeOwnEndpoints removed %d, want 2", n)
	}
	if eps, _ := e1.EndpointList(ctx); len(eps) != 1 || eps[0].Key() != "h2/w2" {
		t.Errorf("after removeOwnEndpoints: %+v", eps)
	}
}

// sync compiles for the host's own endpoints only, skips bad entries with
// a problem in status, and keeps the last ruleset when applying fails.
func TestPolicyEngineSync(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	e1, fa := newTestEngine(t, "h1", store)
	e2, _ := newTestEngine(t, "h2", store)
	addEndpoint(t, e1, "w1", "wlw1", "10.244.1.2", map[string]string{"app": "db"})
	addEndpoint(t, e2, "w2", "wlw2", "10.244.2.2", map[string]string{"app": "web"})
	if _, err := e1.PolicyApply(ctx, api.PolicyApplyRequest{Objects: []api.PolicyObject{obj("d.yaml", denyWebDB)}}); err != nil {
		t.Fatal(err)
	}
	store.Put(kindPolicy, "GlobalNetworkPolicy//junk", []byte("{oops")) // as if from a buggy peer
	if err := e1.sync(ctx); err != nil {
		t.Fatal(err)
	}
	text := fa.last().String()
	if !strings.Contains(text, `"wlw1"`) || strings.Contains(text, `"wlw2"`) {
		t.Errorf("ruleset of h1 should dispatch wlw1 and not wlw2:\n%s", text)
	}
	if !strings.Contains(text, "gnp/deny/ingress") {
		t.Errorf("ruleset lacks the deny policy's chain:\n%s", text)
	}
	st := e1.Status()
	if !st.Enabled || st.Policies != 1 || st.Endpoints != 2 || st.LocalEndpoints != 1 || st.Revision != store.Revision() || st.Version != fa.last().Version {
		t.Errorf("status: %+v", st)
	}
	if len(st.Problems) != 1 || !strings.Contains(st.Problems[0], "GlobalNetworkPolicy//junk") {
		t.Errorf("problems: %q", st.Problems)
	}
	// An entry that decodes but does not resolve (its tier is gone, as
	// when another host deleted it at the same time) is left out, and
	// `policy get` says why.
	orphan := `{"apiVersion":"projectcalico.org/v3","kind":"GlobalNetworkPolicy","metadata":{"name":"gone.x"},"spec":{"tier":"gone"}}`
	store.Put(kindPolicy, "GlobalNetworkPolicy//gone.x", []byte(orphan))
	list, _ := e1.PolicyList(ctx)
	probs := map[string]string{}
	for _, pe := range list {
		probs[pe.Key] = pe.Problem
	}
	if !strings.Contains(probs["GlobalNetworkPolicy//gone.x"], "no such Tier") || !strings.Contains(probs["GlobalNetworkPolicy//junk"], "store GlobalNetworkPolicy//junk") || probs["GlobalNetworkPolicy//deny"] != "" {
		t.Errorf("problems in the list: %q", probs)
	}
	store.Delete(kindPolicy, "GlobalNetworkPolicy//gone.x")
	// Trace answers from the live set.
	v, err := e1.PolicyTrace(ctx, policy.Flow{Src: netip.MustParseAddr("10.244.2.2"), Dst: netip.MustParseAddr("10.244.1.2"), Protocol: policy.ProtoTCP, DstPort: 5432})
	if err != nil || v.Allowed() || v.Ingress.Decision().Policy != "deny" {
		t.Errorf("trace: %v %+v", err, v)
	}
	// A failing applier: the error is in status, the old version stays.
	fa.fail = errors.New("netlink says no")
	store.Delete(kindPolicy, "GlobalNetworkPolicy//deny")
	if err := e1.sync(ctx); err == nil {
		t.Fatal("sync with a failing applier: no error")
	}
	st2 := e1.Status()
	if !strings.Contains(st2.LastError, "netlink says no") || st2.Version != st.Version {
		t.Errorf("status after a failure: %+v", st2)
	}
	fa.fail = nil
	if err := e1.sync(ctx); err != nil || e1.Status().LastError != "" || e1.Status().Version == st.Version {
		t.Errorf("recovery: %v %+v", err, e1.Status())
	}
	// Stats come from the applier.
	stats, err := e1.PolicyStats(ctx)
	if err != nil || len(stats.Rules) != 1 || stats.Rules[0].Packets != 3 {
		t.Errorf("stats: %+v %v", stats, err)
	}
}

// The engine's loop applies at start and after every store change.
func TestPolicyEngineRunFollowsStore(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store := newMemStore()
	e, fa := newTestEngine(t, "h1", store)
	done := make(chan struct{})
	go func() { e.run(ctx); close(done) }()
	waitFor(t, "first apply", func() bool { return fa.last().Version != "" })
	addEndpoint(t, e, "w1", "wlw1", "10.244.1.2", nil)
	waitFor(t, "apply with w1", func() bool { return strings.Contains(fa.last().String(), `"wlw1"`) })
	cancel()
	<-done
}

// validateGossipEntry refuses what the codec refuses, and passes tombstones.
func TestValidateStoreEntry(t *testing.T) {
	if err := validateStoreEntry(kindPolicy, "GlobalNetworkPolicy//deny", []byte(denyWebDB)); err != nil {
		t.Error(err)
	}
	if err := validateStoreEntry(kindPolicy, "GlobalNetworkPolicy//x", []byte(denyWebDB)); err == nil {
		t.Error("accepted a policy under another key")
	}
	if err := validateStoreEntry(kindEndpoint, "h1/w1", []byte(`{"name":"w1"}`)); err == nil {
		t.Error("accepted an incomplete endpoint")
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Without an applier (policy.enabled: false) the engine enforces nothing
// but the store, its validation and trace still work.
func TestPolicyEngineDisabled(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	e := newPolicyEngine(policyEngineConfig{Store: store, Node: "h1"})
	addEndpoint(t, e, "w1", "wlw1", "10.244.1.2", map[string]string{"app": "db"})
	if _, err := e.PolicyApply(ctx, api.PolicyApplyRequest{Objects: []api.PolicyObject{obj("d.yaml", denyWebDB)}}); err != nil {
		t.Fatal(err)
	}
	if err := e.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if st := e.Status(); st.Enabled || st.Policies != 1 || st.Chains != 0 || st.Version != "" {
		t.Errorf("status: %+v", st)
	}
	if _, err := e.PolicyStats(ctx); !errors.Is(err, api.ErrPolicyOff) {
		t.Errorf("stats: %v", err)
	}
	v, err := e.PolicyTrace(ctx, policy.Flow{Src: netip.MustParseAddr("10.0.0.9"), Dst: netip.MustParseAddr("10.244.1.2"), Protocol: policy.ProtoTCP, DstPort: 1})
	if err != nil || v.Allowed() {
		t.Errorf("trace: %+v %v", v, err)
	}
}

// TestPolicyFullResync: the first sync and then one every policyFullResync
// rewrite the whole table; the syncs between send only what changed.
func TestPolicyFullResync(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	fa := &fakeApplier{}
	e := newPolicyEngine(policyEngineConfig{Store: newMemStore(), Applier: fa, Node: "h1",
		Now: func() time.Time { return now }})
	sync := func() {
		t.Helper()
		if err := e.sync(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	sync()
	now = now.Add(policyFullResync / 2)
	sync()
	if len(fa.applied) != 2 || fa.replaced != 1 {
		t.Fatalf("after 2 syncs within the period: %d applied, %d replaced; want 2, 1", len(fa.applied), fa.replaced)
	}
	now = now.Add(policyFullResync / 2)
	sync()
	if fa.replaced != 2 {
		t.Fatalf("after the period: %d replaced, want 2", fa.replaced)
	}
}

// Endpoints of a node the cluster no longer knows (reaped after its death)
// are out of the Set, so their addresses are free for the subnet's next
// holder.
func TestPolicyEngineForgetsGoneNodes(t *testing.T) {
	store := newMemStore()
	members := []string{"h1", "h2"}
	e1 := newPolicyEngine(policyEngineConfig{Store: store, Applier: &fakeApplier{}, Node: "h1",
		Members: func() []string { return members }})
	e2, _ := newTestEngine(t, "h2", store)
	addEndpoint(t, e2, "w1", "wlw1", "10.244.2.2", map[string]string{"app": "web"})
	addEndpoint(t, e1, "w1", "wlw1", "10.244.1.2", map[string]string{"app": "web"})
	if n := len(e1.build().Endpoints); n != 2 {
		t.Fatalf("with h2 a member: %d endpoints in the set, want 2", n)
	}
	members = []string{"h1"} // h2 reaped
	if eps := e1.build().Endpoints; len(eps) != 1 || eps[0].Key() != "h1/w1" {
		t.Fatalf("after h2 was reaped: %+v, want only h1/w1", eps)
	}
	// h2's old address is free for a workload of this node.
	if r := addEndpoint(t, e1, "w2", "wlw2", "10.244.2.2", nil); r.Result != api.ResultCreated {
		t.Errorf("address of a gone node's endpoint: %+v", r)
	}
}
