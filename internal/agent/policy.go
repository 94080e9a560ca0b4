package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/weft-net/weft/internal/api"
	"github.com/weft-net/weft/internal/policystore"
	"github.com/weft-net/weft/policy"
	"github.com/weft-net/weft/policy/nft"
)

// PolicyApplier puts a compiled policy ruleset into the kernel; an
// *nft.Applier is one. Both methods block on netlink, are safe for
// concurrent use, and Apply is idempotent.
type PolicyApplier interface {
	// Apply sends what changed since the last ruleset it applied (one
	// transaction), nothing when nothing did.
	Apply(ctx context.Context, rs nft.Ruleset) error
	// Replace rewrites the whole table in one atomic transaction, whatever
	// the applier believes the kernel holds.
	Replace(ctx context.Context, rs nft.Ruleset) error
	Stats(ctx context.Context) ([]nft.RuleStats, error)
}

var _ PolicyApplier = (*nft.Applier)(nil)

// policyRetry is how soon a failed apply is tried again (a change or the
// resync may come sooner).
const policyRetry = time.Second

// policyFullResync is how often a sync rewrites the whole table (Replace)
// instead of sending what changed: Apply trusts its memory of what it sent
// and checks only the table's version chain, so a hand edit inside weft's
// table would otherwise stay. 0.45 s at 10,000 endpoints (docs/PERFORMANCE.md),
// atomic, never a moment unfiltered.
const policyFullResync = 10 * time.Minute

// policyEngine keeps this host's policy ruleset equal to what the store
// says: on every store change, at start and on every resync it resolves
// all live entries into one policy Set (store -> policystore.Build, pure),
// compiles it for this host's own endpoints (nft.Compile, pure) and hands
// the ruleset to the applier (one atomic transaction, nothing when
// unchanged). It also answers the API's policy and endpoint requests,
// which validate the whole resulting Set before they write anything.
type policyEngine struct {
	store   policyStore
	applier PolicyApplier // nil: policy.enabled is false
	node    string
	opts    policy.Options
	resync  time.Duration
	log     *slog.Logger
	now     func() time.Time

	members func() []string
	kick    chan struct{} // Kick's signal to run

	cache policystore.Cache
	// lastFull is when the table was last rewritten whole (sync's goroutine only).
	lastFull time.Time

	// writeMu serialises the API's writes, so that two requests cannot
	// both validate against the same store and then both write.
	writeMu sync.Mutex

	mu     sync.Mutex
	set    *policy.Set // the last Set built (and applied, when enforcing)
	status api.PolicyStatus
}

// policyEngineConfig configures a policyEngine.
type policyEngineConfig struct {
	Store   policyStore
	Applier PolicyApplier
	Node    string
	Options policy.Options
	Resync  time.Duration
	Logger  *slog.Logger
	Now     func() time.Time
	// Members, if set, returns the nodes the cluster knows (alive, suspect,
	// or dead and still holding their subnet). Endpoints of other nodes
	// (reaped, or gone with `weft leave` before deleting them) are left out
	// of the Set: their addresses belong to whoever holds the subnet now.
	Members func() []string
}

func newPolicyEngine(c policyEngineConfig) *policyEngine {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Resync <= 0 {
		c.Resync = 30 * time.Second
	}
	return &policyEngine{store: c.Store, applier: c.Applier, node: c.Node, opts: c.Options, resync: c.Resync,
		log: c.Logger.With("component", "policy"), now: c.Now, members: c.Members, kick: make(chan struct{}, 1),
		status: api.PolicyStatus{Enabled: c.Applier != nil}}
}

// run syncs at start, on every store change and every resync period, and
// soon again after a failure, until ctx is done.
func (e *policyEngine) run(ctx context.Context) {
	tick := time.NewTicker(e.resync)
	defer tick.Stop()
	for {
		var retry <-chan time.Time
		if err := e.sync(ctx); err != nil && ctx.Err() == nil {
			retry = time.After(policyRetry)
		}
		select {
		case <-ctx.Done():
			return
		case <-e.store.Changed():
		case <-e.kick:
		case <-tick.C:
		case <-retry:
		}
	}
}

// build resolves the store's live entries into a Set, decoding only the
// entries that changed since the last build.
func (e *policyEngine) build() policystore.Built {
	return e.cache.Build(entries(e.store.List(kindPolicy)), e.memberEndpoints(e.store.List(kindEndpoint)))
}

