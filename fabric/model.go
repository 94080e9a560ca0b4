package fabric

import (
	"net"
	"net/netip"
	"time"
)

// RouteProtocol marks every route weft installs (rtm_protocol). The kernel
// keeps it with the route, so weft recognises its own routes after a restart
// without any memory, and never touches a route with another protocol.
// 87 is 'W'; it is not assigned in /etc/iproute2/rt_protos.
const RouteProtocol = 87

// PathKind is how this node reaches a peer's workloads.
type PathKind string

// Path kinds, cheapest first.
const (
	PathDirect    PathKind = "direct"    // route via the peer's underlay address: same L2 segment
	PathVXLAN     PathKind = "vxlan"     // VXLAN overlay
	PathNative    PathKind = "native"    // the cloud's route table carries it: same VPC, no encapsulation
	PathIPIP      PathKind = "ipip"      // IP-in-IP overlay
	PathWireGuard PathKind = "wireguard" // encrypted (#5)
	PathNone      PathKind = "none"      // no path is allowed or possible; PeerPlan.Reason says why
)

// Overlay modes, as Calico's ipipMode/vxlanMode and flannel's DirectRouting.
const (
	OverlayVXLAN = "vxlan"
	OverlayIPIP  = "ipip"

	OverlayAlways      = "always"       // every pair uses the overlay
	OverlayCrossSubnet = "cross-subnet" // direct within an L2 segment, overlay across
	OverlayNever       = "never"        // direct only: peers off-link get no path

	EncryptionNever       = "never"
	EncryptionCrossRegion = "cross-region"
	EncryptionAlways      = "always"
)

// VXLAN defaults, as the Linux kernel and flannel use them.
const (
	DefaultVXLANVNI    = 1
	DefaultVXLANPort   = 4789 // IANA; flannel uses 8472, the kernel's old default
	DefaultVXLANDevice = "weft.vxlan"
	// VXLANOverhead is what VXLAN adds to each packet over an IPv4 underlay:
	// outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14.
	VXLANOverhead = 50
)

// Options are the data-plane settings of the cluster (from config).
type Options struct {
	Overlay     string // OverlayVXLAN or OverlayIPIP
	OverlayMode string // OverlayAlways, OverlayCrossSubnet or OverlayNever
	Encryption  string // EncryptionNever, EncryptionCrossRegion or EncryptionAlways
	VXLANVNI    int
	VXLANPort   int
	VXLANDevice string
	// ClusterCIDR is the whole workload range (for masquerade and the blackhole).
	ClusterCIDR netip.Prefix
	// IPMasq masquerades traffic from ClusterCIDR to outside it.
	IPMasq bool
	// WireGuardDevice and WireGuardPort are the node's WireGuard device
	// and UDP port; WireGuardKeepalive is the persistent keepalive a node
	// behind NAT sends to its peers, so the NAT keeps its mapping open.
	WireGuardDevice    string
	WireGuardPort      int
	WireGuardKeepalive time.Duration
}

// WireGuard defaults.
const (
	DefaultWireGuardDevice    = "weft.wg"
	DefaultWireGuardPort      = 51820
	DefaultWireGuardKeepalive = 25 * time.Second
	// WireGuardOverhead is what WireGuard adds to a packet, safe for an IPv6
	// underlay: outer IPv6 40 + UDP 8 + WireGuard 32.
	WireGuardOverhead = 80
)

// Location is where a node runs (cloud, region, zone); empty parts are unknown.
type Location struct {
	Cloud, Region, Zone string
}

// Local is this node as the planner needs it.
type Local struct {
	Name string
	// Subnets are this node's own workload subnets (one for now).
	Subnets []netip.Prefix
	// Underlay is the underlay interface name, its addresses and MTU.
	UnderlayDev  string
	UnderlayAddr netip.Addr // the address tunnels are sourced from (advertised address)
	UnderlayMTU  int
	// Connected are the prefixes of the underlay interface's addresses
	// (e.g. 198.18.1.2/24): a peer address inside one of them is on-link.
	Connected []netip.Prefix
	Location  Location
	// VTEPMAC is the MAC of this node's VXLAN device.
	VTEPMAC net.HardwareAddr
	Caps    uint16 // gossip.Capability bits
	// WireGuardKey is this node's WireGuard public key (32 bytes); nil when
	// it cannot do WireGuard.
	WireGuardKey []byte
	// BehindNAT says this node is behind a NAT that forwards nothing to it.
	BehindNAT bool
	// Native holds the peer subnets whose cloud route (subnet -> peer
	// instance) the cloud adapter found in place in this node's route
	// table; Gateway is the underlay's default gateway (the VPC router)
	// that native routes go through.
	Native  map[netip.Prefix]bool
	Gateway netip.Addr
}

