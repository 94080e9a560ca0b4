package gossip

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
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
