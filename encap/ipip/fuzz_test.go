package ipip

import (
	"encoding/hex"
	"net/netip"
	"testing"
)

// FuzzParse feeds arbitrary bytes, as an outer datagram from the raw socket
// and as an inner packet from the TUN, through every parser and builder
// of the forwarding path: none may panic, and what they return must lie
// within what they were given.
func FuzzParse(f *testing.F) {
	vec, _ := hex.DecodeString(kernelVector)
	f.Add(vec)
	f.Add(vec[20:])
	f.Add(ipv4("10.244.1.2", "10.244.2.2", protoTCP, flagDF, make([]byte, 1600)))
	f.Add(tcpPacket(1, 0x18, make([]byte, 3000)))
	f.Add([]byte{0x4f})
	f.Add([]byte{})
	tab := newTable([]Peer{{Remote: netip.MustParseAddr("198.18.1.1"), Subnets: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}}}, 1480)
	out := make([]byte, icmpErrorMax)
	bufs, sizes := make([][]byte, 64), make([]int, 64)
	for i := range bufs {
		bufs[i] = make([]byte, Headroom+1480)
	}
	frame := make([]byte, bufSize)
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, start, end, v := outerPacket(b); v == pass {
			if start < ipv4HeaderLen || start > end || end > len(b) || b[start]>>4 != 4 {
				t.Fatalf("outerPacket: inner [%d:%d] of %d bytes", start, end, len(b))
			}
		}
		if _, total, _, v := innerPacket(b); v == pass && (total < ipv4HeaderLen || total > len(b)) {
			t.Fatalf("innerPacket: total %d of %d bytes", total, len(b))
		}
		if n := fragNeeded(out, b, 1480); n != 0 {
			if n > icmpErrorMax || checksum(out[:20], 0) != 0 || checksum(out[20:n], 0) != 0 {
				t.Fatalf("fragNeeded: %d bytes, checksums %#x %#x", n, checksum(out[:20], 0), checksum(out[20:n], 0))
			}
		}
		if n := splitTCP(b, 1440, bufs, sizes, Headroom); n > 0 {
			for i := range n {
				seg := bufs[i][Headroom : Headroom+sizes[i]]
				if len(seg) > 1480 || checksum(seg[:20], 0) != 0 {
					t.Fatalf("splitTCP: segment %d of %d bytes", i, len(seg))
				}
			}
		}
		tab.route(b)
		if len(b) <= bufSize-rxOffset {
			copy(frame[rxOffset:], b)
			if inner, v := tab.decap(frame, len(b)); v == pass && len(inner) > len(b) {
				t.Fatalf("decap: %d inner bytes of %d", len(inner), len(b))
			}
		}
	})
}
