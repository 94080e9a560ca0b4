package fabric

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultSubnetEnvPath is where flannel writes subnet.env and where the
// flannel CNI plugin reads it by default.
const DefaultSubnetEnvPath = "/run/flannel/subnet.env"

// Keys of flannel's subnet.env. flannel writes the IPv4 pair for an IPv4
// network and the IPV6 pair for an IPv6 one, then MTU and IPMASQ.
const (
	envNetwork     = "FLANNEL_NETWORK"
	envSubnet      = "FLANNEL_SUBNET"
	envIPv6Network = "FLANNEL_IPV6_NETWORK"
	envIPv6Subnet  = "FLANNEL_IPV6_SUBNET"
	envMTU         = "FLANNEL_MTU"
	envIPMasq      = "FLANNEL_IPMASQ"
)

// MTU bounds: the least MTU each IP version must carry (RFC 791, RFC 8200)
// and the largest an IP packet can have.
const (
	minMTUIPv4 = 68
	minMTUIPv6 = 1280
	maxMTU     = 65535
)

// SubnetEnv is the content of flannel's subnet.env, which the flannel CNI
// plugin reads to configure workloads; weft writes it so that existing CNI
// configs work unchanged. One address family; dual stack is not supported.
type SubnetEnv struct {
	// Network is the cluster CIDR, e.g. 10.244.0.0/16.
	Network netip.Prefix
	// Subnet is the node's subnet written with its gateway address, as
	// flannel does: 10.244.3.1/24 for 10.244.3.0/24 (see GatewayPrefix).
	Subnet netip.Prefix
	// MTU is the MTU of the workloads' interfaces.
	MTU int
	// IPMasq reports whether traffic leaving the cluster CIDR is masqueraded.
	IPMasq bool
}

