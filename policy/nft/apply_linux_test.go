package nft

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-net/weft/policy"
)

// TestApplyKernel applies compiled rulesets in a namespace: the kernel
// takes them, `nft` lists the same table as it makes from Ruleset.String
// (so the netlink encoding means what the text says), a second Apply sends
// nothing, a refused ruleset changes nothing, foreign tables survive, and
// Remove removes only weft's table.
func TestApplyKernel(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	for _, tt := range []struct {
		name  string
		files []string
		host  HostInfo
		opts  policy.Options
	}{
		{"default-deny", []string{"world.yaml", "default-deny.yaml"}, node1, policy.DefaultOptions(7946, 51820)},
		{"tiers", []string{"world.yaml", "tiers.yaml"}, node1, policy.Options{DefaultDenyWorkloads: true}},
		{"kubernetes", []string{"world.yaml", "kubernetes.yaml"}, node1, policy.Options{}},
		{"host", []string{"world.yaml", "host.yaml"}, node1, policy.Options{FailsafeInbound: []policy.Failsafe{
			{Protocol: policy.ProtoTCP, Port: 7946, Net: netip.MustParsePrefix("198.18.0.0/15")}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := Compile(loadSet(t, tt.files...), tt.host, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			ns, h := newNS(t, "apply")
			mustInNS(t, ns, "", "nft", "add", "table", "inet", "other")
			conn := &countingConn{Conn: nsConn(t, h)}
			a := New(Config{Conn: conn})
			if err := a.Apply(ctx, rs); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			got := mustInNS(t, ns, "", "nft", "list", "table", "inet", TableName)

			// The same text, loaded by nft itself in another namespace.
			ref, _ := newNS(t, "ref")
			mustInNS(t, ref, rs.String(), "nft", "-f", "-")
			want := mustInNS(t, ref, "", "nft", "list", "table", "inet", TableName)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("nft lists the applied table unlike the one nft loads from String (-nft +Apply):\n%s", diff)
			}

			if err := a.Apply(ctx, rs); err != nil {
				t.Fatalf("second Apply: %v", err)
			}
			if conn.flushes != 1 {
				t.Errorf("%d transactions for two Applies of one ruleset, want 1", conn.flushes)
			}

			// A ruleset the kernel refuses (a jump to no chain) changes nothing.
			bad := rs
			bad.Version = ""
			bad.Chains = append([]Chain{}, rs.Chains...)
			bad.Chains[0].Rules = append(append([]Rule{}, rs.Chains[0].Rules...), Rule{Verdict: Verdict{Kind: VerdictJump, Chain: "no-such-chain"}})
			if err := a.Apply(ctx, bad); err == nil {
				t.Errorf("Apply of a ruleset with a jump to no chain: no error")
			}
			if diff := cmp.Diff(got, mustInNS(t, ns, "", "nft", "list", "table", "inet", TableName)); diff != "" {
				t.Errorf("a refused Apply changed the table (-before +after):\n%s", diff)
			}

			stats, err := a.Stats(ctx)
			if err != nil {
				t.Fatalf("Stats: %v", err)
			}
			if len(stats) == 0 {
				t.Errorf("Stats: no rules")
			}
			for _, s := range stats {
				if s.Packets != 0 {
					t.Errorf("Stats: %+v, want no packets", s)
				}
			}

			if err := a.Remove(ctx); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			left := mustInNS(t, ns, "", "nft", "list", "tables")
			if diff := cmp.Diff("table inet other\n", left); diff != "" {
				t.Errorf("tables after Remove (-want +got):\n%s", diff)
			}
			if err := a.Remove(ctx); err != nil {
				t.Errorf("second Remove: %v", err)
			}
		})
	}
}

// TestApplyKernelLarge applies 10,000 workload endpoints and 100 policies:
// element lists are split into messages the kernel takes, the socket
// buffers hold the transaction, and the times are logged.
func TestApplyKernelLarge(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	const n = 10000
	set, host := bigSet(t, n, 100)
	start := time.Now()
	rs, err := Compile(set, host, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	compiled := time.Since(start)
	ns, h := newNS(t, "large")
	a := New(Config{Conn: nsConn(t, h)})
	start = time.Now()
	if err := a.Apply(ctx, rs); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	applied := time.Since(start)
	host.Workloads = host.Workloads[1:]
	rs2, err := Compile(set, host, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := a.Apply(ctx, rs2); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	incremental := time.Since(start)
	start = time.Now()
	if err := a.Replace(ctx, rs2); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	replaced := time.Since(start)
	start = time.Now()
	if err := a.Apply(ctx, rs2); err != nil {
		t.Fatalf("Apply unchanged: %v", err)
	}
	unchanged := time.Since(start)
	out := mustInNS(t, ns, "", "nft", "list", "map", "inet", TableName, mapWlEgress4)
	if got := strings.Count(out, "goto wl-out-"); got != n-1 {
		t.Errorf("map %s has %d elements going to endpoint chains, want %d", mapWlEgress4, got, n-1)
	}
	t.Logf("%d workload endpoints, 100 policies: %d chains, %d sets; compile %v, create %v, one endpoint removed %v, atomic replace %v, unchanged check %v",
		n, len(rs.Chains), len(rs.Sets), compiled, applied, incremental, replaced, unchanged)
}

// TestApplyKernelIncremental applies random sequences of rulesets (labels
// changed, endpoints gone and back, rules changed, interfaces gone) one
// delta at a time: after every step `nft` lists the table exactly as it
// lists a fresh load of the same ruleset's text (but for the order of its
// sets and chains, which nft lists in the order they were made), and only
// the first step replaced the table.
func TestApplyKernelIncremental(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			ns, h := newNS(t, "inc")
			ref, _ := newNS(t, "ref")
			conn := &countingConn{Conn: nsConn(t, h)}
			a := New(Config{Conn: conn})
			prev := ""
			randomSequence(t, seed, diffWorldN(8), 30, func(i int, c diffCase, _ *policy.Set, rs Ruleset) {
				flushes, replaces := conn.flushes, conn.replaces
				if err := a.Apply(ctx, rs); err != nil {
					t.Fatalf("step %d: Apply: %v\n%s", i, err, c.yaml)
				}
				want := 1
				if rs.Version == prev {
					want = 0
				}
				prev = rs.Version
				if conn.flushes != flushes+want {
					t.Errorf("step %d: %d transactions, want %d", i, conn.flushes-flushes, want)
				}
				if i > 0 && conn.replaces != replaces {
					t.Errorf("step %d: the table was replaced (%s)", i, c.yaml)
				}
				got := sortedListing(mustInNS(t, ns, "", "nft", "list", "table", "inet", TableName))
				mustInNS(t, ref, "table inet "+TableName+"\ndelete table inet "+TableName+"\n"+rs.String(), "nft", "-f", "-")
				fresh := sortedListing(mustInNS(t, ref, "", "nft", "list", "table", "inet", TableName))
				if diff := cmp.Diff(fresh, got); diff != "" {
					t.Fatalf("step %d: nft lists the incrementally updated table unlike a fresh load (-fresh +incremental):\n%s", i, diff)
				}
			})
		})
	}
}

// sortedListing returns the text of `nft list table` with its sets, maps
// and chains sorted by name.
func sortedListing(text string) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) < 2 {
		return text
	}
	var blocks []string
	var cur []string
	for _, l := range lines[1 : len(lines)-1] {
		if l == "" {
			continue
		}
		cur = append(cur, l)
		if l == "\t}" {
			blocks = append(blocks, strings.Join(cur, "\n"))
			cur = nil
		}
	}
	slices.Sort(blocks)
	return lines[0] + "\n" + strings.Join(blocks, "\n\n") + "\n" + lines[len(lines)-1] + "\n"
}
