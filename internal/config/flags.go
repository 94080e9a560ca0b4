package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
)

// configFlag names the flag (and, through envVar, the variable) that points
// at the config file.
const configFlag = "config"

// kind says which cli flag type carries a setting.
type kind int

const (
	kindString kind = iota
	kindInt
	kindBool
	kindDuration
	kindList
)

// setting ties one Config field to its flag. The flag name is the field's
// YAML path in kebab case (gossip.probeInterval is --gossip-probe-interval)
// and the environment variable is WEFT_ and the flag name in upper snake
// case (WEFT_GOSSIP_PROBE_INTERVAL).
type setting struct {
	name  string
	usage string
	kind  kind
	// show renders the field of the default Config for the help text;
	// defText, when set, replaces it (for defaults worked out at run time).
	show    func(Config) string
	defText string
	// apply copies the flag's value into c.
	apply func(ctx *cli.Context, c *Config) error
}

// settings lists one setting per Config field, in field order.
func settings() []setting {
	return []setting{
		str("node-name", "name of this node in the cluster", func(c *Config) *string { return &c.NodeName }).
			withDefault("the host name, lower-cased"),
		str("cluster-name", "name of the cluster; a node only joins nodes with the same cluster name", func(c *Config) *string { return &c.ClusterName }),
		prefix("cluster-cidr", "IPv4 range that the per-node workload subnets are cut from", func(c *Config) *netip.Prefix { return &c.ClusterCIDR }),
		integer("subnet-size", "prefix length of each node's workload subnet, e.g. 24 for a /24", func(c *Config) *int { return &c.SubnetSize }),
		prefix("subnet", "fixed workload subnet for this node, inside the cluster CIDR", func(c *Config) *netip.Prefix { return &c.Subnet }).
			withDefault("claim a free subnet"),
		list("join", "address of a node to join, as host or host:port; repeat the flag or separate with commas", func(c *Config) *[]string { return &c.Join }).
			withDefault("none: start a new cluster"),
		addr("bind-address", "local address the gossip listener binds to", func(c *Config) *netip.Addr { return &c.BindAddress }),
		integer("bind-port", "TCP and UDP port for gossip between nodes", func(c *Config) *int { return &c.BindPort }),
		str("cluster-key-file", "file holding the key that encrypts gossip; every node needs the same key", func(c *Config) *string { return &c.ClusterKeyFile }),
		boolean("insecure", "DANGEROUS, for debugging only: gossip without encryption, so anyone who can reach the gossip port can join", func(c *Config) *bool { return &c.Insecure }),
		str("location-cloud", "cloud this node runs in, e.g. aws; used to choose paths between nodes", func(c *Config) *string { return &c.Location.Cloud }),
		str("location-region", "region this node runs in, e.g. eu-west-1", func(c *Config) *string { return &c.Location.Region }),
		str("location-zone", "availability zone this node runs in, e.g. eu-west-1a", func(c *Config) *string { return &c.Location.Zone }),
		str("underlay-interface", "host network interface that carries traffic between nodes", func(c *Config) *string { return &c.UnderlayInterface }).
			withDefault("the interface of the default route"),
		addr("advertise-address", "address other nodes use to reach this one", func(c *Config) *netip.Addr { return &c.AdvertiseAddress }).
			withDefault("the first address of the underlay interface"),
		addr("public-address", "address this node is reachable at from outside its NAT", func(c *Config) *netip.Addr { return &c.PublicAddress }),
		str("state-dir", "directory for state kept across restarts (subnet lease, keys)", func(c *Config) *string { return &c.StateDir }),
		str("run-dir", "directory for run-time files (API socket, subnet.env)", func(c *Config) *string { return &c.RunDir }),
		labels("labels", "node label as key=value, usable in policy selectors; repeat or separate with commas, at most 8", func(c *Config) *map[string]string { return &c.Labels }),
		str("overlay", "encapsulation for pairs of nodes that need an overlay: vxlan or ipip", func(c *Config) *string { return &c.Overlay }),
		str("overlay-mode", "which pairs use the overlay: cross-subnet (direct routes within an L2 segment, the overlay across segments), always, or never (direct routes only; peers that are not on-link get no path)", func(c *Config) *string { return &c.OverlayMode }),
		str("encryption", "which pairs must be encrypted: cross-region (pairs in different clouds or regions), always or never; encryption (WireGuard) is not implemented yet, so pairs that need encryption get no path until WireGuard support lands", func(c *Config) *string { return &c.Encryption }),
		integer("vxlan-vni", "VXLAN network identifier, 1-16777215; the same on every node", func(c *Config) *int { return &c.VXLAN.VNI }),
		integer("vxlan-port", "UDP port for VXLAN traffic between nodes; the same on every node (flannel uses 8472)", func(c *Config) *int { return &c.VXLAN.Port }),
		str("vxlan-device", "name of the VXLAN device weft creates", func(c *Config) *string { return &c.VXLAN.Device }),
		boolean("ip-masq", "masquerade traffic from the cluster CIDR to destinations outside it; turn off with --ip-masq=false", func(c *Config) *bool { return &c.IPMasq }),
		duration("resync-period", "time between full resyncs of the data plane with the kernel, at least 1s", func(c *Config) *Duration { return &c.ResyncPeriod }),
		integer("wireguard-port", "UDP port WireGuard listens on", func(c *Config) *int { return &c.WireGuard.Port }),
		str("wireguard-device", "name of the WireGuard device weft creates", func(c *Config) *string { return &c.WireGuard.Device }),
		duration("wireguard-keepalive", "keepalive a node behind NAT sends to its WireGuard peers so the NAT keeps its mappings", func(c *Config) *Duration { return &c.WireGuard.Keepalive }),
		str("cloud", "cloud adapter: none, or aws (program the VPC's route tables so hosts of one VPC talk without encapsulation)", func(c *Config) *string { return &c.Cloud }),
		str("aws-region", "EC2 region (default: from the instance metadata)", func(c *Config) *string { return &c.AWS.Region }),
		str("aws-endpoint", "EC2 API URL (default: the region's)", func(c *Config) *string { return &c.AWS.Endpoint }),
		str("aws-imds-endpoint", "instance metadata URL (default: the standard one)", func(c *Config) *string { return &c.AWS.IMDSEndpoint }),
		list("aws-route-table-ids", "route table IDs weft manages; repeat or separate with commas (default: the VPC's tables tagged weft:cluster=<cluster name>)", func(c *Config) *[]string { return &c.AWS.RouteTableIDs }),
		str("aws-route-table-tag", "manage the route tables with this tag, as key=value", func(c *Config) *string { return &c.AWS.RouteTableTag }),
		boolean("wireguard-behind-nat", "this node is behind a NAT that forwards nothing to it: peers reach it over the WireGuard sessions it opens", func(c *Config) *bool { return &c.WireGuard.BehindNAT }),
		duration("gossip-probe-interval", "time between probes that check whether other nodes are alive", func(c *Config) *Duration { return &c.Gossip.ProbeInterval }),
		duration("gossip-probe-timeout", "how long a probe waits for an answer; shorter than the probe interval", func(c *Config) *Duration { return &c.Gossip.ProbeTimeout }),
		integer("gossip-suspicion-mult", "how many probe rounds (scaled by cluster size) a suspected node has to answer before it is declared dead, 1-10", func(c *Config) *int { return &c.Gossip.SuspicionMult }),
		duration("gossip-gossip-interval", "time between rounds of passing news to other nodes", func(c *Config) *Duration { return &c.Gossip.GossipInterval }),
		duration("gossip-push-pull-interval", "time between full state exchanges with a random node", func(c *Config) *Duration { return &c.Gossip.PushPullInterval }),
		duration("gossip-join-retry-max", "longest wait between attempts to join the --join nodes", func(c *Config) *Duration { return &c.Gossip.JoinRetryMax }),
		duration("gossip-dead-reservation", "how long a dead node's subnet stays reserved in case it comes back", func(c *Config) *Duration { return &c.Gossip.DeadReservation }),
		boolean("policy-enabled", "enforce network policy for this host's workloads in nftables table inet weft; --policy-enabled=false enforces nothing and removes the table", func(c *Config) *bool { return &c.Policy.Enabled }),
		list("policy-failsafe-inbound", "traffic to this host that no policy can block, as proto:port or proto:net:port (tcp, udp, sctp); repeat or separate with commas", func(c *Config) *[]string { return &c.Policy.FailsafeInbound }),
		list("policy-failsafe-outbound", "traffic from this host that no policy can block, as proto:port or proto:net:port; repeat or separate with commas", func(c *Config) *[]string { return &c.Policy.FailsafeOutbound }),
		boolean("policy-default-deny-workloads", "deny a workload's traffic that no policy decides (Calico allows it)", func(c *Config) *bool { return &c.Policy.DefaultDenyWorkloads }),
		boolean("health-enabled", "probe every path to every peer, fall back to the next allowed path when one stops answering, and return after the hold-down", func(c *Config) *bool { return &c.Health.Enabled }),
		duration("health-interval", "time between two probes of one path (stretched on large clusters to stay within the probe budget)", func(c *Config) *Duration { return &c.Health.Interval }),
		integer("health-misses", "probes in a row that must go unanswered for a path to be down, 1-100", func(c *Config) *int { return &c.Health.Misses }),
		duration("health-hold-down", "how long a down path must answer every probe before peers return to it", func(c *Config) *Duration { return &c.Health.HoldDown }),
		duration("health-timeout", "how long a probe waits for its answer", func(c *Config) *Duration { return &c.Health.Timeout }),
		integer("health-max-probes-per-second", "most probes this host sends per second, whatever the cluster size", func(c *Config) *int { return &c.Health.MaxProbesPerSecond }),
		integer("health-port", "UDP port that path-health probes are sent to and answered from", func(c *Config) *int { return &c.Health.Port }),
		str("metrics-listen", "IP:port to serve Prometheus metrics on at /metrics", func(c *Config) *string { return &c.Metrics.Listen }).
			withDefault("none: no metrics listener"),
		str("log-level", "least severe log messages to print: debug, info, warn or error", func(c *Config) *string { return &c.LogLevel }),
		str("log-format", "log format: text or json", func(c *Config) *string { return &c.LogFormat }),
	}
}

