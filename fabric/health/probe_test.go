package health

import (
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/weft-net/weft/fabric"
)

var testKey = ProbeKey([]byte("0123456789abcdef0123456789abcdef"), "lab")

func TestProbeRoundTrip(t *testing.T) {
	for _, p := range []Probe{
		{Type: ProbeRequest, Path: fabric.PathDirect, Node: "h1", Seq: 1, Sent: time.Unix(0, 1)},
		{Type: ProbeReply, Path: fabric.PathWireGuard, Node: "node-with.a-long_name", Seq: 1<<64 - 1, Sent: time.Unix(1764000000, 123456789)},
		{Type: ProbeRequest, Path: fabric.PathIPIP, Node: string(make255()), Seq: 7, Sent: time.Unix(5, 0)},
		{Type: ProbeRequest, Path: fabric.PathVXLAN, Node: "h1", Seq: 8, Sent: time.Unix(5, 0), Pad: 1400},
		{Type: ProbeRequest, Path: fabric.PathDirect, Node: "h1", Seq: 9, Sent: time.Unix(5, 0), Pad: MaxPad},
		{Type: ProbeTest, Path: fabric.PathVXLAN, Node: "h1", Seq: 10, Sent: time.Unix(5, 0), Payload: []byte{0, 0, 0xff, 0xff, 0x80}},
		{Type: ProbeEcho, Path: fabric.PathWireGuard, Node: "h2", Seq: 11, Sent: time.Unix(5, 0), Payload: []byte{}},
	} {
		b, err := AppendProbe(nil, p, testKey)
		if err != nil {
			t.Fatalf("encode %+v: %v", p, err)
		}
		got, err := DecodeProbe(b, testKey)
		if err != nil {
			t.Fatalf("decode %+v: %v", p, err)
		}
		if diff := cmp.Diff(p, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

func make255() []byte {
	b := make([]byte, 255)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}

// TestProbeGolden pins the wire format.
func TestProbeGolden(t *testing.T) {
	p := Probe{Type: ProbeRequest, Path: fabric.PathVXLAN, Node: "h1", Seq: 0x0102030405060708, Sent: time.Unix(0, 0x1122334455667788)}
	b, err := AppendProbe(nil, p, testKey)
	if err != nil {
		t.Fatal(err)
	}
	const want = "57465448" + "01" + "01" + "02" + "02" + "6831" + "0102030405060708" + "1122334455667788" + "0000"
	if got := hex.EncodeToString(b[:len(b)-probeMACLen]); got != want {
		t.Errorf("header\n got %s\nwant %s", got, want)
	}
	if len(b) != ProbeLen("h1", 0) || len(b) != probeFixed+2 {
		t.Errorf("length %d, want %d", len(b), probeFixed+2)
	}
}

func TestDecodeProbeErrors(t *testing.T) {
	good, err := AppendProbe(nil, Probe{Type: ProbeReply, Path: fabric.PathDirect, Node: "h2", Seq: 9, Sent: time.Unix(9, 0)}, testKey)
	if err != nil {
		t.Fatal(err)
	}
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	resign := func(b []byte) []byte {
		body := b[:len(b)-probeMACLen]
		out, _ := appendMAC(body, testKey)
		return out
	}
	tests := []struct {
		name string
		in   []byte
		key  []byte
		want string
	}{
		{"empty", nil, testKey, ErrNotProbe.Error()},
		{"other magic", mod(func(b []byte) []byte { b[0] = 'X'; return b }), testKey, ErrNotProbe.Error()},
		{"short", good[:10], testKey, ErrNotProbe.Error()},
		{"version", mod(func(b []byte) []byte { b[4] = 2; return b }), testKey, "probe version 2: want 1"},
		{"one byte more", append(append([]byte(nil), good...), 0), testKey, "probe length 45: want 44 for a 2-byte name and 0 bytes of padding"},
		{"one byte less", good[:len(good)-1], testKey, "probe length 43: want at least 44 for a 2-byte name"},
		{"padding longer than the packet", mod(func(b []byte) []byte { b[26] = 1; return b }), testKey, "probe length 44: want 300 for a 2-byte name and 256 bytes of padding"},
		{"padding says 1, none there", mod(func(b []byte) []byte { b[27] = 1; return b }), testKey, "probe length 44: want 45 for a 2-byte name and 1 bytes of padding"},
		{"other key", good, ProbeKey([]byte("other key......................."), "lab"), ErrBadMAC.Error()},
		{"other cluster", good, ProbeKey([]byte("0123456789abcdef0123456789abcdef"), "prod"), ErrBadMAC.Error()},
		{"flipped seq bit", mod(func(b []byte) []byte { b[12] ^= 1; return b }), testKey, ErrBadMAC.Error()},
		{"type 5, signed", mod(func(b []byte) []byte { b[5] = 5; return resign(b) }), testKey, "probe type 5: want 1 to 4"},
		{"path 0, signed", mod(func(b []byte) []byte { b[6] = 0; return resign(b) }), testKey, "probe path code 0: unknown"},
		{"path 9, signed", mod(func(b []byte) []byte { b[6] = 9; return resign(b) }), testKey, "probe path code 9: unknown"},
		{"space in name, signed", mod(func(b []byte) []byte { b[8] = ' '; return resign(b) }), testKey, `probe node name " 2": byte 0x20 not allowed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeProbe(tt.in, tt.key)
			if err == nil || err.Error() != tt.want {
				t.Errorf("DecodeProbe = %v, want %s", err, tt.want)
			}
		})
	}
	if _, err := DecodeProbe(good, ProbeKey(nil, "lab")); !errors.Is(err, ErrBadMAC) {
		t.Errorf("insecure key on a secure probe: %v, want ErrBadMAC", err)
	}
}

func TestAppendProbeErrors(t *testing.T) {
	for _, p := range []Probe{
		{Type: 0, Path: fabric.PathDirect, Node: "h1"},
		{Type: ProbeRequest, Path: fabric.PathNone, Node: "h1"},
		{Type: ProbeRequest, Path: fabric.PathDirect, Node: ""},
		{Type: ProbeRequest, Path: fabric.PathDirect, Node: string(make([]byte, 256))},
		{Type: ProbeRequest, Path: fabric.PathDirect, Node: "h\n1"},
		{Type: ProbeRequest, Path: fabric.PathDirect, Node: "h1", Pad: -1},
		{Type: ProbeRequest, Path: fabric.PathDirect, Node: "h1", Pad: MaxPad + 1},
		{Type: 5, Path: fabric.PathDirect, Node: "h1"},
		{Type: ProbeTest, Path: fabric.PathDirect, Node: "h1", Pad: 1},
		{Type: ProbeRequest, Path: fabric.PathDirect, Node: "h1", Payload: []byte{1}},
		{Type: ProbeEcho, Path: fabric.PathDirect, Node: "h1", Payload: make([]byte, MaxPad+1)},
	} {
		if b, err := AppendProbe([]byte("x"), p, testKey); err == nil || string(b) != "x" {
			t.Errorf("AppendProbe(%+v) = %q, %v; want an error and nothing appended", p, b, err)
		}
	}
}

// FuzzDecodeProbe checks that the decoder never panics, and that whatever it
// accepts encodes back to the same bytes.
func FuzzDecodeProbe(f *testing.F) {
	for _, p := range []Probe{
		{Type: ProbeRequest, Path: fabric.PathDirect, Node: "h1", Seq: 1, Sent: time.Unix(1, 0)},
		{Type: ProbeReply, Path: fabric.PathVXLAN, Node: "h-2.example", Seq: 1 << 40, Sent: time.Unix(1764000000, 5)},
		{Type: ProbeReply, Path: fabric.PathWireGuard, Node: string(make255()), Seq: 3},
		{Type: ProbeRequest, Path: fabric.PathVXLAN, Node: "h1", Seq: 4, Pad: 3},
		{Type: ProbeTest, Path: fabric.PathVXLAN, Node: "h1", Seq: 5, Payload: []byte{0xff, 0, 0xff}},
		{Type: ProbeEcho, Path: fabric.PathIPIP, Node: "h2", Seq: 6, Payload: []byte{}},
	} {
		b, err := AppendProbe(nil, p, testKey)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	f.Add([]byte("WFTH"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, key := range [][]byte{testKey, nil} {
			p, err := DecodeProbe(b, key)
			if err != nil {
				continue
			}
			again, err := AppendProbe(nil, p, key)
			if err != nil {
				t.Fatalf("accepted %x as %+v, which does not encode: %v", b, p, err)
			}
			if string(again) != string(b) {
				t.Fatalf("accepted %x as %+v, which encodes as %x", b, p, again)
			}
		}
	})
}
