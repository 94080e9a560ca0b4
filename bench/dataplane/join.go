package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weft-net/weft/fabric"
)

// joinTimeout bounds one newcomer's wait for every route.
const joinTimeout = 60 * time.Second

// JoinTrial is one newcomer joining a converged cluster. Times are in
// milliseconds from starting the newcomer's agent process; -1 means "not
// within the timeout".
type JoinTrial struct {
	N        int          `json:"n"`
	Trial    int          `json:"trial"`
	Newcomer string       `json:"newcomer"`
	Subnet   netip.Prefix `json:"subnet,omitzero"`
	// SubnetMS is when the newcomer's API first reported its subnet (polled
	// every 10 ms): process start, join, subnet claim.
	SubnetMS float64 `json:"subnetMs"`
	// FirstMS, MedianMS and AllMS are when the first, the median and the
	// last of the N-1 other hosts' kernels announced the route to the
	// newcomer's subnet (netlink RTM_NEWROUTE, protocol 87).
	FirstMS  float64 `json:"firstMs"`
	MedianMS float64 `json:"medianMs"`
	AllMS    float64 `json:"allMs"`
	// Programmed is how many of the N-1 got it in time.
	Programmed int `json:"programmed"`
	// SelfMS is when the newcomer's own kernel had routes to all N-1 others.
	SelfMS  float64 `json:"selfMs"`
	Foreign float64 `json:"foreignCores"`
	Noisy   bool    `json:"noisy,omitempty"`
	// NoSetup is set when the first N-1 agents did not converge, so the
	// newcomer never started: a fault of the cluster, not a join time.
	NoSetup bool   `json:"noSetup,omitempty"`
	Err     string `json:"err,omitempty"`
}

// runJoin runs o.trials trials per size in o.sizes, each in a fresh lab.
// A trial is taken again in a new lab when it was noisy (up to o.retries
// times) or when its first N-1 agents did not converge (up to o.setups
// times); every attempt is returned.
func runJoin(ctx context.Context, o options) []JoinTrial {
	var out []JoinTrial
	for _, n := range o.sizes {
		for t := 1; t <= o.trials && ctx.Err() == nil; t++ {
			noisy, setups := 0, 0
			for ctx.Err() == nil {
				waitQuiet(ctx, o.quiet, o.quietWait, o.log)
				tr := joinTrial(ctx, n, t, o)
				out = append(out, tr)
				o.log.Info("join", "n", n, "trial", t, "newcomer", tr.Newcomer, "subnet", tr.Subnet,
					"subnet_ms", tr.SubnetMS, "first_ms", tr.FirstMS, "median_ms", tr.MedianMS, "all_ms", tr.AllMS,
					"self_ms", tr.SelfMS, "programmed", tr.Programmed, "foreign_cores", fmt.Sprintf("%.2f", tr.Foreign),
					"noisy", tr.Noisy, "no_setup", tr.NoSetup, "err", tr.Err)
				if tr.NoSetup && setups < o.setups {
					setups++
					continue
				}
				if tr.Noisy && noisy < o.retries {
					noisy++
					continue
				}
				break
			}
		}
	}
	return out
}

// routeWatch records, per host, when its kernel first announced a weft
// route (protocol 87) to each destination.
type routeWatch struct {
	mu    sync.Mutex
	first map[string]map[netip.Prefix]time.Time
	errs  []error
}

func (w *routeWatch) seen(host string, dst netip.Prefix) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.first[host][dst]
	return t, ok
}

func (w *routeWatch) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return errors.Join(w.errs...)
}

// watch subscribes to route changes inside host's namespace at nsPath until
// done closes.
func (w *routeWatch) watch(host, nsPath string, done <-chan struct{}) error {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", nsPath, err)
	}
	defer ns.Close() // the subscription's socket keeps its own reference
	ch := make(chan netlink.RouteUpdate, 256)
	fail := func(err error) {
		w.mu.Lock()
		w.errs = append(w.errs, fmt.Errorf("route subscription in %s: %w", host, err))
		w.mu.Unlock()
	}
	err = netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{Namespace: &ns, ErrorCallback: fail})
	if err != nil {
		return fmt.Errorf("subscribe to routes in %s: %w", host, err)
	}
	w.mu.Lock()
	w.first[host] = map[netip.Prefix]time.Time{}
	w.mu.Unlock()
	go func() {
		for u := range ch {
			now := time.Now()
			if u.Type != unix.RTM_NEWROUTE || u.Protocol != fabric.RouteProtocol {
				continue
			}
			dst := prefixOf(u.Dst)
			w.mu.Lock()
			if _, ok := w.first[host][dst]; !ok && dst.IsValid() {
				w.first[host][dst] = now
			}
			w.mu.Unlock()
		}
	}()
	return nil
}

