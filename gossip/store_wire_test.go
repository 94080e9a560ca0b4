package gossip

import (
	"bytes"
	"encoding/hex"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var updateStoreGolden = flag.Bool("update-store-golden", false, "rewrite testdata/store.golden")

func sampleEntries() []StoreEntry {
	return []StoreEntry{
		{Kind: StorePolicy, Key: "GlobalNetworkPolicy//deny-all", Value: []byte(`{"order":10}`), Version: HLC{Wall: 1764064800123, Logical: 2, Node: "node-a"}},
		{Kind: StorePolicy, Key: "NetworkPolicy/prod/web", Version: HLC{Wall: 1764064800500, Node: "node-b"}, Deleted: true},
		{Kind: StoreEndpoint, Key: "node-a/web-1", Value: []byte(`{"ip":"10.244.1.2"}`), Version: HLC{Wall: 1764064801000, Logical: 300, Node: "node-a"}},
		{Kind: StoreEndpoint, Key: "node-b/db", Value: []byte{}, Version: HLC{Wall: 1, Node: "node-b"}},
	}
}

var entryCmp = cmpopts.EquateEmpty()

func TestStoreWireRoundTrip(t *testing.T) {
	for _, e := range sampleEntries() {
		b := encodeStoreMessage(e)
		if b[0] != msgStoreEntry || len(b)-2 != entrySize(e) {
			t.Errorf("message %x: type or size wrong (entry size %d)", b, entrySize(e))
		}
		got, err := decodeStoreMessage(b[1:])
		if err != nil {
			t.Fatalf("decode %x: %v", b, err)
		}
		if diff := cmp.Diff(e, got, entryCmp); diff != "" {
			t.Errorf("message round trip (-want +got):\n%s", diff)
		}
	}
	for _, es := range [][]StoreEntry{nil, sampleEntries()} {
		got, err := decodeStore(encodeStore(es))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(es, got, entryCmp); diff != "" {
			t.Errorf("store round trip (-want +got):\n%s", diff)
		}
	}
	b, err := encodeState(sampleReservations(), sampleEntries())
	if err != nil {
		t.Fatal(err)
	}
	st, err := decodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	if !st.HasStore || len(st.Reservations) != 2 || st.Reservations[1].Name != "node-with-a-longer-name" {
		t.Errorf("state: %+v", st)
	}
	if diff := cmp.Diff(sampleEntries(), st.Store, entryCmp); diff != "" {
		t.Errorf("state store (-want +got):\n%s", diff)
	}
}

// TestStateCompat: a peer of the build before the envelope sends bare
// reservations, which are still read; unknown sections are skipped.
func TestStateCompat(t *testing.T) {
	legacy, err := encodeReservations(sampleReservations())
	if err != nil {
		t.Fatal(err)
	}
	st, err := decodeState(legacy)
	if err != nil || len(st.Reservations) != 2 || st.HasStore {
		t.Errorf("legacy state: %+v, %v", st, err)
	}
	b, err := encodeState(nil, sampleEntries()[:1])
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, 9, 3, 'x', 'y', 'z') // a section of a later version
	st, err = decodeState(b)
	if err != nil || len(st.Store) != 1 {
		t.Errorf("state with an unknown section: %+v, %v", st, err)
	}
}

func TestStoreWireMalformed(t *testing.T) {
	good := encodeStoreMessage(sampleEntries()[0])[1:]
	tomb := encodeStoreMessage(sampleEntries()[1])[1:]
	for name, b := range map[string][]byte{
		"empty":             {},
		"version":           {2, 1, 0, 1, 'k', 1, 0, 1, 'n', 0},
		"truncated":         good[:len(good)-1],
		"trailing":          append(bytes.Clone(good), 0),
		"unknown flag":      {1, 1, 2, 1, 'k', 1, 0, 1, 'n', 0},
		"non-minimal key":   {1, 1, 0, 0x81, 0x00, 'k', 1, 0, 1, 'n', 0},
		"key too long":      append([]byte{1, 1, 0, 0xfe, 0x01}, make([]byte, 254)...),
		"wall overflow":     {1, 1, 0, 1, 'k', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 1, 'n', 0},
		"logical overflow":  {1, 1, 0, 1, 'k', 1, 0xff, 0xff, 0xff, 0xff, 0x10, 1, 'n', 0},
		"value too long":    {1, 1, 0, 1, 'k', 1, 0, 1, 'n', 0x81, 0x80, 0x04},
		"value past end":    {1, 1, 0, 1, 'k', 1, 0, 1, 'n', 5, 'a'},
		"tombstone + value": append(bytes.Clone(tomb), 1, 'x'),
	} {
		if e, err := decodeStoreMessage(b); err == nil {
			t.Errorf("%s: decoded %+v, want an error", name, e)
		}
	}

	st := encodeStore(sampleEntries())
	dup := encodeStore([]StoreEntry{sampleEntries()[0], sampleEntries()[0]})
	swapped := encodeStore([]StoreEntry{sampleEntries()[2], sampleEntries()[0]})
	for name, b := range map[string][]byte{
		"empty":       {},
		"version":     {0, 0},
		"huge count":  {1, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"count > len": {1, 5, 0},
		"truncated":   st[:len(st)-2],
		"trailing":    append(bytes.Clone(st), 0),
		"duplicate":   dup,
		"unsorted":    swapped,
	} {
		if es, err := decodeStore(b); err == nil || es != nil {
			t.Errorf("store %s: decoded %v, %v; want an error and nothing", name, es, err)
		}
	}

	state, err := encodeState(sampleReservations(), sampleEntries())
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"magic":           {'Q', 1},
		"version":         {'P', 2},
		"truncated":       state[:len(state)-1],
		"section length":  {'P', 1, 2, 0x80},
		"past the end":    {'P', 1, 2, 9, 1},
		"repeated":        append(bytes.Clone(state), state[2:]...),
		"bad store":       {'P', 1, 2, 2, 1, 1},
		"bad reservation": {'P', 1, 1, 2, 1, 1},
		"empty resv":      {'P', 1, 1, 0},
		"only magic":      {'P'},
	} {
		if st, err := decodeState(b); err == nil {
			t.Errorf("state %s: decoded %+v, want an error", name, st)
		}
	}
}