// Peer is another live node as the planner needs it: its last valid record,
// for peers whose subnet claim is honoured (the caller filters conflicts out).
type Peer struct {
	Name     string
	Underlay []netip.Addr // preferred first
	Public   netip.Addr
	Location Location
	Subnets  []netip.Prefix
	VTEPMAC  net.HardwareAddr
	Caps     uint16
	// CloudInstance is the peer's cloud instance ID, where it runs a cloud
	// adapter; the planner itself does not use it (Local.Native does).
	CloudInstance string
	// WireGuardKey (32 bytes) and WireGuardPort; nil / 0 when the peer has none.
	WireGuardKey  []byte
	WireGuardPort int
	BehindNAT     bool
	// Avoid lists the paths that path health found down for this peer:
	// the planner takes the first allowed path not in it (see
	// PeerPlan.Candidates). Empty: the cheapest allowed path.
	Avoid []PathKind
	// PathMTU holds path MTUs that path health found, by path: the
	// peer's routes get the smaller of it and the path's own MTU.
	PathMTU map[PathKind]int
}

// Plan is the desired data plane of one node: pure data, compared with the
// kernel by the appliers. Slices are sorted so that equal plans are equal
// values (and render as equal text).
type Plan struct {
	Peers []PeerPlan // by name
	// Routes holds every route weft wants, each with Protocol RouteProtocol.
	Routes []Route
	// VXLAN is the VXLAN device; nil when the overlay is not VXLAN,
	// overlayMode is never or the node has no subnet (see Compute), but set
	// even when no peer uses VXLAN now: peers may send over it.
	VXLAN *VXLANDevice
	// Neighbors and FDB are the static entries on the VXLAN device.
	Neighbors []Neighbor
	FDB       []FDBEntry
	// Masquerade is the cluster CIDR to masquerade from; invalid when off.
	Masquerade netip.Prefix
	// IPIP is the IP-in-IP device; nil when the overlay is not ipip.
	IPIP *IPIPDevice
	// IPIPPeers are the peers on the IP-in-IP path, by name.
	IPIPPeers []IPIPPeer
	// WireGuard is the WireGuard device; nil when the node needs none.
	WireGuard *WireGuardDevice
	// WireGuardPeers are its peers, by name.
	WireGuardPeers []WireGuardPeer
}

// IPIPOverhead is the outer IPv4 header IP-in-IP adds.
const IPIPOverhead = 20

// DefaultIPIPDevice is the name of the IP-in-IP device.
const DefaultIPIPDevice = "weft.ipip"

// IPIPDevice is the node's IP-in-IP tunnel device (kernel or user space).
type IPIPDevice struct {
	Name  string
	Local netip.Addr
	MTU   int
	// Addr is the network address of the node's subnet, /32, as for VXLAN.
	Addr netip.Prefix
}

// IPIPPeer is one peer on the IP-in-IP path: where its subnets' packets go.
type IPIPPeer struct {
	Name    string
	Remote  netip.Addr
	Subnets []netip.Prefix
}

// WireGuardDevice is the node's WireGuard device. The private key is not
// part of the plan (plans are logged and shown): the applier adds it.
type WireGuardDevice struct {
	Name string
	Port int
	MTU  int
}

// WireGuardPeer is one WireGuard peer.
type WireGuardPeer struct {
	Name      string
	PublicKey []byte
	// Endpoint is where to send; invalid for a peer behind NAT, whose
	// endpoint is learnt from the handshakes it sends.
	Endpoint   netip.AddrPort
	AllowedIPs []netip.Prefix
	// Keepalive is set when this node is behind NAT.
	Keepalive time.Duration
}

// PeerPlan is the plan for one peer: the path and what it takes.
type PeerPlan struct {
	Name    string
	Path    PathKind
	Reason  string         // why this path (or why none)
	Subnets []netip.Prefix // the peer's workload subnets
	Dev     string         // device the peer's subnets are routed out of
	Via     netip.Addr     // next hop (underlay address, or VTEP address for VXLAN)
	Remote  netip.Addr     // the peer underlay address packets are sent to
	MTU     int            // MTU of the path for workload packets
	// Candidates are the paths allowed for this peer, cheapest first (the
	// fallback order); empty with PathNone. Path is the first of them not
	// in Peer.Avoid.
	Candidates []PathKind
	// MaxMTU is the path's own MTU (from the devices), before a path MTU
	// found by path health lowers MTU.
	MaxMTU int
}

// Route is one route. A zero Via with Blackhole false is a device route.
type Route struct {
	Dst       netip.Prefix
	Via       netip.Addr
	Dev       string
	OnLink    bool
	Blackhole bool
	MTU       int // 0: the device's
}

// VXLANDevice is the node's VXLAN device.
type VXLANDevice struct {
	Name  string
	VNI   int
	Port  int
	Local netip.Addr       // source underlay address
	Dev   string           // underlay device
	MAC   net.HardwareAddr // the node's VTEP MAC (gossiped)
	MTU   int
	// Addr is the VTEP address: the first address of the node's subnet, /32
	// (flannel's convention: the network address of the subnet).
	Addr netip.Prefix
}

// Neighbor is a static ARP entry on the VXLAN device: peer VTEP IP -> MAC.
type Neighbor struct {
	Dev string
	IP  netip.Addr
	MAC net.HardwareAddr
}

// FDBEntry is a static bridge FDB entry on the VXLAN device: peer VTEP MAC
// -> peer underlay address.
type FDBEntry struct {
	Dev string
	MAC net.HardwareAddr
	Dst netip.Addr
}
