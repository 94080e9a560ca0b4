package policy

import (
	"net/netip"
	"strconv"
)

// Ports of weft's own that must stay reachable whatever the policies say.
const (
	// DefaultGossipPort is memberlist's port (TCP and UDP).
	DefaultGossipPort = 7946
	// DefaultWireGuardPort is WireGuard's customary UDP port.
	DefaultWireGuardPort = 51820
)

// Options are the cluster-wide settings that policies do not carry.
type Options struct {
	// DefaultDenyWorkloads denies a workload endpoint's traffic when no
	// policy decides it, where Calico's profiles would allow it.
	DefaultDenyWorkloads bool
	// FailsafeInbound and FailsafeOutbound are host endpoint traffic that
	// is always allowed, before any policy: to the host, and from it. The
	// zero Options have none; see DefaultOptions.
	FailsafeInbound  []Failsafe
	FailsafeOutbound []Failsafe
}

// Failsafe is a protocol and port (and, optionally, the remote network) that
// a host endpoint always lets through.
type Failsafe struct {
	Protocol uint8 // ProtoTCP, ProtoUDP or ProtoSCTP
	Port     uint16
	// Net limits the remote address; the zero Prefix means any.
	Net netip.Prefix
}

// String returns e.g. "tcp:22" or "tcp:10.0.0.0/8:22", as Felix writes them.
func (f Failsafe) String() string {
	s := "tcp"
	switch f.Protocol {
	case ProtoUDP:
		s = "udp"
	case ProtoSCTP:
		s = "sctp"
	}
	if f.Net.IsValid() {
		s += ":" + f.Net.String()
	}
	return s + ":" + strconv.Itoa(int(f.Port))
}

// matches reports whether the flow's protocol, destination port and remote
// address are this failsafe's.
func (f Failsafe) matches(fl Flow, remote netip.Addr) bool {
	return fl.Protocol == f.Protocol && fl.DstPort == f.Port && (!f.Net.IsValid() || f.Net.Contains(remote))
}

// CalicoFailsafeInbound and CalicoFailsafeOutbound are Felix's defaults for
// FailsafeInboundHostPorts and FailsafeOutboundHostPorts: SSH, DHCP, DNS,
// BGP, etcd, Typha and the Kubernetes API. They return a new slice each call.
func CalicoFailsafeInbound() []Failsafe {
	return []Failsafe{
		{Protocol: ProtoTCP, Port: 22}, {Protocol: ProtoUDP, Port: 68}, {Protocol: ProtoTCP, Port: 179},
		{Protocol: ProtoTCP, Port: 2379}, {Protocol: ProtoTCP, Port: 2380}, {Protocol: ProtoTCP, Port: 5473},
		{Protocol: ProtoTCP, Port: 6443}, {Protocol: ProtoTCP, Port: 6666}, {Protocol: ProtoTCP, Port: 6667},
	}
}

// CalicoFailsafeOutbound: see CalicoFailsafeInbound.
func CalicoFailsafeOutbound() []Failsafe {
	return []Failsafe{
		{Protocol: ProtoUDP, Port: 53}, {Protocol: ProtoUDP, Port: 67}, {Protocol: ProtoTCP, Port: 179},
		{Protocol: ProtoTCP, Port: 2379}, {Protocol: ProtoTCP, Port: 2380}, {Protocol: ProtoTCP, Port: 5473},
		{Protocol: ProtoTCP, Port: 6443}, {Protocol: ProtoTCP, Port: 6666}, {Protocol: ProtoTCP, Port: 6667},
	}
}

// DefaultOptions returns Calico's failsafe ports plus weft's own, in both
// directions: gossipPort (TCP and UDP) and wireGuardPort (UDP), each left out
// when 0. Workloads are allowed by default.
func DefaultOptions(gossipPort, wireGuardPort uint16) Options {
	var weft []Failsafe
	if gossipPort != 0 {
		weft = append(weft, Failsafe{Protocol: ProtoTCP, Port: gossipPort}, Failsafe{Protocol: ProtoUDP, Port: gossipPort})
	}
	if wireGuardPort != 0 {
		weft = append(weft, Failsafe{Protocol: ProtoUDP, Port: wireGuardPort})
	}
	return Options{
		FailsafeInbound:  append(CalicoFailsafeInbound(), weft...),
		FailsafeOutbound: append(CalicoFailsafeOutbound(), weft...),
	}
}
