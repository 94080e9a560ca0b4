package fabric

import (
	"bytes"
	"errors"
	"flag"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var updatePlanGolden = flag.Bool("update-plan", false, "rewrite testdata/plan/*.txt")

func TestDefaultOptions(t *testing.T) {
	want := Options{
		Overlay: "vxlan", OverlayMode: "cross-subnet", Encryption: "cross-region",
		VXLANVNI: 1, VXLANPort: 4789, VXLANDevice: "weft.vxlan",
		ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"), IPMasq: true,
		WireGuardDevice: "weft.wg", WireGuardPort: 51820, WireGuardKeepalive: 25 * time.Second,
	}
	got := DefaultOptions()
	if diff := cmp.Diff(want, got, planCmp()); diff != "" {
		t.Errorf("DefaultOptions (-want +got):\n%s", diff)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("DefaultOptions().Validate() = %v", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want []string // one line per problem
	}{
		{name: "default", opts: DefaultOptions()},
		{name: "ipip always, encryption always", opts: planOpts(planOverlay(OverlayIPIP), planMode(OverlayAlways), planEncrypt(EncryptionAlways))},
		{name: "never, no encryption", opts: planOpts(planMode(OverlayNever), planEncrypt(EncryptionNever))},
		{name: "largest VNI and port, 15-character device", opts: planOpts(func(o *Options) {
			o.VXLANVNI, o.VXLANPort, o.VXLANDevice = 16777215, 65535, "weft.vxlan-1234"
		})},
		{name: "masquerade off without cluster CIDR", opts: planOpts(func(o *Options) { o.IPMasq, o.ClusterCIDR = false, netip.Prefix{} })},
		{name: "overlay", opts: planOpts(planOverlay("VXLAN")), want: []string{`overlay: "VXLAN": want vxlan or ipip`}},
		{name: "overlayMode", opts: planOpts(planMode("CrossSubnet")), want: []string{`overlayMode: "CrossSubnet": want always, cross-subnet or never`}},
		{name: "encryption", opts: planOpts(planEncrypt("")), want: []string{`encryption: "": want never, cross-region or always`}},
		{name: "VNI zero", opts: planOpts(func(o *Options) { o.VXLANVNI = 0 }), want: []string{`vxlan.vni: "0": want 1 to 16777215`}},
		{name: "VNI too large", opts: planOpts(func(o *Options) { o.VXLANVNI = 1 << 24 }), want: []string{`vxlan.vni: "16777216": want 1 to 16777215`}},
		{name: "port zero", opts: planOpts(func(o *Options) { o.VXLANPort = 0 }), want: []string{`vxlan.port: "0": want 1 to 65535`}},
		{name: "port too large", opts: planOpts(func(o *Options) { o.VXLANPort = 65536 }), want: []string{`vxlan.port: "65536": want 1 to 65535`}},
		{name: "device empty", opts: planOpts(func(o *Options) { o.VXLANDevice = "" }), want: []string{`vxlan.device: "": empty`}},
		{name: "device too long", opts: planOpts(func(o *Options) { o.VXLANDevice = "weft.vxlan-12345" }),
			want: []string{`vxlan.device: "weft.vxlan-12345": 16 characters, at most 15`}},
		{name: "device dot", opts: planOpts(func(o *Options) { o.VXLANDevice = ".." }), want: []string{`vxlan.device: "..": not a valid interface name`}},
		{name: "device slash", opts: planOpts(func(o *Options) { o.VXLANDevice = "weft/vx" }),
			want: []string{`vxlan.device: "weft/vx": character '/' not allowed in an interface name`}},
		{name: "device colon", opts: planOpts(func(o *Options) { o.VXLANDevice = "eth0:1" }),
			want: []string{`vxlan.device: "eth0:1": character ':' not allowed in an interface name`}},
		{name: "device space", opts: planOpts(func(o *Options) { o.VXLANDevice = "weft vx" }),
			want: []string{`vxlan.device: "weft vx": character ' ' not allowed in an interface name`}},
		{name: "device non-ASCII", opts: planOpts(func(o *Options) { o.VXLANDevice = "weft.vé" }),
			want: []string{`vxlan.device: "weft.vé": character 'é' not allowed in an interface name`}},
		{name: "cluster CIDR missing with masquerade", opts: planOpts(func(o *Options) { o.ClusterCIDR = netip.Prefix{} }),
			want: []string{`clusterCIDR: "": required when ipMasq is on`}},
		{name: "cluster CIDR host bits", opts: planOpts(func(o *Options) { o.ClusterCIDR = netip.MustParsePrefix("10.244.1.0/16") }),
			want: []string{`clusterCIDR: "10.244.1.0/16": host bits set, want 10.244.0.0/16`}},
		{name: "zero: every problem", opts: Options{}, want: []string{
			`overlay: "": want vxlan or ipip`,
			`overlayMode: "": want always, cross-subnet or never`,
			`encryption: "": want never, cross-region or always`,
			`vxlan.vni: "0": want 1 to 16777215`,
			`vxlan.port: "0": want 1 to 65535`,
			`vxlan.device: "": empty`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			if err := tt.opts.Validate(); err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestVTEPMAC(t *testing.T) {
	// Pinned: a node's VTEP MAC must not change between builds, or every
	// upgrade would rewrite every peer's neighbour and FDB entries.
	if got, want := VTEPMAC("h1").String(), "32:11:2e:e1:4e:e4"; got != want {
		t.Errorf("VTEPMAC(h1) = %s, want %s", got, want)
	}
	seen := make(map[string]string)
	for _, name := range []string{"", "h1", "h2", "h3", "h4", "h5", "node-1", "node-2", strings.Repeat("x", 253)} {
		mac := VTEPMAC(name)
		if len(mac) != 6 || mac[0]&0x01 != 0 || mac[0]&0x02 == 0 {
			t.Errorf("VTEPMAC(%q) = %s: want 6 bytes, unicast, locally administered", name, mac)
		}
		if other, ok := seen[mac.String()]; ok {
			t.Errorf("VTEPMAC(%q) = VTEPMAC(%q) = %s", name, other, mac)
		}
		seen[mac.String()] = name
		again := VTEPMAC(name)
		if !bytes.Equal(mac, again) {
			t.Errorf("VTEPMAC(%q) = %s, then %s", name, mac, again)
		}
		again[0] ^= 0xff
		if bytes.Equal(mac, again) {
			t.Errorf("VTEPMAC(%q) returned a shared slice", name)
		}
	}
}

func TestRouteString(t *testing.T) {
	a, p := netip.MustParseAddr, netip.MustParsePrefix
	tests := []struct {
		name  string
		route Route
		want  string
	}{
		{name: "direct", route: Route{Dst: p("10.244.2.0/24"), Via: a("198.18.1.3"), Dev: "eth0"},
			want: "10.244.2.0/24 via 198.18.1.3 dev eth0 proto 87"},
		{name: "vxlan", route: Route{Dst: p("10.244.5.0/24"), Via: a("10.244.5.0"), Dev: "weft.vxlan", OnLink: true},
			want: "10.244.5.0/24 via 10.244.5.0 dev weft.vxlan onlink proto 87"},
		{name: "blackhole", route: Route{Dst: p("10.244.1.0/24"), Blackhole: true}, want: "blackhole 10.244.1.0/24 proto 87"},
		{name: "device route with mtu", route: Route{Dst: p("10.244.1.7/32"), Dev: "weft-a1", MTU: 1400},
			want: "10.244.1.7/32 dev weft-a1 proto 87 mtu 1400"},
		{name: "ipv4 via ipv6", route: Route{Dst: p("10.244.2.0/24"), Via: a("2001:db8::3"), Dev: "eth0"},
			want: "10.244.2.0/24 via inet6 2001:db8::3 dev eth0 proto 87"},
		{name: "ipv6 via ipv4", route: Route{Dst: p("fd00:1::/64"), Via: a("198.18.1.3"), Dev: "eth0"},
			want: "fd00:1::/64 via inet 198.18.1.3 dev eth0 proto 87"},
		{name: "ipv6", route: Route{Dst: p("fd00:1::/64"), Via: a("2001:db8::3"), Dev: "eth0"},
			want: "fd00:1::/64 via 2001:db8::3 dev eth0 proto 87"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.route.String()); diff != "" {
				t.Errorf("String() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEntryStrings(t *testing.T) {
	a, mac := netip.MustParseAddr, net.HardwareAddr{0x0a, 0, 0, 0, 0, 3}
	tests := []struct {
		name string
		item interface{ String() string }
		want string
	}{
		{"neighbor", Neighbor{Dev: "weft.vxlan", IP: a("10.244.3.0"), MAC: mac}, "10.244.3.0 dev weft.vxlan lladdr 0a:00:00:00:00:03 PERMANENT"},
		{"fdb", FDBEntry{Dev: "weft.vxlan", MAC: mac, Dst: a("198.18.2.2")}, "0a:00:00:00:00:03 dev weft.vxlan dst 198.18.2.2 self permanent"},
		{"vxlan device", VXLANDevice{Name: "weft.vxlan", VNI: 1, Port: 4789, Local: a("198.18.1.2"), Dev: "eth0", MAC: mac, MTU: 1450,
			Addr: netip.MustParsePrefix("10.244.1.0/32")},
			"weft.vxlan vxlan id 1 local 198.18.1.2 dev eth0 dstport 4789 nolearning mtu 1450 address 0a:00:00:00:00:03 addr 10.244.1.0/32"},
		{"peer none", PeerPlan{Name: "h4", Path: PathNone, Reason: "no subnet yet"}, "h4 none (no subnet yet)"},
		{"empty plan", Plan{}, "# peers\n# routes\n# vxlan\n# neigh\n# fdb\n# masquerade\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.item.String()); diff != "" {
				t.Errorf("String() (-want +got):\n%s", diff)
			}
		})
	}
}

// TestComputeGolden renders the plans of hosts of the lab (DESIGN.md: two
// regions, in the first two L2 segments joined by a router) as text in
// testdata/plan/NAME.txt. Run with -update-plan to rewrite them.
func TestComputeGolden(t *testing.T) {
	all := []string{"h1", "h2", "h3", "h4", "h5"}
	peersOf := func(self string) []Peer {
		var ps []Peer
		for _, n := range all {
			if n != self {
				ps = append(ps, planPeer(t, n))
			}
		}
		return ps
	}
	tests := []struct {
		name, host string
		opts       Options
	}{
		{name: "lab-h1", host: "h1", opts: planOpts(planEncrypt(EncryptionNever))},
		{name: "lab-h4", host: "h4", opts: planOpts(planEncrypt(EncryptionNever))},
		{name: "lab-h3-always", host: "h3", opts: planOpts(planEncrypt(EncryptionNever), planMode(OverlayAlways))},
		{name: "lab-h1-cross-region", host: "h1", opts: planOpts()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := []byte(Compute(planLocal(t, tt.host), peersOf(tt.host), tt.opts).String())
			path := filepath.Join("testdata", "plan", tt.name+".txt")
			if *updatePlanGolden {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if errors.Is(err, os.ErrNotExist) {
				t.Fatalf("no golden file %s: run go test -run TestComputeGolden -update-plan", path)
			} else if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("plan of %s differs from %s (-want +got):\n%s", tt.host, path, diff)
			}
		})
	}
}
