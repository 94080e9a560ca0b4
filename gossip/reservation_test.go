package gossip

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func sampleReservations() []reservation {
	return []reservation{
		{Name: "a1", Addr: netip.MustParseAddrPort("198.18.10.2:7946"), Age: 3 * time.Second, Record: testRecord("c1", "10.244.1.0/24")},
		{Name: "node-with-a-longer-name", Addr: netip.MustParseAddrPort("[2001:db8::1]:7946"), Age: 0, Record: testRecord("c1", "")},
	}
}

func TestReservationsRoundTrip(t *testing.T) {
	for _, rs := range [][]reservation{nil, sampleReservations()} {
		b, err := encodeReservations(rs)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeReservations(b)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(len(rs), len(got)); diff != "" {
			t.Fatal(diff)
		}
		for i := range rs {
			if got[i].Name != rs[i].Name || got[i].Addr != rs[i].Addr || got[i].Age != rs[i].Age || !got[i].Record.Equal(rs[i].Record) {
				t.Errorf("entry %d: got %+v, want %+v", i, got[i], rs[i])
			}
		}
	}
}

func TestReservationsMalformed(t *testing.T) {
	good, err := encodeReservations(sampleReservations())
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"version":       {9, 0},
		"no count":      {1},
		"huge count":    {1, 0xff, 0xff, 0x03},
		"truncated":     good[:len(good)-3],
		"trailing":      append(append([]byte(nil), good...), 0),
		"empty name":    {1, 1, 0},
		"bad record":    append([]byte{1, 1, 1, 'x'}, append(make([]byte, 18), 0, 3, 'W', 1, 0)...),
		"record length": append([]byte{1, 1, 1, 'x'}, append(make([]byte, 18), 0, 0xff, 0x0f)...),
	} {
		if rs, err := decodeReservations(b); err == nil || rs != nil {
			t.Errorf("%s: decode = %v, %v; want an error and nothing", name, rs, err)
		}
	}
}

func FuzzDecodeReservations(f *testing.F) {
	good, err := encodeReservations(sampleReservations())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{1, 0})
	f.Add([]byte{})
	f.Add(good[:20])
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := decodeReservations(b)
		if err != nil {
			return
		}
		again, err := encodeReservations(rs)
		if err != nil {
			t.Fatalf("decoded reservations do not encode: %v", err)
		}
		rs2, err := decodeReservations(again)
		if err != nil || len(rs2) != len(rs) {
			t.Fatalf("re-decode: %v (%d vs %d)", err, len(rs2), len(rs))
		}
	})
}

func FuzzDecodeLeaveIntent(f *testing.F) {
	f.Add(encodeLeaveIntent("node-1"))
	f.Add([]byte("L"))
	f.Add([]byte("Xnode"))
	f.Fuzz(func(t *testing.T, b []byte) {
		name, ok := decodeLeaveIntent(b)
		if ok && string(encodeLeaveIntent(name)) != string(b) {
			t.Fatalf("round trip of %q gave %q", b, encodeLeaveIntent(name))
		}
	})
}

// TestNewNodeLearnsDeadMembers: a node that joins after another died learns
// the dead one (and so reserves its subnet) from push/pull.
func TestNewNodeLearnsDeadMembers(t *testing.T) {
	a := startNode(t, "a", "c1", testKey, nil)
	b := startNode(t, "b", "c1", testKey, nil)
	collect(a)
	collect(b)
	if _, err := b.Join(context.Background(), []string{a.LocalAddr().String()}, time.Second); err != nil {
		t.Fatal(err)
	}
	rec := testRecord("c1", "10.244.9.0/24")
	if err := b.SetRecord(rec, time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a sees b's record", func() bool { m, ok := member(a, "b"); return ok && m.Record.Equal(rec) })
	b.Shutdown()
	waitFor(t, "a marks b dead", func() bool { m, ok := member(a, "b"); return ok && m.State == StateDead })

	c := startNode(t, "c", "c1", testKey, nil)
	collect(c)
	if _, err := c.Join(context.Background(), []string{a.LocalAddr().String()}, time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "c learns b is dead, with its record", func() bool {
		m, ok := member(c, "b")
		return ok && m.State == StateDead && m.Record.Equal(rec)
	})
}
