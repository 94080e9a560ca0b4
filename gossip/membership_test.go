package gossip

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// lineLog collects log output for assertions.
type lineLog struct {
	mu sync.Mutex
	sb strings.Builder
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sb.Write(p)
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sb.String()
}

var testKey = []byte("0123456789abcdef0123456789abcdef")

func testRecord(cluster string, subnet string) Record {
	r := Record{Cluster: cluster, Underlay: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}
	if subnet != "" {
		r.Subnets = []netip.Prefix{netip.MustParsePrefix(subnet)}
		r.ClaimedAt = 1
	}
	return r
}

// startNode starts a Membership on loopback with a free port and fast timers.
func startNode(t *testing.T, name, cluster string, key []byte, log *lineLog) *Membership {
	t.Helper()
	var h slog.Handler = slog.DiscardHandler
	if log != nil {
		h = slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	m, err := New(Config{
		NodeName:          name,
		ClusterName:       cluster,
		BindAddr:          netip.MustParseAddr("127.0.0.1"),
		AdvertiseAddr:     netip.MustParseAddr("127.0.0.1"),
		Key:               key,
		Insecure:          key == nil,
		Record:            testRecord(cluster, ""),
		ReconnectInterval: 500 * time.Millisecond,
		Logger:            slog.New(h),
	})
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return m
}

// drain collects events of m in the background.
type drain struct {
	mu  sync.Mutex
	evs []Event
}

func collect(m *Membership) *drain {
	d := &drain{}
	go func() {
		for ev := range m.Events() {
			d.mu.Lock()
			d.evs = append(d.evs, ev)
			d.mu.Unlock()
		}
	}()
	return d
}

func (d *drain) has(kind EventKind, node string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ev := range d.evs {
		if ev.Kind == kind && ev.Node == node {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func member(m *Membership, name string) (Member, bool) {
	for _, mem := range m.Members() {
		if mem.Name == name {
			return mem, true
		}
	}
	return Member{}, false
}

func TestJoinUpdateDeadLeft(t *testing.T) {
	a := startNode(t, "a", "c1", testKey, nil)
	b := startNode(t, "b", "c1", testKey, nil)
	c := startNode(t, "c", "c1", testKey, nil)
	ev := collect(a)
	collect(b)
	collect(c)
	ctx := context.Background()
	if _, err := b.Join(ctx, []string{a.LocalAddr().String()}, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Join(ctx, []string{a.LocalAddr().String()}, time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a sees b and c joined", func() bool { return ev.has(EventJoined, "b") && ev.has(EventJoined, "c") })

	want := testRecord("c1", "10.244.7.0/24")
	if err := b.SetRecord(want, time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a sees b's new record", func() bool {
		m, ok := member(a, "b")
		return ok && ev.has(EventUpdated, "b") && m.Record.Equal(want)
	})

	// A crash (Shutdown without Leave): dead, kept in the table.
	c.Shutdown()
	waitFor(t, "a marks c dead", func() bool { m, ok := member(a, "c"); return ok && m.State == StateDead && ev.has(EventDead, "c") })

	// A leave: dropped at once.
	if err := b.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a drops b", func() bool { _, ok := member(a, "b"); return !ok && ev.has(EventLeft, "b") })
}

func TestWrongKeyCannotJoin(t *testing.T) {
	var log lineLog
	a := startNode(t, "a", "c1", testKey, &log)
	collect(a)
	for _, tc := range []struct {
		name string
		key  []byte
	}{
		{"other key", []byte("fedcba9876543210fedcba9876543210")},
		{"no key", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := startNode(t, "x-"+strings.ReplaceAll(tc.name, " ", "-"), "c1", tc.key, nil)
			collect(x)
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			if _, err := x.Join(ctx, []string{a.LocalAddr().String()}, 200*time.Millisecond); err == nil {
				t.Fatalf("join with %s succeeded", tc.name)
			}
			if a.NumAlive() != 1 {
				t.Errorf("a has %d members, want 1", a.NumAlive())
			}
			waitFor(t, "refusal logged", func() bool { return strings.Contains(log.String(), "gossip message refused") })
		})
	}
}

func TestOtherClusterCannotJoin(t *testing.T) {
	a := startNode(t, "a", "c1", testKey, nil)
	x := startNode(t, "x", "c2", testKey, nil)
	collect(a)
	collect(x)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if _, err := x.Join(ctx, []string{a.LocalAddr().String()}, 200*time.Millisecond); err == nil {
		t.Fatal("join across clusters succeeded")
	}
	if _, ok := member(a, "x"); ok {
		t.Error("a lists x of another cluster")
	}
}

// TestBadRecordIgnored: a peer whose record update is malformed keeps its
// last good record; the refusal is logged.
func TestBadRecordIgnored(t *testing.T) {
	var log lineLog
	a := startNode(t, "a", "c1", testKey, &log)
	b := startNode(t, "b", "c1", testKey, nil)
	collect(a)
	collect(b)
	if _, err := b.Join(context.Background(), []string{a.LocalAddr().String()}, time.Second); err != nil {
		t.Fatal(err)
	}
	good := testRecord("c1", "10.244.1.0/24")
	if err := b.SetRecord(good, time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a sees b's good record", func() bool { m, ok := member(a, "b"); return ok && m.Record.Equal(good) })

	// Bypass SetRecord's validation, as a buggy or hostile peer would.
	b.mu.Lock()
	b.meta = []byte("W\x01garbage")
	b.mu.Unlock()
	b.list.UpdateNode(time.Second)
	waitFor(t, "refusal logged", func() bool { return strings.Contains(log.String(), "node record refused") })
	if m, _ := member(a, "b"); !m.Record.Equal(good) {
		t.Errorf("b's record is now %+v, want the last good one", m.Record)
	}
	if m, _ := member(a, "b"); m.State != StateAlive {
		t.Errorf("b is %s, want alive", m.State)
	}
}

func TestSetRecordRefusesInvalid(t *testing.T) {
	a := startNode(t, "a", "c1", testKey, nil)
	collect(a)
	bad := testRecord("c1", "")
	bad.Underlay = nil
	if err := a.SetRecord(bad, time.Second); err == nil {
		t.Fatal("SetRecord accepted a record without underlay addresses")
	}
	if err := a.SetRecord(testRecord("c2", ""), time.Second); err == nil {
		t.Fatal("SetRecord accepted a record of another cluster")
	}
	if !a.Record().Equal(testRecord("c1", "")) {
		t.Errorf("record changed to %+v", a.Record())
	}
}

// TestReconnectAfterPartition: two members that declared each other dead
// merge again by the reconnect loop, without any new Join call.
func TestReconnectAfterPartition(t *testing.T) {
	a := startNode(t, "a", "c1", testKey, nil)
	collect(a)
	b := startNode(t, "b", "c1", testKey, nil)
	collect(b)
	if _, err := b.Join(context.Background(), []string{a.LocalAddr().String()}, time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "joined", func() bool { return a.NumAlive() == 2 })
	addr := b.LocalAddr()
	b.Shutdown()
	waitFor(t, "b dead at a", func() bool { m, ok := member(a, "b"); return ok && m.State == StateDead })
	// b comes back on the same address and knows nobody: a's reconnect loop finds it.
	b2, err := New(Config{
		NodeName: "b", ClusterName: "c1", BindAddr: addr.Addr(), BindPort: int(addr.Port()),
		AdvertiseAddr: addr.Addr(), Key: testKey, Record: testRecord("c1", ""),
		ReconnectInterval: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(fmt.Errorf("restart b: %w", err))
	}
	t.Cleanup(func() { b2.Shutdown() })
	collect(b2)
	waitFor(t, "a sees b alive again", func() bool { m, ok := member(a, "b"); return ok && m.State == StateAlive })
}

// TestSetRecordNoWait: with timeout 0, SetRecord returns at once even in a
// cluster (memberlist's UpdateNode(0) would wait for the broadcast without
// limit) and the record still reaches the peer.
func TestSetRecordNoWait(t *testing.T) {
	a := startNode(t, "a", "c1", testKey, nil)
	b := startNode(t, "b", "c1", testKey, nil)
	collect(a)
	collect(b)
	if _, err := b.Join(context.Background(), []string{a.LocalAddr().String()}, time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "joined", func() bool { return a.NumAlive() == 2 })
	for i := 1; i <= 20; i++ {
		rec := testRecord("c1", fmt.Sprintf("10.244.%d.0/24", i))
		done := make(chan error, 1)
		go func() { done <- b.SetRecord(rec, 0) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("SetRecord(..., 0) still blocked after 5 s (update %d)", i)
		}
	}
	want := testRecord("c1", "10.244.20.0/24")
	waitFor(t, "a sees b's last record", func() bool { m, ok := member(a, "b"); return ok && m.Record.Equal(want) })
}
