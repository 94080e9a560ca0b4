package probe

import (
	"encoding/binary"
	"encoding/hex"
	"net"
	"net/netip"
	"testing"
)

func TestAppendIPv4UDP(t *testing.T) {
	src, dst := netip.MustParseAddr("10.244.1.0"), netip.MustParseAddr("10.244.2.0")
	b := appendIPv4UDP(nil, src, dst, 7947, 7947, []byte("hello"))
	if len(b) != 20+8+5 {
		t.Fatalf("length %d", len(b))
	}
	const wantHeader = "4500002100004000401100000af401000af40200"
	h := append([]byte(nil), b[:20]...)
	h[10], h[11] = 0, 0
	if got := hex.EncodeToString(h); got != wantHeader {
		t.Errorf("IPv4 header without checksum\n got %s\nwant %s", got, wantHeader)
	}
	if c := checksum(b[:20], 0); c != 0 {
		t.Errorf("IPv4 header checksum does not verify: %#x", c)
	}
	// The UDP checksum verifies over the pseudo-header.
	var pseudo uint32
	s4, d4 := src.As4(), dst.As4()
	pseudo += uint32(binary.BigEndian.Uint16(s4[0:])) + uint32(binary.BigEndian.Uint16(s4[2:]))
	pseudo += uint32(binary.BigEndian.Uint16(d4[0:])) + uint32(binary.BigEndian.Uint16(d4[2:]))
	pseudo += 17 + uint32(len(b)-20)
	if c := checksum(b[20:], pseudo); c != 0 {
		t.Errorf("UDP checksum does not verify: %#x", c)
	}
	if string(b[28:]) != "hello" || binary.BigEndian.Uint16(b[20:]) != 7947 || binary.BigEndian.Uint16(b[24:]) != 13 {
		t.Errorf("UDP header or payload wrong: %x", b[20:])
	}
}

func TestAppendVXLAN(t *testing.T) {
	dst := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	src := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	b := appendVXLAN(nil, 0x123456, dst, src, []byte{0x45})
	const want = "08000000" + "12345600" + "020000000002" + "020000000001" + "0800" + "45"
	if got := hex.EncodeToString(b); got != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
}