// memberEndpoints returns the endpoint entries of nodes that Members knows
// (all of them when Members is nil).
func (e *policyEngine) memberEndpoints(es []storeEntry) []policystore.Entry {
	if e.members == nil {
		return entries(es)
	}
	known := map[string]bool{e.node: true}
	for _, n := range e.members() {
		known[n] = true
	}
	out := make([]policystore.Entry, 0, len(es))
	for _, s := range es {
		if node, _, _ := strings.Cut(s.Key, "/"); known[node] {
			out = append(out, policystore.Entry{Key: s.Key, Value: s.Value})
		}
	}
	return out
}

// Kick asks run for a sync soon (membership changed); it never blocks.
func (e *policyEngine) Kick() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

func entries(es []storeEntry) []policystore.Entry {
	out := make([]policystore.Entry, len(es))
	for i, s := range es {
		out[i] = policystore.Entry{Key: s.Key, Value: s.Value}
	}
	return out
}

// hostInfo returns this host's workloads for the compiler: its own
// endpoints, in key order; one whose interface or address an earlier one
// already has is left out and reported.
func (e *policyEngine) hostInfo(eps []policystore.Endpoint) (nft.HostInfo, []string) {
	h := nft.HostInfo{Node: e.node}
	var problems []string
	ifaces := map[string]string{}
	addrs := map[netip.Addr]string{}
next:
	for _, ep := range eps {
		if ep.Node != e.node {
			continue
		}
		if o, dup := ifaces[ep.Interface]; dup {
			problems = append(problems, fmt.Sprintf("endpoint %s: interface %s is also endpoint %s's: left out", ep.Key(), ep.Interface, o))
			continue
		}
		for _, a := range ep.Addrs {
			if o, dup := addrs[a]; dup {
				problems = append(problems, fmt.Sprintf("endpoint %s: address %s is also endpoint %s's: left out", ep.Key(), a, o))
				continue next
			}
		}
		ifaces[ep.Interface] = ep.Key()
		for _, a := range ep.Addrs {
			addrs[a] = ep.Key()
		}
		h.Workloads = append(h.Workloads, nft.Workload{Interface: ep.Interface, Addrs: slices.Clone(ep.Addrs)})
	}
	return h, problems
}

// sync is the one code path of changes and resyncs: build, compile, apply.
func (e *policyEngine) sync(ctx context.Context) error {
	start := e.now()
	rev := e.store.Revision()
	b := e.build()
	host, problems := e.hostInfo(b.Endpoints)
	st := api.PolicyStatus{Enabled: e.applier != nil, Revision: rev, Policies: len(b.Policies), Endpoints: len(b.Endpoints),
		LocalEndpoints: len(host.Workloads), Problems: append(b.Problems, problems...)}
	var err error
	if e.applier != nil {
		var rs nft.Ruleset
		rs, err = nft.Compile(b.Set, host, e.opts)
		if err == nil {
			st.Chains, st.Sets, st.Version = len(rs.Chains), len(rs.Sets), rs.Version
			if now := e.now(); now.Sub(e.lastFull) >= policyFullResync {
				if err = e.applier.Replace(ctx, rs); err == nil {
					e.lastFull = now
				}
			} else {
				err = e.applier.Apply(ctx, rs)
			}
		}
		if err != nil {
			err = fmt.Errorf("apply policy of store revision %d: %w", rev, err)
			st.LastError = err.Error()
			e.log.Error("policy not applied", "revision", rev, "err", err)
		}
	}
	e.mu.Lock()
	prev := e.status
	st.Syncs = prev.Syncs + 1
	st.AppliedAt = prev.AppliedAt
	if err == nil {
		st.AppliedAt = e.now()
		e.set = b.Set
	} else if st.Version != prev.Version {
		st.Version = prev.Version // still in force
		st.Chains, st.Sets = prev.Chains, prev.Sets
	}
	e.status = st
	e.mu.Unlock()
	if err == nil && (rev != prev.Revision || st.Version != prev.Version) {
		e.log.Info("policy in force", "revision", rev, "version", st.Version, "policies", st.Policies,
			"endpoints", st.Endpoints, "local", st.LocalEndpoints, "problems", len(st.Problems),
			"took", e.now().Sub(start).Round(time.Microsecond))
	}
	return err
}

