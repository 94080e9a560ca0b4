package wgtest_test

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weft-net/weft/encap/wireguard/wgtest"
)

func key(n byte) wgtypes.Key {
	var k wgtypes.Key
	for i := range k {
		k[i] = n + byte(i)
	}
	return k
}

func ipNet(s string) net.IPNet {
	p := netip.MustParsePrefix(s)
	return net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestConfigureDevice checks the semantics of WireGuard that the driver
// relies on.
func TestConfigureDevice(t *testing.T) {
	k := wgtest.New()
	self, a, b := key(1), key(2), key(3)
	k.NameKey(self.PublicKey(), "self")
	k.NameKey(a, "a")
	k.NameKey(b, "b")
	must(t, k.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: "wg0", MTU: 1420}}))
	port, ka, off := 51820, time.Second, time.Duration(0)

	// Down: no kick. a's prefix moves to b, given it later.
	must(t, k.ConfigureDevice("wg0", wgtypes.Config{PrivateKey: &self, ListenPort: &port, Peers: []wgtypes.PeerConfig{
		{PublicKey: a, PersistentKeepaliveInterval: &ka, AllowedIPs: []net.IPNet{ipNet("10.0.1.0/24"), ipNet("10.0.9.0/24")}},
		{PublicKey: b, AllowedIPs: []net.IPNet{ipNet("10.0.9.0/24")}},
		{PublicKey: self.PublicKey(), AllowedIPs: []net.IPNet{ipNet("10.0.8.0/24")}}, // ignored
		{PublicKey: key(4), UpdateOnly: true},                                        // not created
	}}))
	want := `link wg0 wireguard mtu 1420 down
wg wg0 key self port 51820
wg wg0 peer a keepalive 1s allowed 10.0.1.0/24
wg wg0 peer b allowed 10.0.9.0/24
`
	if diff := cmp.Diff(want, k.String()); diff != "" {
		t.Errorf("after configure (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{}, k.Kicks()); diff != "" {
		t.Errorf("kicks while down (-want +got):\n%s", diff)
	}

	// Up: turning keepalive on kicks; a remove of a missing peer is fine.
	l, err := k.LinkByName("wg0")
	must(t, err)
	must(t, k.LinkSetUp(l))
	must(t, k.ConfigureDevice("wg0", wgtypes.Config{Peers: []wgtypes.PeerConfig{
		{PublicKey: b, PersistentKeepaliveInterval: &ka},
		{PublicKey: b, UpdateOnly: true, PersistentKeepaliveInterval: &off},
		{PublicKey: a, Remove: true},
		{PublicKey: key(5), Remove: true},
	}}))
	if diff := cmp.Diff(map[string]int{"b": 1}, k.Kicks()); diff != "" {
		t.Errorf("kicks (-want +got):\n%s", diff)
	}
	dev, err := k.Device("wg0")
	must(t, err)
	if len(dev.Peers) != 1 || dev.Peers[0].PublicKey != b || dev.Peers[0].PersistentKeepaliveInterval != 0 || dev.PublicKey != self.PublicKey() {
		t.Errorf("Device = %+v", dev)
	}

	// Errors of a missing device, and injected ones.
	if _, err := k.Device("wg1"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Device of a missing device = %v", err)
	}
	errInjected := errors.New("injected")
	k.FailNext("ConfigureDevice", errInjected)
	before := k.String()
	if err := k.ConfigureDevice("wg0", wgtypes.Config{ReplacePeers: true}); !errors.Is(err, errInjected) {
		t.Errorf("ConfigureDevice = %v, want the injected error", err)
	}
	if k.String() != before {
		t.Error("a failed ConfigureDevice changed the device")
	}
}

func TestStart(t *testing.T) {
	k := wgtest.New()
	e, err := k.Start("weft.wg", 1380)
	must(t, err)
	if _, err := k.Start("weft.wg", 1380); !errors.Is(err, unix.EBUSY) {
		t.Errorf("second Start = %v, want EBUSY", err)
	}
	if got, want := k.String(), "link weft.wg tuntap mtu 1380 down\nwg weft.wg key none port 0\n"; got != want {
		t.Errorf("after Start:\n%s\nwant:\n%s", got, want)
	}
	if dev, err := k.Device("weft.wg"); err != nil || dev.Type != wgtypes.Userspace {
		t.Errorf("Device = %+v, %v", dev, err)
	}
	must(t, e.Close())
	must(t, e.Close())
	if got := k.String(); got != "" {
		t.Errorf("after Close:\n%q", got)
	}
	if diff := cmp.Diff(map[string]int{"Start": 2, "Close": 1}, k.Mutations()); diff != "" {
		t.Errorf("mutations (-want +got):\n%s", diff)
	}
}

func TestFailNextUnknown(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("FailNext of an unknown method did not panic")
		}
	}()
	wgtest.New().FailNext("RouteAdd", errors.New("x"))
}
