package gossip

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// RecordVersion is the version of the node record encoding that this build
// writes. Decoders accept this version and refuse others with a clear error.
const RecordVersion = 1

// MaxRecordSize is memberlist's limit on node metadata (memberlist.MetaMaxSize).
// Encode refuses records that do not fit.
const MaxRecordSize = 512

// Capability is a bit set of the kernel features a node has, as detected at start.
type Capability uint16

// Capabilities a node can advertise.
const (
	CapVXLAN              Capability = 1 << iota // kernel VXLAN device
	CapIPIPKernel                                // kernel ipip device
	CapIPIPUserspace                             // user-space IP-in-IP (TUN + raw socket)
	CapWireGuardKernel                           // kernel WireGuard
	CapWireGuardUserspace                        // embedded wireguard-go
	// CapBehindNAT is not a kernel feature but a fact of the network: the
	// node sits behind a NAT that forwards nothing to it, so peers can reach
	// it only over the WireGuard sessions it opens (their endpoint is learnt
	// from its handshakes).
	CapBehindNAT
)

// Location says where a node runs. Every field is optional; empty means unknown.
type Location struct {
	Cloud  string `json:"cloud,omitempty"`
	Region string `json:"region,omitempty"`
	Zone   string `json:"zone,omitempty"`
	// Instance is the cloud's ID of the node's instance (e.g. i-0abc...),
	// where a cloud adapter runs: peers route its subnet to it in the cloud.
	Instance string `json:"instance,omitempty"`
}

// Record is what a node tells every other node about itself through
// memberlist's node metadata. It is small, versioned and validated on decode.
//
// The node's name is memberlist's node name and is not repeated here.
type Record struct {
	// Cluster is the cluster name; a record of another cluster is refused.
	Cluster string `json:"cluster"`
	// Underlay holds the node's underlay addresses, preferred first (1..4).
	Underlay []netip.Addr `json:"underlay"`
	// Public is the address by which peers outside the node's NAT reach it; invalid when unset.
	Public netip.Addr `json:"public,omitzero"`
	// Location is the node's cloud, region and zone.
	Location Location `json:"location"`
	// Subnets holds the workload subnets the node claims (0..4); empty while it has none yet.
	Subnets []netip.Prefix `json:"subnets"`
	// ClaimedAt is when the node claimed Subnets[0], in Unix milliseconds; conflicts are resolved by it.
	ClaimedAt int64 `json:"claimedAt"`
	// Static reports whether the subnet was configured by hand (it then wins every conflict).
	Static bool `json:"static,omitempty"`
	// VTEPMAC is the MAC address of the node's VXLAN device; nil when it has none.
	VTEPMAC []byte `json:"vtepMAC,omitempty"`
	// WireGuardKey is the node's WireGuard public key (32 bytes); nil when it has none.
	WireGuardKey []byte `json:"wireguardKey,omitempty"`
	// WireGuardPort is the node's WireGuard UDP port; 0 when it has none.
	WireGuardPort uint16 `json:"wireguardPort,omitempty"`
	// Caps is the set of kernel capabilities the node has.
	Caps Capability `json:"caps"`
	// Labels are free-form node labels (Calico label syntax), at most 8.
	Labels map[string]string `json:"labels,omitempty"`
}

