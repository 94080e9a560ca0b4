// Package probe sends and answers path-health probes on the real kernel:
// the kernel half of fabric/health.
//
// How a probe takes the path it tests (all probes go from this node's
// subnet address, the VTEP address on weft.vxlan or weft.ipip, to the
// peer's, UDP port health.Config.Port, so they look like workload traffic):
//
//   - The path in use ("route"): an ordinary UDP socket bound to the
//     node's subnet address sends to the peer's subnet address; the
//     routing table takes it over the peer's route, exactly as workload
//     packets go (direct, VXLAN, IP-in-IP, WireGuard or native), through
//     the kernel's own encapsulation.
//   - Direct, off its route: the same IPv4/UDP packet, built here, handed
//     to the underlay device by an AF_PACKET socket addressed to the peer's
//     MAC (from the neighbour table): what a direct route would put on the
//     wire, whatever the routing table says.
//   - VXLAN, off its route: the same packet inside a VXLAN frame (the
//     cluster's VNI, the peer's VTEP MAC) sent from an ordinary UDP socket
//     to the peer's underlay address and VXLAN port; the peer's kernel
//     VXLAN device decapsulates it as it does workload traffic.
//
// An answer goes back over the same kind of path it was asked on (direct
// by AF_PACKET, VXLAN by a built frame, anything else through the routing
// table), so one round trip tests one kind of path both ways. IP-in-IP,
// native and WireGuard are probed only while in use; IPv4 only.
package probe

import (
	"encoding/binary"
	"net"
	"net/netip"
)

const (
	ipv4HeaderLen = 20
	udpHeaderLen  = 8
	vxlanLen      = 8
	etherLen      = 14
	// probeTTL is the TTL of built packets: a direct path is one hop.
	probeTTL = 64
)

// appendIPv4UDP appends an IPv4 header, UDP header and payload to b, with
// both checksums filled in.
func appendIPv4UDP(b []byte, src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	total := ipv4HeaderLen + udpHeaderLen + len(payload)
	start := len(b)
	b = append(b,
		0x45, 0, byte(total>>8), byte(total), // version 4, IHL 5, length
		0, 0, 0x40, 0, // id 0, DF
		probeTTL, 17, 0, 0) // TTL, UDP, checksum
	s4, d4 := src.As4(), dst.As4()
	b = append(b, s4[:]...)
	b = append(b, d4[:]...)
	binary.BigEndian.PutUint16(b[start+10:], checksum(b[start:start+ipv4HeaderLen], 0))
	u := len(b)
	b = binary.BigEndian.AppendUint16(b, sport)
	b = binary.BigEndian.AppendUint16(b, dport)
	b = binary.BigEndian.AppendUint16(b, uint16(udpHeaderLen+len(payload)))
	b = append(b, 0, 0)
	b = append(b, payload...)
	// The pseudo-header: addresses, protocol, UDP length.
	var pseudo uint32
	for i := 0; i < 4; i += 2 {
		pseudo += uint32(binary.BigEndian.Uint16(s4[i:])) + uint32(binary.BigEndian.Uint16(d4[i:]))
	}
	pseudo += 17 + uint32(udpHeaderLen+len(payload))
	sum := checksum(b[u:], pseudo)
	if sum == 0 {
		sum = 0xffff // 0 means "no checksum" in UDP over IPv4
	}
	binary.BigEndian.PutUint16(b[u+6:], sum)
	return b
}

// appendVXLAN appends a VXLAN header for vni and an Ethernet frame from src
// to dst carrying the IPv4 packet ip.
func appendVXLAN(b []byte, vni uint32, dst, src net.HardwareAddr, ip []byte) []byte {
	b = append(b, 0x08, 0, 0, 0) // flags: the VNI is valid
	b = append(b, byte(vni>>16), byte(vni>>8), byte(vni), 0)
	b = append(b, dst[:6]...)
	b = append(b, src[:6]...)
	b = append(b, 0x08, 0x00) // IPv4
	return append(b, ip...)
}

// checksum returns the Internet checksum of b with initial sum.
func checksum(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