func (s setting) withDefault(text string) setting {
	s.defText = text
	return s
}

// Flags returns a fresh set of flags for `weft agent`: --config plus one
// flag per Config field, each also read from its WEFT_* environment
// variable. No flag carries a value of its own (defaults come from
// Default() and the file, see Precedence); the help text shows the
// built-in default. Each call returns new flags, which the caller owns.
func Flags() []cli.Flag {
	d := Default()
	flags := []cli.Flag{&cli.StringFlag{
		Name:        configFlag,
		Usage:       "YAML config file; a missing file is an error only when this is set",
		EnvVars:     []string{envVar(configFlag)},
		DefaultText: DefaultPath,
		TakesFile:   true,
	}}
	for _, s := range settings() {
		def := s.defText
		if def == "" {
			def = s.show(d)
		}
		if def == "" {
			def = "none"
		}
		env := []string{envVar(s.name)}
		switch s.kind {
		case kindString:
			flags = append(flags, &cli.StringFlag{Name: s.name, Usage: s.usage, EnvVars: env, DefaultText: def})
		case kindInt:
			flags = append(flags, &cli.IntFlag{Name: s.name, Usage: s.usage, EnvVars: env, DefaultText: def})
		case kindBool:
			flags = append(flags, &cli.BoolFlag{Name: s.name, Usage: s.usage, EnvVars: env, DefaultText: def})
		case kindDuration:
			flags = append(flags, &cli.DurationFlag{Name: s.name, Usage: s.usage, EnvVars: env, DefaultText: def})
		case kindList:
			flags = append(flags, &cli.StringSliceFlag{Name: s.name, Usage: s.usage, EnvVars: env, DefaultText: def})
		}
	}
	return flags
}

