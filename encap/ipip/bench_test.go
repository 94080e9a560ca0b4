package ipip

import (
	"fmt"
	"net/netip"
	"testing"
)

// The user-space work per packet, without syscalls: what the forwarder
// adds to the kernel's cost (see TestThroughput for the whole path).

func BenchmarkRoute(b *testing.B) {
	for _, peers := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("%d peers", peers), func(b *testing.B) {
			var ps []Peer
			for i := range peers {
				ps = append(ps, Peer{
					Remote:  netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i) | 1}),
					Subnets: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)},
				})
			}
			tab := newTable(ps, 1480)
			last := peers - 1 // to the last peer's subnet
			dst := netip.AddrFrom4([4]byte{10, byte(last >> 8), byte(last), 2})
			pkt := ipv4("10.244.1.2", dst.String(), protoTCP, flagDF, make([]byte, 1440))
			b.SetBytes(int64(len(pkt)))
			for b.Loop() {
				if _, v := tab.route(pkt); v != pass {
					b.Fatal(v)
				}
			}
		})
	}
}

func BenchmarkDecap(b *testing.B) {
	tab := newTable([]Peer{{Remote: netip.MustParseAddr("198.18.1.1"), Subnets: prefixes("10.244.1.0/24")}}, 1480)
	frame := make([]byte, bufSize)
	inner := ipv4("10.244.1.2", "10.244.2.2", protoTCP, flagDF, make([]byte, 1440))
	outer := ipv4("198.18.1.1", "198.18.1.2", protoIPIP, flagDF, inner)
	copy(frame[rxOffset:], outer)
	b.SetBytes(int64(len(inner)))
	for b.Loop() {
		if _, v := tab.decap(frame, len(outer)); v != pass {
			b.Fatal(v)
		}
	}
}

func BenchmarkChecksum(b *testing.B) {
	buf := make([]byte, 1460)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		checksum(buf, 0)
	}
}