// Status returns a copy of the engine's state.
func (e *policyEngine) Status() api.PolicyStatus {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.status
	s.Problems = slices.Clone(s.Problems)
	return s
}

// liveSet returns the Set last applied, or one built now when there is
// none yet (or enforcement is off).
func (e *policyEngine) liveSet() *policy.Set {
	e.mu.Lock()
	s := e.set
	e.mu.Unlock()
	if s == nil {
		s = e.build().Set
	}
	return s
}

// apiError is an error whose kind (api.ErrInvalid, api.ErrNotFound) sets
// the API's answer; its text is only err's.
type apiError struct {
	kind error
	err  error
}

func (e *apiError) Error() string        { return e.err.Error() }
func (e *apiError) Unwrap() error        { return e.err }
func (e *apiError) Is(target error) bool { return target == e.kind }

func invalid(err error) error { return &apiError{kind: api.ErrInvalid, err: err} }

// resolve checks that the policies and endpoints make a Set.
func resolve(policies map[string]policy.Object, eps []policystore.Endpoint) error {
	objs := make([]policy.Object, 0, len(policies)+len(eps))
	for _, k := range slices.Sorted(maps.Keys(policies)) {
		objs = append(objs, policies[k])
	}
	for _, ep := range eps {
		objs = append(objs, ep.Object())
	}
	_, err := policy.NewSet(objs)
	return err
}

// PolicyApply implements api.PolicyBackend.
func (e *policyEngine) PolicyApply(ctx context.Context, req api.PolicyApplyRequest) ([]api.PolicyResult, error) {
	if len(req.Objects) == 0 {
		return nil, invalid(errors.New("no objects to apply"))
	}
	type item struct {
		ref   string
		key   string
		value []byte
	}
	var items []item
	news := map[string]policy.Object{}
	var errs []error
	for i, o := range req.Objects {
		file := o.File
		if file == "" {
			file = fmt.Sprintf("object %d", i+1)
		}
		objs, err := policy.Decode(file, o.Object)
		switch {
		case err != nil:
			errs = append(errs, err)
			continue
		case len(objs) != 1:
			errs = append(errs, fmt.Errorf("%s: document %d: holds %d objects, want 1 per request item", file, o.Document, len(objs)))
			continue
		}
		obj := objs[0]
		obj.Origin = policy.Origin{File: file, Document: o.Document, Item: o.Item}
		key, value, err := policystore.Encode(obj.Resource)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", obj.Origin, err))
			continue
		}
		if prev, dup := news[key]; dup {
			errs = append(errs, fmt.Errorf("%s: %s is also defined at %s", obj.Origin, policystore.RefOf(obj.Resource), prev.Origin))
			continue
		}
		news[key] = obj
		items = append(items, item{ref: policystore.RefOf(obj.Resource).String(), key: key, value: value})
	}
	if len(errs) > 0 {
		return nil, invalid(fmt.Errorf("nothing applied: %w", errors.Join(errs...)))
	}
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	b := e.build()
	merged := maps.Clone(b.Policies)
	maps.Copy(merged, news)
	if err := resolve(merged, b.Endpoints); err != nil {
		return nil, invalid(fmt.Errorf("nothing applied: the policy set would not resolve: %w", err))
	}
	out := make([]api.PolicyResult, 0, len(items))
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		res := api.ResultCreated
		if cur, ok := e.store.Get(kindPolicy, it.key); ok {
			res = api.ResultUpdated
			if bytes.Equal(cur.Value, it.value) {
				out = append(out, api.PolicyResult{Ref: it.ref, Result: api.ResultUnchanged})
				continue
			}
		}
		if err := e.store.Put(kindPolicy, it.key, it.value); err != nil {
			return out, fmt.Errorf("store %s: %w", it.ref, err)
		}
		out = append(out, api.PolicyResult{Ref: it.ref, Result: res})
	}
	e.log.Info("policy objects applied", "objects", len(out))
	return out, nil
}

