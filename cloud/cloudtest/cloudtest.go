// Package cloudtest is an in-memory cloud for tests of code that uses a
// cloud.Provider (planner, agent, status): one VPC with one route table
// shared by every host, a route limit, failures on demand. It models the
// contract, not EC2; cloud/aws/ec2emu emulates EC2 itself.
package cloudtest

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/weft-net/weft/cloud"
)

// VPC is one emulated VPC with one route table ("rtb-test") that every host
// uses. It is safe for concurrent use.
type VPC struct {
	mu     sync.Mutex
	limit  int
	routes map[netip.Prefix]cloud.Route
	gone   map[string]bool // terminated instance IDs
	err    error
	calls  int
}

// TableID is the ID of the VPC's one route table.
const TableID = "rtb-test"

// NewVPC returns a VPC whose table holds at most limit routes (0: no limit).
func NewVPC(limit int) *VPC {
	return &VPC{limit: limit, routes: map[netip.Prefix]cloud.Route{}, gone: map[string]bool{}}
}

// Host returns the Provider of the host running as inst in this VPC. It
// matches routes by Instance only (their ENI is ignored), so wanted routes
// must carry Instance.
func (v *VPC) Host(inst cloud.Instance) cloud.Provider { return &host{vpc: v, inst: inst} }

// SetLimit changes the route limit (0: none); routes already in stay.
func (v *VPC) SetLimit(n int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.limit = n
}

// Fail makes every call fail with err (nil: work again), as refused
// credentials (wrap cloud.ErrAuth) or an outage would.
func (v *VPC) Fail(err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.err = err
}

// Terminate removes an instance: its routes go at once, as if the sweeper
// had run.
func (v *VPC) Terminate(instanceID string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.gone[instanceID] = true
	for dst, r := range v.routes {
		if r.Instance == instanceID {
			delete(v.routes, dst)
		}
	}
}

// Routes returns the table's routes sorted by Dst.
func (v *VPC) Routes() []cloud.Route {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]cloud.Route, 0, len(v.routes))
	for _, r := range v.routes {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b cloud.Route) int { return a.Dst.Compare(b.Dst) })
	return out
}

// Calls returns how many Provider calls all hosts made.
func (v *VPC) Calls() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.calls
}

type host struct {
	vpc  *VPC
	inst cloud.Instance
}

var _ cloud.Provider = (*host)(nil)

func (h *host) Discover(context.Context) (cloud.Instance, error) {
	h.vpc.mu.Lock()
	defer h.vpc.mu.Unlock()
	h.vpc.calls++
	return h.inst, nil
}

func (h *host) DisableSourceDestCheck(context.Context) error {
	h.vpc.mu.Lock()
	defer h.vpc.mu.Unlock()
	h.vpc.calls++
	return h.vpc.err
}

// ReconcileRoutes writes this host's routes that fit, deletes its own that
// are no longer wanted, and reports on want as cloud.Provider says.
func (h *host) ReconcileRoutes(_ context.Context, want []cloud.Route) (cloud.Report, error) {
	if err := cloud.ValidateRoutes(want); err != nil {
		return cloud.AllFellBack(h.inst, want, cloud.ReasonError, err.Error()), err
	}
	v := h.vpc
	v.mu.Lock()
	defer v.mu.Unlock()
	v.calls++
	if v.err != nil {
		return cloud.AllFellBack(h.inst, want, cloud.ReasonError, v.err.Error()), v.err
	}
	if v.gone[h.inst.ID] {
		err := fmt.Errorf("instance %s is terminated", h.inst.ID)
		return cloud.AllFellBack(h.inst, want, cloud.ReasonError, err.Error()), err
	}
	own := func(r cloud.Route) bool { return r.Instance == h.inst.ID }
	wanted := map[netip.Prefix]bool{}
	for _, w := range want {
		wanted[w.Dst] = true
	}
	for dst, r := range v.routes {
		if own(r) && !wanted[dst] {
			delete(v.routes, dst)
		}
	}
	for _, w := range want {
		if _, ok := v.routes[w.Dst]; own(w) && !ok && (v.limit == 0 || len(v.routes) < v.limit) {
			v.routes[w.Dst] = w
		}
	}
	rep := cloud.Report{Instance: h.inst, Calls: 1, Programmed: []cloud.Route{}, FellBack: []cloud.Fallback{},
		Tables: []cloud.Table{{ID: TableID, Routes: len(v.routes), Full: v.limit > 0 && len(v.routes) >= v.limit, Local: true}}}
	for _, w := range want {
		r, ok := v.routes[w.Dst]
		switch {
		case ok && r.Instance == w.Instance:
			rep.Programmed = append(rep.Programmed, w)
		case ok:
			rep.FellBack = append(rep.FellBack, cloud.Fallback{Route: w, Table: TableID, Reason: cloud.ReasonOtherTarget})
		case rep.Tables[0].Full:
			rep.FellBack = append(rep.FellBack, cloud.Fallback{Route: w, Table: TableID, Reason: cloud.ReasonTableFull})
		default:
			rep.FellBack = append(rep.FellBack, cloud.Fallback{Route: w, Table: TableID, Reason: cloud.ReasonMissing})
		}
	}
	rep.Sort()
	return rep, nil
}