// joinTrial builds a lab of n hosts on two segments, starts n-1 agents and
// waits until they have converged and programmed each other's routes, then
// starts the last host's agent (on the second segment, so it is direct to
// half the others and VXLAN to the rest) and times it.
func joinTrial(ctx context.Context, n, trial int, o options) (tr JoinTrial) {
	tr = JoinTrial{N: n, Trial: trial, SubnetMS: -1, FirstMS: -1, MedianMS: -1, AllMS: -1, SelfMS: -1}
	fail := func(err error) JoinTrial {
		tr.Err = err.Error()
		return tr
	}
	f, err := newTestbed(ctx, twoSegments(n), map[string]string{"sa": "r1", "sb": "r1"}, o)
	defer func() {
		if err := f.Close(); err != nil {
			tr.Err = strings.TrimPrefix(tr.Err+"; ", "; ") + "close lab: " + err.Error()
		}
	}()
	if err != nil {
		return fail(err)
	}
	hosts := f.l.Hosts()
	newcomer, others := hosts[len(hosts)-1], hosts[:len(hosts)-1]
	tr.Newcomer = newcomer
	seeds := []netip.Addr{f.l.HostAddr("a1"), f.l.HostAddr("b1")}
	if n < 3 {
		seeds = seeds[:1]
	}
	if err := f.start(others, seeds); err != nil {
		return fail(err)
	}
	if err := f.waitReady(ctx, others, o.waitTimeout); err != nil {
		if o.logs != "" {
			o.log.Info("keep agents' logs and stacks", "dir", o.logs, "prefix", f.l.Prefix())
			err = errors.Join(err, f.keepLogs(o.logs, others, true))
		}
		tr.NoSetup = true
		return fail(err)
	}
	peerSubnets := make(map[string]netip.Prefix, len(others))
	for _, h := range others {
		if peerSubnets[h], err = f.subnet(ctx, h); err != nil {
			return fail(err)
		}
	}

	w := &routeWatch{first: map[string]map[netip.Prefix]time.Time{}}
	done := make(chan struct{})
	defer close(done)
	for _, h := range hosts {
		if err := w.watch(h, f.l.NetNSPath(h), done); err != nil {
			return fail(err)
		}
	}
	// Settle, and make sure the machine is quiet: the others' agents are
	// ours and do not count as foreign load.
	waitQuiet(ctx, o.quiet, o.quietWait, o.log)
	m0 := markCPU()
	t0 := time.Now()
	if err := f.start([]string{newcomer}, seeds); err != nil {
		return fail(err)
	}
	since := func(t time.Time) float64 { return float64(t.Sub(t0).Microseconds()) / 1000 }

	deadline := t0.Add(joinTimeout)
	api := f.c.Client(newcomer)
	for {
		if !tr.Subnet.IsValid() {
			qctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := api.Status(qctx)
			cancel()
			if err == nil && st.Subnet.IsValid() {
				tr.Subnet, tr.SubnetMS = st.Subnet, since(time.Now())
			}
		}
		if tr.Subnet.IsValid() && progress(w, &tr, newcomer, others, peerSubnets, since) {
			break
		}
		if err := w.err(); err != nil {
			return fail(err)
		}
		if time.Now().After(deadline) {
			tr.Foreign = foreign(m0, markCPU())
			return fail(fmt.Errorf("newcomer %s: %d of %d hosts have its route %s after %s\n%s",
				newcomer, tr.Programmed, len(others), tr.Subnet, joinTimeout, f.logTails([]string{newcomer, others[0]})))
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return fail(err)
		}
	}
	tr.Foreign = foreign(m0, markCPU())
	tr.Noisy = tr.Foreign > o.quiet
	o.log.Debug("newcomer's log", "host", newcomer, "started", t0.UTC().Format("15:04:05.000"), "log", f.c.Log(newcomer))
	if o.logs != "" {
		name := filepath.Join(o.logs, fmt.Sprintf("join-n%d-trial%d-%s.log", n, trial, t0.UTC().Format("150405")))
		text := fmt.Sprintf("newcomer %s started at %s\n%s", newcomer, t0.UTC().Format(time.RFC3339Nano), f.c.Log(newcomer))
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			o.log.Warn("keep newcomer's log", "file", name, "err", err)
		}
	}

	// The events said so; the kernels must agree (a route announced, then
	// removed, would not count).
	for _, h := range others {
		if err := hasWeftRoute(f.l.NetNSPath(h), tr.Subnet); err != nil {
			return fail(fmt.Errorf("%s: %w", h, err))
		}
	}
	return tr
}

// progress fills tr from what w has seen so far and reports whether every
// other host has the newcomer's route and the newcomer has all of theirs.
func progress(w *routeWatch, tr *JoinTrial, newcomer string, others []string, peerSubnets map[string]netip.Prefix, since func(time.Time) float64) bool {
	var times []float64
	for _, h := range others {
		if t, ok := w.seen(h, tr.Subnet); ok {
			times = append(times, since(t))
		}
	}
	tr.Programmed = len(times)
	var last time.Time
	self := 0
	for _, h := range others {
		if t, ok := w.seen(newcomer, peerSubnets[h]); ok {
			self++
			if t.After(last) {
				last = t
			}
		}
	}
	if self == len(others) && tr.SelfMS < 0 {
		tr.SelfMS = since(last)
	}
	if len(times) < len(others) || tr.SelfMS < 0 {
		return false
	}
	slices.Sort(times)
	tr.FirstMS, tr.MedianMS, tr.AllMS = times[0], median(times), times[len(times)-1]
	return true
}

// hasWeftRoute checks that the kernel in the namespace at nsPath holds a
// protocol-87 route to dst.
func hasWeftRoute(nsPath string, dst netip.Prefix) error {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", nsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("open netlink in %s: %w", nsPath, err)
	}
	defer h.Close()
	rs, err := h.RouteListFiltered(unix.AF_INET, &netlink.Route{Protocol: fabric.RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range rs {
		if prefixOf(r.Dst) == dst {
			return nil
		}
	}
	return fmt.Errorf("no protocol %d route to %s in the kernel", fabric.RouteProtocol, dst)
}