// PolicyDelete implements api.PolicyBackend.
func (e *policyEngine) PolicyDelete(ctx context.Context, req api.PolicyDeleteRequest) ([]api.PolicyResult, error) {
	if len(req.Keys) == 0 {
		return nil, invalid(errors.New("no objects to delete"))
	}
	refs := make([]policystore.Ref, len(req.Keys))
	for i, k := range req.Keys {
		r, err := refOfKey(k)
		if err != nil {
			return nil, invalid(err)
		}
		refs[i] = r
	}
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	b := e.build()
	rest := maps.Clone(b.Policies)
	for _, r := range refs {
		delete(rest, r.Key())
	}
	if err := resolve(rest, b.Endpoints); err != nil {
		return nil, invalid(fmt.Errorf("nothing deleted: the policy set would not resolve without them: %w", err))
	}
	out := make([]api.PolicyResult, 0, len(refs))
	for _, r := range refs {
		err := e.store.Delete(kindPolicy, r.Key())
		switch {
		case errors.Is(err, errStoreNotFound):
			out = append(out, api.PolicyResult{Ref: r.String(), Result: api.ResultNotFound})
		case err != nil:
			return out, fmt.Errorf("delete %s: %w", r, err)
		default:
			out = append(out, api.PolicyResult{Ref: r.String(), Result: api.ResultDeleted})
		}
	}
	return out, nil
}

// refOfKey reads a store key "<Kind>/<namespace>/<name>".
func refOfKey(key string) (policystore.Ref, error) {
	r, err := policystore.ParseKey(key)
	if err != nil {
		return r, fmt.Errorf("key %w", err)
	}
	return r, nil
}

// PolicyList implements api.PolicyBackend. An entry that decodes but that
// the Set leaves out (see policystore.Build) carries its problem too.
func (e *policyEngine) PolicyList(ctx context.Context) ([]api.PolicyEntry, error) {
	var out []api.PolicyEntry
	b := e.build()
	for _, s := range e.store.List(kindPolicy) {
		pe := api.PolicyEntry{Key: s.Key, Version: s.Version, WrittenBy: s.Writer, WrittenAt: s.Written, Object: s.Value}
		o, err := policystore.DecodePolicy(s.Key, s.Value)
		if err != nil {
			pe.Problem = err.Error()
			pe.Name = s.Key
			if policystore.CheckJSON(s.Value) != nil {
				pe.Object = nil
			}
		} else {
			r := policystore.RefOf(o.Resource)
			pe.Kind, pe.Namespace, pe.Name = r.Kind, r.Namespace, r.Name
			if _, ok := b.Policies[s.Key]; !ok {
				pe.Problem = "not enforced"
				for _, p := range b.Problems {
					if strings.HasPrefix(p, "store "+s.Key+":") {
						pe.Problem = p
						break
					}
				}
			}
		}
		out = append(out, pe)
	}
	return out, nil
}

// PolicyStats implements api.PolicyBackend.
func (e *policyEngine) PolicyStats(ctx context.Context) (api.PolicyStats, error) {
	out := api.PolicyStats{Node: e.node, Rules: []api.RuleStats{}}
	if e.applier == nil {
		return out, api.ErrPolicyOff
	}
	rs, err := e.applier.Stats(ctx)
	if err != nil {
		return out, err
	}
	out.Version = e.Status().Version
	for _, r := range rs {
		out.Rules = append(out.Rules, api.RuleStats{Kind: r.Kind, Policy: r.Policy, Rule: r.Rule, Packets: r.Packets, Bytes: r.Bytes})
	}
	return out, nil
}

// PolicyTrace implements api.PolicyBackend: the flow judged by the Set in
// force on this host.
func (e *policyEngine) PolicyTrace(ctx context.Context, f policy.Flow) (policy.Verdict, error) {
	if !f.Src.IsValid() || !f.Dst.IsValid() || f.Src.Is4() != f.Dst.Is4() {
		return policy.Verdict{}, invalid(fmt.Errorf("flow %s -> %s: want two addresses of one IP version", f.Src, f.Dst))
	}
	return policy.Evaluate(e.liveSet(), f, e.opts), nil
}

// EndpointList implements api.PolicyBackend.
func (e *policyEngine) EndpointList(ctx context.Context) ([]policystore.Endpoint, error) {
	out := []policystore.Endpoint{}
	for _, s := range e.store.List(kindEndpoint) {
		if ep, err := policystore.DecodeEndpoint(s.Key, s.Value); err == nil {
			out = append(out, ep)
		}
	}
	return out, nil
}

