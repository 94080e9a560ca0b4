package routing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/weft-net/weft/fabric"
)

// Config configures an Applier.
type Config struct {
	// Kernel is the routing table to keep; required.
	Kernel Kernel
	// Logger receives state changes (Info) and per-route detail (Debug);
	// nil discards.
	Logger *slog.Logger
}

// Applier keeps weft's routes in the kernel equal to a wanted set. Its
// methods are safe for concurrent use; they run one at a time, so two
// Applies never interleave their kernel calls.
type Applier struct {
	kernel Kernel
	log    *slog.Logger
	mu     sync.Mutex
}

// New returns an Applier for c.Kernel.
func New(c Config) *Applier {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Applier{kernel: c.Kernel, log: c.Logger.With("component", "routing")}
}

// RouteState is one wanted route and whether the kernel has it exactly.
type RouteState struct {
	Route    fabric.Route `json:"route"`
	InKernel bool         `json:"inKernel"`
}

// Report is what Check found. Routes holds one entry per wanted route and
// Stale holds weft's routes in the kernel that equal no wanted route (Apply
// replaces those at a wanted destination and deletes the others); both are
// sorted with Compare.
type Report struct {
	Routes []RouteState   `json:"routes"`
	Stale  []fabric.Route `json:"stale,omitempty"`
}

// InSync reports whether the kernel holds exactly the wanted routes.
func (r Report) InSync() bool {
	if len(r.Stale) > 0 {
		return false
	}
	for _, s := range r.Routes {
		if !s.InKernel {
			return false
		}
	}
	return true
}

// delta is what it takes to turn have into want.
type delta struct {
	replace []fabric.Route // wanted routes the kernel lacks or has differently
	del     []fabric.Route // weft routes at destinations that are not wanted
	stale   []fabric.Route // weft routes equal to no wanted route
	states  []RouteState   // every wanted route with whether it is in the kernel
}

// diff compares want (validated, one per Dst) with weft's routes in the
// kernel. The kernel may hold more than one weft route per Dst (made by
// hand, or by an older agent with another metric): the extra ones are
// stale.
func diff(want map[netip.Prefix]fabric.Route, have []fabric.Route) delta {
	var d delta
	present := make(map[fabric.Route]bool, len(have))
	for _, h := range have {
		present[h] = true
	}
	for _, w := range want {
		d.states = append(d.states, RouteState{Route: w, InKernel: present[w]})
		if !present[w] {
			d.replace = append(d.replace, w)
		}
	}
	for _, h := range have {
		if w, ok := want[h.Dst]; ok && w == h {
			continue
		}
		d.stale = append(d.stale, h)
		if _, ok := want[h.Dst]; !ok {
			d.del = append(d.del, h)
		}
	}
	// Extra weft routes at a wanted Dst that differ from it: once the wanted
	// one is in, they are stale duplicates, unless the replace takes them.
	for _, h := range d.stale {
		if w, ok := want[h.Dst]; ok && present[w] {
			d.del = append(d.del, h)
		}
	}
	slices.SortFunc(d.replace, Compare)
	slices.SortFunc(d.del, Compare)
	slices.SortFunc(d.stale, Compare)
	slices.SortFunc(d.states, func(a, b RouteState) int { return Compare(a.Route, b.Route) })
	return d
}

// index validates want and keys it by Dst. A Dst that appears twice is an
// error naming the prefix.
func index(want []fabric.Route) (map[netip.Prefix]fabric.Route, error) {
	m := make(map[netip.Prefix]fabric.Route, len(want))
	var errs []error
	for i, r := range want {
		if err := validate(i, r); err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, ok := m[r.Dst]; ok {
			errs = append(errs, fmt.Errorf("want[%d].Dst %s: a second route to the prefix (%s, then %s)", i, r.Dst, Format(prev), Format(r)))
			continue
		}
		m[r.Dst] = r
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid routes: %w", errors.Join(errs...))
	}
	return m, nil
}

