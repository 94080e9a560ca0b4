// Package api is the agent's local API: JSON over a unix socket in the run
// directory, readable by root only. Every CLI subcommand except agent and lab
// is a client of it.
package api

import (
	"net/netip"
	"time"

	"github.com/weft-net/weft/cloud"
	"github.com/weft-net/weft/gossip"
)

// SocketName is the name of the API socket inside the agent's run directory.
const SocketName = "weft.sock"

// Status is the answer of GET /v1/status.
type Status struct {
	Node        string          `json:"node"`
	Cluster     string          `json:"cluster"`
	Version     string          `json:"version"`
	StartedAt   time.Time       `json:"startedAt"`
	Encrypted   bool            `json:"encrypted"`
	Gossip      netip.AddrPort  `json:"gossip"`
	Underlay    string          `json:"underlayInterface"`
	Advertise   netip.Addr      `json:"advertiseAddress"`
	Location    gossip.Location `json:"location"`
	ClusterCIDR netip.Prefix    `json:"clusterCIDR"`
	Subnet      netip.Prefix    `json:"subnet,omitzero"`
	// SubnetState is "claimed", "static", "waiting" or "exhausted".
	SubnetState  string `json:"subnetState"`
	MembersAlive int    `json:"membersAlive"`
	MembersDead  int    `json:"membersDead"`
	// WireGuard says which WireGuard runs (kernel or userspace), its port and
	// public key, or "off".
	WireGuard string `json:"wireguard"`
	// IPIP says which IP-in-IP runs: kernel or userspace.
	IPIP string `json:"ipip,omitempty"`
	// DataPlane summarises the reconciler: passes and the last one, or "off".
	DataPlane string `json:"dataPlane"`
	// Policy is the policy engine's state; nil when the agent has none.
	Policy *PolicyStatus `json:"policy,omitempty"`
	// SelfTests are the last encapsulation self-test of each tunnel kind in
	// use, in the order vxlan, ipip, wireguard; none when path health is off.
	SelfTests []SelfTest `json:"selfTests,omitempty"`
	// Health is "ok" or "degraded"; Problems says why it is degraded.
	Health   string   `json:"health"`
	Problems []string `json:"problems"`
}

// Peer is one row of GET /v1/peers: a member as this node sees it.
type Peer struct {
	Name     string          `json:"name"`
	Local    bool            `json:"local,omitempty"`
	Underlay []netip.Addr    `json:"underlay"`
	Public   netip.Addr      `json:"public,omitzero"`
	Location gossip.Location `json:"location"`
	Subnet   netip.Prefix    `json:"subnet,omitzero"`
	State    gossip.State    `json:"state"`
	Since    time.Time       `json:"since"`
	// Path is how this node reaches the peer; empty until the data plane plans it (#3).
	Path string `json:"path"`
	// Conflict says why the peer's subnet claim is not honoured, if it is not.
	Conflict string `json:"conflict,omitempty"`
	// MTU is the MTU of the path to the peer; 0 when unknown.
	MTU int `json:"mtu,omitempty"`
	// Health is what path health found; nil when it is off.
	Health *PeerHealth `json:"health,omitempty"`
}

// Error is the body of every answer whose status is not 2xx.
type Error struct {
	Error string `json:"error"`
}

// Route is one row of GET /v1/routes: the plan for one peer and whether the
// kernel holds it.
type Route struct {
	Peer    string         `json:"peer"`
	Path    string         `json:"path"`
	Reason  string         `json:"reason,omitempty"`
	Subnets []netip.Prefix `json:"subnets"`
	Dev     string         `json:"dev,omitempty"`
	Via     netip.Addr     `json:"via,omitzero"`
	Remote  netip.Addr     `json:"remote,omitzero"`
	MTU     int            `json:"mtu,omitempty"`
	// InKernel reports whether the kernel holds everything the plan wants for
	// this peer; Mismatch lists what differs when it does not.
	InKernel bool     `json:"inKernel"`
	Mismatch []string `json:"mismatch,omitempty"`
}

// Routes is the answer of GET /v1/routes.
type Routes struct {
	Routes []Route `json:"routes"`
	// Extra lists what the kernel has of weft's that no peer explains
	// (the blackhole for the own subnet, masquerade, stale entries).
	Extra []string `json:"extra,omitempty"`
	// DataPlane says what the last reconcile pass did.
	LastPass  time.Time `json:"lastPass,omitzero"`
	LastError string    `json:"lastError,omitempty"`
	Passes    int       `json:"passes"`
}

// Cloud is the answer of GET /v1/cloud: the cloud adapter's view.
type Cloud struct {
	// Provider is the configured adapter: "none" or "aws".
	Provider string `json:"provider"`
	// Instance is what discovery found; nil when it did not run or failed.
	Instance *cloud.Instance `json:"instance,omitempty"`
	// Report is the last reconcile of the route tables: what is
	// programmed, what fell back to the overlay and why.
	Report        *cloud.Report `json:"report,omitempty"`
	LastReconcile time.Time     `json:"lastReconcile,omitzero"`
	LastError     string        `json:"lastError,omitempty"`
	// Problem is the adapter's problem in status, if any (discovery,
	// credentials, source/destination check).
	Problem string `json:"problem,omitempty"`
}
