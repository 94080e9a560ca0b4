package config

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-net/weft/fabric"
)

// TestVXLANPortOtherOverlay checks that vxlan.port may equal bindPort when
// VXLAN is not the overlay: the port is then not used.
func TestVXLANPortOtherOverlay(t *testing.T) {
	c := withDefaults(func(c *Config) {
		c.NodeName, c.Overlay = "n1", "ipip"
		c.VXLAN.Port = c.BindPort
	})
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestDataPlane(t *testing.T) {
	tests := []struct {
		name string
		c    Config
		want fabric.Options
	}{
		{
			name: "defaults",
			c:    Default(),
			want: fabric.DefaultOptions(),
		},
		{
			name: "every field set",
			c: withDefaults(func(c *Config) {
				c.Overlay, c.OverlayMode, c.Encryption = "ipip", "never", "always"
				c.VXLAN = VXLAN{VNI: 42, Port: 8472, Device: "vx0"}
				c.ClusterCIDR = netip.MustParsePrefix("10.32.0.0/12")
				c.IPMasq = false
				c.WireGuard = WireGuard{Port: 51000, Device: "wg9", Keepalive: Duration{time.Second}}
			}),
			want: fabric.Options{
				Overlay:     fabric.OverlayIPIP,
				OverlayMode: fabric.OverlayNever,
				Encryption:  fabric.EncryptionAlways,
				VXLANVNI:    42,
				VXLANPort:   8472,
				VXLANDevice: "vx0",
				ClusterCIDR: netip.MustParsePrefix("10.32.0.0/12"),

				WireGuardDevice:    "wg9",
				WireGuardPort:      51000,
				WireGuardKeepalive: time.Second,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.c.DataPlane(), cmpOpts...); diff != "" {
				t.Errorf("DataPlane (-want +got):\n%s", diff)
			}
		})
	}
}
