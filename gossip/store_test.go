package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeClock is a settable clock for stores under test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.UnixMilli(1_764_064_800_000)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func testStore(self string, clock *fakeClock, validate func(StoreEntry) error, log *lineLog) *store {
	var h slog.Handler = slog.DiscardHandler
	if log != nil {
		h = slog.NewTextHandler(log, nil)
	}
	return newStore(self, time.Hour, clock.Now, validate, slog.New(h))
}

func mustPut(t *testing.T, s *store, kind StoreKind, key, value string) StoreEntry {
	t.Helper()
	e, _, err := s.put(kind, key, []byte(value))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// dump renders every entry of s, tombstones included, one a line.
func dump(s *store) string {
	var sb strings.Builder
	for _, e := range s.all() {
		fmt.Fprintf(&sb, "%s %s %q deleted=%v %s\n", e.Kind, e.Key, e.Value, e.Deleted, e.Version)
	}
	return sb.String()
}

func TestHLCOrder(t *testing.T) {
	for _, tc := range []struct {
		a, b HLC
		want int
	}{
		{HLC{1, 0, "a"}, HLC{1, 0, "a"}, 0},
		{HLC{1, 0, "z"}, HLC{2, 0, "a"}, -1},
		{HLC{2, 0, "a"}, HLC{1, 9, "z"}, 1},
		{HLC{2, 1, "a"}, HLC{2, 2, "a"}, -1},
		{HLC{2, 3, "a"}, HLC{2, 2, "z"}, 1},
		{HLC{2, 2, "a"}, HLC{2, 2, "b"}, -1},
		{HLC{2, 2, "b"}, HLC{2, 2, "a"}, 1},
	} {
		if got := tc.a.Compare(tc.b); got != tc.want {
			t.Errorf("%s.Compare(%s) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := tc.b.Compare(tc.a); got != -tc.want {
			t.Errorf("%s.Compare(%s) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestHLCAdvance(t *testing.T) {
	clock := newFakeClock()
	s := testStore("a", clock, nil, nil)
	now := clock.Now().UnixMilli()
	versions := []HLC{mustPut(t, s, StorePolicy, "P/ns/x", "1").Version}
	// Same millisecond: the logical counter orders the writes.
	versions = append(versions, mustPut(t, s, StorePolicy, "P/ns/x", "2").Version)
	// The wall clock goes back a second: still after the last write.
	clock.Add(-time.Second)
	versions = append(versions, mustPut(t, s, StorePolicy, "P/ns/y", "3").Version)
	// A peer's write from 10 minutes ahead (within the skew allowed) moves
	// the clock: the next local write is after it.
	remote := StoreEntry{Kind: StorePolicy, Key: "P/ns/z", Value: []byte("r"), Version: HLC{Wall: now + 600_000, Logical: 7, Node: "b"}}
	if got := s.merge([]StoreEntry{remote}, "test", false); len(got) != 1 {
		t.Fatalf("remote entry not applied: %v", dump(s))
	}
	versions = append(versions, mustPut(t, s, StorePolicy, "P/ns/x", "4").Version)
	// The wall clock catches up and passes: wall time again, logical 0.
	clock.Add(time.Hour)
	versions = append(versions, mustPut(t, s, StorePolicy, "P/ns/x", "5").Version)

	want := []HLC{{now, 0, "a"}, {now, 1, "a"}, {now, 2, "a"}, {now + 600_000, 8, "a"}, {now - 1000 + 3_600_000, 0, "a"}}
	if diff := cmp.Diff(want, versions); diff != "" {
		t.Errorf("versions (-want +got):\n%s", diff)
	}
	for i := 1; i < len(versions); i++ {
		if versions[i].Compare(versions[i-1]) <= 0 {
			t.Errorf("version %d %s not after %s", i, versions[i], versions[i-1])
		}
	}
}

// TestLWWConflict: two nodes write the same key concurrently; whatever
// order each sees the writes in, both keep the same winner: the later
// version, and for the same wall time and counter the greater node name.
func TestLWWConflict(t *testing.T) {
	for _, tc := range []struct {
		name   string
		skewB  time.Duration // b's clock relative to a's
		winner string
	}{
		{"b later", time.Millisecond, "from b"},
		{"a later", -time.Millisecond, "from a"},
		{"same millisecond, node name breaks the tie", 0, "from b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, cb := newFakeClock(), newFakeClock()
			cb.Add(tc.skewB)
			a, b := testStore("a", ca, nil, nil), testStore("b", cb, nil, nil)
			ea := mustPut(t, a, StorePolicy, "NetworkPolicy/prod/web", "from a")
			eb := mustPut(t, b, StorePolicy, "NetworkPolicy/prod/web", "from b")
			a.merge([]StoreEntry{eb}, "b", false)
			b.merge([]StoreEntry{ea}, "a", false)
			// Repeating a delivery changes nothing.
			a.merge([]StoreEntry{eb, ea}, "b", false)
			for _, s := range []*store{a, b} {
				e, ok := s.get(StorePolicy, "NetworkPolicy/prod/web")
				if !ok || string(e.Value) != tc.winner {
					t.Errorf("node %s has %q, want %q", s.self, e.Value, tc.winner)
				}
			}
			if dump(a) != dump(b) {
				t.Errorf("stores differ:\n%s\n%s", dump(a), dump(b))
			}
		})
	}
}

// TestLWWSameVersion: two different entries with the same version (a node
// whose clock went back and that lost its snapshot) resolve the same way
// in any order: tombstone first, then the greater value.
func TestLWWSameVersion(t *testing.T) {
	v := HLC{Wall: 1_764_064_800_000, Node: "a"}
	x := StoreEntry{Kind: StorePolicy, Key: "P//x", Value: []byte("x"), Version: v}
	y := StoreEntry{Kind: StorePolicy, Key: "P//x", Value: []byte("y"), Version: v}
	d := StoreEntry{Kind: StorePolicy, Key: "P//x", Version: v, Deleted: true}
	for _, order := range [][]StoreEntry{{x, y, d}, {d, y, x}, {y, d, x}, {x, d, y}} {
		s := testStore("b", newFakeClock(), nil, nil)
		s.merge(order, "test", false)
		if got := dump(s); !strings.Contains(got, "deleted=true") {
			t.Errorf("order %v: %s, want the tombstone", order, got)
		}
	}
	for _, order := range [][]StoreEntry{{x, y}, {y, x}} {
		s := testStore("b", newFakeClock(), nil, nil)
		s.merge(order, "test", false)
		if e, _ := s.get(StorePolicy, "P//x"); string(e.Value) != "y" {
			t.Errorf("order %v: %q, want y", order, e.Value)
		}
	}
}

func TestTombstone(t *testing.T) {
	clock := newFakeClock()
	a := testStore("a", clock, nil, nil)
	old := mustPut(t, a, StorePolicy, "P/ns/x", "old")
	clock.Add(time.Millisecond)
	del, err := a.del(StorePolicy, "P/ns/x")
	if err != nil {
		t.Fatal(err)
	}
	if !del.Deleted || del.Value != nil || del.Version.Compare(old.Version) <= 0 {
		t.Fatalf("tombstone %+v after %+v", del, old)
	}
	if _, ok := a.get(StorePolicy, "P/ns/x"); ok {
		t.Fatal("deleted key still listed")
	}
	if _, err := a.del(StorePolicy, "P/ns/x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
	if _, err := a.del(StorePolicy, "P/ns/never"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete of an unknown key: %v, want ErrNotFound", err)
	}

	// The tombstone beats the older write arriving late...
	a.merge([]StoreEntry{old}, "late", false)
	if _, ok := a.get(StorePolicy, "P/ns/x"); ok {
		t.Error("an older write brought a deleted key back")
	}
	// ...and loses to a newer one.
	newer := StoreEntry{Kind: StorePolicy, Key: "P/ns/x", Value: []byte("new"), Version: HLC{Wall: del.Version.Wall + 1, Node: "b"}}
	a.merge([]StoreEntry{newer}, "b", false)
	if e, ok := a.get(StorePolicy, "P/ns/x"); !ok || string(e.Value) != "new" {
		t.Errorf("after a newer write: %+v, %v", e, ok)
	}
	// A tombstone elsewhere that is older than the write loses too.
	b := testStore("b", newFakeClock(), nil, nil)
	b.merge([]StoreEntry{newer, del}, "a", false)
	if e, ok := b.get(StorePolicy, "P/ns/x"); !ok || string(e.Value) != "new" {
		t.Errorf("b: %+v, %v", e, ok)
	}
}

func TestTombstonePurge(t *testing.T) {
	clock := newFakeClock()
	s := testStore("a", clock, nil, nil) // TTL 1h
	mustPut(t, s, StorePolicy, "P//keep", "v")
	old := mustPut(t, s, StorePolicy, "P//gone", "v")
	del, err := s.del(StorePolicy, "P//gone")
	if err != nil {
		t.Fatal(err)
	}
	clock.Add(59 * time.Minute)
	if n := s.purge(); n != 0 {
		t.Fatalf("purged %d before the TTL", n)
	}
	clock.Add(2 * time.Minute)
	if n := s.purge(); n != 1 {
		t.Fatalf("purged %d after the TTL, want 1", n)
	}
	if got, want := dump(s), "policy P//keep \"v\" deleted=false "; !strings.HasPrefix(got, want) || strings.Count(got, "\n") != 1 {
		t.Errorf("after purge:\n%s", got)
	}
	if s.size != entrySize(mustGet(t, s, "P//keep")) {
		t.Errorf("size %d after purge, want %d", s.size, entrySize(mustGet(t, s, "P//keep")))
	}
	// An expired tombstone from a peer is not taken in again...
	if got := s.merge([]StoreEntry{del}, "b", false); len(got) != 0 {
		t.Errorf("expired tombstone applied: %v", got)
	}
	// ...but the trade-off: the write it deleted, arriving from a node that
	// was away longer than the TTL, comes back.
	if got := s.merge([]StoreEntry{old}, "b", false); len(got) != 1 {
		t.Errorf("old write after purge: applied %v, want it back (documented trade-off)", got)
	}
	// An expired tombstone for a key still held wins over it.
	if got := s.merge([]StoreEntry{del}, "b", false); len(got) != 1 {
		t.Errorf("expired tombstone over a live older write: applied %v", got)
	}
}

func mustGet(t *testing.T, s *store, key string) StoreEntry {
	t.Helper()
	e, ok := s.get(StorePolicy, key)
	if !ok {
		t.Fatalf("no %s", key)
	}
	return e
}

func TestEndpointOwnership(t *testing.T) {
	var log lineLog
	clock := newFakeClock()
	s := testStore("a", clock, nil, &log)
	if _, _, err := s.put(StoreEndpoint, "a/web-1", []byte("{}")); err != nil {
		t.Fatalf("own endpoint: %v", err)
	}
	var ee *EntryError
	if _, _, err := s.put(StoreEndpoint, "b/web-1", []byte("{}")); !errors.As(err, &ee) || ee.Field != "key" || ee.Value != "b/web-1" {
		t.Errorf("put of b's endpoint on a: %v", err)
	}
	if _, err := s.del(StoreEndpoint, "b/web-1"); err == nil {
		t.Error("delete of b's endpoint on a accepted")
	}
	rev := s.rev.Load()
	forged := StoreEntry{Kind: StoreEndpoint, Key: "b/web-1", Value: []byte("{}"), Version: HLC{Wall: clock.Now().UnixMilli(), Node: "c"}}
	for range 3 {
		if got := s.merge([]StoreEntry{forged}, "c", false); len(got) != 0 {
			t.Fatalf("forged endpoint applied: %v", got)
		}
	}
	if s.rev.Load() != rev || len(s.list(StoreEndpoint)) != 1 {
		t.Errorf("store changed: rev %d->%d, %s", rev, s.rev.Load(), dump(s))
	}
	if n := strings.Count(log.String(), "store entry refused"); n != 1 {
		t.Errorf("refusal logged %d times, want once:\n%s", n, log.String())
	}
	if !strings.Contains(log.String(), "may be written only by node b") {
		t.Errorf("log does not say why:\n%s", log.String())
	}
	genuine := forged
	genuine.Version.Node = "b"
	if got := s.merge([]StoreEntry{genuine}, "b", false); len(got) != 1 {
		t.Errorf("b's own endpoint refused")
	}
}

func TestValidatorRefuses(t *testing.T) {
	var log lineLog
	validate := func(e StoreEntry) error {
		if strings.Contains(string(e.Value), "bad") {
			return errors.New("value says bad")
		}
		return nil
	}
	clock := newFakeClock()
	s := testStore("a", clock, validate, &log)
	if _, _, err := s.put(StorePolicy, "P//x", []byte("bad")); err == nil || !strings.Contains(err.Error(), "value says bad") {
		t.Errorf("put refused by the validator: %v", err)
	}
	remote := StoreEntry{Kind: StorePolicy, Key: "P//y", Value: []byte("bad too"), Version: HLC{Wall: clock.Now().UnixMilli(), Node: "b"}}
	s.merge([]StoreEntry{remote, remote}, "b", false)
	if s.rev.Load() != 0 || dump(s) != "" || s.size != 0 {
		t.Errorf("something applied: rev %d\n%s", s.rev.Load(), dump(s))
	}
	if n := strings.Count(log.String(), "store entry refused"); n != 1 {
		t.Errorf("refusal logged %d times, want once:\n%s", n, log.String())
	}
	select {
	case <-s.changed:
		t.Error("StoreChanged signalled for refused entries")
	default:
	}
}

func TestStoreLimits(t *testing.T) {
	clock := newFakeClock()
	s := testStore("a", clock, nil, nil)
	long := strings.Repeat("k", MaxStoreKeyLength)
	for _, tc := range []struct {
		kind       StoreKind
		key        string
		value      []byte
		field, bad string
	}{
		{3, "P//x", nil, "kind", "3"},
		{StorePolicy, "", nil, "key", ""},
		{StorePolicy, "P/" + long, nil, "key", "P/" + long[:30] + "..."},
		{StorePolicy, "P//x y", nil, "key", "P//x y"},
		{StorePolicy, "P//x\n", nil, "key", "P//x\n"},
		{StorePolicy, "P//\xff", nil, "key", "P//\xff"},
		{StorePolicy, "P/x", nil, "key", "P/x"},
		{StorePolicy, "/ns/x", nil, "key", "/ns/x"},
		{StorePolicy, "P/ns/", nil, "key", "P/ns/"},
		{StorePolicy, "P/a/b/c", nil, "key", "P/a/b/c"},
		{StoreEndpoint, "a", nil, "key", "a"},
		{StoreEndpoint, "a/", nil, "key", "a/"},
		{StoreEndpoint, "a/b/c", nil, "key", "a/b/c"},
		{StorePolicy, "P//x", make([]byte, MaxStoreValueSize+1), "value", "65537 bytes"},
	} {
		_, _, err := s.put(tc.kind, tc.key, tc.value)
		var ee *EntryError
		if !errors.As(err, &ee) || ee.Field != tc.field || ee.Value != tc.bad {
			t.Errorf("put(%d, %q, %d bytes) = %v; want an EntryError for %s %q", tc.kind, tc.key, len(tc.value), err, tc.field, tc.bad)
		}
	}
	if dump(s) != "" {
		t.Errorf("refused puts changed the store:\n%s", dump(s))
	}
	// The largest key and value are fine; an empty value too.
	mustPut(t, s, StorePolicy, "P//"+long[:MaxStoreKeyLength-3], string(make([]byte, MaxStoreValueSize)))
	mustPut(t, s, StorePolicy, "P//empty", "")

	// Remote entries: the same limits, plus the clock skew.
	now := clock.Now().UnixMilli()
	for name, e := range map[string]StoreEntry{
		"too far ahead":      {Kind: StorePolicy, Key: "P//f", Version: HLC{Wall: now + int64(MaxClockSkew/time.Millisecond) + 1, Node: "b"}},
		"no wall time":       {Kind: StorePolicy, Key: "P//f", Version: HLC{Node: "b"}},
		"no node":            {Kind: StorePolicy, Key: "P//f", Version: HLC{Wall: now}},
		"tombstone w/ value": {Kind: StorePolicy, Key: "P//f", Value: []byte("x"), Deleted: true, Version: HLC{Wall: now, Node: "b"}},
		"bad key":            {Kind: StorePolicy, Key: "f", Version: HLC{Wall: now, Node: "b"}},
	} {
		if got := s.merge([]StoreEntry{e}, "b", false); len(got) != 0 {
			t.Errorf("%s: applied %+v", name, got)
		}
	}
	if _, ok := s.get(StorePolicy, "P//f"); ok {
		t.Error("a refused remote entry is in the store")
	}
}

func TestStoreFull(t *testing.T) {
	s := testStore("a", newFakeClock(), nil, nil)
	value := make([]byte, MaxStoreValueSize)
	var err error
	n := 0
	for ; err == nil && n < 1000; n++ {
		_, _, err = s.put(StorePolicy, fmt.Sprintf("P//p%04d", n), value)
	}
	if !errors.Is(err, ErrStoreFull) {
		t.Fatalf("after %d puts of 64 KiB: %v, want ErrStoreFull", n, err)
	}
	if s.size > MaxStoreSize || s.size < MaxStoreSize-2*MaxStoreValueSize {
		t.Errorf("size %d when full, limit %d", s.size, MaxStoreSize)
	}
	// Replacing an entry by a smaller one is still allowed.
	if _, _, err := s.put(StorePolicy, "P//p0000", nil); err != nil {
		t.Errorf("shrinking put refused: %v", err)
	}
}

// TestPutIdempotent: writing the value in force again writes nothing.
func TestPutIdempotent(t *testing.T) {
	clock := newFakeClock()
	s := testStore("a", clock, nil, nil)
	first := mustPut(t, s, StorePolicy, "P//x", "v")
	rev := s.rev.Load()
	<-s.changed
	clock.Add(time.Second)
	again, wrote, err := s.put(StorePolicy, "P//x", []byte("v"))
	if err != nil || wrote || again.Version != first.Version {
		t.Errorf("second put of the same value: %+v, wrote %v, %v; want the first entry", again, wrote, err)
	}
	if s.rev.Load() != rev {
		t.Errorf("revision moved from %d to %d", rev, s.rev.Load())
	}
	select {
	case <-s.changed:
		t.Error("change signalled")
	default:
	}
	// After a delete, the same value is a new write.
	if _, err := s.del(StorePolicy, "P//x"); err != nil {
		t.Fatal(err)
	}
	if _, wrote, _ := s.put(StorePolicy, "P//x", []byte("v")); !wrote {
		t.Error("put after delete not written")
	}
}