// Apply makes weft's routes in the kernel equal want and returns when the
// kernel has answered every call. It reads weft's routes back, replaces the
// missing or different ones first (so traffic never loses its route while a
// next hop changes), then deletes the stale ones. Routes of other protocols
// are never read or touched. After a failed call it keeps going and returns
// all failures joined; a later Apply retries what failed. When the kernel
// already matches, Apply makes no mutating call. want holds at most one
// route per Dst; an invalid want (a duplicate Dst, a malformed route) is an
// error naming the field and value, and nothing is changed. An empty want
// deletes all of weft's routes: call Apply only with a complete plan (a
// restarting agent waits for its first one). want is not modified or
// retained.
func (a *Applier) Apply(ctx context.Context, want []fabric.Route) error {
	wantBy, err := index(want)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	have, err := a.kernel.RouteList()
	if err != nil {
		return fmt.Errorf("list weft routes: %w", err)
	}
	d := diff(wantBy, have)
	if len(d.replace) == 0 && len(d.del) == 0 {
		a.log.Debug("routes in sync", "routes", len(wantBy))
		return nil
	}
	var errs []error
	replaced, deleted := 0, 0
	for _, r := range d.replace {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, fmt.Errorf("apply routes: %w", err))...)
		}
		if err := a.kernel.RouteReplace(r); err != nil {
			a.log.Error("route replace", "route", Format(r), "err", err)
			errs = append(errs, fmt.Errorf("replace route %s: %w", Format(r), err))
			continue
		}
		a.log.Debug("route replaced", "route", Format(r))
		replaced++
	}
	for _, r := range d.del {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, fmt.Errorf("apply routes: %w", err))...)
		}
		if err := a.del(r); err != nil {
			errs = append(errs, err)
			continue
		}
		deleted++
	}
	a.log.Info("routes applied", "routes", len(wantBy), "replaced", replaced, "deleted", deleted, "failed", len(errs))
	return errors.Join(errs...)
}

// del deletes weft's route r. A route already gone is what was wanted.
func (a *Applier) del(r fabric.Route) error {
	err := a.kernel.RouteDel(r)
	if err != nil && !errors.Is(err, unix.ESRCH) {
		a.log.Error("route delete", "route", Format(r), "err", err)
		return fmt.Errorf("delete route %s: %w", Format(r), err)
	}
	a.log.Debug("route deleted", "route", Format(r))
	return nil
}

// Check reports, for every wanted route, whether the kernel has it exactly,
// and which of weft's routes in the kernel are stale. It changes nothing.
// want is validated as by Apply and is not retained.
func (a *Applier) Check(ctx context.Context, want []fabric.Route) (Report, error) {
	wantBy, err := index(want)
	if err != nil {
		return Report{}, err
	}
	if err := ctx.Err(); err != nil {
		return Report{}, fmt.Errorf("check routes: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	have, err := a.kernel.RouteList()
	if err != nil {
		return Report{}, fmt.Errorf("list weft routes: %w", err)
	}
	d := diff(wantBy, have)
	return Report{Routes: d.states, Stale: d.stale}, nil
}

// Sweep deletes every route with weft's protocol in the main table, for
// `weft cleanup`; routes of other protocols stay. It keeps going after a
// failure and returns all failures joined. It is idempotent.
func (a *Applier) Sweep(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	have, err := a.kernel.RouteList()
	if err != nil {
		return fmt.Errorf("list weft routes: %w", err)
	}
	slices.SortFunc(have, Compare)
	var errs []error
	deleted := 0
	for _, r := range have {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, fmt.Errorf("sweep routes: %w", err))...)
		}
		if err := a.del(r); err != nil {
			errs = append(errs, err)
			continue
		}
		deleted++
	}
	a.log.Info("routes swept", "deleted", deleted, "failed", len(errs))
	return errors.Join(errs...)
}
