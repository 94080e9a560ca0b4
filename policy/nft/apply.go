package nft

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Conn is what the Applier needs from an nftables connection; a
// *nftables.Conn satisfies it (bind it to a namespace with
// nftables.WithNetNSFd). The List and Get methods block on one netlink
// round trip and change nothing. The Add, Del, Flush<Object> and
// Set<Add|Delete>Elements methods only queue messages; Flush sends everything queued as one atomic
// transaction and blocks until the kernel answers; after Flush returns,
// with or without an error, the queue is empty. Give the Applier a Conn
// that nothing else queues messages on.
type Conn interface {
	// ListTableOfFamily returns the table named name, or an error that
	// wraps unix.ENOENT when there is none.
	ListTableOfFamily(name string, family nftables.TableFamily) (*nftables.Table, error)
	// ListChainsOfTableFamily returns the chains of every table of family.
	ListChainsOfTableFamily(family nftables.TableFamily) ([]*nftables.Chain, error)
	// GetRules returns the rules of chain c in table t, with counters.
	GetRules(t *nftables.Table, c *nftables.Chain) ([]*nftables.Rule, error)
	// GetSets returns the sets of table t, without their elements.
	GetSets(t *nftables.Table) ([]*nftables.Set, error)
	AddTable(t *nftables.Table) *nftables.Table
	DelTable(t *nftables.Table)
	AddChain(c *nftables.Chain) *nftables.Chain
	// FlushChain queues deleting every rule of c.
	FlushChain(c *nftables.Chain)
	// DelChain queues deleting c and its rules; nothing may refer to it.
	DelChain(c *nftables.Chain)
	AddRule(r *nftables.Rule) *nftables.Rule
	// AddSet queues the creation of s with vals in one message.
	AddSet(s *nftables.Set, vals []nftables.SetElement) error
	// DelSet queues deleting s; no rule may refer to it.
	DelSet(s *nftables.Set)
	// SetAddElements queues adding vals to s in one message.
	SetAddElements(s *nftables.Set, vals []nftables.SetElement) error
	// SetDeleteElements queues deleting vals from s in one message.
	SetDeleteElements(s *nftables.Set, vals []nftables.SetElement) error
	// Flush sends the queued messages as one transaction.
	Flush() error
}

var _ Conn = (*nftables.Conn)(nil)

// Config configures an Applier.
type Config struct {
	// Conn is the nftables connection, bound to the namespace to configure.
	// Required. The Applier is its only user.
	Conn Conn
	// Logger receives state changes; nil discards them.
	Logger *slog.Logger
}

// Applier keeps table inet weft equal to a Ruleset. Its methods are safe
// for concurrent use (they serialise on a mutex) and block on netlink.
type Applier struct {
	mu   sync.Mutex
	conn Conn
	log  *slog.Logger
	// prev is the ruleset the table holds, as last applied or verified;
	// nil when that is unknown (at start, after a failure, after Forget).
	prev *Ruleset
}

// New returns an Applier using c. It touches nothing.
func New(c Config) *Applier {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Applier{conn: c.Conn, log: c.Logger.With("component", "policy-nft")}
}

