package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"

	"github.com/weft-net/weft/policy"
)

// tinySet is one workload endpoint with a policy allowing TCP 80 to it.
const tinySet = `
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: web, namespace: prod, labels: {app: web}}
spec: {node: h1, ipNetworks: [10.0.0.1/32]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: web}
spec:
  selector: app == 'web'
  ingress:
  - action: Allow
    protocol: TCP
    destination: {ports: [80]}
`

func tinyRuleset(t *testing.T, ifaces ...string) Ruleset {
	t.Helper()
	objs, err := policy.Decode("tiny.yaml", []byte(tinySet))
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.NewSet(objs)
	if err != nil {
		t.Fatal(err)
	}
	var host HostInfo
	for i, name := range ifaces {
		host.Workloads = append(host.Workloads, Workload{Interface: name, Addrs: addrs(fmt.Sprintf("10.0.0.%d", i+1))})
	}
	rs, err := Compile(set, host, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestApplyFake(t *testing.T) {
	ctx := context.Background()
	f := newFakeConn()
	// A foreign table, and a stale weft table with a chain of its own.
	f.AddTable(&nftables.Table{Name: "other", Family: nftables.TableFamilyINet})
	f.AddChain(&nftables.Chain{Name: "keep", Table: &nftables.Table{Name: "other", Family: nftables.TableFamilyINet}})
	f.AddTable(table())
	f.AddChain(&nftables.Chain{Name: "stale", Table: table()})
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	a := New(Config{Conn: f})
	rs := tinyRuleset(t, "wl1", "wl2")
	if err := a.Apply(ctx, rs); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	want := `table inet other
  chain keep rules 0
table inet weft
  set wl-egress4 elements 2
  set wl-egress6 elements 0
  set wl-ifaces elements 2
  set wl-ingress4 elements 2
  set wl-ingress6 elements 0
  chain forward-egress hook 2 priority 0 rules 4 first ""
  chain forward-ingress hook 2 priority 1 rules 4 first ""
  chain gnp/web/ingress rules 1 first "GlobalNetworkPolicy web ingress[0]"
  chain input-egress hook 1 priority 0 rules 5 first ""
  chain output-ingress hook 3 priority 1 rules 5 first ""
  chain weft-version rules 1 first "` + rs.Version + `"
  chain wl-in-ed7d2a0dda rules 3 first ""
  chain wl-out-fdae941b06 rules 2 first ""`
	if diff := cmp.Diff(want, f.String()); diff != "" {
		t.Errorf("state after Apply (-want +got):\n%s", diff)
	}
	writes := f.writes

	// A second Apply of the same ruleset sends nothing.
	if err := a.Apply(ctx, rs); err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	if f.writes != writes {
		t.Errorf("second Apply sent %d transactions, want 0", f.writes-writes)
	}

	// A changed ruleset is one transaction.
	rs2 := tinyRuleset(t, "wl1")
	if err := a.Apply(ctx, rs2); err != nil {
		t.Fatalf("Apply changed: %v", err)
	}
	if f.writes != writes+1 || !strings.Contains(f.String(), "set wl-ifaces elements 1") {
		t.Errorf("after a changed Apply: %d transactions, state:\n%s", f.writes-writes, f)
	}

	// Without memory (Forget), the same ruleset is recognised by its
	// version and nothing is sent; Replace sends the whole table.
	a.Forget()
	writes, replaces := f.writes, f.replaces
	if err := a.Apply(ctx, rs2); err != nil || f.writes != writes {
		t.Errorf("Apply after Forget: err %v, %d transactions, want 0", err, f.writes-writes)
	}
	if err := a.Replace(ctx, rs2); err != nil || f.writes != writes+1 || f.replaces != replaces+1 {
		t.Errorf("Replace: err %v, %d transactions, %d replaces, want 1, 1", err, f.writes-writes, f.replaces-replaces)
	}

	// Remove deletes weft's table only, and then does nothing.
	if err := a.Remove(ctx); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if diff := cmp.Diff("table inet other\n  chain keep rules 0", f.String()); diff != "" {
		t.Errorf("state after Remove (-want +got):\n%s", diff)
	}
	writes = f.writes
	if err := a.Remove(ctx); err != nil || f.writes != writes {
		t.Errorf("second Remove: err %v, %d transactions", err, f.writes-writes)
	}
}

func TestApplyFakeFailures(t *testing.T) {
	boom := errors.New("boom")
	// Without a previous state Apply reads the kernel: a failed read or
	// transaction changes nothing, and the next Apply recovers.
	for _, kind := range []string{"list table", "list chains", "get sets", "get rules", "flush"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			f := newFakeConn()
			old := tinyRuleset(t, "wl1")
			if err := New(Config{Conn: f}).Apply(ctx, old); err != nil {
				t.Fatal(err)
			}
			before := f.String()
			a := New(Config{Conn: f}) // a restarted agent: no previous state
			rs := tinyRuleset(t, "wl1", "wl2")
			f.fail[kind] = boom
			if err := a.Apply(ctx, rs); !errors.Is(err, boom) {
				t.Fatalf("Apply with %s failing: err %v, want boom", kind, err)
			}
			if diff := cmp.Diff(before, f.String()); diff != "" {
				t.Errorf("a failed Apply changed the state (-before +after):\n%s", diff)
			}
			if err := a.Apply(ctx, rs); err != nil {
				t.Fatalf("Apply after the failure: %v", err)
			}
			if !strings.Contains(f.String(), `"`+rs.Version+`"`) {
				t.Errorf("not recovered:\n%s", f)
			}
		})
	}

	// An incremental transaction that fails leaves the state unknown: the
	// same Apply replaces the table.
	t.Run("incremental flush", func(t *testing.T) {
		ctx := context.Background()
		f := newFakeConn()
		a := New(Config{Conn: f})
		if err := a.Apply(ctx, tinyRuleset(t, "wl1")); err != nil {
			t.Fatal(err)
		}
		rs := tinyRuleset(t, "wl1", "wl2")
		f.fail["flush"] = boom
		writes, replaces := f.writes, f.replaces
		if err := a.Apply(ctx, rs); err != nil {
			t.Fatalf("Apply with an incremental transaction failing: %v, want a replace instead", err)
		}
		if f.writes != writes+2 || f.replaces != replaces+1 {
			t.Errorf("%d transactions, %d replaces; want 2, 1", f.writes-writes, f.replaces-replaces)
		}
		if !strings.Contains(f.String(), `"`+rs.Version+`"`) || !strings.Contains(f.String(), "set wl-ifaces elements 2") {
			t.Errorf("not recovered:\n%s", f)
		}
		// Both failing: the error, and the next Apply starts from the kernel.
		f.fail["flush"] = boom
		f.failTwice = true
		if err := a.Apply(ctx, tinyRuleset(t, "wl1")); !errors.Is(err, boom) {
			t.Fatalf("Apply with both transactions failing: err %v, want boom", err)
		}
		if !strings.Contains(f.String(), "set wl-ifaces elements 2") {
			t.Errorf("failed transactions changed the state:\n%s", f)
		}
		if err := a.Apply(ctx, tinyRuleset(t, "wl1")); err != nil || !strings.Contains(f.String(), "set wl-ifaces elements 1") {
			t.Errorf("Apply after both failed: %v\n%s", err, f)
		}
	})

	// A table deleted behind the Applier's back: the incremental
	// transaction fails (no table), the replace restores it.
	t.Run("table deleted", func(t *testing.T) {
		ctx := context.Background()
		f := newFakeConn()
		a := New(Config{Conn: f})
		if err := a.Apply(ctx, tinyRuleset(t, "wl1")); err != nil {
			t.Fatal(err)
		}
		f.DelTable(table())
		if err := f.Flush(); err != nil {
			t.Fatal(err)
		}
		rs := tinyRuleset(t, "wl1", "wl2")
		if err := a.Apply(ctx, rs); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if !strings.Contains(f.String(), `"`+rs.Version+`"`) {
			t.Errorf("not restored:\n%s", f)
		}
	})
}

