// Package cloud is the seam between weft and a cloud's network: it finds out
// where this host runs, keeps the cloud's route tables holding "peer workload
// subnet -> peer instance" for the peers in the same VPC, so that they talk
// without encapsulation, and turns off the source/destination check that
// would drop forwarded packets.
//
// Data flow: the agent calls [Provider.Discover] once to fill the node's
// location; on every plan change and periodic resync it hands the planner's
// wanted routes (one per workload subnet of every node in this VPC, this
// host's own included) to [Provider.ReconcileRoutes]. The provider writes only
// this host's own routes, reads the others back, and returns a [Report]: the
// planner uses native routing for a peer only while [Report.IsProgrammed]
// says its route is in place, and keeps the peer on the overlay otherwise.
// `weft cloud status` prints the Report. An implementation lives in a
// sub-package per cloud (cloud/aws).
package cloud

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Provider is one cloud's network as weft uses it. Every method blocks until
// the cloud has answered (or ctx ends), is safe for concurrent use, and is
// idempotent.
type Provider interface {
	// Discover reports the instance this host runs on. It reads only this
	// host's metadata service (no API calls, no credentials needed).
	Discover(ctx context.Context) (Instance, error)
	// ReconcileRoutes makes the cloud's managed route tables hold this
	// host's wanted routes and reports on all of want.
	//
	// want is every route weft wants in this VPC: one per workload subnet
	// of every node in it, this host's own included; at most one per Dst.
	// The provider writes only the routes whose target is this host's
	// instance (no leader), never touches a route weft did not create, and
	// deletes this host's own routes whose Dst no longer appears in want:
	// so want must be complete (pass it only after the first complete
	// plan). Routes to terminated instances are deleted by one host at a
	// time without a leader; which one is the provider's concern.
	//
	// The Report is valid even with an error: then everything it could not
	// verify is in FellBack, so the caller keeps running on the overlay.
	// The caller keeps want; the Report's slices are the caller's.
	ReconcileRoutes(ctx context.Context, want []Route) (Report, error)
	// DisableSourceDestCheck turns off the source/destination check of this
	// host's instance, without which the cloud drops packets that are
	// neither from nor to the instance's own address (all forwarded
	// workload traffic).
	DisableSourceDestCheck(ctx context.Context) error
}

// ErrAuth is wrapped by errors of calls the cloud refused for the
// credentials used: unknown, wrong, expired, or lacking a permission. Check
// with errors.Is; retrying does not help until an operator fixes them.
var ErrAuth = errors.New("cloud API rejected the credentials")

// Instance is the cloud's view of one host: what Discover finds. The planner
// fills the node's location (cloud, region, zone) from it when the config
// leaves them empty.
type Instance struct {
	Cloud      string       `json:"cloud"` // provider name, as in the config: "aws"
	ID         string       `json:"id"`    // instance ID, e.g. i-0abc...
	VPC        string       `json:"vpc"`
	Subnet     string       `json:"subnet"`
	SubnetCIDR netip.Prefix `json:"subnetCIDR"`
	Region     string       `json:"region"`
	Zone       string       `json:"zone"`
	ENI        string       `json:"eni"` // the primary network interface, e.g. eni-0abc...
	PrivateIP  netip.Addr   `json:"privateIP"`
}

// Route is one wanted cloud route: Dst, a node's workload subnet, via that
// node's instance. At least one of Instance and ENI is set; when both are,
// ENI is written (it also works for instances with several interfaces) and a
// route to either counts as in place.
type Route struct {
	Dst      netip.Prefix `json:"dst"`
	Node     string       `json:"node"`
	Instance string       `json:"instance,omitempty"`
	ENI      string       `json:"eni,omitempty"`
}

// Reason says why a wanted route is not in place; stable, for programs.
type Reason string

// Reasons a route fell back to the overlay.
const (
	// ReasonTableFull: the table reached its route limit (AWS: 50 by
	// default); the route waits for room.
	ReasonTableFull Reason = "table-full"
	// ReasonMissing: the table does not hold the route (yet); for a peer's
	// route, its own host writes it.
	ReasonMissing Reason = "missing"
	// ReasonBlackhole: the route is there but its target is stopped or gone.
	ReasonBlackhole Reason = "blackhole"
	// ReasonOtherTarget: the route points to another of weft's instances,
	// e.g. while a subnet moves between nodes.
	ReasonOtherTarget Reason = "other-target"
	// ReasonConflict: a route weft did not create holds Dst; weft leaves it.
	ReasonConflict Reason = "conflict"
	// ReasonNoTable: this host's subnet's route table is not one weft
	// manages, so no cloud route can carry its packets.
	ReasonNoTable Reason = "no-table"
	// ReasonError: a cloud call failed; Detail has the error.
	ReasonError Reason = "error"
)