// Apply makes table inet weft hold rs, in one atomic transaction: there is
// never a moment without filtering, and a ruleset the kernel refuses
// changes nothing. Other tables are never touched. rs is only read; a
// Ruleset with no Version gets a hash of its text. Apply keeps rs as the
// table's state: the caller must not change rs's slices afterwards
// (Compile returns new ones every time).
//
// How, by what the Applier knows:
//
//   - nothing (the first Apply, or after a failure or Forget): it compares
//     the table's version comment, chain and set names with rs's; when
//     they match it adopts rs as the table's state and sends nothing, else
//     it replaces the table (add table, delete it, add it with everything
//     in it), so anything foreign inside weft's table goes;
//   - the ruleset it applied last, with the same version as rs: the same
//     check against the kernel (chain and set names and one rule: about
//     5 ms at 10,000 endpoints, no element read), and a replace if it
//     fails;
//   - the ruleset it applied last, another version: it sends only the
//     difference (see delta.go) as one transaction, without reading
//     the kernel; a full replace instead when diff says so (base chains or
//     a set's definition changed, or the difference is large). When the
//     incremental transaction fails, the table's state is unknown: Apply
//     replaces the table at once and returns the replace's error, if any.
//
// Counters of rules in rewritten chains start again from zero.
//
// The version check trusts the version comment (a hash of the whole
// ruleset) rather than comparing every rule and element as the kernel
// reports them back, which depends on kernel and library versions and would
// take a listing of the whole table; the cost: a hand edit inside weft's
// table that keeps its chains, sets and first rule is not detected. Replace
// repairs any drift.
func (a *Applier) Apply(ctx context.Context, rs Ruleset) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if rs.Version == "" {
		rs.Version = versionOf(&rs)
	}
	if len(rs.Chains) == 0 {
		return errors.New("apply policy ruleset: it has no chains")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.prev == nil || a.prev.Version == rs.Version {
		reason, err := a.diffLocked(&rs)
		if err != nil {
			a.prev = nil
			return err
		}
		if reason == "" {
			a.log.Debug("policy ruleset unchanged", "version", rs.Version)
			a.prev = &rs
			return nil
		}
		return a.replaceLocked(ctx, &rs, reason)
	}
	d := diff(a.prev, &rs)
	if d.Full != "" {
		return a.replaceLocked(ctx, &rs, d.Full)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := queueDelta(a.conn, &d)
	if err == nil {
		err = a.conn.Flush()
	} else {
		_ = a.conn.Flush() // an error here only empties the queue; nothing was sent
	}
	if err != nil {
		a.log.Warn("incremental policy update refused, replacing the table", "version", rs.Version, "err", err)
		a.prev = nil
		return a.replaceLocked(ctx, &rs, "incremental update failed")
	}
	a.prev = &rs
	a.log.Info("policy ruleset updated", "version", rs.Version, "operations", d.Size(),
		"new_chains", len(d.NewChains), "rewritten_chains", len(d.Fill), "deleted_chains", len(d.DelChains),
		"new_sets", len(d.NewSets), "changed_sets", len(d.Elements), "deleted_sets", len(d.DelSets))
	return nil
}

// Replace replaces table inet weft with rs in one atomic transaction,
// whatever the table holds: the resync that repairs any drift. Like Apply
// it keeps rs as the table's state; rs with no Version gets one.
func (a *Applier) Replace(ctx context.Context, rs Ruleset) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if rs.Version == "" {
		rs.Version = versionOf(&rs)
	}
	if len(rs.Chains) == 0 {
		return errors.New("replace policy ruleset: it has no chains")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.replaceLocked(ctx, &rs, "resync")
}

// Forget drops the Applier's knowledge of the table: the next Apply
// compares versions with the kernel (and replaces the table when they
// differ) instead of sending a difference. It touches nothing.
func (a *Applier) Forget() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.prev = nil
}

// replaceLocked replaces the table with rs and records it as the state.
func (a *Applier) replaceLocked(ctx context.Context, rs *Ruleset, reason string) error {
	a.prev = nil
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := queueReplace(a.conn, rs); err != nil {
		_ = a.conn.Flush() // an error here only empties the queue; nothing was sent
		return fmt.Errorf("encode policy ruleset %s: %w", rs.Version, err)
	}
	if err := a.conn.Flush(); err != nil {
		return fmt.Errorf("replace table inet %s with %s: %w", TableName, rs.Version, err)
	}
	a.prev = rs
	a.log.Info("policy ruleset applied", "version", rs.Version, "reason", reason,
		"chains", len(rs.Chains), "sets", len(rs.Sets))
	return nil
}

// Remove deletes table inet weft if present (for `weft cleanup`) and
// touches nothing else. With no table it makes no change.
func (a *Applier) Remove(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.prev = nil
	_, err := a.conn.ListTableOfFamily(TableName, nftables.TableFamilyINet)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil
	case err != nil:
		return fmt.Errorf("list table inet %s: %w", TableName, err)
	}
	a.conn.DelTable(table())
	if err := a.conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete table inet %s: %w", TableName, err)
	}
	a.log.Info("policy ruleset removed")
	return nil
}

// diffLocked compares the kernel's table with rs and returns "" when they
// match, else a short reason.
func (a *Applier) diffLocked(rs *Ruleset) (string, error) {
	t, err := a.conn.ListTableOfFamily(TableName, nftables.TableFamilyINet)
	switch {
	case errors.Is(err, unix.ENOENT):
		return "table inet " + TableName + " missing", nil
	case err != nil:
		return "", fmt.Errorf("list table inet %s: %w", TableName, err)
	case isDormant(t.Flags):
		return "table inet " + TableName + " dormant", nil
	}
	all, err := a.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return "", fmt.Errorf("list chains of family inet: %w", err)
	}
	var got, want []string
	for _, c := range all {
		if c.Table != nil && c.Table.Name == TableName {
			got = append(got, c.Name)
		}
	}
	for _, c := range rs.Chains {
		want = append(want, c.Name)
	}
	if r := namesDiff("chains", got, want); r != "" {
		return r, nil
	}
	sets, err := a.conn.GetSets(table())
	if err != nil {
		return "", fmt.Errorf("list sets of table inet %s: %w", TableName, err)
	}
	got, want = nil, nil
	for _, s := range sets {
		if !s.Anonymous && !strings.HasPrefix(s.Name, "__") {
			got = append(got, s.Name)
		}
	}
	for _, s := range rs.Sets {
		want = append(want, s.Name)
	}
	if r := namesDiff("sets", got, want); r != "" {
		return r, nil
	}
	first := rs.Chains[0].Name
	rules, err := a.conn.GetRules(table(), &nftables.Chain{Name: first, Table: table()})
	if err != nil {
		return "", fmt.Errorf("list rules of chain inet %s %s: %w", TableName, first, err)
	}
	if len(rules) == 0 {
		return "chain " + first + " is empty", nil
	}
	if v, _ := userdata.GetString(rules[0].UserData, userdata.TypeComment); v != rs.Version {
		return fmt.Sprintf("version %q, want %q", v, rs.Version), nil
	}
	return "", nil
}