// TestStoreGolden pins the wire formats: a change to testdata/store.golden
// is a change of wire format, which needs a new version.
func TestStoreGolden(t *testing.T) {
	es := sampleEntries()
	state, err := encodeState(sampleReservations()[:1], es[:2])
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	sb.WriteString("# Store wire formats, version 1 (see store_wire.go), as hex; one name and value a line.\n")
	for _, e := range es {
		sb.WriteString("message " + e.Kind.String() + " " + e.Key + " " + hex.EncodeToString(encodeStoreMessage(e)) + "\n")
	}
	sb.WriteString("store " + hex.EncodeToString(encodeStore(es)) + "\n")
	sb.WriteString("state " + hex.EncodeToString(state) + "\n")
	sb.WriteString("snapshot " + hex.EncodeToString(encodeSnapshot(es)) + "\n")
	path := filepath.Join("testdata", "store.golden")
	if *updateStoreGolden {
		if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run go test -run TestStoreGolden -update-store-golden to write it): %v", err)
	}
	if diff := cmp.Diff(string(want), sb.String()); diff != "" {
		t.Errorf("wire format changed (-golden +now):\n%s", diff)
	}
	// The golden bytes decode to the entries.
	for _, line := range strings.Split(string(want), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "snapshot" {
			continue
		}
		b, _ := hex.DecodeString(f[1])
		got, err := decodeSnapshot(b)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(es, got, entryCmp); diff != "" {
			t.Errorf("golden snapshot (-want +got):\n%s", diff)
		}
	}
}

// FuzzDecodeStoreMessage checks that decoding a store message never panics
// and that whatever it accepts encodes back to the same bytes.
func FuzzDecodeStoreMessage(f *testing.F) {
	for _, e := range sampleEntries() {
		b := encodeStoreMessage(e)[1:]
		f.Add(b)
		f.Add(b[:len(b)-1])
		f.Add(append(bytes.Clone(b), 0))
	}
	f.Add([]byte{})
	f.Add([]byte{1, 2, 1, 0x81, 0x00, 'k', 1, 0, 1, 'n'})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeStoreMessage(b)
		if err != nil {
			return
		}
		if again := encodeStoreMessage(e)[1:]; !bytes.Equal(again, b) {
			t.Fatalf("decoded %x as %+v, which encodes as %x", b, e, again)
		}
	})
}

// FuzzMergeState feeds arbitrary push/pull states to a node's
// MergeRemoteState: it must never panic, and afterwards every entry the
// store holds must be valid, sorted and accounted for in its size; a state
// that decodes must re-encode to one that decodes the same.
func FuzzMergeState(f *testing.F) {
	good, err := encodeState(sampleReservations(), sampleEntries())
	if err != nil {
		f.Fatal(err)
	}
	legacy, _ := encodeReservations(sampleReservations())
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(legacy)
	f.Add([]byte{'P', 1})
	f.Add([]byte{'P', 1, 2, 2, 1, 0})
	f.Add(append(bytes.Clone(good), 9, 1, 0))
	clock := newFakeClock()
	f.Fuzz(func(t *testing.T, b []byte) {
		m := &Membership{
			cfg:     Config{NodeName: "self", ClusterName: "c1", DeadReservation: 24 * time.Hour, Now: clock.Now},
			log:     slog.New(slog.DiscardHandler),
			members: map[string]*Member{},
			left:    map[string]time.Time{},
			wake:    make(chan struct{}, 1),
		}
		m.store = newStore("self", time.Hour, clock.Now, nil, m.log)
		(&delegate{m: m}).MergeRemoteState(b, false)
		size := 0
		all := m.store.all()
		for i, e := range all {
			if err := validateEntry(e); err != nil {
				t.Fatalf("store holds an invalid entry %+v: %v", e, err)
			}
			if i > 0 && compareEntries(all[i-1], e) >= 0 {
				t.Fatalf("entries out of order")
			}
			size += entrySize(e)
		}
		if size != m.store.size {
			t.Fatalf("size %d, entries add up to %d", m.store.size, size)
		}
		st, err := decodeState(b)
		if err != nil {
			return
		}
		again, err := encodeState(st.Reservations, st.Store)
		if err != nil {
			t.Fatalf("decoded state does not encode: %v", err)
		}
		st2, err := decodeState(again)
		if err != nil || len(st2.Reservations) != len(st.Reservations) || !cmp.Equal(st.Store, st2.Store, entryCmp) {
			t.Fatalf("re-decode: %v", err)
		}
	})
}