// Fallback is a wanted route that is not in place, with the table that
// lacks it and why.
type Fallback struct {
	Route
	Table  string `json:"table,omitempty"`
	Reason Reason `json:"reason"`
	Detail string `json:"detail,omitempty"`
}

// Removed is a stale weft route this host deleted.
type Removed struct {
	Table  string       `json:"table"`
	Dst    netip.Prefix `json:"dst"`
	Target string       `json:"target"` // the instance or ENI it pointed to
	Why    string       `json:"why"`
}

// Table is one managed route table as the last reconcile saw it.
type Table struct {
	ID string `json:"id"`
	// Routes counts the routes that count against the limit (not the
	// VPC's local route).
	Routes int `json:"routes"`
	// Full reports whether the table is at its limit.
	Full bool `json:"full"`
	// Local reports whether it is this host's subnet's table, the one that
	// carries this host's packets.
	Local bool `json:"local"`
}

// Report is what ReconcileRoutes found and did. Every wanted route is in
// exactly one of Programmed and FellBack.
//
// A peer's route is programmed when this host's subnet's route table holds
// it, active, to the right target: then packets from this host to that peer's
// workloads go natively. This host's own route is programmed when every
// managed table holds it. Slices are sorted by Dst.
type Report struct {
	Instance   Instance   `json:"instance"`
	Tables     []Table    `json:"tables"`
	Programmed []Route    `json:"programmed"`
	FellBack   []Fallback `json:"fellBack"`
	Removed    []Removed  `json:"removed,omitempty"`
	// Sweeper reports whether this host was the one to delete routes to
	// terminated instances in this reconcile.
	Sweeper bool `json:"sweeper"`
	// Calls counts the cloud API calls this reconcile made, retries
	// included.
	Calls int `json:"calls"`
}

// IsProgrammed reports whether the wanted route to dst is in place, so that
// traffic to dst may leave without encapsulation.
func (r Report) IsProgrammed(dst netip.Prefix) bool {
	return slices.ContainsFunc(r.Programmed, func(p Route) bool { return p.Dst == dst })
}

// AllFellBack returns a Report in which every route of want fell back with
// reason and detail: what a reconcile that could not read the cloud returns.
func AllFellBack(inst Instance, want []Route, reason Reason, detail string) Report {
	rep := Report{Instance: inst, Programmed: []Route{}, FellBack: make([]Fallback, 0, len(want))}
	for _, w := range want {
		rep.FellBack = append(rep.FellBack, Fallback{Route: w, Reason: reason, Detail: detail})
	}
	rep.Sort()
	return rep
}

// Sort orders the Report's slices by Dst (then table), so that Reports
// compare and print stably.
func (r *Report) Sort() {
	slices.SortFunc(r.Programmed, func(a, b Route) int { return a.Dst.Compare(b.Dst) })
	slices.SortFunc(r.FellBack, func(a, b Fallback) int { return a.Dst.Compare(b.Dst) })
	slices.SortFunc(r.Removed, func(a, b Removed) int {
		if c := a.Dst.Compare(b.Dst); c != 0 {
			return c
		}
		return cmp.Compare(a.Table, b.Table)
	})
	slices.SortFunc(r.Tables, func(a, b Table) int { return cmp.Compare(a.ID, b.ID) })
}

// ValidateRoutes checks want as ReconcileRoutes takes it: every Dst a valid,
// masked IPv4 prefix, at most one route per Dst, and a target on each. The
// error names the field and the value.
func ValidateRoutes(want []Route) error {
	seen := make(map[netip.Prefix]bool, len(want))
	for i, w := range want {
		switch {
		case !w.Dst.IsValid() || !w.Dst.Addr().Is4():
			return fmt.Errorf("route %d (node %q): dst %q: not an IPv4 prefix", i, w.Node, w.Dst)
		case w.Dst != w.Dst.Masked():
			return fmt.Errorf("route %d (node %q): dst %s: host bits set", i, w.Node, w.Dst)
		case seen[w.Dst]:
			return fmt.Errorf("route %d (node %q): dst %s: wanted twice", i, w.Node, w.Dst)
		case w.Instance == "" && w.ENI == "":
			return fmt.Errorf("route %d (node %q): dst %s: neither instance nor eni set", i, w.Node, w.Dst)
		}
		seen[w.Dst] = true
	}
	return nil
}