// FromCLI builds the Config of a command run with Flags(): it reads the
// file named by --config (default DefaultPath, where a missing file is
// fine), overlays every flag or WEFT_* variable that is set, and validates
// the result. Errors in flag values name the flag and its variable; on
// error the Config is the zero value. The command takes no arguments:
// FromCLI refuses any, because `--ip-masq false` would otherwise quietly
// mean --ip-masq with a stray argument "false".
func FromCLI(ctx *cli.Context) (Config, error) {
	if ctx.Args().Present() {
		return Config{}, fmt.Errorf("unexpected argument %s: settings are flags only, and a true/false flag takes its value after '=' (--ip-masq=false)", quote(ctx.Args().First()))
	}
	path, explicit := DefaultPath, false
	if p := ctx.String(configFlag); ctx.IsSet(configFlag) && p != "" {
		path, explicit = p, true
	}
	c, err := load(path, explicit)
	if err != nil {
		return Config{}, err
	}
	var errs []error
	for _, s := range settings() {
		if !ctx.IsSet(s.name) {
			continue
		}
		if err := s.apply(ctx, &c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("check config (file %s, flags and WEFT_* variables): %w", path, err)
	}
	return c, nil
}

// envVar returns the environment variable of the flag name.
func envVar(name string) string {
	return "WEFT_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// flagError reports a bad value v of the flag name.
func flagError(name, v string, err error) error {
	return fmt.Errorf("--%s (%s): %q: %w", name, envVar(name), v, err)
}

func str(name, usage string, field func(*Config) *string) setting {
	return setting{name: name, usage: usage, kind: kindString,
		show: func(c Config) string { return *field(&c) },
		apply: func(ctx *cli.Context, c *Config) error {
			*field(c) = ctx.String(name)
			return nil
		}}
}

func addr(name, usage string, field func(*Config) *netip.Addr) setting {
	return setting{name: name, usage: usage, kind: kindString,
		show: func(c Config) string { return addrText(*field(&c)) },
		apply: func(ctx *cli.Context, c *Config) error {
			v := ctx.String(name)
			var a netip.Addr // empty: unset
			if v != "" {
				var err error
				if a, err = netip.ParseAddr(v); err != nil {
					return flagError(name, v, err)
				}
			}
			*field(c) = a
			return nil
		}}
}

func prefix(name, usage string, field func(*Config) *netip.Prefix) setting {
	return setting{name: name, usage: usage, kind: kindString,
		show: func(c Config) string { return prefixText(*field(&c)) },
		apply: func(ctx *cli.Context, c *Config) error {
			v := ctx.String(name)
			var p netip.Prefix // empty: unset
			if v != "" {
				var err error
				if p, err = netip.ParsePrefix(v); err != nil {
					return flagError(name, v, err)
				}
			}
			*field(c) = p
			return nil
		}}
}

func integer(name, usage string, field func(*Config) *int) setting {
	return setting{name: name, usage: usage, kind: kindInt,
		show: func(c Config) string { return strconv.Itoa(*field(&c)) },
		apply: func(ctx *cli.Context, c *Config) error {
			*field(c) = ctx.Int(name)
			return nil
		}}
}

func boolean(name, usage string, field func(*Config) *bool) setting {
	return setting{name: name, usage: usage, kind: kindBool,
		show: func(c Config) string { return strconv.FormatBool(*field(&c)) },
		apply: func(ctx *cli.Context, c *Config) error {
			*field(c) = ctx.Bool(name)
			return nil
		}}
}

func duration(name, usage string, field func(*Config) *Duration) setting {
	return setting{name: name, usage: usage, kind: kindDuration,
		show: func(c Config) string { return field(&c).String() },
		apply: func(ctx *cli.Context, c *Config) error {
			*field(c) = Duration{ctx.Duration(name)}
			return nil
		}}
}

func list(name, usage string, field func(*Config) *[]string) setting {
	return setting{name: name, usage: usage, kind: kindList,
		show: func(c Config) string { return strings.Join(*field(&c), ",") },
		apply: func(ctx *cli.Context, c *Config) error {
			*field(c) = listValues(ctx.StringSlice(name))
			return nil
		}}
}

func labels(name, usage string, field func(*Config) *map[string]string) setting {
	return setting{name: name, usage: usage, kind: kindList,
		show: func(Config) string { return "" },
		apply: func(ctx *cli.Context, c *Config) error {
			var m map[string]string
			for _, kv := range listValues(ctx.StringSlice(name)) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return flagError(name, kv, errors.New("want key=value"))
				}
				if _, dup := m[k]; dup {
					return flagError(name, kv, fmt.Errorf("label %q given twice", k))
				}
				if m == nil {
					m = make(map[string]string)
				}
				m[k] = v
			}
			*field(c) = m
			return nil
		}}
}

// listValues trims the items of a list flag and drops empty ones, so that
// WEFT_JOIN="" clears the list. It returns nil for an empty list.
func listValues(in []string) []string {
	var out []string
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// addrText and prefixText print a zero value as "" rather than "invalid IP".
func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func prefixText(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}
