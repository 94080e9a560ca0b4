package fabric

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// maxIfNameLen is the longest Linux interface name: IFNAMSIZ (16) less the
// terminating NUL.
const maxIfNameLen = 15

// maxVNI is the largest VXLAN network identifier: the field has 24 bits.
const maxVNI = 1<<24 - 1

// DefaultOptions returns the default data-plane options: VXLAN across
// subnets (direct within an L2 segment), encryption across regions, VNI 1 on
// UDP port 4789, device weft.vxlan, cluster CIDR 10.244.0.0/16, masquerade on.
// Each call returns a new value.
func DefaultOptions() Options {
	return Options{
		Overlay:     OverlayVXLAN,
		OverlayMode: OverlayCrossSubnet,
		Encryption:  EncryptionCrossRegion,
		VXLANVNI:    DefaultVXLANVNI,
		VXLANPort:   DefaultVXLANPort,
		VXLANDevice: DefaultVXLANDevice,
		ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"),
		IPMasq:      true,

		WireGuardDevice:    DefaultWireGuardDevice,
		WireGuardPort:      DefaultWireGuardPort,
		WireGuardKeepalive: DefaultWireGuardKeepalive,
	}
}

// Validate checks every field of o and returns nil or all problems joined,
// each naming the field as the config file does (overlay, overlayMode,
// encryption, vxlan.vni, vxlan.port, vxlan.device, clusterCIDR) and its
// value. The VXLAN fields are checked whatever the overlay, so that switching
// the overlay never reveals a bad setting later. The rules: overlay vxlan or
// ipip; overlayMode always, cross-subnet or never; encryption never,
// cross-region or always; VNI 1 to 16777215; port 1 to 65535; a device name
// the kernel accepts (1 to 15 printable ASCII characters, not "." or "..",
// no '/', ':' or space); clusterCIDR valid with no host bits when set, and set
// when ipMasq is on. It does not modify o.
func (o Options) Validate() error {
	var errs []error
	bad := func(field string, value any, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %q: %s", field, fmt.Sprint(value), fmt.Sprintf(format, args...)))
	}
	switch o.Overlay {
	case OverlayVXLAN, OverlayIPIP:
	default:
		bad("overlay", o.Overlay, "want %s or %s", OverlayVXLAN, OverlayIPIP)
	}
	switch o.OverlayMode {
	case OverlayAlways, OverlayCrossSubnet, OverlayNever:
	default:
		bad("overlayMode", o.OverlayMode, "want %s, %s or %s", OverlayAlways, OverlayCrossSubnet, OverlayNever)
	}
	switch o.Encryption {
	case EncryptionNever, EncryptionCrossRegion, EncryptionAlways:
	default:
		bad("encryption", o.Encryption, "want %s, %s or %s", EncryptionNever, EncryptionCrossRegion, EncryptionAlways)
	}
	if o.VXLANVNI < 1 || o.VXLANVNI > maxVNI {
		bad("vxlan.vni", o.VXLANVNI, "want 1 to %d", maxVNI)
	}
	if o.VXLANPort < 1 || o.VXLANPort > 65535 {
		bad("vxlan.port", o.VXLANPort, "want 1 to 65535")
	}
	if reason := ifNameProblem(o.VXLANDevice); reason != "" {
		bad("vxlan.device", o.VXLANDevice, "%s", reason)
	}
	// An empty WireGuard device means WireGuard is off on this node.
	if o.WireGuardDevice != "" {
		if reason := ifNameProblem(o.WireGuardDevice); reason != "" {
			bad("wireguard.device", o.WireGuardDevice, "%s", reason)
		}
		if o.WireGuardPort < 1 || o.WireGuardPort > 65535 {
			bad("wireguard.port", o.WireGuardPort, "want 1 to 65535")
		}
		if o.WireGuardKeepalive < 0 {
			bad("wireguard.keepalive", o.WireGuardKeepalive, "want 0 or more")
		}
	}
	switch c := o.ClusterCIDR; {
	case !c.IsValid() && o.IPMasq:
		bad("clusterCIDR", "", "required when ipMasq is on")
	case c.IsValid() && c != c.Masked():
		bad("clusterCIDR", c, "host bits set, want %s", c.Masked())
	}
	return errors.Join(errs...)
}

// ifNameProblem returns why the kernel would refuse name as an interface
// name (dev_valid_name), or "" when it would accept it. It is stricter than
// the kernel in one way: only printable ASCII is allowed.
func ifNameProblem(name string) string {
	switch {
	case name == "":
		return "empty"
	case len(name) > maxIfNameLen:
		return fmt.Sprintf("%d characters, at most %d", len(name), maxIfNameLen)
	case name == "." || name == "..":
		return "not a valid interface name"
	}
	for _, c := range name {
		if c <= ' ' || c > '~' || c == '/' || c == ':' {
			return fmt.Sprintf("character %q not allowed in an interface name", c)
		}
	}
	return ""
}

// VTEPMAC returns the VTEP MAC address of the node named node: a locally
// administered unicast MAC derived from a SHA-256 of the name, so it is known
// before the device exists, the same after every restart, and distinct
// between nodes with overwhelming probability (46 bits of hash). Each call
// returns a new slice.
func VTEPMAC(node string) net.HardwareAddr {
	sum := sha256.Sum256([]byte(node))
	mac := make(net.HardwareAddr, macLen)
	copy(mac, sum[:])
	// Bit 0 of the first byte is the group bit (clear: unicast), bit 1 the
	// locally administered bit (set: no vendor's OUI).
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}
