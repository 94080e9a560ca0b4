package gossip

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// startStoreNode starts a Membership on loopback with fast timers; edit
// changes the config before New.
func startStoreNode(t testing.TB, name string, log *lineLog, edit func(*Config)) *Membership {
	t.Helper()
	var h slog.Handler = slog.DiscardHandler
	if log != nil {
		h = slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	cfg := Config{
		NodeName:          name,
		ClusterName:       "c1",
		BindAddr:          netip.MustParseAddr("127.0.0.1"),
		AdvertiseAddr:     netip.MustParseAddr("127.0.0.1"),
		Key:               testKey,
		Record:            testRecord("c1", ""),
		ReconnectInterval: 500 * time.Millisecond,
		Logger:            slog.New(h),
	}
	if edit != nil {
		edit(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { m.Shutdown() })
	collect(m)
	return m
}

// startStoreCluster starts n joined nodes named n0..n(n-1).
func startStoreCluster(t testing.TB, n int, edit func(*Config)) []*Membership {
	t.Helper()
	ms := make([]*Membership, n)
	for i := range ms {
		ms[i] = startStoreNode(t, fmt.Sprintf("n%d", i), nil, edit)
		if i > 0 {
			if _, err := ms[i].Join(context.Background(), []string{ms[0].LocalAddr().String()}, time.Second); err != nil {
				t.Fatalf("join n%d: %v", i, err)
			}
		}
	}
	waitForTB(t, "all members alive everywhere", func() bool {
		for _, m := range ms {
			if m.NumAlive() != n {
				return false
			}
		}
		return true
	})
	return ms
}

func waitForTB(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// storeDump renders what a node holds of kind as text, for comparisons.
func storeDump(m *Membership, kind StoreKind) string {
	var sb strings.Builder
	for _, e := range m.List(kind) {
		fmt.Fprintf(&sb, "%s=%s@%s\n", e.Key, e.Value, e.Version)
	}
	return sb.String()
}

// converged reports whether every node lists the same entries of both kinds.
func converged(ms []*Membership) bool {
	for _, kind := range []StoreKind{StorePolicy, StoreEndpoint} {
		want := storeDump(ms[0], kind)
		for _, m := range ms[1:] {
			if storeDump(m, kind) != want {
				return false
			}
		}
	}
	return true
}

func hasValue(m *Membership, kind StoreKind, key string, value []byte) bool {
	e, ok := m.Get(kind, key)
	return ok && bytes.Equal(e.Value, value)
}

// TestStoreBroadcast: puts and deletes on any node reach every node of a
// cluster of 4 by broadcast alone (push/pull is set far beyond the test).
func TestStoreBroadcast(t *testing.T) {
	ms := startStoreCluster(t, 4, func(c *Config) { c.PushPullInterval = time.Hour })
	select { // nothing changed yet
	case <-ms[3].StoreChanged():
		t.Fatal("StoreChanged signalled before any write")
	default:
	}
	rev0 := ms[3].StoreRevision()
	p := []byte(`{"kind":"GlobalNetworkPolicy","spec":{"order":10}}`)
	if _, err := ms[0].Put(StorePolicy, "GlobalNetworkPolicy//deny-all", p); err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		if _, err := m.Put(StoreEndpoint, m.cfg.NodeName+"/web-1", []byte(fmt.Sprintf(`{"ip":"10.244.%d.2"}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "policy and 4 endpoints everywhere", func() bool {
		for _, m := range ms {
			if !hasValue(m, StorePolicy, "GlobalNetworkPolicy//deny-all", p) || len(m.List(StoreEndpoint)) != 4 {
				return false
			}
		}
		return true
	})
	if !converged(ms) {
		t.Fatal("nodes disagree")
	}
	select {
	case <-ms[3].StoreChanged():
	default:
		t.Error("StoreChanged did not signal remote changes")
	}
	if ms[3].StoreRevision() < rev0+5 {
		t.Errorf("revision %d after 5 changes from %d", ms[3].StoreRevision(), rev0)
	}

	// A delete from another node than the writer.
	if _, err := ms[2].Delete(StorePolicy, "GlobalNetworkPolicy//deny-all"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "policy deleted everywhere", func() bool {
		for _, m := range ms {
			if _, ok := m.Get(StorePolicy, "GlobalNetworkPolicy//deny-all"); ok {
				return false
			}
		}
		return true
	})
}

// TestStoreLateJoiner: a node that joins after the writes gets them all
// (tombstones included) by the push/pull of its join.
func TestStoreLateJoiner(t *testing.T) {
	ms := startStoreCluster(t, 3, func(c *Config) { c.PushPullInterval = time.Hour })
	for i := range 20 {
		if _, err := ms[i%3].Put(StorePolicy, fmt.Sprintf("NetworkPolicy/ns/p%02d", i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ms[1].Put(StoreEndpoint, "n1/web", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if _, err := ms[1].Delete(StorePolicy, "NetworkPolicy/ns/p07"); err != nil { // its writer: the others may not have it yet
		t.Fatal(err)
	}
	waitFor(t, "3 nodes converge", func() bool { return converged(ms) && len(ms[2].List(StorePolicy)) == 19 })

	late := startStoreNode(t, "late", nil, func(c *Config) { c.PushPullInterval = time.Hour })
	if _, err := late.Join(context.Background(), []string{ms[2].LocalAddr().String()}, time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "late node has everything", func() bool { return converged(append(ms, late)) })
	if _, ok := late.Get(StorePolicy, "NetworkPolicy/ns/p07"); ok {
		t.Error("late node lists a deleted policy")
	}
	tomb := late.store.all()
	found := false
	for _, e := range tomb {
		found = found || e.Key == "NetworkPolicy/ns/p07" && e.Deleted
	}
	if !found {
		t.Error("late node did not get the tombstone")
	}
}

// TestStorePartition: two halves of a cluster that never met (as after a
// partition) write, also to the same key, then join: every node ends with
// the same store, and the later conflicting write wins everywhere.
func TestStorePartition(t *testing.T) {
	fast := func(c *Config) { c.PushPullInterval = time.Second }
	left := startStoreCluster(t, 2, fast)
	right := []*Membership{startStoreNode(t, "r0", nil, fast), startStoreNode(t, "r1", nil, fast)}
	if _, err := right[1].Join(context.Background(), []string{right[0].LocalAddr().String()}, time.Second); err != nil {
		t.Fatal(err)
	}
	must := func(_ StoreEntry, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(left[0].Put(StorePolicy, "P//left-only", []byte("l")))
	must(left[1].Put(StoreEndpoint, "n1/ep", []byte("l")))
	must(right[1].Put(StorePolicy, "P//right-only", []byte("r")))
	must(right[0].Put(StoreEndpoint, "r0/ep", []byte("r")))
	must(left[0].Put(StorePolicy, "P//both", []byte("left, earlier")))
	must(right[0].Put(StorePolicy, "P//gone", []byte("x")))
	waitFor(t, "both halves converge apart", func() bool { return converged(left) && converged(right) })
	time.Sleep(2 * time.Millisecond) // the right side's write is in a later millisecond
	must(right[1].Put(StorePolicy, "P//both", []byte("right, later")))
	must(right[1].Delete(StorePolicy, "P//gone"))

	if _, err := right[0].Join(context.Background(), []string{left[0].LocalAddr().String()}, time.Second); err != nil {
		t.Fatal(err)
	}
	all := append(left, right...)
	waitFor(t, "all 4 converge", func() bool { return converged(all) && len(all[0].List(StorePolicy)) == 3 })
	for _, m := range all {
		if !hasValue(m, StorePolicy, "P//both", []byte("right, later")) {
			e, _ := m.Get(StorePolicy, "P//both")
			t.Errorf("%s: P//both = %q, want the later write", m.cfg.NodeName, e.Value)
		}
	}
	if got := storeDump(all[0], StoreEndpoint); !strings.Contains(got, "n1/ep=l") || !strings.Contains(got, "r0/ep=r") {
		t.Errorf("endpoints:\n%s", got)
	}
}

// TestStoreConcurrentWrites: all 5 nodes write the same key at once; all
// keep the same winner.
func TestStoreConcurrentWrites(t *testing.T) {
	ms := startStoreCluster(t, 5, func(c *Config) { c.PushPullInterval = time.Hour })
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				if _, err := m.Put(StorePolicy, "GlobalNetworkPolicy//shared", []byte(fmt.Sprintf("%s-%d", m.cfg.NodeName, i))); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, "one winner everywhere", func() bool { return converged(ms) })
	e, _ := ms[0].Get(StorePolicy, "GlobalNetworkPolicy//shared")
	if !strings.HasSuffix(string(e.Value), "-9") {
		t.Errorf("winner %q is not a last write of its node", e.Value)
	}
}

// TestStoreLargeValue: a 20 KiB value, too big for a gossip packet, reaches
// every node over TCP (push/pull is out of the picture).
func TestStoreLargeValue(t *testing.T) {
	ms := startStoreCluster(t, 4, func(c *Config) { c.PushPullInterval = time.Hour })
	big := bytes.Repeat([]byte("0123456789abcdef"), 20<<10/16)
	if len(encodeStoreMessage(StoreEntry{Key: "x", Value: big})) <= ms[0].bcastLimit {
		t.Fatal("the value fits a gossip packet: the test does not test TCP")
	}
	if _, err := ms[1].Put(StorePolicy, "GlobalNetworkPolicy//big", big); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "big value everywhere", func() bool {
		for _, m := range ms {
			if !hasValue(m, StorePolicy, "GlobalNetworkPolicy//big", big) {
				return false
			}
		}
		return true
	})
	if _, err := ms[3].Delete(StorePolicy, "GlobalNetworkPolicy//big"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "deleted everywhere", func() bool { return converged(ms) && len(ms[0].List(StorePolicy)) == 0 })
}

// TestStoreRemoteRefusals: entries a node must refuse (its validator says
// no, a forged endpoint, a clock far ahead) are never applied, by gossip or
// push/pull, and each refusal is logged once.
func TestStoreRemoteRefusals(t *testing.T) {
	var log lineLog
	validate := func(e StoreEntry) error {
		if bytes.Contains(e.Value, []byte("forbidden")) {
			return fmt.Errorf("value %q: forbidden", e.Value)
		}
		return nil
	}
	a := startStoreNode(t, "a", nil, func(c *Config) { c.PushPullInterval = 500 * time.Millisecond })
	b := startStoreNode(t, "b", &log, func(c *Config) {
		c.PushPullInterval = 500 * time.Millisecond
		c.ValidateEntry = validate
	})
	if _, err := b.Join(context.Background(), []string{a.LocalAddr().String()}, time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "joined", func() bool { return a.NumAlive() == 2 && b.NumAlive() == 2 })
	if _, err := a.Put(StorePolicy, "P//bad", []byte("forbidden")); err != nil {
		t.Fatal(err)
	}
	// Forged entries, as a buggy or hostile peer would send them.
	now := time.Now().UnixMilli()
	for _, e := range []StoreEntry{
		{Kind: StoreEndpoint, Key: "b/stolen", Value: []byte("{}"), Version: HLC{Wall: now, Node: "a"}},
		{Kind: StorePolicy, Key: "P//future", Value: []byte("{}"), Version: HLC{Wall: now + 2*3600_000, Node: "a"}},
	} {
		a.bcast.QueueBroadcast(&storeBroadcast{name: broadcastName(e), msg: encodeStoreMessage(e)})
		a.store.mu.Lock()
		a.store.entries[idOf(e)] = e // so that push/pull carries them too
		a.store.mu.Unlock()
	}
	if _, err := a.Put(StorePolicy, "P//good", []byte("fine")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "good entry at b", func() bool { return hasValue(b, StorePolicy, "P//good", []byte("fine")) })
	waitFor(t, "three refusals logged", func() bool {
		l := log.String()
		return strings.Contains(l, "forbidden") && strings.Contains(l, "b/stolen") && strings.Contains(l, "P//future")
	})
	// Let a few push/pulls pass: still nothing applied, each refusal logged once.
	time.Sleep(2 * time.Second)
	if got := storeDump(b, StorePolicy) + storeDump(b, StoreEndpoint); strings.Count(got, "\n") != 1 {
		t.Errorf("b holds:\n%s", got)
	}
	for _, key := range []string{"key=P//bad", "key=b/stolen", "key=P//future"} {
		if n := strings.Count(log.String(), key); n != 1 {
			t.Errorf("refusal of %s logged %d times, want once", key, n)
		}
	}
	// A malformed message is ignored and logged.
	a.bcast.QueueBroadcast(&storeBroadcast{name: "junk", msg: []byte{msgStoreEntry, 9, 9}})
	waitFor(t, "malformed message logged", func() bool { return strings.Contains(log.String(), "malformed store message ignored") })
}

// TestStoreTombstonePurgedEverywhere: with a short TTL, a deletion reaches
// every node and its tombstone is then purged everywhere.
func TestStoreTombstonePurgedEverywhere(t *testing.T) {
	ms := startStoreCluster(t, 3, func(c *Config) { c.TombstoneTTL = 300 * time.Millisecond; c.PushPullInterval = 200 * time.Millisecond })
	if _, err := ms[0].Put(StorePolicy, "P//short-lived", []byte("v")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "put everywhere", func() bool { return converged(ms) && len(ms[2].List(StorePolicy)) == 1 })
	if _, err := ms[1].Delete(StorePolicy, "P//short-lived"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "tombstone purged everywhere", func() bool {
		for _, m := range ms {
			if len(m.store.all()) != 0 {
				return false
			}
		}
		return true
	})
}
