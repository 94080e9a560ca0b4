package aws

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/weft-net/weft/cloud"
)

// table is a VPC route table as one resync read it.
type table struct {
	id      string
	main    bool     // the VPC's main table
	subnets []string // explicitly associated subnets
	managed bool     // weft is told to manage it (tag or ID)
	routes  []route
}

// route is one route of a table.
type route struct {
	dst       netip.Prefix // invalid for IPv6 and prefix-list routes
	instance  string       // target instance, filled from the ENI when EC2 gives only that
	eni       string
	gateway   string // any other target: "local", igw-..., nat-..., pcx-..., tgw-...
	blackhole bool
	counted   bool // counts against the limit: not the local route, not propagated
}

// instance is one of the cluster's tagged instances, or an untagged one the
// orphan lookup found.
type instance struct {
	id, vpc, state string
	enis           []string
	weft           bool // tagged TagCluster=<cluster name>
	srcDstCheck    bool
}

// view is everything one resync read, and the planner's whole input besides
// the wanted routes.
type view struct {
	self        cloud.Instance
	tables      []table             // every table of self.VPC, sorted by id
	instances   map[string]instance // by ID
	orphans     map[string]bool     // instance IDs EC2 no longer lists at all
	limit       int
	clusterCIDR netip.Prefix
}

// owner is whose a route is, as far as weft can tell without memory.
type owner int

const (
	ownerForeign owner = iota // not weft's: never touched
	ownerSelf                 // weft's, to this host
	ownerLive                 // weft's, to another instance that is not terminated
	ownerDead                 // weft's, to a shutting-down or terminated instance
	ownerOrphan               // a blackhole into the cluster CIDR to an instance EC2 forgot
)

// target returns the instance a route points to ("" for gateways and
// unknown ENIs).
func (v *view) target(r route) string {
	if r.gateway != "" || r.instance != "" {
		return r.instance
	}
	for _, in := range v.instances {
		if slices.Contains(in.enis, r.eni) {
			return in.id
		}
	}
	return ""
}

func (v *view) ownerOf(r route) owner {
	if r.gateway != "" {
		return ownerForeign
	}
	id := v.target(r)
	if id == v.self.ID || (r.eni != "" && r.eni == v.self.ENI) {
		return ownerSelf
	}
	if in, ok := v.instances[id]; ok && in.weft {
		if in.state == "shutting-down" || in.state == "terminated" {
			return ownerDead
		}
		return ownerLive
	}
	if r.blackhole && v.orphans[id] && v.clusterCIDR.IsValid() &&
		v.clusterCIDR.Bits() <= r.dst.Bits() && v.clusterCIDR.Contains(r.dst.Addr()) {
		return ownerOrphan
	}
	return ownerForeign
}

// isSweeper reports whether this host deletes routes to terminated
// instances: it is the running, tagged instance of this VPC with the lowest
// ID. Every host computes this from the same describe call, so at most one
// host sweeps while the hosts' views agree, and a second sweeper during a
// change finds the route gone (InvalidRoute.NotFound, taken as done).
func (v *view) isSweeper() bool {
	self, ok := v.instances[v.self.ID]
	if !ok || !self.weft || self.state != "running" {
		return false
	}
	for _, in := range v.instances {
		if in.weft && in.state == "running" && in.vpc == v.self.VPC && in.id < self.id {
			return false
		}
	}
	return true
}

// isOwn reports whether w is one of this host's own routes.
func (v *view) isOwn(w cloud.Route) bool {
	return (w.Instance != "" && w.Instance == v.self.ID) || (w.ENI != "" && w.ENI == v.self.ENI)
}

// hits reports whether r points where w wants.
func hits(r route, w cloud.Route) bool {
	return (w.Instance != "" && r.instance == w.Instance) || (w.ENI != "" && r.eni == w.ENI)
}

func (t *table) find(dst netip.Prefix) (route, bool) {
	i := slices.IndexFunc(t.routes, func(r route) bool { return r.dst == dst })
	if i < 0 {
		return route{}, false
	}
	return t.routes[i], true
}

func (t *table) count() int {
	n := 0
	for _, r := range t.routes {
		if r.counted {
			n++
		}
	}
	return n
}

type op string

const (
	opCreate  op = "create"
	opReplace op = "replace"
	opDelete  op = "delete"
)

// action is one write. For creates and replaces route is the wanted route;
// for deletes it holds Dst and the old target.
type action struct {
	op    op
	table string
	route cloud.Route
	why   string // of a delete, for the report
}

// plan is the writes one resync makes: deletes first (they only remove
// routes nobody wants, so removing them opens no gap, and they make room in a
// full table), then creates and replaces of this host's own routes.
type plan struct {
	deletes []action
	puts    []action
	sweeper bool
}

