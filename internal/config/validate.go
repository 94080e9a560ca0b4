package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/weft-net/weft/fabric"
)

// Limits enforced by Validate.
const (
	// maxNodeName is the longest DNS label; node names end up in DNS-ish
	// places (memberlist names, labels, logs).
	maxNodeName = 63
	// maxClusterName and maxLocationPart keep the gossiped node record
	// within memberlist's 512-byte metadata limit.
	maxClusterName  = 32
	maxLocationPart = 32
	// maxSubnetBits leaves room for a network, a gateway, one workload and
	// a broadcast address.
	maxSubnetBits = 30
	// maxIfName is IFNAMSIZ (16) minus the terminating NUL.
	maxIfName = 15
	// maxLabels, like the two above, protects the 512-byte node record.
	maxLabels = 8
	// maxLabelPart and maxLabelPrefix are Kubernetes' label limits.
	maxLabelPart   = 63
	maxLabelPrefix = 253
	// maxSuspicionMult bounds memberlist's suspicion timeout multiplier;
	// beyond 10 a crashed node lingers for minutes.
	maxSuspicionMult = 10
	// maxVXLANVNI is the largest VXLAN network identifier: the field is 24
	// bits wide (RFC 7348).
	maxVXLANVNI = 1<<24 - 1
	// minResyncPeriod keeps the full data-plane resync, which reads back
	// every weft route and neighbour, from hogging the CPU and netlink.
	minResyncPeriod = time.Second
)

// Validate checks every field and returns all problems joined
// (errors.Join), each a *FieldError naming the field by its YAML name and
// quoting the value, e.g. `clusterCIDR: "10.0.0.0/33": ...`. It returns nil
// for a usable Config and never changes c.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, value, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Value: value, Err: fmt.Errorf(format, args...)})
	}

	switch {
	case c.NodeName == "":
		bad("nodeName", `""`, "required; the host name could not be read, so set nodeName (--node-name)")
	case !isDNSName(c.NodeName, maxNodeName):
		bad("nodeName", quote(c.NodeName), "must be 1-%d characters of a-z, 0-9, '-' and '.', starting and ending with a letter or digit (set nodeName if the host name does not fit)", maxNodeName)
	}
	if !isSlug(c.ClusterName, 1, maxClusterName) {
		bad("clusterName", quote(c.ClusterName), "must be 1-%d characters of a-z, 0-9 and '-'", maxClusterName)
	}

	cidrOK := false
	switch p := c.ClusterCIDR; {
	case !p.IsValid():
		bad("clusterCIDR", `""`, "required")
	case !p.Addr().Is4():
		bad("clusterCIDR", quote(p.String()), "must be IPv4 (IPv6 is not supported yet)")
	case p != p.Masked():
		bad("clusterCIDR", quote(p.String()), "has bits set after the prefix length; did you mean %s?", p.Masked())
	default:
		cidrOK = true
	}
	switch {
	case cidrOK && (c.SubnetSize <= c.ClusterCIDR.Bits() || c.SubnetSize > maxSubnetBits):
		bad("subnetSize", strconv.Itoa(c.SubnetSize), "must be longer than clusterCIDR's /%d and at most %d", c.ClusterCIDR.Bits(), maxSubnetBits)
	case !cidrOK && (c.SubnetSize < 1 || c.SubnetSize > maxSubnetBits):
		bad("subnetSize", strconv.Itoa(c.SubnetSize), "must be between 1 and %d", maxSubnetBits)
	}
	if p := c.Subnet; p.IsValid() {
		switch {
		case !p.Addr().Is4():
			bad("subnet", quote(p.String()), "must be IPv4")
		case p != p.Masked():
			bad("subnet", quote(p.String()), "has bits set after the prefix length; did you mean %s?", p.Masked())
		case p.Bits() != c.SubnetSize:
			bad("subnet", quote(p.String()), "must be a /%d (subnetSize)", c.SubnetSize)
		case cidrOK && !c.ClusterCIDR.Contains(p.Addr()):
			bad("subnet", quote(p.String()), "must be inside clusterCIDR %s", c.ClusterCIDR)
		}
	}

	for i, j := range c.Join {
		if err := checkSeed(j); err != nil {
			errs = append(errs, &FieldError{Field: fmt.Sprintf("join[%d]", i), Value: quote(j), Err: err})
		}
	}
	switch a := c.BindAddress; {
	case !a.IsValid():
		bad("bindAddress", `""`, "required (0.0.0.0 listens on every address)")
	default:
		if err := checkAddr(a, true); err != nil {
			errs = append(errs, &FieldError{Field: "bindAddress", Value: quote(a.String()), Err: err})
		}
	}
	if c.BindPort < 1 || c.BindPort > 65535 {
		bad("bindPort", strconv.Itoa(c.BindPort), "must be between 1 and 65535")
	}
	checkPath(&errs, "clusterKeyFile", c.ClusterKeyFile)

	for _, part := range []struct{ field, value string }{
		{"location.cloud", c.Location.Cloud},
		{"location.region", c.Location.Region},
		{"location.zone", c.Location.Zone},
	} {
		if part.value != "" && !isSlug(part.value, 1, maxLocationPart) {
			bad(part.field, quote(part.value), "must be at most %d characters of a-z, 0-9 and '-'", maxLocationPart)
		}
	}
	if s := c.UnderlayInterface; s != "" && !isIfName(s) {
		bad("underlayInterface", quote(s), "must be a Linux interface name: 1-%d printable characters, no spaces, '/' or ':'", maxIfName)
	}
	for _, a := range []struct {
		field string
		addr  netip.Addr
	}{{"advertiseAddress", c.AdvertiseAddress}, {"publicAddress", c.PublicAddress}} {
		if !a.addr.IsValid() {
			continue // optional
		}
		if err := checkAddr(a.addr, false); err != nil {
			errs = append(errs, &FieldError{Field: a.field, Value: quote(a.addr.String()), Err: err})
		}
	}
	checkPath(&errs, "stateDir", c.StateDir)
	checkPath(&errs, "runDir", c.RunDir)
	checkLabels(&errs, c.Labels)
	checkDataPlane(&errs, c)
	checkGossip(&errs, c.Gossip)
	if err := c.HealthConfig().Validate(); err != nil {
		errs = append(errs, err) // each line names the field and value
	}
	if l := c.Metrics.Listen; l != "" {
		if _, err := netip.ParseAddrPort(l); err != nil {
			errs = append(errs, &FieldError{Field: "metrics.listen", Value: quote(l), Err: errors.New("want IP:port, e.g. 127.0.0.1:9587, or empty for none")})
		}
	}

	if _, err := c.SlogLevel(); err != nil {
		bad("logLevel", quote(c.LogLevel), "want one of debug, info, warn, error")
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("logFormat", quote(c.LogFormat), "want text or json")
	}
	errs = append(errs, c.validatePolicy()...)
	return errors.Join(errs...)
}

