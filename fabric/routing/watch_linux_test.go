package routing

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// waitLimit bounds every wait for something that should happen promptly.
const waitLimit = 10 * time.Second

// fakeSub is one subscription opened by fakeSubscriber, with the channels as
// they were handed out (the watcher nils its own copies).
type fakeSub struct {
	done   <-chan struct{}
	routes chan netlink.RouteUpdate
	neighs chan netlink.NeighUpdate
	links  chan netlink.LinkUpdate
	onErr  func(error)
	once   [3]sync.Once
}

// breakRoutes does what the library does when a receive fails (ENOBUFS):
// report the error, then close the route channel.
func (f *fakeSub) breakRoutes() {
	f.onErr(unix.ENOBUFS)
	f.once[0].Do(func() { close(f.routes) })
}

// fakeSubscriber stands in for the netlink subscriptions: it closes a
// subscription's channels when its done closes, as the library does, and
// can fail the next subscribe calls.
type fakeSubscriber struct {
	opened chan *fakeSub
	mu     sync.Mutex
	fails  int
}

func newFakeSubscriber() *fakeSubscriber {
	return &fakeSubscriber{opened: make(chan *fakeSub, 16)}
}

func (f *fakeSubscriber) failNext(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fails = n
}

func (f *fakeSubscriber) subscribe(s *subscription, onErr func(error)) error {
	f.mu.Lock()
	fail := f.fails > 0
	if fail {
		f.fails--
	}
	f.mu.Unlock()
	if fail {
		// The route subscription opened, the neighbour one failed.
		go func(done <-chan struct{}, routes chan netlink.RouteUpdate) {
			<-done
			close(routes)
		}(s.done, s.routes)
		s.neighs, s.links = nil, nil
		return errors.New("subscribe to neighbour updates: injected")
	}
	fs := &fakeSub{done: s.done, routes: s.routes, neighs: s.neighs, links: s.links, onErr: onErr}
	go func() {
		<-fs.done
		fs.once[0].Do(func() { close(fs.routes) })
		fs.once[1].Do(func() { close(fs.neighs) })
		fs.once[2].Do(func() { close(fs.links) })
	}()
	f.opened <- fs
	return nil
}

// next returns the next subscription opened, failing t after waitLimit.
func (f *fakeSubscriber) next(t *testing.T) *fakeSub {
	t.Helper()
	select {
	case s := <-f.opened:
		return s
	case <-time.After(waitLimit):
		t.Fatalf("no subscription opened within %v", waitLimit)
		return nil
	}
}

// expectSignal fails t unless ch delivers a signal within waitLimit.
func expectSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatalf("%s: channel closed, want a signal", what)
		}
	case <-time.After(waitLimit):
		t.Fatalf("%s: no signal within %v", what, waitLimit)
	}
}

// expectClosed fails t unless ch is closed within waitLimit.
func expectClosed[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("%s: not closed within %v", what, waitLimit)
		}
	}
}

func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

func TestWatchSignalsEachKind(t *testing.T) {
	tests := []struct {
		name string
		send func(s *fakeSub)
	}{
		{"route", func(s *fakeSub) { s.routes <- netlink.RouteUpdate{Type: unix.RTM_DELROUTE} }},
		{"neighbour", func(s *fakeSub) { s.neighs <- netlink.NeighUpdate{Type: unix.RTM_NEWNEIGH} }},
		{"link", func(s *fakeSub) { s.links <- netlink.LinkUpdate{} }},
	}
	f := newFakeSubscriber()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	released := make(chan struct{})
	ch, err := watch(ctx, f.subscribe, slog.New(slog.DiscardHandler), func() { close(released) })
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	if cap(ch) != 1 {
		t.Errorf("signal channel capacity %d, want 1 (signals coalesce)", cap(ch))
	}
	s := f.next(t)
	for _, tt := range tests {
		drain(ch)
		tt.send(s)
		expectSignal(t, ch, tt.name+" update")
	}
	cancel()
	expectClosed(t, ch, "signal channel after cancel")
	expectClosed(t, s.done, "subscription done after cancel")
	expectClosed(t, released, "namespace handle release after cancel")
}

func TestWatchResubscribesAfterOverrun(t *testing.T) {
	f := newFakeSubscriber()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := watch(ctx, f.subscribe, slog.New(slog.DiscardHandler), func() {})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	first := f.next(t)
	drain(ch)
	// The first re-open fails too: the watcher retries after a backoff.
	f.failNext(1)
	first.breakRoutes()
	expectSignal(t, ch, "overrun")
	expectClosed(t, first.done, "broken subscription's done")
	second := f.next(t)
	drain(ch)
	second.links <- netlink.LinkUpdate{}
	expectSignal(t, ch, "update on the new subscription")
	cancel()
	expectClosed(t, ch, "signal channel after cancel")
}

func TestWatchSetupFailure(t *testing.T) {
	f := newFakeSubscriber()
	f.failNext(1)
	released := false
	ch, err := watch(context.Background(), f.subscribe, slog.New(slog.DiscardHandler), func() { released = true })
	if err == nil || ch != nil {
		t.Fatalf("watch with a failing subscription: got (%v, %v), want (nil, an error)", ch, err)
	}
	if !released {
		t.Errorf("namespace handle not released after a failed watch")
	}
}