// EndpointPut implements api.PolicyBackend: it registers an endpoint of
// this node, refusing one whose interface another endpoint of this node
// has, or whose address any endpoint has.
func (e *policyEngine) EndpointPut(ctx context.Context, ep policystore.Endpoint) (api.PolicyResult, error) {
	if ep.Node != "" && ep.Node != e.node {
		return api.PolicyResult{}, invalid(fmt.Errorf("node: %q: this agent is %q; register an endpoint on the host that runs it", ep.Node, e.node))
	}
	ep.Node = e.node
	key, value, err := policystore.EncodeEndpoint(ep)
	if err != nil {
		return api.PolicyResult{}, invalid(err)
	}
	ep, _ = policystore.DecodeEndpoint(key, value) // normalized
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	b := e.build()
	var eps []policystore.Endpoint
	for _, o := range b.Endpoints {
		if o.Key() == key {
			continue
		}
		if o.Node == ep.Node && o.Interface == ep.Interface {
			return api.PolicyResult{}, invalid(fmt.Errorf("interface: %q: endpoint %s has it already", ep.Interface, o.Key()))
		}
		for _, a := range ep.Addrs {
			if slices.Contains(o.Addrs, a) {
				return api.PolicyResult{}, invalid(fmt.Errorf("addrs: %s: endpoint %s has it already", a, o.Key()))
			}
		}
		eps = append(eps, o)
	}
	eps = append(eps, ep)
	if err := resolve(b.Policies, eps); err != nil {
		return api.PolicyResult{}, invalid(fmt.Errorf("the policy set would not resolve: %w", err))
	}
	res := api.ResultCreated
	if cur, ok := e.store.Get(kindEndpoint, key); ok {
		res = api.ResultUpdated
		if bytes.Equal(cur.Value, value) {
			return api.PolicyResult{Ref: key, Result: api.ResultUnchanged}, nil
		}
	}
	if err := e.store.Put(kindEndpoint, key, value); err != nil {
		return api.PolicyResult{}, fmt.Errorf("store endpoint %s: %w", key, err)
	}
	e.log.Info("endpoint stored", "endpoint", key, "result", res)
	return api.PolicyResult{Ref: key, Result: res}, nil
}

// EndpointDelete implements api.PolicyBackend.
func (e *policyEngine) EndpointDelete(ctx context.Context, name string) (api.PolicyResult, error) {
	key := policystore.EndpointKey(e.node, name)
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	err := e.store.Delete(kindEndpoint, key)
	switch {
	case errors.Is(err, errStoreNotFound):
		return api.PolicyResult{}, &apiError{kind: api.ErrNotFound, err: fmt.Errorf("endpoint %q: this node (%s) has none of that name", name, e.node)}
	case err != nil:
		return api.PolicyResult{}, fmt.Errorf("delete endpoint %s: %w", key, err)
	}
	e.log.Info("endpoint removed", "endpoint", key)
	return api.PolicyResult{Ref: key, Result: api.ResultDeleted}, nil
}

// removeOwnEndpoints deletes this node's endpoints from the store (when
// it leaves the cluster for good) and returns how many it deleted.
func (e *policyEngine) removeOwnEndpoints() int {
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	n := 0
	prefix := policystore.EndpointKey(e.node, "")
	for _, s := range e.store.List(kindEndpoint) {
		if !strings.HasPrefix(s.Key, prefix) {
			continue
		}
		if err := e.store.Delete(kindEndpoint, s.Key); err != nil {
			e.log.Error("remove endpoint", "endpoint", s.Key, "err", err)
			continue
		}
		n++
	}
	if n > 0 {
		e.log.Info("own endpoints removed", "endpoints", n)
	}
	return n
}

// validateStoreEntry is the store's validation hook: it refuses entries
// that do not decode, so that bad data is not stored or passed on.
func validateStoreEntry(kind storeKind, key string, value []byte) error {
	switch kind {
	case kindPolicy:
		_, err := policystore.DecodePolicy(key, value)
		return err
	case kindEndpoint:
		_, err := policystore.DecodeEndpoint(key, value)
		return err
	}
	return fmt.Errorf("store entry %s: unknown kind %d", key, kind)
}
