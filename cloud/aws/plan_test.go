package aws

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/weft-net/weft/cloud"
)

// TestPlanActions covers the pure planner: which writes one host makes from
// what it read, as "op table dst [why]" lines in order.
func TestPlanActions(t *testing.T) {
	p := netip.MustParsePrefix
	self := cloud.Instance{ID: "i-2", VPC: "vpc-1", Subnet: "subnet-a", ENI: "eni-2"}
	running := func(id string) instance {
		return instance{id: id, vpc: "vpc-1", state: "running", enis: []string{"eni-" + id[2:]}, weft: true}
	}
	withState := func(in instance, state string) instance { in.state = state; return in }
	mine := cloud.Route{Dst: p("10.244.2.0/24"), Node: "n2", Instance: "i-2", ENI: "eni-2"}
	peer := cloud.Route{Dst: p("10.244.3.0/24"), Node: "n3", Instance: "i-3", ENI: "eni-3"}
	tests := []struct {
		name      string
		instances []instance
		routes    []route // of the one managed table rtb-a
		orphans   []string
		cidr      netip.Prefix
		want      []cloud.Route
		wantPlan  []string
	}{{
		name:      "create own route, leave peers' to them",
		instances: []instance{running("i-2"), running("i-3")},
		want:      []cloud.Route{mine, peer},
		wantPlan:  []string{"create rtb-a 10.244.2.0/24"},
	}, {
		name:      "own route in place: nothing",
		instances: []instance{running("i-2")},
		routes:    []route{{dst: mine.Dst, eni: "eni-2", counted: true}},
		want:      []cloud.Route{mine},
	}, {
		name:      "own destination held by another weft instance: replace",
		instances: []instance{running("i-2"), running("i-3")},
		routes:    []route{{dst: mine.Dst, instance: "i-3", eni: "eni-3"}},
		want:      []cloud.Route{mine},
		wantPlan:  []string{"replace rtb-a 10.244.2.0/24"},
	}, {
		name:      "own destination held by a foreign instance or gateway: leave it",
		instances: []instance{running("i-2"), {id: "i-f", vpc: "vpc-1", state: "running"}},
		routes:    []route{{dst: mine.Dst, instance: "i-f"}, {dst: peer.Dst, gateway: "pcx-1"}},
		want:      []cloud.Route{mine, {Dst: peer.Dst, Node: "n2b", Instance: "i-2"}},
	}, {
		name:      "own stale route: the host deletes it, unless another node wants its destination",
		instances: []instance{running("i-2"), running("i-3")},
		routes: []route{
			{dst: p("10.244.20.0/24"), eni: "eni-2"},
			{dst: peer.Dst, instance: "i-2"},
		},
		want:     []cloud.Route{mine, peer},
		wantPlan: []string{"delete rtb-a 10.244.20.0/24 (no longer wanted by its host)", "create rtb-a 10.244.2.0/24"},
	}, {
		name:      "not the sweeper: dead routes stay",
		instances: []instance{running("i-1"), running("i-2"), withState(running("i-9"), "terminated")},
		routes:    []route{{dst: p("10.244.9.0/24"), instance: "i-9", blackhole: true}},
		want:      []cloud.Route{{Dst: mine.Dst, Node: "n2", Instance: "i-2"}},
		wantPlan:  []string{"create rtb-a 10.244.2.0/24"},
	}, {
		name: "sweeper: lower instances stopped or in another VPC do not count",
		instances: []instance{
			withState(running("i-1"), "stopped"), {id: "i-0", vpc: "vpc-other", state: "running", weft: true},
			running("i-2"), withState(running("i-8"), "shutting-down"), withState(running("i-9"), "terminated"),
		},
		routes: []route{
			{dst: p("10.244.8.0/24"), instance: "i-8", blackhole: true},
			{dst: p("10.244.9.0/24"), instance: "i-9", blackhole: true},
			{dst: p("10.244.10.0/24"), instance: "i-9", blackhole: true}, // wanted again: its new owner replaces it
		},
		want: []cloud.Route{mine, {Dst: p("10.244.10.0/24"), Node: "n10", Instance: "i-10"}},
		wantPlan: []string{
			"delete rtb-a 10.244.8.0/24 (instance i-8 is shutting-down)",
			"delete rtb-a 10.244.9.0/24 (instance i-9 is terminated)",
			"create rtb-a 10.244.2.0/24",
		},
	}, {
		name:      "sweeper: orphans only inside the cluster CIDR",
		instances: []instance{running("i-2")},
		routes: []route{
			{dst: p("10.244.7.0/24"), instance: "i-gone", blackhole: true},
			{dst: p("10.0.0.0/8"), instance: "i-gone", blackhole: true},
			{dst: p("10.244.6.0/24"), instance: "i-stopped-foreign", blackhole: true},
		},
		orphans:  []string{"i-gone"},
		cidr:     p("10.244.0.0/16"),
		want:     []cloud.Route{mine},
		wantPlan: []string{"delete rtb-a 10.244.7.0/24 (instance i-gone no longer exists)", "create rtb-a 10.244.2.0/24"},
	}, {
		name:      "sweeper: orphans stay without a cluster CIDR",
		instances: []instance{running("i-2")},
		routes:    []route{{dst: p("10.244.7.0/24"), instance: "i-gone", blackhole: true}},
		orphans:   []string{"i-gone"},
		want:      []cloud.Route{mine},
		wantPlan:  []string{"create rtb-a 10.244.2.0/24"},
	}, {
		name:      "untagged self is never the sweeper",
		instances: []instance{{id: "i-2", vpc: "vpc-1", state: "running"}, withState(running("i-9"), "terminated")},
		routes:    []route{{dst: p("10.244.9.0/24"), instance: "i-9", blackhole: true}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &view{self: self, instances: map[string]instance{}, orphans: map[string]bool{}, limit: 50, clusterCIDR: tt.cidr}
			for _, in := range tt.instances {
				v.instances[in.id] = in
			}
			for _, id := range tt.orphans {
				v.orphans[id] = true
			}
			v.tables = []table{
				{id: "rtb-a", managed: true, subnets: []string{"subnet-a"}, routes: tt.routes},
				{id: "rtb-main", main: true, routes: []route{{dst: p("10.244.2.0/24"), gateway: "local"}}},
			}
			pl := planActions(v, tt.want)
			var got []string
			for _, a := range append(pl.deletes, pl.puts...) {
				line := fmt.Sprintf("%s %s %s", a.op, a.table, a.route.Dst)
				if a.why != "" {
					line += " (" + a.why + ")"
				}
				got = append(got, line)
			}
			if diff := cmp.Diff(tt.wantPlan, got); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReport covers how the report judges each wanted route from the
// tables: peers by this host's subnet's table, its own by every managed one.
func TestReport(t *testing.T) {
	p := netip.MustParsePrefix
	self := cloud.Instance{ID: "i-1", VPC: "vpc-1", Subnet: "subnet-a", ENI: "eni-1"}
	mine := cloud.Route{Dst: p("10.244.1.0/24"), Node: "n1", Instance: "i-1", ENI: "eni-1"}
	peer := func(n int) cloud.Route {
		return cloud.Route{Dst: p(fmt.Sprintf("10.244.%d.0/24", n)), Node: fmt.Sprintf("n%d", n), Instance: fmt.Sprintf("i-%d", n)}
	}
	weft := map[string]instance{
		"i-1": {id: "i-1", state: "running", weft: true}, "i-2": {id: "i-2", state: "running", weft: true},
		"i-3": {id: "i-3", state: "stopped", weft: true}, "i-4": {id: "i-4", state: "running", weft: true},
	}
	tests := []struct {
		name   string
		tables []table
		full   map[string]bool
		want   []cloud.Route
		wantFB map[string]string // dst -> "reason table"
	}{{
		name: "peers judged by the local table only",
		tables: []table{
			{id: "rtb-a", managed: true, subnets: []string{"subnet-a"}, routes: []route{
				{dst: mine.Dst, eni: "eni-1", counted: true}, {dst: p("10.244.2.0/24"), instance: "i-2", counted: true},
				{dst: p("10.244.3.0/24"), instance: "i-3", blackhole: true, counted: true},
				{dst: p("10.244.5.0/24"), instance: "i-4", counted: true},
				{dst: p("10.244.6.0/24"), gateway: "tgw-1", counted: true},
			}},
			{id: "rtb-b", managed: true, subnets: []string{"subnet-b"}, routes: []route{{dst: mine.Dst, eni: "eni-1", counted: true}}},
		},
		want: []cloud.Route{mine, peer(2), peer(3), peer(4), peer(5), peer(6)},
		wantFB: map[string]string{
			"10.244.3.0/24": "blackhole rtb-a", "10.244.4.0/24": "missing rtb-a",
			"10.244.5.0/24": "other-target rtb-a", "10.244.6.0/24": "conflict rtb-a",
		},
	}, {
		name: "own route missing from a full table",
		tables: []table{
			{id: "rtb-a", managed: true, main: true, routes: []route{{dst: mine.Dst, eni: "eni-1", counted: true}}},
			{id: "rtb-b", managed: true, routes: []route{{dst: p("10.244.2.0/24"), instance: "i-2", counted: true}}},
		},
		full:   map[string]bool{"rtb-b": true},
		want:   []cloud.Route{mine, peer(2)},
		wantFB: map[string]string{"10.244.1.0/24": "table-full rtb-b", "10.244.2.0/24": "missing rtb-a"},
	}, {
		name: "local table not managed",
		tables: []table{
			{id: "rtb-a", subnets: []string{"subnet-a"}},
			{id: "rtb-b", managed: true, routes: []route{{dst: mine.Dst, eni: "eni-1", counted: true}}},
		},
		want:   []cloud.Route{mine, peer(2)},
		wantFB: map[string]string{"10.244.2.0/24": "no-table rtb-a"},
	}, {
		name:   "no managed table",
		tables: []table{{id: "rtb-a", main: true}},
		want:   []cloud.Route{mine},
		wantFB: map[string]string{"10.244.1.0/24": "no-table "},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &view{self: self, tables: tt.tables, instances: weft, limit: 50}
			rep := report(v, tt.want, nil, tt.full)
			got := map[string]string{}
			for _, f := range rep.FellBack {
				got[f.Dst.String()] = string(f.Reason) + " " + f.Table
			}
			if diff := cmp.Diff(tt.wantFB, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("fallbacks (-want +got):\n%s", diff)
			}
			if n := len(rep.Programmed) + len(rep.FellBack); n != len(tt.want) {
				t.Errorf("%d routes reported, want %d", n, len(tt.want))
			}
		})
	}
}
