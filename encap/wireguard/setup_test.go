package wireguard_test

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weft-net/weft/encap/wireguard"
	"github.com/weft-net/weft/encap/wireguard/wgtest"
)

// now is the fake clock of the driver in these tests.
var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// key returns a fixed private key made from n.
func key(n byte) wireguard.PrivateKey {
	var k wireguard.PrivateKey
	for i := range k {
		k[i] = n + byte(i)
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k
}

// The keys of the test: this node, its peers, and keys after rotation.
var (
	keySelf  = key(1)
	keySelf2 = key(11) // self after rotation
	pub2     = key(2).PublicKey()
	pub2b    = key(12).PublicKey() // peer 2 after rotation
	pub3     = key(3).PublicKey()
	pubStale = key(9).PublicKey()
)

// names are how the fake shows the keys.
var names = map[wireguard.PublicKey]string{
	keySelf.PublicKey(): "self", keySelf2.PublicKey(): "self2",
	pub2: "peer2", pub2b: "peer2b", pub3: "peer3", pubStale: "stale",
}

// converged is the fake in kernel mode after applying want() to base().
const converged = `addr 10.99.0.1/24 dev weft.wg
link eth0 dummy mtu 1500 up
link weft.wg wireguard mtu 1420 up
wg weft.wg key self port 51820
wg weft.wg peer peer2 endpoint 198.18.2.2:51820 allowed 10.99.0.2/32 allowed 10.244.2.0/24
wg weft.wg peer peer3 endpoint 198.18.3.3:51820 keepalive 25s allowed 10.244.3.0/24
`

// want is the desired state of node 1 with peers 2 and 3 (3 behind NAT).
func want() wireguard.Want {
	return wireguard.Want{
		Device: &wireguard.Device{
			Name:       wireguard.DefaultDevice,
			ListenPort: wireguard.DefaultPort,
			PrivateKey: keySelf,
			MTU:        wireguard.MTU(1500),
			Addr:       netip.MustParsePrefix("10.99.0.1/24"),
		},
		Peers: []wireguard.Peer{
			{
				PublicKey:  pub3,
				Endpoint:   netip.MustParseAddrPort("198.18.3.3:51820"),
				AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.244.3.0/24")},
				// 3 is behind NAT.
				PersistentKeepalive: wireguard.DefaultKeepalive,
			},
			{
				PublicKey:  pub2,
				Endpoint:   netip.MustParseAddrPort("198.18.2.2:51820"),
				AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.99.0.2/32"), netip.MustParsePrefix("10.244.2.0/24")},
			},
		},
	}
}

// wantWith returns want() changed by edit.
func wantWith(edit func(*wireguard.Want)) wireguard.Want {
	w := want()
	edit(&w)
	return w
}

// peer returns the peer of w with key k.
func peer(w *wireguard.Want, k wireguard.PublicKey) *wireguard.Peer {
	for i := range w.Peers {
		if w.Peers[i].PublicKey == k {
			return &w.Peers[i]
		}
	}
	panic("no such peer") // a mistake in the test
}

// base is a fresh fake with the underlay device eth0.
func base(t *testing.T) *wgtest.Kernel {
	k := wgtest.New()
	for pub, name := range names {
		k.NameKey(wgtypes.Key(pub), name)
	}
	must(t, k.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth0", Flags: net.FlagUp}}))
	return k
}

func newDriver(t *testing.T, k *wgtest.Kernel, mode string) *wireguard.Driver {
	t.Helper()
	d, err := wireguard.New(wireguard.Config{
		Mode: mode, Link: k, Client: k, Start: k.Start,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    func() time.Time { return now },
	})
	must(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// setup brings a fake kernel, and the driver that will work on it, to a
// starting state.
type setup func(t *testing.T, k *wgtest.Kernel, d *wireguard.Driver)

// applied is the state the driver leaves after applying w.
func applied(w wireguard.Want) setup {
	return func(t *testing.T, k *wgtest.Kernel, d *wireguard.Driver) {
		must(t, d.Apply(context.Background(), w))
	}
}

// then runs the setups in order.
func then(ss ...setup) setup {
	return func(t *testing.T, k *wgtest.Kernel, d *wireguard.Driver) {
		for _, s := range ss {
			s(t, k, d)
		}
	}
}

// kernelLink adds a kernel WireGuard link called name.
func kernelLink(name string) setup {
	return func(t *testing.T, k *wgtest.Kernel, d *wireguard.Driver) {
		must(t, k.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: name}}))
	}
}

// do runs fn on the fake.
func do(fn func(t *testing.T, k *wgtest.Kernel)) setup {
	return func(t *testing.T, k *wgtest.Kernel, d *wireguard.Driver) { fn(t, k) }
}

// messy is a kernel device that differs from want() in every way: wrong
// MTU, down, a foreign address, no key or port, peer 2 with another
// endpoint, keepalive and prefixes, a stale peer, and no peer 3.
func messy(t *testing.T, k *wgtest.Kernel, d *wireguard.Driver) {
	must(t, k.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: wireguard.DefaultDevice, MTU: 1500}}))
	l, err := k.LinkByName(wireguard.DefaultDevice)
	must(t, err)
	must(t, k.AddrReplace(l, &netlink.Addr{IPNet: ipNet("10.98.0.1/24")}))
	ka := 10 * time.Second
	must(t, k.ConfigureDevice(wireguard.DefaultDevice, wgtypes.Config{Peers: []wgtypes.PeerConfig{
		{PublicKey: wgtypes.Key(pub2), Endpoint: net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.18.2.9:51820")),
			PersistentKeepaliveInterval: &ka, AllowedIPs: []net.IPNet{*ipNet("10.244.2.0/24"), *ipNet("10.244.9.0/24")}},
		{PublicKey: wgtypes.Key(pubStale), AllowedIPs: []net.IPNet{*ipNet("10.244.8.0/24")}},
	}}))
}

// messyDiffs is what Check reports for messy.
func messyDiffs() []string {
	return []string{
		"device weft.wg mtu 1500, want 1420",
		"address 10.99.0.1/24 missing",
		"address 10.98.0.1/24 unwanted",
		"device weft.wg down",
		"device weft.wg private key differs",
		"device weft.wg listen port 0, want 51820",
		// Peers come in the order of their keys' base64.
		"peer " + pub3.String() + " missing",
		"peer " + pub2.String() + " endpoint 198.18.2.9:51820, want 198.18.2.2:51820",
		"peer " + pub2.String() + " keepalive 10s, want 0s",
		"peer " + pub2.String() + " allowed ips [10.244.2.0/24 10.244.9.0/24], want [10.99.0.2/32 10.244.2.0/24]",
		"peer " + pubStale.String() + " unwanted",
	}
}

func ipNet(s string) *net.IPNet {
	p := netip.MustParsePrefix(s)
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
