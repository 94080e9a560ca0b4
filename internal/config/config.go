package config

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/weft-net/weft/fabric"
	"github.com/weft-net/weft/fabric/health"
)

// DefaultPath is where the agent looks for its config file when --config
// is not given.
const DefaultPath = "/etc/weft/weft.yaml"

// Config is the whole configuration of one agent. The JSON tags are the
// YAML field names (sigs.k8s.io/yaml goes through JSON), so
// sigs.k8s.io/yaml.Marshal(c) prints the effective configuration in the
// same form the file takes; the config holds no secrets (the cluster key
// lives in its own file). A Config is a plain value: copy it freely, but
// Join and Labels are shared between copies, so treat them as read-only.
type Config struct {
	// NodeName names this node in the cluster. Default: the host name,
	// lower-cased.
	NodeName string `json:"nodeName"`
	// ClusterName keeps clusters apart; nodes of different clusters never join.
	ClusterName string `json:"clusterName"`
	// ClusterCIDR is the IPv4 range that per-node workload subnets are cut from.
	ClusterCIDR netip.Prefix `json:"clusterCIDR,omitzero"`
	// SubnetSize is the prefix length of each node's workload subnet.
	SubnetSize int `json:"subnetSize"`
	// Subnet, when set, is the workload subnet this node must use instead of
	// claiming a free one.
	Subnet netip.Prefix `json:"subnet,omitzero"`
	// Join lists seed members as "host" or "host:port" (the port defaults to
	// BindPort); hosts are IP literals or host names.
	Join []string `json:"join,omitempty"`
	// BindAddress is the address the gossip listener binds to.
	BindAddress netip.Addr `json:"bindAddress,omitzero"`
	// BindPort is the gossip port, TCP and UDP.
	BindPort int `json:"bindPort"`
	// ClusterKeyFile holds the key that encrypts gossip.
	ClusterKeyFile string `json:"clusterKeyFile"`
	// Insecure runs gossip without encryption. Dangerous: anyone who can
	// reach the gossip port can join the cluster and inject routes. Only for
	// debugging.
	Insecure bool `json:"insecure"`
	// Location places the node for path selection.
	Location Location `json:"location"`
	// UnderlayInterface is the host interface that carries weft traffic;
	// empty means the agent picks the interface of the default route.
	UnderlayInterface string `json:"underlayInterface"`
	// AdvertiseAddress, when set, is the address peers use to reach this
	// node; otherwise the first address of the underlay interface.
	AdvertiseAddress netip.Addr `json:"advertiseAddress,omitzero"`
	// PublicAddress, when set, is the address this node is reachable at from
	// outside its NAT.
	PublicAddress netip.Addr `json:"publicAddress,omitzero"`
	// StateDir keeps what must survive a restart (subnet lease, keys).
	StateDir string `json:"stateDir"`
	// RunDir holds run-time files (the API socket, subnet.env).
	RunDir string `json:"runDir"`
	// Labels are node labels, usable in policy selectors.
	Labels map[string]string `json:"labels,omitempty"`
	// Overlay is the encapsulation used by pairs that need an overlay: vxlan
	// or ipip.
	Overlay string `json:"overlay"`
	// OverlayMode says which pairs use the overlay: cross-subnet (direct
	// routes within an L2 segment, the overlay across segments; Calico's
	// CrossSubnet, flannel's DirectRouting), always (every pair), or never
	// (direct routes only: peers that are not on-link get no path).
	OverlayMode string `json:"overlayMode"`
	// Encryption says which pairs must be encrypted: cross-region (pairs in
	// different clouds or regions), always (every pair), or never.
	// Encryption (WireGuard) is not implemented yet: pairs that need it get
	// no path.
	Encryption string `json:"encryption"`
	// VXLAN configures the VXLAN device, used when Overlay is vxlan.
	VXLAN VXLAN `json:"vxlan"`
	// IPMasq masquerades traffic from ClusterCIDR to destinations outside
	// it, as flannel's --ip-masq does.
	IPMasq bool `json:"ipMasq"`
	// ResyncPeriod is the time between full resyncs of the data plane with
	// the kernel, on top of the resyncs that changes and drift trigger.
	ResyncPeriod Duration `json:"resyncPeriod"`
	// WireGuard configures the WireGuard device that encrypted pairs use.
	WireGuard WireGuard `json:"wireguard"`
	// Cloud is the cloud adapter: none, or aws (VPC route tables, so that
	// hosts of one VPC talk without encapsulation).
	Cloud string `json:"cloud"`
	// AWS configures the aws adapter.
	AWS AWS `json:"aws"`
	// Gossip tunes memberlist.
	Gossip GossipTimings `json:"gossip"`
	// Policy configures network policy enforcement.
	Policy Policy `json:"policy"`
	// Health tunes path health: probes of every path to every peer,
	// fallback to the next allowed path and return after a hold-down.
	Health Health `json:"health"`
	// Metrics configures the Prometheus listener.
	Metrics Metrics `json:"metrics"`
	// LogLevel is one of debug, info, warn, error.
	LogLevel string `json:"logLevel"`
	// LogFormat is text or json.
	LogFormat string `json:"logFormat"`
}

