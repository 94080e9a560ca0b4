package api

import "time"

// PathHealth is the health of one path to a peer (GET /v1/peers, per peer).
type PathHealth struct {
	Path string `json:"path"`
	// State is up, down or unknown (not probed enough yet; usable).
	State  string    `json:"state"`
	Since  time.Time `json:"since,omitzero"`
	Reason string    `json:"reason,omitempty"`
	// RTTMillis is the round-trip time of the last answered probe.
	RTTMillis float64 `json:"rttMs"`
	// Loss is the share of the last Probes probes (at most 32) unanswered.
	Loss   float64 `json:"loss"`
	Probes int     `json:"probes"`
	// MTU is the path MTU found for this path by DF probes; 0 when none
	// (yet, or the path is not probed for it).
	MTU int `json:"mtu,omitempty"`
}

// PathChange is a peer moving to another path.
type PathChange struct {
	At     time.Time `json:"at"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Reason string    `json:"reason"`
}

// PeerHealth is what path health says of a peer; nil in Peer when path
// health is off or the peer has no path.
type PeerHealth struct {
	// State, RTTMillis and Loss are those of the path in use.
	State     string  `json:"state"`
	RTTMillis float64 `json:"rttMs"`
	Loss      float64 `json:"loss"`
	// PathSince is when the peer was put on the path in use.
	PathSince time.Time `json:"pathSince,omitzero"`
	// LastChange is the last move to another path, nil when none.
	LastChange *PathChange `json:"lastChange,omitempty"`
	// Paths are every path allowed for the peer, cheapest first.
	Paths []PathHealth `json:"paths"`
}

// SelfTest is the last encapsulation self-test of one tunnel kind
// (GET /v1/status): known test packets sent to a few peers on that tunnel,
// through this node's device and, where the path allows, built by hand
// off the route, and echoed back byte for byte.
type SelfTest struct {
	Tunnel string    `json:"tunnel"`
	At     time.Time `json:"at"`
	// Why is "start", "path change" or "local fault" (path health saw the
	// path fail through this node's device).
	Why   string   `json:"why"`
	Peers []string `json:"peers"`
	// Result is healthy, local-fault (this node's device breaks the
	// packets), network (they fail off the route too: not this node's
	// device), failed (cause unknown: the tunnel cannot be tested off its
	// route) or untested.
	Result string `json:"result"`
	// Found says what the test packets did, per peer.
	Found string `json:"found"`
	// Did says what weft changed, if anything, and whether it cured it.
	Did string `json:"did,omitempty"`
	// Cured is set when what weft did made the test packets pass.
	Cured bool `json:"cured,omitempty"`
}