// checkDataPlane appends the problems of the data-plane fields of c to errs.
func checkDataPlane(errs *[]error, c Config) {
	bad := func(field, value, format string, args ...any) {
		*errs = append(*errs, &FieldError{Field: field, Value: value, Err: fmt.Errorf(format, args...)})
	}
	oneOf := func(field, v string, want ...string) {
		if !slices.Contains(want, v) {
			bad(field, quote(v), "want one of %s", strings.Join(want, ", "))
		}
	}
	oneOf("overlay", c.Overlay, fabric.OverlayVXLAN, fabric.OverlayIPIP)
	oneOf("cloud", c.Cloud, "none", "aws")
	for field, u := range map[string]string{"aws.endpoint": c.AWS.Endpoint, "aws.imdsEndpoint": c.AWS.IMDSEndpoint} {
		if u == "" {
			continue
		}
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			bad(field, quote(u), "want an http or https URL")
		}
	}
	for i, id := range c.AWS.RouteTableIDs {
		if !strings.HasPrefix(id, "rtb-") || len(id) < 5 || strings.Trim(id[4:], "0123456789abcdef") != "" {
			bad(fmt.Sprintf("aws.routeTableIDs[%d]", i), quote(id), "want a route table ID like rtb-0123abcd")
		}
	}
	if t := c.AWS.RouteTableTag; t != "" {
		if k, _, ok := strings.Cut(t, "="); !ok || k == "" {
			bad("aws.routeTableTag", quote(t), "want key=value")
		}
	}
	oneOf("overlayMode", c.OverlayMode, fabric.OverlayCrossSubnet, fabric.OverlayAlways, fabric.OverlayNever)
	oneOf("encryption", c.Encryption, fabric.EncryptionCrossRegion, fabric.EncryptionAlways, fabric.EncryptionNever)

	w := c.WireGuard
	if w.Port < 1 || w.Port > 65535 {
		bad("wireguard.port", strconv.Itoa(w.Port), "must be between 1 and 65535")
	} else if w.Port == c.BindPort {
		bad("wireguard.port", strconv.Itoa(w.Port), "must differ from bindPort: gossip uses UDP port %d too", c.BindPort)
	}
	if !isIfName(w.Device) {
		bad("wireguard.device", quote(w.Device), "must be a Linux interface name: 1-%d printable characters, no spaces, '/' or ':'", maxIfName)
	} else if w.Device == c.VXLAN.Device || w.Device == c.UnderlayInterface {
		bad("wireguard.device", quote(w.Device), "must differ from vxlan.device and underlayInterface")
	}
	if w.Keepalive.Duration < 0 || w.Keepalive.Duration > time.Hour {
		bad("wireguard.keepalive", w.Keepalive.String(), "must be between 0 and 1h")
	}
	v := c.VXLAN
	if v.VNI < 1 || v.VNI > maxVXLANVNI {
		bad("vxlan.vni", strconv.Itoa(v.VNI), "must be between 1 and %d", maxVXLANVNI)
	}
	switch {
	case v.Port < 1 || v.Port > 65535:
		bad("vxlan.port", strconv.Itoa(v.Port), "must be between 1 and 65535")
	case v.Port == c.BindPort && c.Overlay == fabric.OverlayVXLAN:
		bad("vxlan.port", strconv.Itoa(v.Port), "must differ from bindPort: gossip uses UDP port %d too", c.BindPort)
	}
	switch {
	case !isIfName(v.Device):
		bad("vxlan.device", quote(v.Device), "must be a Linux interface name: 1-%d printable characters, no spaces, '/' or ':'", maxIfName)
	case v.Device == c.UnderlayInterface:
		bad("vxlan.device", quote(v.Device), "must differ from underlayInterface")
	}

	if c.ResyncPeriod.Duration < minResyncPeriod {
		bad("resyncPeriod", quote(c.ResyncPeriod.String()), "must be at least %s", minResyncPeriod)
	}
}

