package masq

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
)

var (
	cluster16 = netip.MustParsePrefix("10.244.0.0/16")
	cluster8  = netip.MustParsePrefix("10.0.0.0/8")
	errBoom   = errors.New("boom")
)

// Renderings of the fake kernel used as wants.
const (
	foreignText = `table ip other flags 0
  chain postrouting type nat hook 4 priority 100
    rule "" exprs 0
table inet weft-nat flags 0
  chain postrouting type nat hook 4 priority 100`
	weft16Text = `table ip weft-nat flags 0
  chain cluster-masq type nat hook 4 priority 100
    rule "weft masquerade v1 cluster 10.244.0.0/16" exprs 11`
	weft8Text = `table ip weft-nat flags 0
  chain cluster-masq type nat hook 4 priority 100
    rule "weft masquerade v1 cluster 10.0.0.0/8" exprs 11`
)

// addForeign adds tables that are not weft's: ip other, and an inet table
// that has weft's name in another family.
func addForeign(f *fakeConn) {
	for _, t := range []*nftables.Table{
		{Name: "other", Family: nftables.TableFamilyIPv4},
		{Name: TableName, Family: nftables.TableFamilyINet},
	} {
		f.AddTable(t)
		c := f.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
		if t.Name == "other" {
			f.AddRule(&nftables.Rule{Table: t, Chain: c})
		}
	}
	mustFlush(f)
}

func mustFlush(f *fakeConn) {
	if err := f.Flush(); err != nil {
		panic(err) // setup of the fake; cannot fail
	}
}

// applied applies p with a fresh Applier, as a previous agent run would.
func applied(p netip.Prefix) func(*fakeConn) {
	return func(f *fakeConn) {
		if err := New(Config{Conn: f}).Apply(context.Background(), p); err != nil {
			panic(err)
		}
	}
}

// mutated applies cluster16, then changes weft's table with fn.
func mutated(fn func(t *fakeTable)) func(*fakeConn) {
	return func(f *fakeConn) {
		applied(cluster16)(f)
		fn(findTable(f.tables, TableName, nftables.TableFamilyIPv4))
	}
}

func withComment(s string) []byte { return userdata.AppendString(nil, userdata.TypeComment, s) }

// cases shared by TestApply and TestCheck: the state before, and the
// reason Check gives for cluster16.
var stateCases = []struct {
	name   string
	setup  func(*fakeConn)
	reason string
}{
	{"empty", func(*fakeConn) {}, "table ip weft-nat missing"},
	{"applied", applied(cluster16), ""},
	{"other prefix", applied(cluster8),
		`rule comment "weft masquerade v1 cluster 10.0.0.0/8", want "weft masquerade v1 cluster 10.244.0.0/16"`},
	{"old rule version", mutated(func(t *fakeTable) {
		r := *t.chains[0].rules[0]
		r.UserData = withComment("weft masquerade v0 cluster 10.244.0.0/16")
		t.chains[0].rules[0] = &r
	}), `rule comment "weft masquerade v0 cluster 10.244.0.0/16", want "weft masquerade v1 cluster 10.244.0.0/16"`},
	{"rule without comment", mutated(func(t *fakeTable) {
		t.chains[0].rules[0] = &nftables.Rule{}
	}), `rule comment "", want "weft masquerade v1 cluster 10.244.0.0/16"`},
	{"extra rule", mutated(func(t *fakeTable) {
		t.chains[0].rules = append(t.chains[0].rules, &nftables.Rule{})
	}), "chain cluster-masq has 2 rules, want 1"},
	{"no rule", mutated(func(t *fakeTable) { t.chains[0].rules = nil }), "chain cluster-masq has 0 rules, want 1"},
	{"extra chain", mutated(func(t *fakeTable) {
		t.chains = append(t.chains, &fakeChain{c: nftables.Chain{Name: "junk"}})
	}), `chains ["cluster-masq" "junk"], want ["cluster-masq"]`},
	{"no chain", mutated(func(t *fakeTable) { t.chains = nil }), `chains [], want ["cluster-masq"]`},
	{"wrong priority", mutated(func(t *fakeTable) {
		t.chains[0].c.Priority = nftables.ChainPriorityRef(-100)
	}), "chain cluster-masq priority -100, want 100"},
	{"wrong hook", mutated(func(t *fakeTable) {
		t.chains[0].c.Hooknum = nftables.ChainHookPrerouting
	}), "chain cluster-masq hook 0, want 4"},
	{"filter chain", mutated(func(t *fakeTable) { t.chains[0].c.Type = nftables.ChainTypeFilter }),
		`chain cluster-masq type "filter", want "nat"`},
	{"drop policy", mutated(func(t *fakeTable) {
		drop := nftables.ChainPolicyDrop
		t.chains[0].c.Policy = &drop
	}), "chain cluster-masq policy 0, want accept"},
	{"dormant", mutated(func(t *fakeTable) { t.t.Flags = 1 }), "table ip weft-nat dormant"},
}

