// Package masq masquerades traffic that leaves the cluster CIDR, as
// flannel's ipMasq does, with one nftables table that weft owns entirely
// (weft issue #3).
//
// Data flow: the caller passes the cluster prefix (or the zero prefix for
// "masquerade off") to Apply. Apply reads table ip weft-nat back, compares it
// with what it would write, and when they differ replaces the table's whole
// content in one atomic netlink transaction. The rule it writes is:
//
//	table ip weft-nat {
//		chain cluster-masq {
//			type nat hook postrouting priority srcnat; policy accept;
//			ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 ip daddr != 224.0.0.0/4 counter masquerade fully-random comment "weft masquerade v1 cluster 10.244.0.0/16"
//		}
//	}
//
// Comparison: the rule carries a comment (nftables rule UserData) naming the
// rule version and the cluster prefix; Apply compares the table's flags, its
// chains (name, type, hook, priority, policy), the number of rules and that
// comment, not the rule's expressions. The expressions as the kernel reports
// them back depend on kernel and library versions, and a false "differs"
// would rewrite the table on every resync; the versioned comment is exact.
// The cost: a hand-edited rule that keeps weft's comment is not detected.
package masq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"net/netip"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Conn is what the Applier needs from an nftables connection; a
// *nftables.Conn satisfies it (bind it to a namespace with
// nftables.WithNetNSFd). The List and Get methods block on one netlink
// round trip and change nothing. The Add and Del methods only queue a message;
// Flush sends everything queued as one atomic transaction and blocks until
// the kernel answers; after Flush returns, with or without an error, the
// queue is empty. A Conn's queue is shared by all its users: give the Applier
// a Conn that nothing else queues messages on.
type Conn interface {
	// ListTableOfFamily returns the table named name, or an error that
	// wraps unix.ENOENT when there is none.
	ListTableOfFamily(name string, family nftables.TableFamily) (*nftables.Table, error)
	// ListChainsOfTableFamily returns the chains of every table of family.
	ListChainsOfTableFamily(family nftables.TableFamily) ([]*nftables.Chain, error)
	// GetRules returns the rules of chain c in table t.
	GetRules(t *nftables.Table, c *nftables.Chain) ([]*nftables.Rule, error)
	// AddTable queues the creation of t; it is not an error if t exists.
	AddTable(t *nftables.Table) *nftables.Table
	// DelTable queues the deletion of t with everything it contains.
	DelTable(t *nftables.Table)
	// AddChain queues the creation of c.
	AddChain(c *nftables.Chain) *nftables.Chain
	// AddRule queues appending r to its chain.
	AddRule(r *nftables.Rule) *nftables.Rule
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

// Applier keeps table ip weft-nat equal to the masquerade rule for a cluster
// prefix. Its methods are safe for concurrent use (they serialise on a
// mutex) and block on netlink.
type Applier struct {
	mu   sync.Mutex
	conn Conn
	log  *slog.Logger
}

// New returns an Applier using c. It touches nothing.
func New(c Config) *Applier {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Applier{conn: c.Conn, log: c.Logger.With("component", "masq")}
}

// Apply makes table ip weft-nat masquerade packets from cluster to
// destinations outside cluster and outside 224.0.0.0/4, in the postrouting
// hook at priority srcnat. The zero (invalid) prefix means masquerade is off:
// Apply removes the table if present. cluster is masked before use; a valid
// prefix that is not IPv4 is a validation error that changes nothing.
//
// Apply is idempotent: it reads the table back and, when it already matches,
// makes no change. Otherwise it replaces the table's content in one atomic
// transaction (add table, delete it, add it, add chain and rule), so there
// is never a moment without NAT and anything foreign inside weft's table goes.
// Other tables are never touched.
func (a *Applier) Apply(ctx context.Context, cluster netip.Prefix) error {
	want, err := validate(cluster)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	reason, present, err := a.diffLocked(want)
	if err != nil {
		return err
	}
	if reason == "" {
		a.log.Debug("masquerade unchanged", "cluster", want)
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !want.IsValid() {
		if !present {
			return nil
		}
		return a.deleteLocked(reason)
	}
	t := table()
	a.conn.AddTable(t) // create it if missing, so that DelTable cannot fail
	a.conn.DelTable(t)
	a.conn.AddTable(t)
	c := a.conn.AddChain(chain(t))
	a.conn.AddRule(&nftables.Rule{Table: t, Chain: c, Exprs: ruleExprs(want), UserData: userData(want)})
	if err := a.conn.Flush(); err != nil {
		return fmt.Errorf("replace table ip %s for cluster %s: %w", TableName, want, err)
	}
	a.log.Info("masquerade applied", "cluster", want, "reason", reason)
	return nil
}

// Check reports whether table ip weft-nat is what Apply(ctx, cluster) would
// leave, and when it is not, a short reason. It changes nothing. A valid
// prefix that is not IPv4 is a validation error.
func (a *Applier) Check(ctx context.Context, cluster netip.Prefix) (bool, string, error) {
	want, err := validate(cluster)
	if err != nil {
		return false, "", err
	}
	if err := ctx.Err(); err != nil {
		return false, "", err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	reason, _, err := a.diffLocked(want)
	if err != nil {
		return false, "", err
	}
	return reason == "", reason, nil
}

// Remove deletes table ip weft-nat if present (for `weft cleanup`) and
// touches nothing else. It is idempotent: with no table it makes no change.
func (a *Applier) Remove(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	present, err := a.presentLocked()
	if err != nil || !present {
		return err
	}
	return a.deleteLocked("remove")
}

// validate returns cluster masked, or a validation error when it is valid
// but not IPv4 (IPv4-mapped IPv6 included).
func validate(cluster netip.Prefix) (netip.Prefix, error) {
	if !cluster.IsValid() {
		return netip.Prefix{}, nil
	}
	if !cluster.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("cluster %s: masquerade supports IPv4 prefixes only", cluster)
	}
	return cluster.Masked(), nil
}

// presentLocked reports whether weft's table exists.
func (a *Applier) presentLocked() (bool, error) {
	_, err := a.conn.ListTableOfFamily(TableName, nftables.TableFamilyIPv4)
	switch {
	case errors.Is(err, unix.ENOENT):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("list table ip %s: %w", TableName, err)
	}
	return true, nil
}

// deleteLocked deletes weft's table. A table that vanished meanwhile is not
// an error.
func (a *Applier) deleteLocked(reason string) error {
	a.conn.DelTable(table())
	if err := a.conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete table ip %s: %w", TableName, err)
	}
	a.log.Info("masquerade removed", "reason", reason)
	return nil
}

// diffLocked reads weft's table back and compares it with what Apply writes
// for want (masked, or zero for none). It returns "" when they match, else
// a short reason, and whether the table exists.
func (a *Applier) diffLocked(want netip.Prefix) (reason string, present bool, err error) {
	t, err := a.conn.ListTableOfFamily(TableName, nftables.TableFamilyIPv4)
	switch {
	case errors.Is(err, unix.ENOENT):
		if !want.IsValid() {
			return "", false, nil
		}
		return "table ip " + TableName + " missing", false, nil
	case err != nil:
		return "", false, fmt.Errorf("list table ip %s: %w", TableName, err)
	case !want.IsValid():
		return "masquerade off but table ip " + TableName + " present", true, nil
	case isDormant(t.Flags):
		// A dormant table's hooks are unregistered: no NAT at all.
		return "table ip " + TableName + " dormant", true, nil
	}
	all, err := a.conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return "", true, fmt.Errorf("list chains of family ip: %w", err)
	}
	var names []string
	var got *nftables.Chain
	for _, c := range all {
		if c.Table == nil || c.Table.Name != TableName {
			continue
		}
		names = append(names, c.Name)
		got = c
	}
	if len(names) != 1 || names[0] != chainName {
		slices.Sort(names)
		return fmt.Sprintf("chains %q, want [%q]", names, chainName), true, nil
	}
	if r := chainDiff(got, chain(t)); r != "" {
		return r, true, nil
	}
	rules, err := a.conn.GetRules(table(), got)
	if err != nil {
		return "", true, fmt.Errorf("list rules of chain ip %s %s: %w", TableName, chainName, err)
	}
	if len(rules) != 1 {
		return fmt.Sprintf("chain %s has %d rules, want 1", chainName, len(rules)), true, nil
	}
	gotComment, _ := userdata.GetString(rules[0].UserData, userdata.TypeComment)
	if wantComment := comment(want); gotComment != wantComment {
		return fmt.Sprintf("rule comment %q, want %q", gotComment, wantComment), true, nil
	}
	return "", true, nil
}