// Validate checks every field of r and returns nil or all problems joined,
// each a *FieldError. It does not check the encoded size (Encode does), nor
// modify r. The rules: cluster is required; cluster, cloud, region and zone
// are 1 to 32 of [a-z0-9-] when set; 1 to 4 distinct underlay addresses and an
// optional public address, none unspecified, multicast, broadcast,
// IPv4-mapped or with a zone (loopback is allowed, for tests); 0 to 4
// non-overlapping subnets with no bits set beyond the prefix length;
// claimedAt not negative; a unicast, non-zero 6-byte vtepMAC if any; a
// 32-byte wireguardKey and a non-zero wireguardPort together or neither; only
// known caps bits; 0 to 8 labels in Kubernetes label syntax.
func (r Record) Validate() error {
	var errs []error
	add := func(field, value, reason string, args ...any) {
		errs = append(errs, fieldErr(field, value, fmt.Sprintf(reason, args...)))
	}
	if r.Cluster == "" {
		add("cluster", "", "required")
	}
	for _, f := range [...]struct{ name, s string }{{"cluster", r.Cluster}, {"location.cloud", r.Location.Cloud},
		{"location.region", r.Location.Region}, {"location.zone", r.Location.Zone}, {"location.instance", r.Location.Instance}} {
		if len(f.s) > MaxNameLength {
			add(f.name, f.s, "longer than %d characters", MaxNameLength)
		} else if strings.Trim(f.s, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			add(f.name, f.s, "not [a-z0-9-]")
		}
	}
	if len(r.Underlay) == 0 || len(r.Underlay) > MaxUnderlay {
		add("underlay", fmt.Sprint(r.Underlay), "%d addresses, want 1 to %d", len(r.Underlay), MaxUnderlay)
	}
	for i, a := range r.Underlay {
		if reason := addrProblem(a); reason != "" {
			add(fmt.Sprintf("underlay[%d]", i), a.String(), "%s", reason)
		} else if j := slices.Index(r.Underlay, a); j < i {
			add(fmt.Sprintf("underlay[%d]", i), a.String(), "same as underlay[%d]", j)
		}
	}
	if reason := addrProblem(r.Public); r.Public.IsValid() && reason != "" {
		add("public", r.Public.String(), "%s", reason)
	}
	if len(r.Subnets) > MaxSubnets {
		add("subnets", fmt.Sprint(r.Subnets), "%d subnets, at most %d", len(r.Subnets), MaxSubnets)
	}
	for i, p := range r.Subnets {
		if reason := prefixProblem(p); reason != "" {
			add(fmt.Sprintf("subnets[%d]", i), p.String(), "%s", reason)
		} else if j := slices.IndexFunc(r.Subnets[:i], p.Overlaps); j >= 0 {
			add(fmt.Sprintf("subnets[%d]", i), p.String(), "overlaps subnets[%d] %s", j, r.Subnets[j])
		}
	}
	if r.ClaimedAt < 0 {
		add("claimedAt", fmt.Sprint(r.ClaimedAt), "negative")
	}
	switch mac := net.HardwareAddr(r.VTEPMAC); {
	case len(mac) != 0 && len(mac) != macSize:
		add("vtepMAC", hex.EncodeToString(mac), "%d bytes, want %d", len(mac), macSize)
	case len(mac) != 0 && mac[0]&1 != 0:
		add("vtepMAC", mac.String(), "multicast MAC address")
	case len(mac) != 0 && bytes.Equal(mac, make([]byte, macSize)):
		add("vtepMAC", mac.String(), "zero MAC address")
	}
	switch key := r.WireGuardKey; {
	case len(key) != 0 && len(key) != wireGuardKeySize:
		add("wireguardKey", base64.StdEncoding.EncodeToString(key), "%d bytes, want %d", len(key), wireGuardKeySize)
	case len(key) != 0 && r.WireGuardPort == 0:
		add("wireguardPort", "0", "required with wireguardKey")
	case len(key) == 0 && r.WireGuardPort != 0:
		add("wireguardPort", fmt.Sprint(r.WireGuardPort), "set without wireguardKey")
	}
	if unknown := r.Caps &^ knownCaps; unknown != 0 {
		add("caps", fmt.Sprintf("%#x", uint16(r.Caps)), "unknown capability bits %#x", uint16(unknown))
	}
	if len(r.Labels) > MaxLabels {
		add("labels", fmt.Sprintf("%d labels", len(r.Labels)), "at most %d", MaxLabels)
	}
	for _, k := range slices.Sorted(maps.Keys(r.Labels)) {
		if reason := labelKeyProblem(k); reason != "" {
			add("labels", k, "%s", reason)
		}
		if v := r.Labels[k]; len(v) > maxLabelValue {
			add(fmt.Sprintf("labels[%q]", k), v, "longer than %d characters", maxLabelValue)
		} else if v != "" && !isLabelToken(v) {
			add(fmt.Sprintf("labels[%q]", k), v, "not [A-Za-z0-9._-] beginning and ending with a letter or digit")
		}
	}
	return errors.Join(errs...)
}

func addrProblem(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "invalid address"
	case a.Zone() != "":
		return "address with a zone"
	case a.Is4In6():
		return "IPv4-mapped IPv6 address, use the IPv4 form"
	case a.IsUnspecified():
		return "unspecified address"
	case a.IsMulticast():
		return "multicast address"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "broadcast address"
	}
	return ""
}

func prefixProblem(p netip.Prefix) string {
	switch {
	case !p.IsValid():
		return "invalid prefix"
	case p.Addr().Is4In6():
		return "IPv4-mapped IPv6 prefix, use the IPv4 form"
	case p.Bits() == 0:
		return "prefix length 0"
	case p != p.Masked():
		return fmt.Sprintf("bits set beyond the prefix length (want %s)", p.Masked())
	case p.Addr().IsMulticast():
		return "multicast prefix"
	}
	return ""
}

// labelKeyProblem checks a label key as Kubernetes does: an optional DNS
// subdomain of at most 253 characters and '/', then a name.
func labelKeyProblem(k string) string {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		name = k
	}
	switch {
	case hasPrefix && len(prefix) > maxLabelPrefix:
		return fmt.Sprintf("key prefix longer than %d characters", maxLabelPrefix)
	case hasPrefix && !isDNSSubdomain(prefix):
		return "key prefix not a lower-case DNS subdomain"
	case name == "":
		return "empty key name"
	case len(name) > maxLabelName:
		return fmt.Sprintf("key name longer than %d characters", maxLabelName)
	case !isLabelToken(name):
		return "key name not [A-Za-z0-9._-] beginning and ending with a letter or digit"
	}
	return ""
}

func isDNSSubdomain(s string) bool {
	for part := range strings.SplitSeq(s, ".") {
		if !isAlnumAtEnds(part, false) || strings.Trim(part, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return false
		}
	}
	return true
}

// isLabelToken reports whether s is a valid, non-empty Kubernetes label name or value.
func isLabelToken(s string) bool {
	return isAlnumAtEnds(s, true) &&
		strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") == ""
}

// isAlnumAtEnds reports whether s begins and ends with a lower-case letter (or
// upper-case too if upper) or a digit.
func isAlnumAtEnds(s string, upper bool) bool {
	ok := func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || upper && c >= 'A' && c <= 'Z'
	}
	return s != "" && ok(s[0]) && ok(s[len(s)-1])
}

// Equal reports whether r and o mean the same, which is also whether they
// encode to the same bytes: nil and empty slices and maps are equal; Underlay
// and Subnets are compared in order.
func (r Record) Equal(o Record) bool {
	return r.Cluster == o.Cluster && slices.Equal(r.Underlay, o.Underlay) && r.Public == o.Public &&
		r.Location == o.Location && slices.Equal(r.Subnets, o.Subnets) && r.ClaimedAt == o.ClaimedAt &&
		r.Static == o.Static && bytes.Equal(r.VTEPMAC, o.VTEPMAC) &&
		bytes.Equal(r.WireGuardKey, o.WireGuardKey) && r.WireGuardPort == o.WireGuardPort &&
		r.Caps == o.Caps && maps.Equal(r.Labels, o.Labels)
}
