package aws_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-net/weft/cloud"
	"github.com/weft-net/weft/cloud/aws/ec2emu"
)

// TestReconcile runs every live host's ReconcileRoutes for some rounds from
// a prepared VPC, then checks the managed tables, the first host's last
// report, and the write calls of the last round.
func TestReconcile(t *testing.T) {
	dead := ec2emu.Instance{ID: "i-0099", VPC: testVPC, Subnet: "subnet-a", ENI: "eni-0099", MAC: "02:00:00:00:00:99",
		PrivateIP: netip.MustParseAddr("10.0.1.99"), Tags: map[string]string{"weft:cluster": testCluster}}
	foreign := ec2emu.Instance{ID: "i-f00d", VPC: testVPC, Subnet: "subnet-a", ENI: "eni-f00d", MAC: "02:00:00:00:f0:0d",
		PrivateIP: netip.MustParseAddr("10.0.1.200"), Tags: map[string]string{"Name": "nat-appliance"}}
	addRoute := func(l *lab, table string, r ec2emu.Route) {
		rt, _ := l.emu.RouteTable(table)
		rt.Routes = append(rt.Routes, r)
		l.emu.AddRouteTable(rt)
	}
	inBoth := func(l *lab, r ec2emu.Route) {
		for _, s := range subnets {
			addRoute(l, s.table, r)
		}
	}
	tests := []struct {
		name   string
		opts   labOptions
		setup  func(*lab)
		rounds int
		// want: the managed tables after the rounds, n1's last report,
		// and the writes of the last round.
		wantTables     []string
		wantReport     []string
		wantLastWrites map[string]int
	}{{
		name:   "empty table",
		opts:   labOptions{hosts: 3},
		rounds: 2,
		wantTables: []string{
			"rtb-a 10.244.1.0/24 i-0001/eni-0001 active", "rtb-a 10.244.2.0/24 i-0002/eni-0002 active",
			"rtb-a 10.244.3.0/24 i-0003/eni-0003 active",
			"rtb-b 10.244.1.0/24 i-0001/eni-0001 active", "rtb-b 10.244.2.0/24 i-0002/eni-0002 active",
			"rtb-b 10.244.3.0/24 i-0003/eni-0003 active",
		},
		wantReport:     []string{"programmed 10.244.1.0/24 n1", "programmed 10.244.2.0/24 n2", "programmed 10.244.3.0/24 n3"},
		wantLastWrites: map[string]int{},
	}, {
		name: "foreign routes left alone",
		opts: labOptions{hosts: 2},
		setup: func(l *lab) {
			l.emu.AddInstance(foreign)
			addRoute(l, "rtb-a", ec2emu.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: "igw-1"})
			addRoute(l, "rtb-a", ec2emu.Route{Dst: netip.MustParsePrefix("172.16.0.0/16"), Instance: foreign.ID})
			// A foreign route holds n2's workload subnet: n2 must not take it.
			addRoute(l, "rtb-a", ec2emu.Route{Dst: workload(2), Instance: foreign.ID})
			// A blackhole to an instance EC2 forgot: without ClusterCIDR
			// nothing says it was weft's.
			addRoute(l, "rtb-b", ec2emu.Route{Dst: workload(50), Instance: "i-gone"})
		},
		rounds: 2,
		wantTables: []string{
			"rtb-a 0.0.0.0/0 igw-1 active", "rtb-a 10.244.1.0/24 i-0001/eni-0001 active",
			"rtb-a 10.244.2.0/24 i-f00d/eni-f00d active", "rtb-a 172.16.0.0/16 i-f00d/eni-f00d active",
			"rtb-b 10.244.1.0/24 i-0001/eni-0001 active", "rtb-b 10.244.2.0/24 i-0002/eni-0002 active",
			"rtb-b 10.244.50.0/24 i-gone/ blackhole",
		},
		wantReport:     []string{"fellback 10.244.2.0/24 n2 conflict rtb-a", "programmed 10.244.1.0/24 n1"},
		wantLastWrites: map[string]int{},
	}, {
		name: "stale routes removed",
		opts: labOptions{hosts: 2},
		setup: func(l *lab) {
			l.emu.AddInstance(dead)
			inBoth(l, ec2emu.Route{Dst: workload(99), Instance: dead.ID})
			l.emu.Terminate(dead.ID)
			// n1's route from before its subnet changed.
			inBoth(l, ec2emu.Route{Dst: workload(77), ENI: "eni-0001"})
		},
		rounds:         2,
		wantTables:     weftRoutes(hostN(1), hostN(2)),
		wantReport:     []string{"programmed 10.244.1.0/24 n1", "programmed 10.244.2.0/24 n2"},
		wantLastWrites: map[string]int{},
	}, {
		name: "route to a forgotten instance removed with cluster CIDR",
		opts: labOptions{hosts: 2, clusterCIDR: netip.MustParsePrefix("10.244.0.0/16")},
		setup: func(l *lab) {
			inBoth(l, ec2emu.Route{Dst: workload(98), Instance: "i-gone"})
			inBoth(l, ec2emu.Route{Dst: netip.MustParsePrefix("192.168.0.0/24"), Instance: "i-gone"})
		},
		rounds: 1,
		wantTables: append(weftRoutes(hostN(1), hostN(2)),
			"rtb-a 192.168.0.0/24 i-gone/ blackhole", "rtb-b 192.168.0.0/24 i-gone/ blackhole"),
		// One round: n1 went first, before n2 wrote its route.
		wantReport: []string{
			"fellback 10.244.2.0/24 n2 missing rtb-a", "programmed 10.244.1.0/24 n1",
			"removed rtb-a 10.244.98.0/24 i-gone", "removed rtb-b 10.244.98.0/24 i-gone",
		},
		wantLastWrites: map[string]int{"CreateRoute": 4, "DeleteRoute": 2, "ModifyInstanceAttribute": 2},
	}, {
		name:   "full table",
		opts:   labOptions{hosts: 4, routeLimit: 2},
		rounds: 2,
		wantTables: []string{
			"rtb-a 10.244.1.0/24 i-0001/eni-0001 active", "rtb-a 10.244.2.0/24 i-0002/eni-0002 active",
			"rtb-b 10.244.1.0/24 i-0001/eni-0001 active", "rtb-b 10.244.2.0/24 i-0002/eni-0002 active",
		},
		wantReport: []string{
			"fellback 10.244.3.0/24 n3 table-full rtb-a", "fellback 10.244.4.0/24 n4 table-full rtb-a",
			"programmed 10.244.1.0/24 n1", "programmed 10.244.2.0/24 n2",
		},
		// n3 and n4 try again in each table each round: the quota may have
		// been raised.
		wantLastWrites: map[string]int{"CreateRoute": 4},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t, tt.opts)
			if tt.setup != nil {
				tt.setup(l)
			}
			var reps = l.round()
			for i := 1; i < tt.rounds; i++ {
				l.emu.ResetCalls()
				reps = l.round()
			}
			got := l.tables()
			slices.Sort(got)
			slices.Sort(tt.wantTables)
			if diff := cmp.Diff(tt.wantTables, got); diff != "" {
				t.Errorf("tables (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantReport, summary(reps["n1"])); diff != "" {
				t.Errorf("n1's report (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantLastWrites, writes(l.emu.Calls())); diff != "" {
				t.Errorf("writes of the last round (-want +got):\n%s", diff)
			}
		})
	}
}

