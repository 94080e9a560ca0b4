// Package ec2emu is an in-memory emulator of the parts of Amazon EC2 that
// weft uses, for tests and the lab: the EC2 Query API (DescribeRouteTables,
// CreateRoute, ReplaceRoute, DeleteRoute, DescribeInstances,
// ModifyInstanceAttribute) and the instance metadata service (IMDSv2, with
// tokens). It speaks the wire formats the real aws-sdk-go-v2 client sends and
// parses (form-encoded requests, SigV4 signatures, XML responses and EC2
// error XML), so pointing the SDK at it with a custom endpoint runs the SDK's
// own signing, serialisation, retries and error parsing.
//
// Data flow: a test builds the VPC with AddInstance and AddRouteTable, serves
// [Emulator] (the EC2 API) and one [Emulator.IMDS] handler per instance with
// net/http/httptest, and turns knobs (SetRouteLimit, Throttle, Terminate,
// Forget) between calls; Calls counts the API calls per action and
// RouteTable returns a table as EC2 would describe it.
//
// What it models: route limits per table (AWS: 50 non-local routes by
// default), blackhole routes when a target stops or terminates, terminated
// instances staying visible (with their tags) until Forget, the
// source/destination check, credential checks (unknown access key ->
// AuthFailure, bad signature -> SignatureDoesNotMatch) and throttling
// (RequestLimitExceeded). It does not model eventual consistency, IPv6, or
// prefix lists.
package ec2emu

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
)

// Defaults, as a fresh AWS account has them.
const (
	DefaultRegion     = "us-east-1"
	DefaultAccountID  = "123456789012"
	DefaultRouteLimit = 50 // non-local routes per route table (a quota)
)

// Instance states (EC2's instance-state-name).
const (
	StateRunning      = "running"
	StateStopped      = "stopped"
	StateShuttingDown = "shutting-down"
	StateTerminated   = "terminated"
)

// Route states (EC2's route state).
const (
	RouteActive    = "active"
	RouteBlackhole = "blackhole"
)

// Config configures an Emulator.
type Config struct {
	// Region is the only region the API accepts in signatures; default
	// DefaultRegion.
	Region string
	// AccountID owns everything; default DefaultAccountID.
	AccountID string
	// Credentials maps access key IDs to secret keys. A request signed
	// with a key not in it fails with AuthFailure, a request whose
	// signature does not verify with SignatureDoesNotMatch. Required: an
	// empty map refuses every request.
	Credentials map[string]string
	// RouteLimit is the non-local routes each table may hold; default
	// DefaultRouteLimit.
	RouteLimit int
	// OnChange, if set, is called after every change to a route table,
	// without the emulator's lock held (it may call RouteTable). The lab
	// uses it to make a router namespace follow a table.
	OnChange func()
}

// Instance is one EC2 instance with one network interface.
type Instance struct {
	ID         string
	VPC        string
	Subnet     string
	SubnetCIDR netip.Prefix
	Zone       string // e.g. us-east-1a
	PrivateIP  netip.Addr
	ENI        string // its primary network interface, e.g. eni-0a
	MAC        string // of ENI, e.g. 02:00:00:00:00:0a
	State      string // default StateRunning
	Tags       map[string]string
	// SourceDestCheck is on for a new instance, as on EC2 (AddInstance
	// ignores this field); SetSourceDestCheck and ModifyInstanceAttribute
	// change it.
	SourceDestCheck bool
	// RoleKey, if set, is an access key ID of Config.Credentials that the
	// instance's metadata service hands out as instance role credentials.
	RoleKey string
}

// RouteTable is one VPC route table.
type RouteTable struct {
	ID      string
	VPC     string
	Main    bool     // the VPC's main table, used by subnets with no explicit association
	Subnets []string // explicitly associated subnets
	Tags    map[string]string
	Routes  []Route
}

// Route is one route of a table. Exactly one of Gateway, Instance and ENI is
// set when adding; the emulator fills Instance and ENI from each other, as EC2
// describes instance routes with both.
type Route struct {
	Dst      netip.Prefix
	Gateway  string // "local", "igw-...", ...
	Instance string
	ENI      string
	// State is computed when described: blackhole when the target
	// instance is not running (stopped, terminated, forgotten).
	State string
	// Origin is "CreateRouteTable" for the local route, else "CreateRoute".
	Origin string
}

// Emulator is the EC2 API as an http.Handler; IMDS returns each instance's
// metadata service. It is safe for concurrent use.
type Emulator struct {
	cfg Config

	mu        sync.Mutex
	instances map[string]*Instance
	tables    map[string]*RouteTable
	limit     int
	throttle  map[string]int // action ("" = any) -> calls still to throttle
	calls     map[string]int
	tokens    map[string]string // IMDS token -> instance ID
	seq       int               // request IDs and tokens
}

// New returns an Emulator with no instances and no route tables.
func New(c Config) *Emulator {
	c.Region = cmp.Or(c.Region, DefaultRegion)
	c.AccountID = cmp.Or(c.AccountID, DefaultAccountID)
	c.RouteLimit = cmp.Or(c.RouteLimit, DefaultRouteLimit)
	c.Credentials = maps.Clone(c.Credentials)
	return &Emulator{
		cfg:       c,
		instances: map[string]*Instance{},
		tables:    map[string]*RouteTable{},
		limit:     c.RouteLimit,
		throttle:  map[string]int{},
		calls:     map[string]int{},
		tokens:    map[string]string{},
	}
}

// Region returns the region the emulator signs for.
func (e *Emulator) Region() string { return e.cfg.Region }