// Location says where a node runs. Every part is optional.
type Location struct {
	// Cloud names the provider ("aws", "gcp", "onprem", ...).
	Cloud string `json:"cloud"`
	// Region names the provider's region ("eu-west-1", ...).
	Region string `json:"region"`
	// Zone names the availability zone ("eu-west-1a", ...).
	Zone string `json:"zone"`
}

// AWS configures the AWS adapter. Credentials come the standard way
// (environment, shared config, instance role), never from this file.
type AWS struct {
	// Region of the EC2 API; empty: from the instance metadata.
	Region string `json:"region"`
	// Endpoint is the EC2 API URL; empty: the region's. For tests and
	// private endpoints.
	Endpoint string `json:"endpoint"`
	// IMDSEndpoint is the instance metadata URL; empty: the standard one.
	IMDSEndpoint string `json:"imdsEndpoint"`
	// RouteTableIDs are route tables weft manages; with RouteTableTag
	// ("key=value") more are selected by tag; with neither, the VPC's
	// tables tagged weft:cluster=<clusterName>.
	RouteTableIDs []string `json:"routeTableIDs,omitempty"`
	RouteTableTag string   `json:"routeTableTag"`
}

// WireGuard configures the node's WireGuard device. The key pair is made on
// first start and kept in the state dir; only the public key is gossiped.
type WireGuard struct {
	// Port is the UDP port WireGuard listens on.
	Port int `json:"port"`
	// Device is the name of the WireGuard device weft creates.
	Device string `json:"device"`
	// Keepalive is the persistent keepalive a node behind NAT sends to its
	// peers, so the NAT keeps its mappings open.
	Keepalive Duration `json:"keepalive"`
	// BehindNAT says this node is behind a NAT that forwards nothing to it:
	// every peer then reaches it over WireGuard sessions it opens itself.
	BehindNAT bool `json:"behindNAT"`
}

// VXLAN configures the node's VXLAN device. VNI and Port must be the same
// on every node of the cluster.
type VXLAN struct {
	// VNI is the VXLAN network identifier (24 bits).
	VNI int `json:"vni"`
	// Port is the UDP port VXLAN packets are sent to and received on.
	Port int `json:"port"`
	// Device is the name of the VXLAN device weft creates.
	Device string `json:"device"`
}

// Health tunes path health (fabric/health).
type Health struct {
	// Enabled turns probing and fallback on.
	Enabled bool `json:"enabled"`
	// Interval is the time between two probes of one path (stretched for
	// large clusters to stay within MaxProbesPerSecond).
	Interval Duration `json:"interval"`
	// Misses is how many probes in a row must go unanswered for a path to
	// be down.
	Misses int `json:"misses"`
	// HoldDown is how long a down path must answer every probe before the
	// peer returns to it.
	HoldDown Duration `json:"holdDown"`
	// Timeout is how long a probe waits for its answer.
	Timeout Duration `json:"timeout"`
	// MaxProbesPerSecond bounds the probes this host sends.
	MaxProbesPerSecond int `json:"maxProbesPerSecond"`
	// Port is the UDP port probes are sent to and answered from.
	Port int `json:"port"`
}

// Metrics configures the Prometheus metrics listener.
type Metrics struct {
	// Listen is the TCP address /metrics is served on (e.g.
	// "127.0.0.1:9587"); empty: no listener.
	Listen string `json:"listen"`
}

// HealthConfig returns the health settings in the form fabric/health takes.
func (c Config) HealthConfig() health.Config {
	return health.Config{
		Interval:           c.Health.Interval.Duration,
		Misses:             c.Health.Misses,
		HoldDown:           c.Health.HoldDown.Duration,
		Timeout:            c.Health.Timeout.Duration,
		MaxProbesPerSecond: float64(c.Health.MaxProbesPerSecond),
		Port:               c.Health.Port,
		StartGrace:         health.DefaultStartGrace,
	}
}