// GatewayPrefix returns subnet written with its gateway address, the first
// address after the network address, as flannel writes FLANNEL_SUBNET:
// 10.244.3.0/24 gives 10.244.3.1/24. It returns the zero Prefix when subnet
// is invalid or has no address after its network address.
func GatewayPrefix(subnet netip.Prefix) netip.Prefix {
	if !subnet.IsValid() {
		return netip.Prefix{}
	}
	m := subnet.Masked()
	gw := m.Addr().Next()
	if !gw.IsValid() || !m.Contains(gw) {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(gw, m.Bits())
}

// Validate reports whether e can be written: Network is a valid prefix
// without host bits set, Subnet is a valid prefix of the same family inside
// Network, and MTU lies between the least MTU of the family (68 for IPv4,
// 1280 for IPv6) and 65535. The error names the field and the value.
func (e SubnetEnv) Validate() error {
	n, s := e.Network, e.Subnet
	switch {
	case !n.IsValid():
		return fmt.Errorf("network %q: not a valid prefix", n.String())
	case n.Masked() != n:
		return fmt.Errorf("network %s: host bits set, want %s", n, n.Masked())
	case n.Addr().Is4In6():
		return fmt.Errorf("network %s: IPv4-mapped IPv6 prefix, write it as IPv4", n)
	case !s.IsValid():
		return fmt.Errorf("subnet %q: not a valid prefix", s.String())
	case s.Addr().Is4() != n.Addr().Is4() || s.Addr().Is4In6():
		return fmt.Errorf("subnet %s: other address family than network %s", s, n)
	case s.Bits() < n.Bits() || !n.Contains(s.Addr()):
		return fmt.Errorf("subnet %s: not inside network %s", s, n)
	}
	minMTU := minMTUIPv4
	if !n.Addr().Is4() {
		minMTU = minMTUIPv6
	}
	if e.MTU < minMTU || e.MTU > maxMTU {
		return fmt.Errorf("mtu %d: not in %d..%d", e.MTU, minMTU, maxMTU)
	}
	return nil
}

// Render returns e in exactly the format flannel writes, for IPv4:
//
//	FLANNEL_NETWORK=10.244.0.0/16
//	FLANNEL_SUBNET=10.244.3.1/24
//	FLANNEL_MTU=1450
//	FLANNEL_IPMASQ=true
//
// and for an IPv6 Network FLANNEL_IPV6_NETWORK and FLANNEL_IPV6_SUBNET in
// place of the first two keys. Render does not validate e (see Validate).
func (e SubnetEnv) Render() []byte {
	netKey, subKey := envNetwork, envSubnet
	if e.Network.Addr().Is6() {
		netKey, subKey = envIPv6Network, envIPv6Subnet
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s=%s\n", netKey, e.Network)
	fmt.Fprintf(&b, "%s=%s\n", subKey, e.Subnet)
	fmt.Fprintf(&b, "%s=%d\n", envMTU, e.MTU)
	fmt.Fprintf(&b, "%s=%t\n", envIPMasq, e.IPMasq)
	return b.Bytes()
}

// WriteSubnetEnv validates e and writes it to path atomically (temporary file
// in the same directory, fsync, rename) with mode 0644, so that a CNI plugin
// reading concurrently sees the old file or the new one. The parent directory
// is created with mode 0755 if it does not exist, as flannel does.
func WriteSubnetEnv(path string, e SubnetEnv) error {
	if err := e.Validate(); err != nil {
		return fmt.Errorf("write subnet env %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write subnet env: %w", err)
	}
	if err := writeFileAtomic(path, e.Render(), 0o644); err != nil {
		return fmt.Errorf("write subnet env: %w", err)
	}
	return nil
}

// ParseSubnetEnv parses a subnet.env as flannel (or Render) writes it:
// KEY=VALUE lines. Blank lines, lines starting with '#' and unknown keys are
// skipped; spaces around lines, keys and values are trimmed. Exactly one of
// the IPv4 pair (FLANNEL_NETWORK, FLANNEL_SUBNET) and the IPv6 pair
// (FLANNEL_IPV6_NETWORK, FLANNEL_IPV6_SUBNET) must be present, with
// FLANNEL_MTU and FLANNEL_IPMASQ ("true" or "false"); a key given twice is an
// error. The result is validated (see Validate). Errors name the key and the
// value. ParseSubnetEnv does not retain data.
func ParseSubnetEnv(data []byte) (SubnetEnv, error) {
	vals := make(map[string]string)
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return SubnetEnv{}, fmt.Errorf("parse subnet env: line %d %s: not KEY=VALUE", i+1, quoteShort(line))
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		switch key {
		case envNetwork, envSubnet, envIPv6Network, envIPv6Subnet, envMTU, envIPMasq:
		default:
			continue
		}
		if _, dup := vals[key]; dup {
			return SubnetEnv{}, fmt.Errorf("parse subnet env: line %d: %s given twice", i+1, key)
		}
		vals[key] = val
	}
	e, err := subnetEnvFrom(vals)
	if err != nil {
		return SubnetEnv{}, fmt.Errorf("parse subnet env: %w", err)
	}
	if err := e.Validate(); err != nil {
		return SubnetEnv{}, fmt.Errorf("parse subnet env: %w", err)
	}
	return e, nil
}

// subnetEnvFrom builds a SubnetEnv from the known keys' values.
func subnetEnvFrom(vals map[string]string) (SubnetEnv, error) {
	_, has4 := vals[envNetwork]
	_, has6 := vals[envIPv6Network]
	netKey, subKey, want4 := envNetwork, envSubnet, true
	switch {
	case has4 && has6:
		return SubnetEnv{}, fmt.Errorf("%s and %s: dual stack is not supported", envNetwork, envIPv6Network)
	case has6:
		netKey, subKey, want4 = envIPv6Network, envIPv6Subnet, false
	}
	var e SubnetEnv
	var err error
	if e.Network, err = parseEnvPrefix(vals, netKey, want4); err != nil {
		return SubnetEnv{}, err
	}
	if e.Subnet, err = parseEnvPrefix(vals, subKey, want4); err != nil {
		return SubnetEnv{}, err
	}
	mtu, ok := vals[envMTU]
	if !ok {
		return SubnetEnv{}, fmt.Errorf("%s: missing", envMTU)
	}
	if e.MTU, err = strconv.Atoi(mtu); err != nil {
		return SubnetEnv{}, fmt.Errorf("%s %s: not an integer", envMTU, quoteShort(mtu))
	}
	switch masq, ok := vals[envIPMasq]; {
	case !ok:
		return SubnetEnv{}, fmt.Errorf("%s: missing", envIPMasq)
	case masq == "true":
		e.IPMasq = true
	case masq == "false":
	default:
		return SubnetEnv{}, fmt.Errorf("%s %s: not true or false", envIPMasq, quoteShort(masq))
	}
	return e, nil
}

// parseEnvPrefix parses the prefix under key, which must be of the family
// the key is for.
func parseEnvPrefix(vals map[string]string, key string, want4 bool) (netip.Prefix, error) {
	v, ok := vals[key]
	if !ok {
		return netip.Prefix{}, fmt.Errorf("%s: missing", key)
	}
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%s %s: %w", key, quoteShort(v), err)
	}
	if p.Addr().Is4() != want4 {
		return netip.Prefix{}, fmt.Errorf("%s %s: wrong address family for the key", key, p)
	}
	return p, nil
}

// quoteShort quotes s for an error message, cut to a readable length.
func quoteShort(s string) string {
	const maxLen = 40
	if len(s) > maxLen {
		s = s[:maxLen] + "..."
	}
	return strconv.Quote(s)
}