// planActions is the pure step of a resync: what to write so that the
// managed tables hold this host's wanted routes and none of its stale ones,
// and, on the sweeper, none to terminated instances. want is validated.
func planActions(v *view, want []cloud.Route) plan {
	wanted := make(map[netip.Prefix]bool, len(want))
	var own []cloud.Route
	for _, w := range want {
		wanted[w.Dst] = true
		if v.isOwn(w) {
			own = append(own, w)
		}
	}
	slices.SortFunc(own, func(a, b cloud.Route) int { return a.Dst.Compare(b.Dst) })
	p := plan{sweeper: v.isSweeper()}
	for _, t := range v.tables {
		if !t.managed {
			continue
		}
		for _, w := range own {
			r, ok := t.find(w.Dst)
			switch {
			case !ok:
				p.puts = append(p.puts, action{op: opCreate, table: t.id, route: w})
			case hits(r, w):
			case v.ownerOf(r) != ownerForeign:
				p.puts = append(p.puts, action{op: opReplace, table: t.id, route: w})
			}
		}
		routes := slices.Clone(t.routes)
		slices.SortFunc(routes, func(a, b route) int { return a.dst.Compare(b.dst) })
		for _, r := range routes {
			if !r.dst.IsValid() || wanted[r.dst] {
				continue // a wanted Dst is its owner's to replace
			}
			old := cloud.Route{Dst: r.dst, Instance: v.target(r), ENI: r.eni}
			switch v.ownerOf(r) {
			case ownerSelf:
				p.deletes = append(p.deletes, action{op: opDelete, table: t.id, route: old, why: "no longer wanted by its host"})
			case ownerDead:
				if p.sweeper {
					p.deletes = append(p.deletes, action{op: opDelete, table: t.id, route: old,
						why: fmt.Sprintf("instance %s is %s", old.Instance, v.instances[old.Instance].state)})
				}
			case ownerOrphan:
				if p.sweeper {
					p.deletes = append(p.deletes, action{op: opDelete, table: t.id, route: old,
						why: fmt.Sprintf("instance %s no longer exists", old.Instance)})
				}
			}
		}
	}
	return p
}

// tableKey names one wanted route in one table.
type tableKey struct {
	table string
	dst   netip.Prefix
}

// report says, from what the tables hold after the writes, which wanted
// routes are in place. failed holds the own routes whose write failed with
// an error; full the tables where a create hit the route limit.
func report(v *view, want []cloud.Route, failed map[tableKey]cloud.Fallback, full map[string]bool) cloud.Report {
	rep := cloud.Report{Instance: v.self, Programmed: []cloud.Route{}, FellBack: []cloud.Fallback{}}
	local := v.localTable()
	var managed []*table
	for i := range v.tables {
		t := &v.tables[i]
		if !t.managed {
			continue
		}
		managed = append(managed, t)
		n := t.count()
		rep.Tables = append(rep.Tables, cloud.Table{ID: t.id, Routes: n, Full: n >= v.limit || full[t.id], Local: t == local})
	}
	for _, w := range want {
		var fb *cloud.Fallback
		switch {
		case v.isOwn(w) && len(managed) == 0:
			fb = &cloud.Fallback{Route: w, Reason: cloud.ReasonNoTable, Detail: fmt.Sprintf("no route table of %s is managed", v.self.VPC)}
		case v.isOwn(w):
			for _, t := range managed {
				if f, ok := failed[tableKey{t.id, w.Dst}]; ok {
					fb = &f
				} else {
					fb = v.check(t, w, full[t.id])
				}
				if fb != nil {
					break
				}
			}
		case local == nil || !local.managed:
			fb = &cloud.Fallback{Route: w, Reason: cloud.ReasonNoTable,
				Detail: fmt.Sprintf("the route table of %s is not managed by weft", v.self.Subnet)}
			if local != nil {
				fb.Table = local.id
			}
		default:
			fb = v.check(local, w, full[local.id])
		}
		if fb != nil {
			rep.FellBack = append(rep.FellBack, *fb)
		} else {
			rep.Programmed = append(rep.Programmed, w)
		}
	}
	rep.Sort()
	return rep
}

// check returns why table t does not carry w, or nil if it does.
func (v *view) check(t *table, w cloud.Route, full bool) *cloud.Fallback {
	fb := &cloud.Fallback{Route: w, Table: t.id}
	r, ok := t.find(w.Dst)
	switch {
	case !ok && (full || t.count() >= v.limit):
		fb.Reason, fb.Detail = cloud.ReasonTableFull, fmt.Sprintf("%s holds %d routes, its limit is %d", t.id, t.count(), v.limit)
	case !ok:
		fb.Reason, fb.Detail = cloud.ReasonMissing, fmt.Sprintf("%s has no route to %s yet", t.id, w.Dst)
	case hits(r, w) && r.blackhole:
		fb.Reason, fb.Detail = cloud.ReasonBlackhole, fmt.Sprintf("%s routes %s to %s, which is not running", t.id, w.Dst, cmp.Or(r.instance, r.eni))
	case hits(r, w):
		return nil
	case v.ownerOf(r) == ownerForeign:
		fb.Reason, fb.Detail = cloud.ReasonConflict, fmt.Sprintf("%s routes %s to %s, a route weft did not create", t.id, w.Dst, describeTarget(r))
	default:
		fb.Reason, fb.Detail = cloud.ReasonOtherTarget, fmt.Sprintf("%s routes %s to %s", t.id, w.Dst, describeTarget(r))
	}
	return fb
}

func describeTarget(r route) string {
	return cmp.Or(r.gateway, r.instance, r.eni, "nothing")
}

// localTable is the table that carries this host's packets: the one
// associated with its subnet, else the VPC's main table (nil if unknown).
func (v *view) localTable() *table {
	var main *table
	for i := range v.tables {
		t := &v.tables[i]
		if slices.Contains(t.subnets, v.self.Subnet) {
			return t
		}
		if t.main {
			main = t
		}
	}
	return main
}
