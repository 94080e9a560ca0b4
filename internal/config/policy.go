package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/weft-net/weft/fabric/health"
	"github.com/weft-net/weft/policy"
)

// Policy configures the policy engine, which enforces the cluster's
// policies for this host's workloads (and host endpoints) in nftables
// table inet weft.
type Policy struct {
	// Enabled runs the engine. When false the agent enforces nothing and
	// removes table inet weft if an earlier run left one.
	Enabled bool `json:"enabled"`
	// FailsafeInbound and FailsafeOutbound are traffic to and from this
	// host's host endpoints that no policy can block, as Felix's failsafe
	// ports: "tcp:22", "udp:7946", or with a remote network
	// "tcp:10.0.0.0/8:22". The defaults keep SSH, the gossip port (TCP and
	// UDP), the WireGuard port and the path-health port (UDP) open; while a
	// list is the default one, it follows bindPort, wireguard.port and
	// health.port when those change.
	FailsafeInbound  []string `json:"failsafeInbound,omitempty"`
	FailsafeOutbound []string `json:"failsafeOutbound,omitempty"`
	// DefaultDenyWorkloads denies a workload's traffic that no policy
	// decides, where Calico's default profile allows it.
	DefaultDenyWorkloads bool `json:"defaultDenyWorkloads"`
}

// defaultFailsafes returns SSH and weft's own default ports (gossip,
// WireGuard, path-health probes) as failsafe entries.
func defaultFailsafes() []string {
	return failsafesFor(policy.DefaultGossipPort, policy.DefaultWireGuardPort, health.DefaultPort)
}

// failsafesFor returns SSH, the gossip port (TCP and UDP), the WireGuard
// port and the path-health probe port (UDP) as failsafe entries.
func failsafesFor(gossipPort, wireGuardPort, healthPort int) []string {
	gossip := strconv.Itoa(gossipPort)
	return []string{"tcp:22", "tcp:" + gossip, "udp:" + gossip, "udp:" + strconv.Itoa(wireGuardPort), "udp:" + strconv.Itoa(healthPort)}
}

// PolicyOptions returns the policy settings in the form the evaluator and
// compiler take. Call Validate first: entries that do not parse are left
// out.
func (c Config) PolicyOptions() policy.Options {
	o := policy.Options{DefaultDenyWorkloads: c.Policy.DefaultDenyWorkloads}
	in, out := c.Policy.FailsafeInbound, c.Policy.FailsafeOutbound
	own := failsafesFor(c.BindPort, c.WireGuard.Port, c.Health.Port)
	if slices.Equal(in, defaultFailsafes()) {
		in = own
	}
	if slices.Equal(out, defaultFailsafes()) {
		out = own
	}
	for _, s := range in {
		if f, err := ParseFailsafe(s); err == nil {
			o.FailsafeInbound = append(o.FailsafeInbound, f)
		}
	}
	for _, s := range out {
		if f, err := ParseFailsafe(s); err == nil {
			o.FailsafeOutbound = append(o.FailsafeOutbound, f)
		}
	}
	return o
}

// ParseFailsafe reads a failsafe entry as Felix writes them:
// "PROTO:PORT" or "PROTO:NET:PORT", PROTO one of tcp, udp, sctp, NET a
// CIDR prefix (an IPv6 one works too: the port is after the last colon).
func ParseFailsafe(s string) (policy.Failsafe, error) {
	proto, rest, ok := strings.Cut(s, ":")
	if !ok {
		return policy.Failsafe{}, fmt.Errorf("want PROTO:PORT or PROTO:NET:PORT, e.g. tcp:22")
	}
	var f policy.Failsafe
	switch proto {
	case "tcp":
		f.Protocol = policy.ProtoTCP
	case "udp":
		f.Protocol = policy.ProtoUDP
	case "sctp":
		f.Protocol = policy.ProtoSCTP
	default:
		return policy.Failsafe{}, fmt.Errorf("protocol %q: want tcp, udp or sctp", proto)
	}
	port := rest
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		n, err := netip.ParsePrefix(rest[:i])
		if err != nil {
			return policy.Failsafe{}, fmt.Errorf("network %q: want a CIDR prefix such as 10.0.0.0/8", rest[:i])
		}
		f.Net, port = n.Masked(), rest[i+1:]
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return policy.Failsafe{}, fmt.Errorf("port %q: want 1-65535", port)
	}
	f.Port = uint16(n)
	return f, nil
}

// validatePolicy checks the policy section.
func (c Config) validatePolicy() []error {
	var errs []error
	for _, l := range []struct {
		field string
		list  []string
	}{{"policy.failsafeInbound", c.Policy.FailsafeInbound}, {"policy.failsafeOutbound", c.Policy.FailsafeOutbound}} {
		for i, s := range l.list {
			if _, err := ParseFailsafe(s); err != nil {
				errs = append(errs, &FieldError{Field: fmt.Sprintf("%s[%d]", l.field, i), Value: quote(s), Err: err})
			}
		}
	}
	return errs
}
