package wireguard

import (
	"bufio"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.zx2c4.com/wireguard/conn/bindtest"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// serveDevice runs a wireguard-go device on an in-memory TUN and bind,
// answering on the UAPI socket dir/name.sock, until the test ends. The
// in-memory bind picks a port of its own: ListenPort does not read back.
func serveDevice(t *testing.T, dir, name string) *device.Device {
	t.Helper()
	dev := device.NewDevice(tuntest.NewChannelTUN().TUN(), bindtest.NewChannelBinds()[0], device.NewLogger(device.LogLevelSilent, ""))
	l, err := listenUAPI(dir, name)
	if err != nil {
		dev.Close()
		t.Fatalf("listenUAPI: %v", err)
	}
	e := &embedded{dev: dev, l: l, served: make(chan struct{})}
	go e.serve()
	t.Cleanup(func() { e.Close() })
	return dev
}

func testKey(n byte) wgtypes.Key {
	var k wgtypes.Key
	for i := range k {
		k[i] = n + byte(i)
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k
}

func TestUAPIClient(t *testing.T) {
	dir := t.TempDir()
	serveDevice(t, dir, "wgt0")
	c := NewUAPIClient(dir)

	d, err := c.Device("wgt0")
	if err != nil {
		t.Fatalf("Device of a new device: %v", err)
	}
	ignorePort := cmpopts.IgnoreFields(wgtypes.Device{}, "ListenPort")
	if diff := cmp.Diff(&wgtypes.Device{Name: "wgt0", Type: wgtypes.Userspace}, d, ignorePort); diff != "" {
		t.Errorf("new device (-want +got):\n%s", diff)
	}

	priv, a, b, gone := testKey(1), testKey(2).PublicKey(), testKey(3).PublicKey(), testKey(4).PublicKey()
	port, ka, kick, off := 51820, 25*time.Second, time.Second, time.Duration(0)
	ep := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:51821"))
	cfg := wgtypes.Config{
		PrivateKey: &priv,
		ListenPort: &port,
		Peers: []wgtypes.PeerConfig{
			{PublicKey: a, Endpoint: ep, PersistentKeepaliveInterval: &ka, ReplaceAllowedIPs: true,
				AllowedIPs: []net.IPNet{*ipNet(netip.MustParsePrefix("10.244.2.0/24")), *ipNet(netip.MustParsePrefix("fd00::/64"))}},
			// A kicked peer: created with a short keepalive, turned off
			// by a second entry.
			{PublicKey: b, PersistentKeepaliveInterval: &kick, AllowedIPs: []net.IPNet{*ipNet(netip.MustParsePrefix("10.244.3.0/24"))}},
			{PublicKey: b, UpdateOnly: true, PersistentKeepaliveInterval: &off},
			{PublicKey: gone, Remove: true},
		},
	}
	if err := c.ConfigureDevice("wgt0", cfg); err != nil {
		t.Fatalf("ConfigureDevice: %v", err)
	}
	d, err = c.Device("wgt0")
	if err != nil {
		t.Fatalf("Device: %v", err)
	}
	want := &wgtypes.Device{
		Name: "wgt0", Type: wgtypes.Userspace, PrivateKey: priv, PublicKey: priv.PublicKey(), ListenPort: 51820,
		Peers: []wgtypes.Peer{
			{PublicKey: a, Endpoint: ep, PersistentKeepaliveInterval: ka, ProtocolVersion: 1,
				AllowedIPs: []net.IPNet{*ipNet(netip.MustParsePrefix("10.244.2.0/24")), *ipNet(netip.MustParsePrefix("fd00::/64"))}},
			{PublicKey: b, ProtocolVersion: 1, AllowedIPs: []net.IPNet{*ipNet(netip.MustParsePrefix("10.244.3.0/24"))}},
		},
	}
	// wireguard-go lists peers in map order.
	if len(d.Peers) == 2 && d.Peers[0].PublicKey == b {
		d.Peers[0], d.Peers[1] = d.Peers[1], d.Peers[0]
	}
	if diff := cmp.Diff(want, d, ignorePort); diff != "" {
		t.Errorf("device after ConfigureDevice (-want +got):\n%s", diff)
	}

	// A refused configuration comes back as its errno.
	bad := -1
	err = c.ConfigureDevice("wgt0", wgtypes.Config{ListenPort: &bad})
	if !errors.Is(err, syscall.EINVAL) {
		t.Errorf("ConfigureDevice with port -1 = %v, want EINVAL", err)
	}
}

func TestUAPIClientMissing(t *testing.T) {
	dir := t.TempDir()
	// A socket file that nothing listens on, as a dead process leaves it.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sockPath(dir, "dead"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	c := NewUAPIClient(dir)
	for _, name := range []string{"none", "dead"} {
		if _, err := c.Device(name); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Device(%q) = %v, want os.ErrNotExist", name, err)
		}
		if err := c.ConfigureDevice(name, wgtypes.Config{}); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("ConfigureDevice(%q) = %v, want os.ErrNotExist", name, err)
		}
	}
	// The stale socket is replaced by a new device; a live one is not.
	serveDevice(t, dir, "dead")
	if _, err := c.Device("dead"); err != nil {
		t.Errorf("Device after the stale socket was replaced: %v", err)
	}
	fi, err := os.Stat(sockPath(dir, "dead"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket: %v, mode %v; want 0600", err, fi.Mode())
	}
	if l, err := listenUAPI(dir, "dead"); err == nil || !strings.Contains(err.Error(), "another process serves it") {
		if l != nil {
			l.Close()
		}
		t.Errorf("listenUAPI on a live socket = %v", err)
	}
}

func TestParseDevice(t *testing.T) {
	k := testKey(1)
	hexKey := func(k wgtypes.Key) string { return hex.EncodeToString(k[:]) }
	tests := []struct {
		name string
		in   string
		want *wgtypes.Device
		err  string
	}{
		{"set status", "errno=0\n\n", &wgtypes.Device{}, ""},
		{"refused", "errno=22\n\n", nil, "invalid argument"},
		{"refused by wireguard-go", "errno=-98\n\n", nil, "address already in use"},
		{"no errno", "listen_port=1\n\n", nil, "answer without errno"},
		{"truncated", "listen_port=1\n", nil, "read answer"},
		{"not key=value", "hello\nerrno=0\n\n", nil, `"hello": not key=value`},
		{"bad port", "listen_port=70000\nerrno=0\n\n", nil, "listen_port"},
		{"bad private key is not quoted", "private_key=zz" + strings.Repeat("0", 62) + "\nerrno=0\n\n", nil, "private_key: not a hex key"},
		{"unknown keys skipped", "future=1\nerrno=0\n\n", &wgtypes.Device{}, ""},
		{
			"device and peer",
			"private_key=" + hexKey(k) + "\nlisten_port=51820\nfwmark=7\npublic_key=" + hexKey(k.PublicKey()) +
				"\nendpoint=[fd00::1]:51820\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\n" +
				"tx_bytes=10\nrx_bytes=20\npersistent_keepalive_interval=25\nallowed_ip=10.0.0.0/8\nprotocol_version=1\nerrno=0\n\n",
			&wgtypes.Device{
				PrivateKey: k, PublicKey: k.PublicKey(), ListenPort: 51820, FirewallMark: 7,
				Peers: []wgtypes.Peer{{
					PublicKey: k.PublicKey(), Endpoint: net.UDPAddrFromAddrPort(netip.MustParseAddrPort("[fd00::1]:51820")),
					LastHandshakeTime: time.Unix(1700000000, 5), TransmitBytes: 10, ReceiveBytes: 20,
					PersistentKeepaliveInterval: 25 * time.Second, ProtocolVersion: 1,
					AllowedIPs: []net.IPNet{*ipNet(netip.MustParsePrefix("10.0.0.0/8"))},
				}},
			}, "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := parseDevice(bufio.NewReader(strings.NewReader(tt.in)))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parseDevice = %v, want an error containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseDevice: %v", err)
			}
			if diff := cmp.Diff(tt.want, d); diff != "" {
				t.Errorf("parseDevice (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseDevice(f *testing.F) {
	f.Add("errno=0\n\n")
	f.Add("private_key=00\npublic_key=" + strings.Repeat("ab", 32) + "\nallowed_ip=10.0.0.0/8\nerrno=0\n\n")
	f.Add("public_key=" + strings.Repeat("ab", 32) + "\nendpoint=1.2.3.4:5\nlast_handshake_time_sec=1\nerrno=0\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		d, err := parseDevice(bufio.NewReader(strings.NewReader(in)))
		if err == nil && d == nil {
			t.Error("parseDevice gave neither a device nor an error")
		}
	})
}

func TestSockPath(t *testing.T) {
	if got, want := sockPath("/var/run/wireguard", "weft.wg"), filepath.Join("/var/run/wireguard", "weft.wg.sock"); got != want {
		t.Errorf("sockPath = %q, want %q", got, want)
	}
}
