package policy

import (
	"net/netip"
	"strconv"
)

// Flow is the first packet of a connection, as policy sees it.
type Flow struct {
	Src netip.Addr `json:"src"`
	Dst netip.Addr `json:"dst"`
	// Protocol is the IP protocol number (ProtoTCP, ProtoUDP, ...).
	Protocol uint8 `json:"protocol"`
	// SrcPort and DstPort are 0 when the protocol has no ports or the port
	// is not known; a rule that matches ports then sees port 0.
	SrcPort uint16 `json:"srcPort,omitempty"`
	DstPort uint16 `json:"dstPort,omitempty"`
	// ICMPType and ICMPCode are set for ICMP and ICMPv6 flows; nil matches no
	// icmp and every notICMP.
	ICMPType *uint8 `json:"icmpType,omitempty"`
	ICMPCode *uint8 `json:"icmpCode,omitempty"`
}

// String returns e.g. "10.0.0.1:40000 -> 10.0.0.2:80 TCP" or
// "10.0.0.1 -> 10.0.0.2 ICMP type 8 code 0".
func (f Flow) String() string {
	s := f.Src.String()
	d := f.Dst.String()
	if protoHasPorts(f.Protocol) {
		s = netip.AddrPortFrom(f.Src, f.SrcPort).String()
		d = netip.AddrPortFrom(f.Dst, f.DstPort).String()
	}
	out := s + " -> " + d + " " + ProtocolName(f.Protocol)
	if f.ICMPType != nil {
		out += " type " + strconv.Itoa(int(*f.ICMPType))
		if f.ICMPCode != nil {
			out += " code " + strconv.Itoa(int(*f.ICMPCode))
		}
	}
	return out
}

// ProtocolName returns Calico's name for a protocol number, or the number.
func ProtocolName(n uint8) string {
	for _, p := range protocolNames {
		if p.num == n {
			return p.name
		}
	}
	return strconv.Itoa(int(n))
}

// isIPv4 reports whether the flow is IPv4 (an IPv4-mapped IPv6 address counts
// as IPv6, as on the wire).
func (f Flow) isIPv4() bool { return f.Src.Is4() }