func TestApply(t *testing.T) {
	for _, tt := range stateCases {
		for _, p := range []netip.Prefix{cluster16, {}} {
			t.Run(tt.name+"/"+p.String(), func(t *testing.T) {
				f := newFakeConn()
				addForeign(f)
				tt.setup(f)
				f.writes = 0
				a := New(Config{Conn: f})
				if err := a.Apply(context.Background(), p); err != nil {
					t.Fatalf("Apply(%s): %v", p, err)
				}
				want := foreignText
				if p.IsValid() {
					want = foreignText + "\n" + weft16Text
				}
				if diff := cmp.Diff(want, f.String()); diff != "" {
					t.Errorf("kernel after Apply(%s) (-want +got):\n%s", p, diff)
				}
				// One transaction when something differed, none when not.
				unchanged := (p.IsValid() && tt.reason == "") || (!p.IsValid() && tt.name == "empty")
				if got, want := f.writes, map[bool]int{true: 0, false: 1}[unchanged]; got != want {
					t.Errorf("Apply(%s) made %d transactions, want %d", p, got, want)
				}
				f.writes = 0
				if err := a.Apply(context.Background(), p); err != nil {
					t.Fatalf("second Apply(%s): %v", p, err)
				}
				if f.writes != 0 {
					t.Errorf("second Apply(%s) made %d transactions, want 0", p, f.writes)
				}
			})
		}
	}
}

func TestCheck(t *testing.T) {
	for _, tt := range stateCases {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeConn()
			addForeign(f)
			tt.setup(f)
			f.writes = 0
			ok, reason, err := New(Config{Conn: f}).Check(context.Background(), cluster16)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if diff := cmp.Diff(tt.reason, reason); diff != "" {
				t.Errorf("Check reason (-want +got):\n%s", diff)
			}
			if ok != (tt.reason == "") {
				t.Errorf("Check = %v with reason %q", ok, reason)
			}
			if f.writes != 0 {
				t.Errorf("Check made %d transactions, want 0", f.writes)
			}
		})
	}
}

func TestCheckOff(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(*fakeConn)
		reason string
	}{
		{"no table", func(*fakeConn) {}, ""},
		{"table", applied(cluster16), "masquerade off but table ip weft-nat present"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeConn()
			tt.setup(f)
			_, reason, err := New(Config{Conn: f}).Check(context.Background(), netip.Prefix{})
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if diff := cmp.Diff(tt.reason, reason); diff != "" {
				t.Errorf("Check reason (-want +got):\n%s", diff)
			}
		})
	}
}

// TestApplyFailure injects a failure into each kernel call: Apply returns it
// wrapped, the kernel keeps its state, and the next Apply recovers.
func TestApplyFailure(t *testing.T) {
	tests := []struct {
		name    string
		before  netip.Prefix // applied first
		apply   netip.Prefix
		fail    string
		wantErr string
		want    string // kernel after the failed Apply
	}{
		{"list table", cluster8, cluster16, "list table", "list table ip weft-nat: boom", weft8Text},
		{"list chains", cluster8, cluster16, "list chains", "list chains of family ip: boom", weft8Text},
		{"get rules", cluster8, cluster16, "get rules", "list rules of chain ip weft-nat cluster-masq: boom", weft8Text},
		{"flush replace", cluster8, cluster16, "flush", "replace table ip weft-nat for cluster 10.244.0.0/16: boom", weft8Text},
		{"flush create", netip.Prefix{}, cluster16, "flush", "replace table ip weft-nat for cluster 10.244.0.0/16: boom", ""},
		{"flush delete", cluster8, netip.Prefix{}, "flush", "delete table ip weft-nat: boom", weft8Text},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeConn()
			a := New(Config{Conn: f})
			if err := a.Apply(context.Background(), tt.before); err != nil {
				t.Fatalf("Apply(%s): %v", tt.before, err)
			}
			f.fail[tt.fail] = errBoom
			err := a.Apply(context.Background(), tt.apply)
			if !errors.Is(err, errBoom) || err.Error() != tt.wantErr {
				t.Errorf("Apply(%s) = %v, want %q wrapping boom", tt.apply, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, f.String()); diff != "" {
				t.Errorf("kernel after failed Apply (-want +got):\n%s", diff)
			}
			if err := a.Apply(context.Background(), tt.apply); err != nil {
				t.Fatalf("Apply(%s) after failure: %v", tt.apply, err)
			}
			if ok, reason, err := a.Check(context.Background(), tt.apply); !ok || err != nil {
				t.Errorf("Check after recovery = %v, %q, %v", ok, reason, err)
			}
		})
	}
}