// hostN is enough of host n for weftRoutes.
func hostN(n int) *host {
	h := &host{n: n}
	h.inst.ID, h.inst.ENI = fmt.Sprintf("i-%04d", n), fmt.Sprintf("eni-%04d", n)
	return h
}

// TestReconcileTerminated terminates instances of a converged cluster: the
// route of each is removed from each table exactly once, by one host (the
// lowest running instance), even when other hosts still want it (their
// gossip has not seen the node leave) or run at the same time.
func TestReconcileTerminated(t *testing.T) {
	l := newLab(t, labOptions{hosts: 4})
	l.round()
	steps := []struct {
		terminate   string
		wantTables  []string
		wantRemoved map[string][]string // by node
	}{{
		terminate:  "i-0003",
		wantTables: weftRoutes(hostN(1), hostN(2), hostN(4)),
		wantRemoved: map[string][]string{
			"n1": {"removed rtb-a 10.244.3.0/24 i-0003", "removed rtb-b 10.244.3.0/24 i-0003"},
		},
	}, {
		// The sweeper itself goes: the next lowest takes over.
		terminate:  "i-0001",
		wantTables: weftRoutes(hostN(2), hostN(4)),
		wantRemoved: map[string][]string{
			"n2": {"removed rtb-a 10.244.1.0/24 i-0001", "removed rtb-b 10.244.1.0/24 i-0001"},
		},
	}}
	for _, s := range steps {
		t.Run("terminate "+s.terminate, func(t *testing.T) {
			stale := want(l.live()...) // what lagging gossip still shows
			l.emu.Terminate(s.terminate)
			l.emu.ResetCalls()
			var mu sync.Mutex
			removed := map[string][]string{}
			// The sweeper first still wants the dead route (its gossip
			// lags), so it must leave it; then all hosts reconcile at once.
			live := l.live()
			record := func(h *host, w []cloud.Route) {
				rep, err := h.prov.ReconcileRoutes(context.Background(), w)
				if err != nil {
					t.Errorf("%s: %v", h.node, err)
				}
				mu.Lock()
				defer mu.Unlock()
				for _, line := range summary(rep) {
					if strings.HasPrefix(line, "removed") {
						removed[h.node] = append(removed[h.node], line)
					}
				}
			}
			record(live[0], stale)
			var wg sync.WaitGroup
			for _, h := range live {
				wg.Go(func() { record(h, want(live...)) })
			}
			wg.Wait()
			got := l.tables()
			slices.Sort(got)
			slices.Sort(s.wantTables)
			if diff := cmp.Diff(s.wantTables, got); diff != "" {
				t.Errorf("tables (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(s.wantRemoved, removed); diff != "" {
				t.Errorf("removed by (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(map[string]int{"DeleteRoute": 2}, writes(l.emu.Calls())); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReconcileTableFullRecovers raises the quota of a full table: the
// routes that fell back go in, and every host then reports them in place.
func TestReconcileTableFullRecovers(t *testing.T) {
	l := newLab(t, labOptions{hosts: 3, routeLimit: 2})
	l.round()
	l.emu.SetRouteLimit(50)
	l.round()
	reps := l.round()
	want := []string{"programmed 10.244.1.0/24 n1", "programmed 10.244.2.0/24 n2", "programmed 10.244.3.0/24 n3"}
	for _, node := range []string{"n1", "n2", "n3"} {
		if diff := cmp.Diff(want, summary(reps[node])); diff != "" {
			t.Errorf("%s's report (-want +got):\n%s", node, diff)
		}
	}
}