// checkGossip appends the problems of g to errs.
func checkGossip(errs *[]error, g GossipTimings) {
	positive := []struct {
		field string
		d     time.Duration
	}{
		{"gossip.probeInterval", g.ProbeInterval.Duration},
		{"gossip.probeTimeout", g.ProbeTimeout.Duration},
		{"gossip.gossipInterval", g.GossipInterval.Duration},
		{"gossip.pushPullInterval", g.PushPullInterval.Duration},
		{"gossip.joinRetryMax", g.JoinRetryMax.Duration},
		{"gossip.deadReservation", g.DeadReservation.Duration},
	}
	for _, p := range positive {
		if p.d <= 0 {
			*errs = append(*errs, &FieldError{Field: p.field, Value: quote(p.d.String()), Err: errors.New("must be positive")})
		}
	}
	if g.ProbeTimeout.Duration > 0 && g.ProbeTimeout.Duration >= g.ProbeInterval.Duration {
		*errs = append(*errs, &FieldError{Field: "gossip.probeTimeout", Value: quote(g.ProbeTimeout.String()),
			Err: fmt.Errorf("must be shorter than gossip.probeInterval (%s)", g.ProbeInterval)})
	}
	if g.SuspicionMult < 1 || g.SuspicionMult > maxSuspicionMult {
		*errs = append(*errs, &FieldError{Field: "gossip.suspicionMult", Value: strconv.Itoa(g.SuspicionMult),
			Err: fmt.Errorf("must be between 1 and %d", maxSuspicionMult)})
	}
}

// checkLabels appends the problems of labels to errs, in key order.
func checkLabels(errs *[]error, labels map[string]string) {
	if len(labels) > maxLabels {
		*errs = append(*errs, &FieldError{Field: "labels", Value: fmt.Sprintf("%d labels", len(labels)),
			Err: fmt.Errorf("at most %d allowed", maxLabels)})
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		field := "labels[" + strconv.Quote(cut(k)) + "]"
		if !isLabelKey(k) {
			*errs = append(*errs, &FieldError{Field: field, Value: quote(k),
				Err: errors.New("key must be a name of at most 63 characters (a-z, A-Z, 0-9, '-', '_', '.', starting and ending with a letter or digit), optionally prefixed by a DNS subdomain and '/'")})
		}
		if v := labels[k]; v != "" && !isLabelName(v) {
			*errs = append(*errs, &FieldError{Field: field, Value: quote(v),
				Err: errors.New("value must be empty or at most 63 characters of a-z, A-Z, 0-9, '-', '_' and '.', starting and ending with a letter or digit")})
		}
	}
}

// checkPath appends an error to errs unless p is a usable absolute path.
func checkPath(errs *[]error, field, p string) {
	var err error
	switch {
	case p == "":
		err = errors.New("required")
	case !filepath.IsAbs(p):
		err = errors.New("must be an absolute path")
	case !utf8.ValidString(p) || strings.ContainsFunc(p, unicode.IsControl):
		err = errors.New("must be valid UTF-8 without control characters")
	}
	if err != nil {
		*errs = append(*errs, &FieldError{Field: field, Value: quote(p), Err: err})
	}
}