func TestRemove(t *testing.T) {
	tests := []struct {
		name       string
		setup      func(*fakeConn)
		wantWrites int
	}{
		{"present", applied(cluster16), 1},
		{"absent", func(*fakeConn) {}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeConn()
			addForeign(f)
			tt.setup(f)
			f.writes = 0
			if err := New(Config{Conn: f}).Remove(context.Background()); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			if diff := cmp.Diff(foreignText, f.String()); diff != "" {
				t.Errorf("kernel after Remove (-want +got):\n%s", diff)
			}
			if f.writes != tt.wantWrites {
				t.Errorf("Remove made %d transactions, want %d", f.writes, tt.wantWrites)
			}
		})
	}
}

func TestApplyValidation(t *testing.T) {
	tests := []struct {
		name    string
		cluster netip.Prefix
		wantErr string
	}{
		{"ipv6", netip.MustParsePrefix("fd00:10::/64"), "cluster fd00:10::/64: masquerade supports IPv4 prefixes only"},
		{"ipv4 mapped", netip.MustParsePrefix("::ffff:10.244.0.0/112"), "cluster ::ffff:10.244.0.0/112: masquerade supports IPv4 prefixes only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeConn()
			f.fail["list table"] = errBoom // any kernel call would show
			a := New(Config{Conn: f})
			err := a.Apply(context.Background(), tt.cluster)
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("Apply = %v, want %q", err, tt.wantErr)
			}
			if _, _, err := a.Check(context.Background(), tt.cluster); err == nil || err.Error() != tt.wantErr {
				t.Errorf("Check = %v, want %q", err, tt.wantErr)
			}
			if f.fail["list table"] == nil {
				t.Errorf("validation error reached the kernel")
			}
		})
	}
}

// TestApplyMasks checks that an unmasked prefix is applied masked and that
// applying it again is a no-op.
func TestApplyMasks(t *testing.T) {
	f := newFakeConn()
	a := New(Config{Conn: f})
	p := netip.MustParsePrefix("10.244.3.7/16")
	for i := range 2 {
		if err := a.Apply(context.Background(), p); err != nil {
			t.Fatalf("Apply %d: %v", i, err)
		}
	}
	if diff := cmp.Diff(weft16Text, f.String()); diff != "" {
		t.Errorf("kernel (-want +got):\n%s", diff)
	}
	if f.writes != 1 {
		t.Errorf("two Applies made %d transactions, want 1", f.writes)
	}
}

func TestCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f := newFakeConn()
	a := New(Config{Conn: f})
	for name, err := range map[string]error{
		"Apply":  a.Apply(ctx, cluster16),
		"Remove": a.Remove(ctx),
	} {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with canceled ctx = %v, want context.Canceled", name, err)
		}
	}
	if strings.TrimSpace(f.String()) != "" || f.writes != 0 {
		t.Errorf("canceled calls changed the kernel: %q", f.String())
	}
}

func TestIsDormant(t *testing.T) {
	tests := []struct {
		flags uint32
		want  bool
	}{
		{0, false},
		{1, true},       // NFT_TABLE_F_DORMANT, decoded in the right order
		{1 << 24, true}, // the same, as google/nftables v0.3.0 decodes it on little endian
		{2, false},      // NFT_TABLE_F_OWNER
		{2 << 24, false},
		{3, true},
	}
	for _, tt := range tests {
		if got := isDormant(tt.flags); got != tt.want {
			t.Errorf("isDormant(%#x) = %v, want %v", tt.flags, got, tt.want)
		}
	}
}
