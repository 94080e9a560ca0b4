package routing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Resubscribe backoff after a subscription could not be re-opened.
const (
	resubscribeMin = 100 * time.Millisecond
	resubscribeMax = 5 * time.Second
)

// updateBuffer is the depth of each netlink update channel: a burst (a link
// going down takes its routes and neighbours with it) is read off the socket
// while the watcher catches up, instead of overrunning it.
const updateBuffer = 64

// subscription is one generation of the three netlink subscriptions. Closing
// done closes their sockets; the library then closes each update channel
// once its reader has stopped (after its last ErrorCallback). A nil channel
// is not subscribed, or already closed.
type subscription struct {
	done   chan struct{}
	routes chan netlink.RouteUpdate
	neighs chan netlink.NeighUpdate
	links  chan netlink.LinkUpdate
}

// subscribeFunc opens the subscriptions of s, reporting later errors to
// onErr. On an error it leaves nil the channels it did not subscribe.
type subscribeFunc func(s *subscription, onErr func(error)) error

// Watch subscribes to the route, neighbour and link updates of the network
// namespace ns (netns.None() for the calling thread's) and sends on the
// returned channel whenever one arrives: anything that could be weft's
// changed, and the reconciler re-reads and diffs. Signals are coalesced: the
// channel has a buffer of one and a signal is dropped while one is pending.
// The channel is closed once ctx is done and the subscriptions are closed.
// Watch returns an error when the subscriptions cannot be opened. A later
// subscription error (an ENOBUFS overrun drops events) is logged, sends a
// signal so that a full resync happens, and the subscriptions are re-opened
// (with backoff while that fails). Watch duplicates ns: the caller may
// close it once Watch returns.
func Watch(ctx context.Context, ns netns.NsHandle, log *slog.Logger) (<-chan struct{}, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "routing-watch")
	own := netns.None()
	if ns.IsOpen() {
		fd, err := unix.FcntlInt(uintptr(ns), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("duplicate netns handle %d: %w", int(ns), err)
		}
		own = netns.NsHandle(fd)
	}
	out, err := watch(ctx, netlinkSubscribe(&own), log, func() {
		if own.IsOpen() {
			own.Close()
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// netlinkSubscribe subscribes to route, neighbour and link updates in ns.
func netlinkSubscribe(ns *netns.NsHandle) subscribeFunc {
	return func(s *subscription, onErr func(error)) error {
		if err := netlink.RouteSubscribeWithOptions(s.routes, s.done, netlink.RouteSubscribeOptions{
			Namespace: ns, ErrorCallback: onErr,
		}); err != nil {
			s.routes, s.neighs, s.links = nil, nil, nil
			return fmt.Errorf("subscribe to route updates: %w", err)
		}
		if err := netlink.NeighSubscribeWithOptions(s.neighs, s.done, netlink.NeighSubscribeOptions{
			Namespace: ns, ErrorCallback: onErr,
		}); err != nil {
			s.neighs, s.links = nil, nil
			return fmt.Errorf("subscribe to neighbour updates: %w", err)
		}
		if err := netlink.LinkSubscribeWithOptions(s.links, s.done, netlink.LinkSubscribeOptions{
			Namespace: ns, ErrorCallback: onErr,
		}); err != nil {
			s.links = nil
			return fmt.Errorf("subscribe to link updates: %w", err)
		}
		return nil
	}
}

// watcher turns the updates of successive subscriptions into signals.
type watcher struct {
	subscribe subscribeFunc
	log       *slog.Logger
	out       chan struct{}
}

// watch opens the first subscription and starts the loop that signals on
// the returned channel; release runs once nothing uses the subscriptions
// any more (also when watch fails).
func watch(ctx context.Context, subscribe subscribeFunc, log *slog.Logger, release func()) (<-chan struct{}, error) {
	w := &watcher{subscribe: subscribe, log: log, out: make(chan struct{}, 1)}
	s, err := w.open()
	if err != nil {
		release()
		return nil, err
	}
	go w.run(ctx, s, release)
	return w.out, nil
}

// signal sends a coalesced signal. It must not be called after run closed
// out: only run and the ErrorCallbacks of open subscriptions call it.
func (w *watcher) signal() {
	select {
	case w.out <- struct{}{}:
	default:
	}
}

// open opens a new subscription; on failure it closes what was opened.
func (w *watcher) open() (*subscription, error) {
	s := &subscription{
		done:   make(chan struct{}),
		routes: make(chan netlink.RouteUpdate, updateBuffer),
		neighs: make(chan netlink.NeighUpdate, updateBuffer),
		links:  make(chan netlink.LinkUpdate, updateBuffer),
	}
	onErr := func(err error) {
		select {
		case <-s.done:
			return // closing the sockets shows up as a receive error
		default:
		}
		w.log.Warn("netlink subscription error; resyncing", "err", err)
		w.signal()
	}
	if err := w.subscribe(s, onErr); err != nil {
		w.close(s)
		return nil, err
	}
	return s, nil
}

// close closes s and waits until the library has stopped using it: every
// update channel drained and closed (a reader blocked on a send would
// otherwise never see its socket close).
func (w *watcher) close(s *subscription) {
	close(s.done)
	if s.routes != nil {
		for range s.routes {
		}
	}
	if s.neighs != nil {
		for range s.neighs {
		}
	}
	if s.links != nil {
		for range s.links {
		}
	}
}

// run signals on every update until ctx is done. When a subscription breaks
// (the library closes its channel after a receive error such as ENOBUFS) it
// signals and opens a new one.
func (w *watcher) run(ctx context.Context, s *subscription, release func()) {
	defer func() {
		release()
		close(w.out)
	}()
	for {
		w.pump(ctx, s)
		w.close(s)
		if ctx.Err() != nil {
			return
		}
		w.signal() // events may have been lost: resync
		var err error
		if s, err = w.reopen(ctx); err != nil {
			return // ctx is done
		}
	}
}

// pump signals on every update of s until ctx is done or one of its
// channels closes, which it sets to nil.
func (w *watcher) pump(ctx context.Context, s *subscription) {
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-s.routes:
			if !ok {
				s.routes = nil
				w.log.Debug("subscription closed", "kind", "route")
				return
			}
		case _, ok := <-s.neighs:
			if !ok {
				s.neighs = nil
				w.log.Debug("subscription closed", "kind", "neighbour")
				return
			}
		case _, ok := <-s.links:
			if !ok {
				s.links = nil
				w.log.Debug("subscription closed", "kind", "link")
				return
			}
		}
		w.signal()
	}
}

// reopen opens a new subscription, retrying with backoff until it succeeds
// or ctx is done.
func (w *watcher) reopen(ctx context.Context) (*subscription, error) {
	backoff := resubscribeMin
	for {
		s, err := w.open()
		if err == nil {
			w.log.Info("netlink subscriptions reopened")
			return s, nil
		}
		w.log.Error("netlink resubscribe", "err", err, "retry", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, errors.Join(err, ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, resubscribeMax)
	}
}
