package ipip

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// kernelVector is an IP-in-IP packet as Linux's ipip sends it (see
// kernelIPIP in wire_linux_test.go for the field by field reading; the
// checksums were worked out by hand): 198.18.1.1 -> 198.18.1.2, carrying
// UDP 10.244.1.2:40001 -> 10.244.2.2:9998 "kernel-ipip!".
const kernelVector = "4500003c123440003f049b62c6120101c6120102" +
	"45000028000140003f1122d90af401020af40202" +
	"9c41270e0014d2566b65726e656c2d6970697021"

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ipv4 builds an IPv4 packet (IHL 5, ID 7) around payload.
func ipv4(src, dst string, proto byte, flags uint16, payload []byte) []byte {
	p := make([]byte, 20+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], 7)
	binary.BigEndian.PutUint16(p[6:], flags)
	p[8], p[9] = 64, proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[10:], checksum(p[:20], 0))
	copy(p[20:], payload)
	return p
}

func TestChecksum(t *testing.T) {
	// RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2.
	if got := checksum(unhex(t, "0001f203f4f5f6f7"), 0); got != ^uint16(0xddf2) {
		t.Errorf("RFC 1071 example: %#04x, want %#04x", got, ^uint16(0xddf2))
	}
	// Against a 16-bit reference, over every length up to 300 (odd ones
	// and the 8-byte loop's tail included).
	b := make([]byte, 300)
	for i := range b {
		b[i] = byte(i*37 + 11)
	}
	for n := range len(b) {
		var s uint32
		for i := 0; i+1 < n; i += 2 {
			s += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if n%2 == 1 {
			s += uint32(b[n-1]) << 8
		}
		for s > 0xffff {
			s = s>>16 + s&0xffff
		}
		if got, want := checksum(b[:n], 0), ^uint16(s); got != want {
			t.Fatalf("checksum of %d bytes = %#04x, want %#04x", n, got, want)
		}
	}
}

func TestOuterPacket(t *testing.T) {
	vec := unhex(t, kernelVector)
	withOptions := func() []byte { // outer IHL 6: one word of options (NOPs)
		p := append(append([]byte{}, vec[:20]...), 1, 1, 1, 0)
		p = append(p, vec[20:]...)
		p[0] = 0x46
		binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
		return p
	}
	patch := func(off int, b ...byte) []byte {
		p := append([]byte{}, vec...)
		copy(p[off:], b)
		return p
	}
	type result struct {
		Src        string
		Start, End int
		V          verdict
	}
	for _, c := range []struct {
		name string
		pkt  []byte
		want result
	}{
		{"kernel vector", vec, result{"198.18.1.1", 20, 60, pass}},
		{"trailing bytes cut", append(append([]byte{}, vec...), 0xee, 0xee), result{"198.18.1.1", 20, 60, pass}},
		{"outer options", withOptions(), result{"198.18.1.1", 24, 64, pass}},
		{"empty", nil, result{V: dropMalformed}},
		{"short outer header", vec[:19], result{V: dropMalformed}},
		{"cut short", vec[:50], result{V: dropMalformed}},
		{"outer IPv6", patch(0, 0x65), result{V: dropMalformed}},
		{"outer IHL 4", patch(0, 0x44), result{V: dropMalformed}},
		{"not protocol 4", patch(9, 17), result{V: dropMalformed}},
		{"outer fragment (MF)", patch(6, 0x20), result{V: dropMalformed}},
		{"outer fragment (offset)", patch(6, 0x40, 0x01), result{V: dropMalformed}},
		{"inner IPv6", patch(20, 0x60), result{V: dropMalformed}},
		{"inner longer than the outer holds", patch(22, 0x00, 0x29), result{V: dropMalformed}},
		{"outer total below its header", patch(2, 0x00, 0x10), result{V: dropMalformed}},
	} {
		t.Run(c.name, func(t *testing.T) {
			src, start, end, v := outerPacket(c.pkt)
			got := result{Start: start, End: end, V: v}
			if v == pass {
				got.Src = netip.AddrFrom4(src).String()
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("outerPacket (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInnerPacket(t *testing.T) {
	udp := make([]byte, 12)
	type result struct {
		Dst   string
		Total int
		DF    bool
		V     verdict
	}
	for _, c := range []struct {
		name string
		pkt  []byte
		want result
	}{
		{"DF", ipv4("10.244.1.2", "10.244.2.2", 17, flagDF, udp), result{"10.244.2.2", 32, true, pass}},
		{"no DF", ipv4("10.244.1.2", "10.244.3.4", 17, 0, udp), result{"10.244.3.4", 32, false, pass}},
		{"trailing bytes", append(ipv4("10.244.1.2", "10.244.2.2", 17, 0, udp), 0, 0), result{"10.244.2.2", 32, false, pass}},
		{"IPv6", unhex(t, "6000000000000000"), result{V: dropNotIPv4}},
		{"empty", nil, result{V: dropMalformed}},
		{"short", ipv4("10.244.1.2", "10.244.2.2", 17, 0, udp)[:19], result{V: dropMalformed}},
		{"cut", ipv4("10.244.1.2", "10.244.2.2", 17, 0, udp)[:30], result{V: dropMalformed}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dst, total, df, v := innerPacket(c.pkt)
			got := result{Total: total, DF: df, V: v}
			if v == pass {
				got.Dst = netip.AddrFrom4(dst).String()
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("innerPacket (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFragNeeded(t *testing.T) {
	big := ipv4("10.244.1.2", "10.244.2.2", protoTCP, flagDF, bytes.Repeat([]byte{0xab}, 1480))
	out := make([]byte, icmpErrorMax)
	n := fragNeeded(out, big, 1480)
	// 576 bytes: IP header, ICMP header, then the first 548 bytes of the
	// packet. From its destination back to its sender.
	want := unhex(t, ""+
		"45c00240"+ // version 4, IHL 5; TOS 0xc0; total length 576
		"00000000"+ // ID 0, no flags
		"40015f12"+ // TTL 64; ICMP; header checksum (hand-checked)
		"0af40202"+ // from 10.244.2.2, the unreachable destination
		"0af40102"+ // to 10.244.1.2, the sender
		"0304"+"0000"+ // type 3 code 4; checksum (zeroed below, checked apart)
		"0000"+"05c8") // unused; next-hop MTU 1480
	want = append(want, big[:548]...)
	got := append([]byte{}, out[:n]...)
	if len(got) > 23 {
		if s := checksum(got[20:], 0); s != 0 {
			t.Errorf("ICMP checksum does not add up (%#04x)", s)
		}
		got[22], got[23] = 0, 0
	}
	if diff := cmp.Diff(hex.EncodeToString(want), hex.EncodeToString(got)); diff != "" {
		t.Errorf("fragNeeded (-want +got):\n%s", diff)
	}

	small := ipv4("10.244.1.2", "10.244.2.2", protoICMP, flagDF, append([]byte{8, 0, 0, 0}, make([]byte, 1476)...))
	if n := fragNeeded(out, small, 1480); n != icmpErrorMax || out[20] != 3 {
		t.Errorf("fragNeeded for an echo request: %d bytes, type %d; want 576, 3", n, out[20])
	}
	for _, c := range []struct {
		name string
		pkt  []byte
	}{
		{"an ICMP error", ipv4("10.244.1.2", "10.244.2.2", protoICMP, flagDF, append([]byte{3, 4, 0, 0}, make([]byte, 1476)...))},
		{"a non-first fragment", ipv4("10.244.1.2", "10.244.2.2", protoTCP, 0x0010, make([]byte, 1480))},
		{"from 0.0.0.0", ipv4("0.0.0.0", "10.244.2.2", protoTCP, flagDF, make([]byte, 1480))},
		{"from loopback", ipv4("127.0.0.1", "10.244.2.2", protoTCP, flagDF, make([]byte, 1480))},
		{"from multicast", ipv4("224.0.0.1", "10.244.2.2", protoTCP, flagDF, make([]byte, 1480))},
		{"malformed", big[:10]},
	} {
		if n := fragNeeded(out, c.pkt, 1480); n != 0 {
			t.Errorf("fragNeeded for %s: %d bytes, want none (RFC 1122 3.2.2)", c.name, n)
		}
	}
}

// tcpPacket builds a TCP/IPv4 packet with a 20-byte TCP header and
// sequence number seq.
func tcpPacket(seq uint32, flags byte, payload []byte) []byte {
	tcp := make([]byte, 20+len(payload))
	binary.BigEndian.PutUint16(tcp[0:], 5001)
	binary.BigEndian.PutUint16(tcp[2:], 40000)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	tcp[12], tcp[13] = 5<<4, flags
	copy(tcp[20:], payload)
	p := ipv4("10.244.1.2", "10.244.2.2", protoTCP, flagDF, tcp)
	binary.BigEndian.PutUint16(p[36:], checksum(p[20:], pseudoHeader(p, protoTCP, len(tcp))))
	return p
}

func TestSplitTCP(t *testing.T) {
	payload := make([]byte, 2500)
	for i := range payload {
		payload[i] = byte(i)
	}
	const ack, psh = 0x10, tcpFlagPSH
	big := tcpPacket(1000, ack|psh, payload)
	// GRO leaves only the pseudo-header sum in the TCP checksum field.
	big[36], big[37] = 0x12, 0x34
	bufs, sizes := make([][]byte, 4), make([]int, 4)
	for i := range bufs {
		bufs[i] = make([]byte, Headroom+1500)
	}
	n := splitTCP(big, 1000, bufs, sizes, Headroom)
	var got []string
	for i := range n {
		seg := bufs[i][Headroom : Headroom+sizes[i]]
		got = append(got, hex.EncodeToString(seg))
	}
	var want []string
	for i, seg := range []struct {
		seq   uint32
		flags byte
		from  int
		to    int
	}{{1000, ack, 0, 1000}, {2000, ack, 1000, 2000}, {3000, ack | psh, 2000, 2500}} {
		p := tcpPacket(seg.seq, seg.flags, payload[seg.from:seg.to])
		binary.BigEndian.PutUint16(p[4:], uint16(7+i)) // IDs count up
		p[10], p[11] = 0, 0
		binary.BigEndian.PutUint16(p[10:], checksum(p[:20], 0))
		want = append(want, hex.EncodeToString(p))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("splitTCP (-want +got):\n%s", diff)
	}

	for _, c := range []struct {
		name string
		pkt  []byte
		mss  int
		bufs int
	}{
		{"not TCP", ipv4("10.244.1.2", "10.244.2.2", 17, 0, make([]byte, 3000)), 1000, 4},
		{"too few buffers", big, 1000, 2},
		{"mss larger than the buffers", big, 1500, 4},
		{"mss 0", big, 0, 4},
		{"fragment", func() []byte { p := append([]byte{}, big...); p[6] |= 0x20; return p }(), 1000, 4},
	} {
		if n := splitTCP(c.pkt, c.mss, bufs[:c.bufs], sizes, Headroom); n != 0 {
			t.Errorf("splitTCP of %s: %d segments, want 0", c.name, n)
		}
	}
}