// TestApplyBatches checks that no element message holds more than
// maxElementsPerMessage elements (a 16-bit netlink length).
func TestApplyBatches(t *testing.T) {
	set := loadSet(t, "world.yaml", "default-deny.yaml")
	var host HostInfo
	for i := range 3000 {
		host.Workloads = append(host.Workloads, Workload{Interface: fmt.Sprintf("wl%d", i),
			Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 50, byte(i >> 8), byte(i)})}})
	}
	rs, err := Compile(set, host, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeConn()
	if err := New(Config{Conn: f}).Apply(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range f.batches {
		if n > maxElementsPerMessage {
			t.Errorf("a message holds %d elements, want at most %d", n, maxElementsPerMessage)
		}
		total += n
	}
	if !strings.Contains(f.String(), "set wl-egress4 elements 3000") {
		t.Errorf("elements lost (%d sent):\n%s", total, f)
	}
}

// TestStatsFake sums the counters of the nft rules of one policy rule.
func TestStatsFake(t *testing.T) {
	f := newFakeConn()
	tb := table()
	f.AddTable(tb)
	ch := &nftables.Chain{Name: "np/prod/web/ingress", Table: tb}
	f.AddChain(ch)
	f.AddChain(&nftables.Chain{Name: "wl-in-x", Table: tb})
	rule := func(c *nftables.Chain, comment string, pkts, bytes uint64) {
		f.AddRule(&nftables.Rule{Table: tb, Chain: c, UserData: userdata.AppendString(nil, userdata.TypeComment, comment),
			Exprs: []expr.Any{&expr.Counter{Packets: pkts, Bytes: bytes}, &expr.Verdict{Kind: expr.VerdictAccept}}})
	}
	rule(ch, "NetworkPolicy prod/web ingress[10]", 1, 100)
	rule(ch, "NetworkPolicy prod/web ingress[2]", 2, 200)
	rule(ch, "NetworkPolicy prod/web ingress[2]", 3, 300)
	rule(&nftables.Chain{Name: "wl-in-x", Table: tb}, "end of tier default: deny", 9, 9)
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	got, err := New(Config{Conn: f}).Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []RuleStats{
		{Kind: "NetworkPolicy", Policy: "prod/web", Rule: "ingress[2]", Packets: 5, Bytes: 500},
		{Kind: "NetworkPolicy", Policy: "prod/web", Rule: "ingress[10]", Packets: 1, Bytes: 100},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}