// isDormant reports whether table flags, as google/nftables v0.3.0 reports
// them, include NFT_TABLE_F_DORMANT. v0.3.0 decodes NFTA_TABLE_FLAGS (big
// endian on the wire) in host byte order, so on little-endian hosts dormant
// shows as 1<<24; accept both orders, so a fixed library keeps working.
// No kernel flag is 1<<24, so the check cannot misfire.
func isDormant(flags uint32) bool {
	return (flags|bits.ReverseBytes32(flags))&unix.NFT_TABLE_F_DORMANT != 0
}

// chainDiff returns "" when got has want's type, hook, priority and policy,
// else a short reason.
func chainDiff(got, want *nftables.Chain) string {
	switch {
	case got.Type != want.Type:
		return fmt.Sprintf("chain %s type %q, want %q", chainName, got.Type, want.Type)
	case got.Hooknum == nil || *got.Hooknum != *want.Hooknum:
		return fmt.Sprintf("chain %s hook %s, want %d", chainName, hookString(got.Hooknum), *want.Hooknum)
	case got.Priority == nil || *got.Priority != *want.Priority:
		return fmt.Sprintf("chain %s priority %s, want %d", chainName, priorityString(got.Priority), *want.Priority)
	case got.Policy != nil && *got.Policy != *want.Policy:
		// The kernel reports a base chain's policy; a fake may leave it nil,
		// which means the default, accept.
		return fmt.Sprintf("chain %s policy %d, want accept", chainName, *got.Policy)
	}
	return ""
}

func hookString(h *nftables.ChainHook) string {
	if h == nil {
		return "none"
	}
	return fmt.Sprint(*h)
}

func priorityString(p *nftables.ChainPriority) string {
	if p == nil {
		return "none"
	}
	return fmt.Sprint(*p)
}
