package ipip

import (
	"encoding/binary"
	"math/bits"
)

// Wire format (RFC 2003, as Linux's ipip module sends it): an outer IPv4
// header with protocol 4 and nothing else in front of the inner IPv4 packet.
// No extra header, no options: the outer header is 20 bytes, which is the
// whole overhead.
const (
	// Overhead is what IP-in-IP adds to each packet: the outer IPv4 header.
	// The tunnel MTU is the underlay MTU less Overhead.
	Overhead = ipv4HeaderLen

	ipv4HeaderLen = 20
	protoICMP     = 1
	protoIPIP     = 4
	protoTCP      = 6
	flagDF        = 0x4000 // in the flags/fragment-offset word
	flagMF        = 0x2000
	fragOffMask   = 0x1fff
	// icmpErrorMax is the largest ICMP error datagram sent back, as Linux
	// and RFC 1812 4.3.2.3 have it: 576 bytes in all.
	icmpErrorMax  = 576
	icmpHeaderLen = 8
	// icmpTTL is the TTL of the ICMP errors the driver makes (Linux's
	// default ip_default_ttl).
	icmpTTL = 64
	// tosInternetControl is the precedence Linux gives ICMP errors.
	tosInternetControl = 0xc0
	tcpFlagFIN         = 0x01
	tcpFlagPSH         = 0x08
)

// verdict says what happens to one packet; every drop has its own counter.
type verdict uint8

const (
	pass            verdict = iota
	dropMalformed           // not a well-formed IPv4 packet (or an outer fragment)
	dropNotIPv4             // an IPv6 (or other) packet in the TUN: nothing routes it here
	dropUnknownPeer         // outer source is no peer: no open relay
	dropNoPeer              // inner destination in no peer's subnets
	dropTooBig              // DF and over the tunnel MTU; answered with frag-needed
	dropSend                // the raw socket refused it
	dropWrite               // the TUN refused it
	numVerdicts
)

// outerPacket checks b as a datagram read from the raw IPPROTO_IPIP
// socket (outer IPv4 header included, as raw sockets deliver it) and returns
// the outer source address and the bounds of the inner packet in b. The
// inner packet must be IPv4 and no longer than what the outer header
// carries; trailing bytes past either total length are cut.
func outerPacket(b []byte) (src [4]byte, start, end int, v verdict) {
	ihl, total, ok := ipv4Bounds(b)
	if !ok || b[9] != protoIPIP {
		return src, 0, 0, dropMalformed
	}
	// Raw sockets get datagrams after reassembly; a fragment here is
	// either a bug or an attack.
	if binary.BigEndian.Uint16(b[6:])&(flagMF|fragOffMask) != 0 {
		return src, 0, 0, dropMalformed
	}
	copy(src[:], b[12:16])
	_, innerTotal, ok := ipv4Bounds(b[ihl:total])
	if !ok {
		return src, 0, 0, dropMalformed
	}
	return src, ihl, ihl + innerTotal, pass
}

// innerPacket checks b as a packet read from the TUN device and returns
// its destination, its total length and whether it has DF set.
func innerPacket(b []byte) (dst [4]byte, total int, df bool, v verdict) {
	if len(b) > 0 && b[0]>>4 != 4 {
		return dst, 0, false, dropNotIPv4
	}
	_, total, ok := ipv4Bounds(b)
	if !ok {
		return dst, 0, false, dropMalformed
	}
	copy(dst[:], b[16:20])
	return dst, total, binary.BigEndian.Uint16(b[6:])&flagDF != 0, pass
}

// ipv4Bounds returns the header length and total length of the IPv4
// packet at the start of b, and false if b does not hold one whole.
func ipv4Bounds(b []byte) (ihl, total int, ok bool) {
	if len(b) < ipv4HeaderLen || b[0]>>4 != 4 {
		return 0, 0, false
	}
	ihl = int(b[0]&0x0f) * 4
	total = int(binary.BigEndian.Uint16(b[2:]))
	if ihl < ipv4HeaderLen || total < ihl || total > len(b) {
		return 0, 0, false
	}
	return ihl, total, true
}

// fragNeeded writes into out the ICMP destination-unreachable,
// fragmentation-needed message (type 3 code 4, RFC 1191) that answers pkt,
// an IPv4 packet with DF set that is larger than mtu, and returns its
// length. It returns 0, and writes nothing, where RFC 1122 3.2.2 forbids an
// answer: pkt is an ICMP error, a non-first fragment, or from an address
// that is not unicast. The answer comes from pkt's destination (not from
// any address of this host) so that a strict reverse-path filter on the
// TUN device, which routes that destination, lets it in. out must hold
// icmpErrorMax bytes.
func fragNeeded(out, pkt []byte, mtu int) int {
	ihl, total, ok := ipv4Bounds(pkt)
	if !ok || binary.BigEndian.Uint16(pkt[6:])&fragOffMask != 0 {
		return 0
	}
	if pkt[9] == protoICMP && total >= ihl+1 && isICMPError(pkt[ihl]) {
		return 0
	}
	if !isUnicast([4]byte(pkt[12:16])) {
		return 0
	}
	quote := min(total, icmpErrorMax-ipv4HeaderLen-icmpHeaderLen)
	n := ipv4HeaderLen + icmpHeaderLen + quote
	h := out[:ipv4HeaderLen]
	h[0] = 0x45
	h[1] = tosInternetControl
	binary.BigEndian.PutUint16(h[2:], uint16(n))
	binary.BigEndian.PutUint32(h[4:], 0) // ID 0, no flags: never fragmented, never resent
	h[8] = icmpTTL
	h[9] = protoICMP
	h[10], h[11] = 0, 0
	copy(h[12:16], pkt[16:20]) // from the unreachable destination
	copy(h[16:20], pkt[12:16]) // to the sender
	binary.BigEndian.PutUint16(h[10:], checksum(h, 0))
	m := out[ipv4HeaderLen:n]
	m[0], m[1] = 3, 4 // destination unreachable, fragmentation needed and DF set
	m[2], m[3], m[4], m[5] = 0, 0, 0, 0
	binary.BigEndian.PutUint16(m[6:], uint16(mtu)) // next-hop MTU
	copy(m[icmpHeaderLen:], pkt[:quote])
	binary.BigEndian.PutUint16(m[2:], checksum(m, 0))
	return n
}