// checkAddr checks a configured host address. unspecified says whether
// 0.0.0.0 or :: is allowed (it is for a bind address).
func checkAddr(a netip.Addr, unspecified bool) error {
	switch {
	case a.Zone() != "":
		return errors.New("must not have a zone")
	case a.IsMulticast():
		return errors.New("must not be multicast")
	case a.IsUnspecified() && !unspecified:
		return errors.New("must not be unspecified (0.0.0.0 or ::); leave it empty instead")
	}
	return nil
}

// checkSeed checks a join entry: an IP address, an IP address and port
// ("192.0.2.1:7946", "[2001:db8::1]:7946"), a host name, or a host name and
// port.
func checkSeed(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return checkAddr(a, false)
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return errors.New("port must be between 1 and 65535")
		}
		return checkAddr(ap.Addr(), false)
	}
	host := s
	if h, port, err := net.SplitHostPort(s); err == nil {
		if !isPort(port) {
			return fmt.Errorf("port %q must be between 1 and 65535", port)
		}
		host = h
	}
	if !isHostname(host) {
		return errors.New(`want "host" or "host:port", where host is an IP address or a host name`)
	}
	return nil
}

// isPort reports whether s is a decimal port number from 1 to 65535.
func isPort(s string) bool {
	if s == "" || len(s) > 5 || strings.ContainsFunc(s, func(r rune) bool { return r < '0' || r > '9' }) {
		return false
	}
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535
}

// isHostname reports whether s is a DNS host name (letters of either case,
// digits, '-', dot-separated labels; one trailing dot allowed). A name whose
// last label is numeric is refused: it is a mistyped IP address.
func isHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := range len(l) {
			if !isAlnum(l[i]) && l[i] != '-' {
				return false
			}
		}
	}
	last := labels[len(labels)-1]
	return strings.ContainsFunc(last, func(r rune) bool { return r < '0' || r > '9' })
}

// isDNSName reports whether s is 1..max characters of [a-z0-9.-], starting
// and ending with [a-z0-9].
func isDNSName(s string, max int) bool {
	if s == "" || len(s) > max || !isLowerAlnum(s[0]) || !isLowerAlnum(s[len(s)-1]) {
		return false
	}
	for i := range len(s) {
		if !isLowerAlnum(s[i]) && s[i] != '-' && s[i] != '.' {
			return false
		}
	}
	return true
}

// isSlug reports whether s is min..max characters of [a-z0-9-].
func isSlug(s string, min, max int) bool {
	if len(s) < min || len(s) > max {
		return false
	}
	for i := range len(s) {
		if !isLowerAlnum(s[i]) && s[i] != '-' {
			return false
		}
	}
	return true
}

// isIfName reports whether s is a name Linux accepts for an interface
// (dev_valid_name), limited to printable ASCII.
func isIfName(s string) bool {
	if s == "" || len(s) > maxIfName || s == "." || s == ".." {
		return false
	}
	for i := range len(s) {
		if s[i] <= ' ' || s[i] > '~' || s[i] == '/' || s[i] == ':' {
			return false
		}
	}
	return true
}

// isLabelKey reports whether s is a Kubernetes label key: [prefix/]name.
func isLabelKey(s string) bool {
	prefix, name, found := strings.Cut(s, "/")
	if !found {
		return isLabelName(s)
	}
	if len(prefix) > maxLabelPrefix {
		return false
	}
	for _, l := range strings.Split(prefix, ".") {
		if !isDNSName(l, maxLabelPart) {
			return false
		}
	}
	return isLabelName(name)
}

// isLabelName reports whether s is a Kubernetes label name or non-empty
// value: 1..63 of [A-Za-z0-9_.-], starting and ending with [A-Za-z0-9].
func isLabelName(s string) bool {
	if s == "" || len(s) > maxLabelPart || !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := range len(s) {
		if !isAlnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.' {
			return false
		}
	}
	return true
}

func isLowerAlnum(b byte) bool { return b >= 'a' && b <= 'z' || b >= '0' && b <= '9' }

func isAlnum(b byte) bool { return isLowerAlnum(b) || b >= 'A' && b <= 'Z' }

// quote quotes s for an error, cut to maxShownValue bytes.
func quote(s string) string {
	if c := cut(s); c != s {
		return strconv.Quote(strings.TrimSuffix(c, "...")) + "..."
	}
	return strconv.Quote(s)
}
