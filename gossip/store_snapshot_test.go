package gossip

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSnapshotSaveLoad: the store survives a restart through its snapshot,
// saved shortly after a change (without Shutdown) and on Shutdown, mode 0600.
func TestSnapshotSaveLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "store.snap")
	withPath := func(c *Config) { c.StorePath = path }
	a := startStoreNode(t, "a", nil, withPath)
	if _, err := a.Put(StorePolicy, "GlobalNetworkPolicy//p1", []byte("one")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Put(StoreEndpoint, "a/web", []byte("ep")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Put(StorePolicy, "GlobalNetworkPolicy//p2", []byte("two")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Delete(StorePolicy, "GlobalNetworkPolicy//p2"); err != nil {
		t.Fatal(err)
	}
	// Saved by the debounce, before any Shutdown.
	waitFor(t, "snapshot written", func() bool {
		entries, err := readSnapshot(path)
		return err == nil && len(entries) == 3
	})
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("snapshot mode: %v, %v", fi.Mode(), err)
	}
	// A write just before Shutdown is saved by Shutdown.
	if _, err := a.Put(StorePolicy, "GlobalNetworkPolicy//p3", []byte("three")); err != nil {
		t.Fatal(err)
	}
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	want := storeDump(a, StorePolicy) + storeDump(a, StoreEndpoint)
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "*"))
	if len(matches) != 1 {
		t.Errorf("files next to the snapshot: %v", matches)
	}

	b := startStoreNode(t, "a", nil, withPath)
	if got := storeDump(b, StorePolicy) + storeDump(b, StoreEndpoint); got != want {
		t.Errorf("after restart:\n%s\nwant:\n%s", got, want)
	}
	if !strings.Contains(want, "p3=three") {
		t.Errorf("last write before Shutdown lost:\n%s", want)
	}
	// The tombstone came back too, and the clock is past every loaded version.
	if _, err := b.Delete(StorePolicy, "GlobalNetworkPolicy//p2"); err == nil {
		t.Error("the deleted policy is live after restart")
	}
	e, err := b.Put(StorePolicy, "GlobalNetworkPolicy//p1", []byte("again"))
	if err != nil {
		t.Fatal(err)
	}
	for _, old := range b.store.all() {
		if old.Key != e.Key && e.Version.Compare(old.Version) <= 0 {
			t.Errorf("new write %s not after loaded %s", e.Version, old.Version)
		}
	}
}

// TestSnapshotCorrupt: a damaged snapshot is moved aside, the node starts
// with an empty store and says so; a peer fills it again.
func TestSnapshotCorrupt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "store.snap")
	good := encodeSnapshot(sampleEntries())
	for name, content := range map[string][]byte{
		"garbage":   []byte("not a snapshot at all"),
		"truncated": good[:len(good)-5],
		"bit flip":  append(bytes.Clone(good[:20]), append([]byte{good[20] ^ 1}, good[21:]...)...),
		"empty":     {},
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			var log lineLog
			m := startStoreNode(t, "n", &log, func(c *Config) { c.StorePath = path })
			if got := m.store.all(); len(got) != 0 {
				t.Errorf("store holds %v", got)
			}
			if moved, err := os.ReadFile(path + ".corrupt"); err != nil || !bytes.Equal(moved, content) {
				t.Errorf("corrupt file not moved aside: %v", err)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Errorf("snapshot still in place: %v", err)
			}
			if l := log.String(); !strings.Contains(l, "store snapshot corrupt") || !strings.Contains(l, path) {
				t.Errorf("log does not say so:\n%s", l)
			}
			m.Shutdown()
		})
	}
}

// TestSnapshotRefilledByPeer: a node that lost its snapshot gets the store
// back from a peer by push/pull, and saves it.
func TestSnapshotRefilledByPeer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.snap")
	if err := os.WriteFile(path, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startStoreNode(t, "a", nil, nil)
	if _, err := a.Put(StorePolicy, "GlobalNetworkPolicy//p", []byte("v")); err != nil {
		t.Fatal(err)
	}
	b := startStoreNode(t, "b", nil, func(c *Config) { c.StorePath = path })
	if _, err := b.Join(t.Context(), []string{a.LocalAddr().String()}, time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b refilled and saved", func() bool {
		entries, err := readSnapshot(path)
		return err == nil && len(entries) == 1 && string(entries[0].Value) == "v"
	})
}

// TestSnapshotUnreadable: a snapshot that cannot be read at all (not one
// that reads as garbage) stops New with an error naming the file. A
// directory stands in for an unreadable file, since root reads any file.
func TestSnapshotUnreadable(t *testing.T) {
	path := t.TempDir()
	_, err := New(Config{NodeName: "n", ClusterName: "c1", Key: testKey, Record: testRecord("c1", ""), StorePath: path})
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("New with an unreadable snapshot: %v", err)
	}
}

func TestNegativeTombstoneTTL(t *testing.T) {
	_, err := New(Config{NodeName: "n", ClusterName: "c1", Key: testKey, Record: testRecord("c1", ""), TombstoneTTL: -time.Second})
	if err == nil || !strings.Contains(err.Error(), "-1s") {
		t.Fatalf("New with a negative tombstone TTL: %v", err)
	}
}

// TestNotifyMsgTypes: NotifyMsg tells messages apart by their first byte;
// unknown or empty ones are logged and change nothing.
func TestNotifyMsgTypes(t *testing.T) {
	var log lineLog
	m := startStoreNode(t, "a", &log, nil)
	d := &delegate{m: m}
	e := StoreEntry{Kind: StorePolicy, Key: "P//x", Value: []byte("v"), Version: HLC{Wall: time.Now().UnixMilli(), Node: "b"}}
	for _, b := range [][]byte{nil, {'X', 1, 2}, {msgLeaveIntent}, {msgStoreEntry}, append([]byte{msgLeaveIntent}, encodeStoreMessage(e)...)} {
		d.NotifyMsg(b)
	}
	if got := strings.Count(log.String(), "malformed"); got != 5 {
		t.Errorf("%d malformed messages logged, want 5:\n%s", got, log.String())
	}
	if len(m.store.all()) != 0 {
		t.Fatal("store changed")
	}
	d.NotifyMsg(encodeStoreMessage(e))
	if !hasValue(m, StorePolicy, "P//x", []byte("v")) {
		t.Error("a good store message was not applied")
	}
}