// isICMPError reports whether ICMP type t is an error message (RFC 792):
// destination unreachable, source quench, redirect, time exceeded,
// parameter problem.
func isICMPError(t byte) bool {
	switch t {
	case 3, 4, 5, 11, 12:
		return true
	}
	return false
}

// isUnicast reports whether a can be the destination of an ICMP error:
// not 0/8, loopback, multicast, class E or the limited broadcast.
func isUnicast(a [4]byte) bool {
	return a[0] != 0 && a[0] != 127 && a[0] < 224
}

// splitTCP cuts pkt, one TCP/IPv4 packet longer than the tunnel carries
// (as the underlay's GRO hands such packets to a raw socket), into
// segments of at most mss payload bytes, written into out[i][offset:], with
// the IP ID counting up, FIN and PSH on the last segment only, and both
// checksums computed afresh (a GRO'd packet holds only a partial TCP
// checksum). It returns how many segments it wrote, or 0 if pkt is not such
// a packet or out is too short for its segments.
func splitTCP(pkt []byte, mss int, out [][]byte, sizes []int, offset int) int {
	ihl, total, ok := ipv4Bounds(pkt)
	if !ok || pkt[9] != protoTCP || binary.BigEndian.Uint16(pkt[6:])&(flagMF|fragOffMask) != 0 {
		return 0
	}
	if total < ihl+20 {
		return 0
	}
	thl := int(pkt[ihl+12]>>4) * 4
	hdr := ihl + thl
	if thl < 20 || hdr > total || mss <= 0 {
		return 0
	}
	payload := total - hdr
	n := (payload + mss - 1) / mss
	if n == 0 || n > len(out) {
		return 0
	}
	for i := range n {
		if len(out[i]) < offset+hdr+mss {
			return 0
		}
	}
	id := binary.BigEndian.Uint16(pkt[4:])
	seq := binary.BigEndian.Uint32(pkt[ihl+4:])
	flags := pkt[ihl+13]
	for i := range n {
		from, to := hdr+i*mss, min(hdr+(i+1)*mss, total)
		seg := out[i][offset : offset+hdr+to-from]
		copy(seg, pkt[:hdr])
		copy(seg[hdr:], pkt[from:to])
		binary.BigEndian.PutUint16(seg[2:], uint16(len(seg)))
		binary.BigEndian.PutUint16(seg[4:], id+uint16(i))
		seg[10], seg[11] = 0, 0
		binary.BigEndian.PutUint16(seg[10:], checksum(seg[:ihl], 0))
		tcp := seg[ihl:]
		binary.BigEndian.PutUint32(tcp[4:], seq+uint32(i*mss))
		if i < n-1 {
			tcp[13] = flags &^ (tcpFlagFIN | tcpFlagPSH)
		}
		tcp[16], tcp[17] = 0, 0
		binary.BigEndian.PutUint16(tcp[16:], checksum(tcp, pseudoHeader(seg, protoTCP, len(tcp))))
		sizes[i] = len(seg)
	}
	return n
}

// pseudoHeader returns the unfolded sum of the IPv4 pseudo-header of the
// packet whose IP header starts pkt, for a transport segment of length n.
func pseudoHeader(pkt []byte, proto byte, n int) uint64 {
	be := binary.BigEndian
	return uint64(be.Uint16(pkt[12:])) + uint64(be.Uint16(pkt[14:])) +
		uint64(be.Uint16(pkt[16:])) + uint64(be.Uint16(pkt[18:])) +
		uint64(proto) + uint64(n)
}

// checksum returns the Internet checksum (RFC 1071) of b, starting from the
// unfolded sum initial, ready to be stored big-endian.
func checksum(b []byte, initial uint64) uint16 {
	sum := initial
	var carry uint64
	for len(b) >= 8 {
		sum, carry = bits.Add64(sum, uint64(binary.BigEndian.Uint32(b))<<32|uint64(binary.BigEndian.Uint32(b[4:])), 0)
		sum += carry
		b = b[8:]
	}
	for len(b) >= 2 {
		sum, carry = bits.Add64(sum, uint64(binary.BigEndian.Uint16(b)), 0)
		sum += carry
		b = b[2:]
	}
	if len(b) == 1 {
		sum, carry = bits.Add64(sum, uint64(b[0])<<8, 0)
		sum += carry
	}
	// Fold 64 bits to 16, adding the carries back in.
	sum = (sum >> 32) + (sum & 0xffffffff)
	sum = (sum >> 32) + (sum & 0xffffffff)
	sum = (sum >> 16) + (sum & 0xffff)
	sum = (sum >> 16) + (sum & 0xffff)
	sum = (sum >> 16) + (sum & 0xffff)
	return ^uint16(sum)
}
