package aws_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestCallsPerResync measures the API calls each host makes per resync at 10
// and 100 peers (two managed tables): while converging from empty tables,
// and at steady state. Steady state must be O(1): one DescribeRouteTables and
// one DescribeInstances per host, and no writes, whatever the peer count.
// With the default quota of 50 routes per table and 100 hosts, the hosts
// whose routes do not fit try one create per table per resync (the quota may
// have been raised) and fall back to the overlay. The numbers go to the test
// log (go test -v -run CallsPerResync).
func TestCallsPerResync(t *testing.T) {
	tests := []struct {
		hosts, limit int
		// wantSteady counts the calls of all hosts in one steady round;
		// wantHostsByCalls counts hosts by the calls their resync made.
		wantSteady       map[string]int
		wantHostsByCalls map[int]int
	}{{
		hosts: 10, limit: 1000,
		wantSteady:       map[string]int{"DescribeRouteTables": 10, "DescribeInstances": 10},
		wantHostsByCalls: map[int]int{2: 10},
	}, {
		hosts: 100, limit: 1000,
		wantSteady:       map[string]int{"DescribeRouteTables": 100, "DescribeInstances": 100},
		wantHostsByCalls: map[int]int{2: 100},
	}, {
		// 50 hosts do not fit: each tries one create per table per resync.
		hosts: 100, limit: 50,
		wantSteady:       map[string]int{"DescribeRouteTables": 100, "DescribeInstances": 100, "CreateRoute": 100},
		wantHostsByCalls: map[int]int{2: 50, 4: 50},
	}}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d hosts limit %d", tt.hosts, tt.limit), func(t *testing.T) {
			if testing.Short() && tt.hosts > 10 {
				t.Skip("100 hosts take seconds (a minute with -race); run without -short")
			}
			l := newLab(t, labOptions{hosts: tt.hosts, routeLimit: tt.limit})
			first := l.round()
			converge := apiCalls(l.emu.Calls())
			l.emu.ResetCalls()
			reps := l.round()
			steady := apiCalls(l.emu.Calls())
			byCalls := map[int]int{}
			for _, rep := range reps {
				byCalls[rep.Calls]++
			}
			t.Logf("%d hosts, route limit %d, 2 managed tables: first resync of all hosts: %v (the last host's: %d calls); "+
				"steady resync of all hosts: %v; hosts by calls per steady resync: %v",
				tt.hosts, tt.limit, converge, first[fmt.Sprintf("n%d", tt.hosts)].Calls, steady, byCalls)
			if diff := cmp.Diff(tt.wantSteady, steady); diff != "" {
				t.Errorf("steady calls of all hosts (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantHostsByCalls, byCalls); diff != "" {
				t.Errorf("hosts by calls per steady resync (-want +got):\n%s", diff)
			}
		})
	}
}

// apiCalls drops the IMDS requests from an emulator's call counts.
func apiCalls(calls map[string]int) map[string]int {
	delete(calls, "IMDS GET")
	delete(calls, "IMDS PUT")
	return calls
}

// BenchmarkResync measures one steady-state resync of one host, reporting
// API calls per resync (calls/op) next to the time, which is mostly the
// emulator's and the SDK's.
func BenchmarkResync(b *testing.B) {
	for _, hosts := range []int{10, 100} {
		b.Run(fmt.Sprintf("peers=%d", hosts), func(b *testing.B) {
			l := newLab(b, labOptions{hosts: hosts, routeLimit: 1000})
			l.round()
			h := l.hosts[0]
			w := want(l.hosts...)
			calls := 0
			for b.Loop() {
				rep, err := h.prov.ReconcileRoutes(context.Background(), w)
				if err != nil {
					b.Fatal(err)
				}
				calls += rep.Calls
			}
			b.ReportMetric(float64(calls)/float64(b.N), "calls/op")
		})
	}
}

// BenchmarkJoin measures the time from a host joining (building its
// Provider) until its own route is in every managed table: New, discovery
// through IMDSv2, one resync. Each iteration adds one more host to a VPC that
// starts with the given number of peers; the agent's resync period, not
// measured here, adds to this in practice.
func BenchmarkJoin(b *testing.B) {
	for _, peers := range []int{10, 100} {
		b.Run(fmt.Sprintf("peers=%d", peers), func(b *testing.B) {
			l := newLab(b, labOptions{hosts: peers, routeLimit: 1000})
			l.round()
			o := labOptions{routeLimit: 1000}
			n := peers
			for b.Loop() {
				n++
				h := l.addHost(n, o)
				rep, err := h.prov.ReconcileRoutes(context.Background(), want(l.hosts...))
				if err != nil || !rep.IsProgrammed(h.route().Dst) {
					b.Fatalf("host %d: route not in place: %v %v", n, err, rep.FellBack)
				}
			}
		})
	}
}