// namesDiff returns "" when got and want hold the same names, else a
// short reason naming one difference.
func namesDiff(what string, got, want []string) string {
	slices.Sort(got)
	slices.Sort(want)
	if slices.Equal(got, want) {
		return ""
	}
	for _, w := range want {
		if _, ok := slices.BinarySearch(got, w); !ok {
			return fmt.Sprintf("%s: %s missing (%d, want %d)", what, w, len(got), len(want))
		}
	}
	for _, g := range got {
		if _, ok := slices.BinarySearch(want, g); !ok {
			return fmt.Sprintf("%s: %s unexpected (%d, want %d)", what, g, len(got), len(want))
		}
	}
	return fmt.Sprintf("%s: %d, want %d", what, len(got), len(want))
}

// isDormant reports whether table flags, as google/nftables v0.3.0 reports
// them, include NFT_TABLE_F_DORMANT (see fabric/masq: the library decodes
// the big-endian flags in host byte order; accept both orders).
func isDormant(flags uint32) bool {
	return (flags|bits.ReverseBytes32(flags))&unix.NFT_TABLE_F_DORMANT != 0
}

// RuleStats are the counters of one policy rule on this host, summed over
// the nft rules it compiled to.
type RuleStats struct {
	Kind           string // GlobalNetworkPolicy or NetworkPolicy
	Policy         string // "name" or "namespace/name"
	Rule           string // e.g. "ingress[0]"
	Packets, Bytes uint64
}

// Stats reads the counters of every policy rule in table inet weft, sorted
// by kind, policy and rule. A missing table has none. It changes nothing.
// Policies that select no endpoint of this host are not in the table.
func (a *Applier) Stats(ctx context.Context) ([]RuleStats, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	all, err := a.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list chains of family inet: %w", err)
	}
	sums := map[[3]string]*RuleStats{}
	for _, c := range all {
		if c.Table == nil || c.Table.Name != TableName || !(strings.HasPrefix(c.Name, "gnp/") || strings.HasPrefix(c.Name, "np/")) {
			continue
		}
		rules, err := a.conn.GetRules(table(), &nftables.Chain{Name: c.Name, Table: table()})
		if err != nil {
			return nil, fmt.Errorf("list rules of chain inet %s %s: %w", TableName, c.Name, err)
		}
		for _, r := range rules {
			text, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			f := strings.Fields(text)
			if len(f) != 3 {
				continue
			}
			k := [3]string{f[0], f[1], f[2]}
			st := sums[k]
			if st == nil {
				st = &RuleStats{Kind: f[0], Policy: f[1], Rule: f[2]}
				sums[k] = st
			}
			for _, e := range r.Exprs {
				if ctr, ok := e.(*expr.Counter); ok {
					st.Packets += ctr.Packets
					st.Bytes += ctr.Bytes
				}
			}
		}
	}
	out := make([]RuleStats, 0, len(sums))
	for _, st := range sums {
		out = append(out, *st)
	}
	slices.SortFunc(out, func(a, b RuleStats) int {
		if c := strings.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		if c := strings.Compare(a.Policy, b.Policy); c != 0 {
			return c
		}
		return compareRule(a.Rule, b.Rule)
	})
	return out, nil
}

// compareRule orders "egress[2]" before "egress[10]", egress before ingress.
func compareRule(a, b string) int {
	da, ia, _ := strings.Cut(strings.TrimSuffix(a, "]"), "[")
	db, ib, _ := strings.Cut(strings.TrimSuffix(b, "]"), "[")
	if c := strings.Compare(da, db); c != 0 {
		return c
	}
	na, _ := strconv.Atoi(ia)
	nb, _ := strconv.Atoi(ib)
	return na - nb
}