// GossipTimings tunes memberlist's failure detection and state exchange.
// The defaults detect a crashed node in about 2-4 s on clusters of 10-100
// nodes without false deaths on a busy CPU (see FACTS.md).
type GossipTimings struct {
	// ProbeInterval is the time between failure probes of random members.
	ProbeInterval Duration `json:"probeInterval"`
	// ProbeTimeout is how long a probe waits for an ack; shorter than
	// ProbeInterval.
	ProbeTimeout Duration `json:"probeTimeout"`
	// SuspicionMult scales how long a suspect node has to refute before it
	// is declared dead.
	SuspicionMult int `json:"suspicionMult"`
	// GossipInterval is the time between gossip rounds.
	GossipInterval Duration `json:"gossipInterval"`
	// PushPullInterval is the time between full state exchanges
	// (anti-entropy).
	PushPullInterval Duration `json:"pushPullInterval"`
	// JoinRetryMax is the longest back-off between join attempts.
	JoinRetryMax Duration `json:"joinRetryMax"`
	// DeadReservation is how long a dead node's subnet stays reserved for it.
	DeadReservation Duration `json:"deadReservation"`
}

// Duration is a time.Duration that reads and writes as a Go duration string
// ("500ms", "15s", "24h") in YAML and JSON. Numbers are rejected: a bare 5
// would be ambiguous.
type Duration struct{ time.Duration }

// MarshalText writes d as a Go duration string, e.g. "1m30s".
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.Duration.String()), nil
}

// UnmarshalText parses a Go duration string; the error quotes the input.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		// time's own error already quotes the value: `time: invalid duration "5x"`.
		return err
	}
	d.Duration = v
	return nil
}

// Default returns the built-in configuration. NodeName is the host name,
// lower-cased, or empty when the host name cannot be read (Validate then
// asks for nodeName). Each call returns a fresh value.
func Default() Config {
	host, err := os.Hostname()
	if err != nil {
		host = ""
	}
	return Config{
		NodeName:       strings.ToLower(host),
		ClusterName:    "weft",
		ClusterCIDR:    netip.MustParsePrefix("10.244.0.0/16"),
		SubnetSize:     24,
		BindAddress:    netip.IPv4Unspecified(),
		BindPort:       7946,
		ClusterKeyFile: "/etc/weft/cluster.key",
		StateDir:       "/var/lib/weft",
		RunDir:         "/run/weft",
		Overlay:        fabric.OverlayVXLAN,
		OverlayMode:    fabric.OverlayCrossSubnet,
		Encryption:     fabric.EncryptionCrossRegion,
		VXLAN: VXLAN{
			VNI:    fabric.DefaultVXLANVNI,
			Port:   fabric.DefaultVXLANPort,
			Device: fabric.DefaultVXLANDevice,
		},
		IPMasq:       true,
		ResyncPeriod: Duration{30 * time.Second},
		Cloud:        "none",
		WireGuard: WireGuard{
			Port:      fabric.DefaultWireGuardPort,
			Device:    fabric.DefaultWireGuardDevice,
			Keepalive: Duration{fabric.DefaultWireGuardKeepalive},
		},
		Gossip: GossipTimings{
			ProbeInterval:    Duration{500 * time.Millisecond},
			ProbeTimeout:     Duration{250 * time.Millisecond},
			SuspicionMult:    3,
			GossipInterval:   Duration{200 * time.Millisecond},
			PushPullInterval: Duration{15 * time.Second},
			JoinRetryMax:     Duration{5 * time.Second},
			DeadReservation:  Duration{24 * time.Hour},
		},
		Policy: Policy{Enabled: true, FailsafeInbound: defaultFailsafes(), FailsafeOutbound: defaultFailsafes()},
		Health: Health{
			Enabled:            true,
			Interval:           Duration{health.DefaultInterval},
			Misses:             health.DefaultMisses,
			HoldDown:           Duration{health.DefaultHoldDown},
			Timeout:            Duration{health.DefaultTimeout},
			MaxProbesPerSecond: health.DefaultMaxProbesPerSecond,
			Port:               health.DefaultPort,
		},
		LogLevel:  "info",
		LogFormat: "text",
	}
}

// SlogLevel returns LogLevel as a slog.Level. It reports an error for a
// value Validate would reject.
func (c Config) SlogLevel() (slog.Level, error) {
	switch c.LogLevel {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return slog.LevelInfo, fmt.Errorf("logLevel: %q: want one of debug, info, warn, error", c.LogLevel)
}

// DataPlane returns the data-plane settings in the form the fabric planner
// takes. It copies values as they are: call Validate first.
func (c Config) DataPlane() fabric.Options {
	return fabric.Options{
		Overlay:     c.Overlay,
		OverlayMode: c.OverlayMode,
		Encryption:  c.Encryption,
		VXLANVNI:    c.VXLAN.VNI,
		VXLANPort:   c.VXLAN.Port,
		VXLANDevice: c.VXLAN.Device,
		ClusterCIDR: c.ClusterCIDR,
		IPMasq:      c.IPMasq,

		WireGuardDevice:    c.WireGuard.Device,
		WireGuardPort:      c.WireGuard.Port,
		WireGuardKeepalive: c.WireGuard.Keepalive.Duration,
	}
}