// AddInstance adds (or replaces) an instance, with its source/destination
// check on. It keeps no reference to in.
func (e *Emulator) AddInstance(in Instance) {
	in.State = cmp.Or(in.State, StateRunning)
	in.Tags = maps.Clone(in.Tags)
	in.SourceDestCheck = true
	e.mu.Lock()
	defer e.mu.Unlock()
	e.instances[in.ID] = &in
}

// AddRouteTable adds (or replaces) a route table with its routes as given
// (include the VPC's local route if the test needs one). It keeps no
// reference to t.
func (e *Emulator) AddRouteTable(t RouteTable) {
	t.Subnets = slices.Clone(t.Subnets)
	t.Tags = maps.Clone(t.Tags)
	t.Routes = slices.Clone(t.Routes)
	e.mu.Lock()
	for i := range t.Routes {
		t.Routes[i].Origin = cmp.Or(t.Routes[i].Origin, "CreateRoute")
		e.fillTargetLocked(&t.Routes[i])
	}
	e.tables[t.ID] = &t
	e.mu.Unlock()
	e.changed()
}

// SetRouteLimit sets the non-local routes each table may hold, as a quota
// change does; tables already over it keep their routes.
func (e *Emulator) SetRouteLimit(n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.limit = n
}

// Throttle makes the next n calls of action (e.g. "DescribeRouteTables"; ""
// for any action) fail with RequestLimitExceeded (HTTP 503), as EC2 does
// when an account exceeds its request rate. Throttled calls are counted.
func (e *Emulator) Throttle(action string, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.throttle[action] = n
}

// Terminate moves an instance to StateTerminated: its routes become
// blackholes, and it stays visible to DescribeInstances, tags and all, until
// Forget (on EC2, for about an hour).
func (e *Emulator) Terminate(id string) { e.setState(id, StateTerminated) }

// Stop moves an instance to StateStopped: its routes become blackholes.
func (e *Emulator) Stop(id string) { e.setState(id, StateStopped) }

func (e *Emulator) setState(id, state string) {
	e.mu.Lock()
	if in, ok := e.instances[id]; ok {
		in.State = state
	}
	e.mu.Unlock()
	e.changed()
}

// Forget removes an instance altogether, as EC2 does some time after
// termination; routes to it stay, as blackholes.
func (e *Emulator) Forget(id string) {
	e.mu.Lock()
	delete(e.instances, id)
	e.mu.Unlock()
	e.changed()
}

// SetSourceDestCheck turns an instance's source/destination check on or off.
func (e *Emulator) SetSourceDestCheck(id string, on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if in, ok := e.instances[id]; ok {
		in.SourceDestCheck = on
	}
}

// Calls returns how many API calls each action received since New or
// ResetCalls, refused and throttled ones included, keyed by action; IMDS
// requests of all instances count under "IMDS GET" and "IMDS PUT". The
// caller owns the map.
func (e *Emulator) Calls() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.calls)
}

// ResetCalls sets every call count to zero.
func (e *Emulator) ResetCalls() {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.calls)
}

// Instance returns a copy of an instance and whether it exists.
func (e *Emulator) Instance(id string) (Instance, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	in, ok := e.instances[id]
	if !ok {
		return Instance{}, false
	}
	c := *in
	c.Tags = maps.Clone(in.Tags)
	return c, true
}

// RouteTable returns a copy of a table as DescribeRouteTables would show it
// (route states computed), with its routes sorted by Dst, and whether it
// exists.
func (e *Emulator) RouteTable(id string) (RouteTable, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.tables[id]
	if !ok {
		return RouteTable{}, false
	}
	return e.snapshotLocked(t), true
}

func (e *Emulator) snapshotLocked(t *RouteTable) RouteTable {
	c := *t
	c.Subnets = slices.Clone(t.Subnets)
	c.Tags = maps.Clone(t.Tags)
	c.Routes = slices.Clone(t.Routes)
	for i := range c.Routes {
		c.Routes[i].State = e.routeStateLocked(c.Routes[i])
	}
	slices.SortFunc(c.Routes, func(a, b Route) int { return a.Dst.Compare(b.Dst) })
	return c
}

// routeStateLocked is a route's state: a route to an instance is active only
// while that instance runs.
func (e *Emulator) routeStateLocked(r Route) string {
	if r.Gateway != "" {
		return RouteActive
	}
	if in, ok := e.instances[r.Instance]; ok && in.State == StateRunning {
		return RouteActive
	}
	return RouteBlackhole
}

// fillTargetLocked completes an instance route's Instance from its ENI, or
// its ENI from its Instance.
func (e *Emulator) fillTargetLocked(r *Route) {
	switch {
	case r.Instance == "" && r.ENI != "":
		if in := e.instanceByENILocked(r.ENI); in != nil {
			r.Instance = in.ID
		}
	case r.Instance != "" && r.ENI == "":
		if in, ok := e.instances[r.Instance]; ok {
			r.ENI = in.ENI
		}
	}
}

func (e *Emulator) instanceByENILocked(eni string) *Instance {
	for _, in := range e.instances {
		if in.ENI == eni && in.State != StateTerminated {
			return in
		}
	}
	return nil
}

// countLocked is the number of a table's routes that count against the
// limit.
func countLocked(t *RouteTable) int {
	n := 0
	for _, r := range t.Routes {
		if r.Gateway != "local" {
			n++
		}
	}
	return n
}

func (e *Emulator) changed() {
	if e.cfg.OnChange != nil {
		e.cfg.OnChange()
	}
}

func (e *Emulator) nextIDLocked(prefix string) string {
	e.seq++
	return fmt.Sprintf("%s%08x", prefix, e.seq)
}
