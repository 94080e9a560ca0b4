package wireguard_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weft-net/weft/encap/wireguard"
	"github.com/weft-net/weft/encap/wireguard/wgtest"
)

// userConverged is converged with the embedded user-space device.
var userConverged = strings.Replace(converged, "link weft.wg wireguard", "link weft.wg tuntap", 1)

func TestApply(t *testing.T) {
	rotated := wantWith(func(w *wireguard.Want) { peer(w, pub2).PublicKey = pub2b })
	tests := []struct {
		name  string
		mode  string
		setup setup
		want  wireguard.Want
		// wantKernel is the fake rendered after Apply.
		wantKernel string
		// wantMutations counts the mutating calls Apply made.
		wantMutations map[string]int
		// wantKicks counts the handshakes kicked off, by peer.
		wantKicks map[string]int
	}{
		{
			name:       "kernel: from empty",
			mode:       wireguard.ModeKernel,
			setup:      then(),
			want:       want(),
			wantKernel: converged,
			// One ConfigureDevice for key, port and both peers; 2 is
			// kicked by a short keepalive, 3 by its own.
			wantMutations: map[string]int{"LinkAdd": 1, "LinkSetUp": 1, "AddrReplace": 1, "ConfigureDevice": 1},
			wantKicks:     map[string]int{"peer2": 1, "peer3": 1},
		},
		{
			name:          "user space: from empty",
			mode:          wireguard.ModeUserspace,
			setup:         then(),
			want:          want(),
			wantKernel:    userConverged,
			wantMutations: map[string]int{"Start": 1, "LinkSetUp": 1, "Up": 1, "AddrReplace": 1, "ConfigureDevice": 1},
			wantKicks:     map[string]int{"peer2": 1, "peer3": 1},
		},
		{
			name:          "kernel: from messy",
			mode:          wireguard.ModeKernel,
			setup:         messy,
			want:          want(),
			wantKernel:    converged,
			wantMutations: map[string]int{"LinkSetMTU": 1, "LinkSetUp": 1, "AddrReplace": 1, "AddrDel": 1, "ConfigureDevice": 1},
			// The keepalive of 2 goes from 10 s to none: no kick.
			wantKicks: map[string]int{"peer3": 1},
		},
		{
			name:          "already converged",
			mode:          wireguard.ModeKernel,
			setup:         applied(want()),
			want:          want(),
			wantKernel:    converged,
			wantMutations: map[string]int{},
		},
		{
			name:          "user space: already converged",
			mode:          wireguard.ModeUserspace,
			setup:         applied(want()),
			want:          want(),
			wantKernel:    userConverged,
			wantMutations: map[string]int{},
		},
		{
			name:  "peer gone: removed",
			mode:  wireguard.ModeKernel,
			setup: applied(want()),
			want:  wantWith(func(w *wireguard.Want) { w.Peers = w.Peers[:1] }),
			wantKernel: `addr 10.99.0.1/24 dev weft.wg
link eth0 dummy mtu 1500 up
link weft.wg wireguard mtu 1420 up
wg weft.wg key self port 51820
wg weft.wg peer peer3 endpoint 198.18.3.3:51820 keepalive 25s allowed 10.244.3.0/24
`,
			wantMutations: map[string]int{"ConfigureDevice": 1},
		},
		{
			name:          "peer's key rotated: new entry kicked, old one gone, prefixes moved",
			mode:          wireguard.ModeKernel,
			setup:         applied(want()),
			want:          rotated,
			wantKernel:    strings.Replace(converged, "peer peer2 ", "peer peer2b ", 1),
			wantMutations: map[string]int{"ConfigureDevice": 1},
			wantKicks:     map[string]int{"peer2b": 1},
		},
		{
			name:          "own key rotated",
			mode:          wireguard.ModeUserspace,
			setup:         applied(want()),
			want:          wantWith(func(w *wireguard.Want) { w.Device.PrivateKey = keySelf2 }),
			wantKernel:    strings.Replace(userConverged, "key self ", "key self2 ", 1),
			wantMutations: map[string]int{"ConfigureDevice": 1},
		},
		{
			name:          "port changed",
			mode:          wireguard.ModeKernel,
			setup:         applied(want()),
			want:          wantWith(func(w *wireguard.Want) { w.Device.ListenPort = 51821 }),
			wantKernel:    strings.Replace(converged, "port 51820\n", "port 51821\n", 1),
			wantMutations: map[string]int{"ConfigureDevice": 1},
		},
		{
			name:  "endpoint, keepalive and prefixes changed",
			mode:  wireguard.ModeKernel,
			setup: applied(want()),
			want: wantWith(func(w *wireguard.Want) {
				p := peer(w, pub3)
				p.Endpoint = netip.MustParseAddrPort("198.18.3.4:51820")
				p.PersistentKeepalive = 0
				p.AllowedIPs = append(p.AllowedIPs, netip.MustParsePrefix("10.99.0.3/32"))
			}),
			wantKernel:    strings.Replace(converged, "peer3 endpoint 198.18.3.3:51820 keepalive 25s allowed 10.244.3.0/24", "peer3 endpoint 198.18.3.4:51820 allowed 10.99.0.3/32 allowed 10.244.3.0/24", 1),
			wantMutations: map[string]int{"ConfigureDevice": 1},
		},
		{
			name:          "peer roamed, session live: endpoint kept",
			mode:          wireguard.ModeKernel,
			setup:         then(applied(want()), roam(pub3, "198.18.7.7:40000", now.Add(-time.Minute))),
			want:          want(),
			wantKernel:    strings.Replace(converged, "198.18.3.3:51820", "198.18.7.7:40000", 1),
			wantMutations: map[string]int{},
		},
		{
			name:          "peer roamed, session dead: endpoint reset",
			mode:          wireguard.ModeKernel,
			setup:         then(applied(want()), roam(pub3, "198.18.7.7:40000", now.Add(-4*time.Minute))),
			want:          want(),
			wantKernel:    converged,
			wantMutations: map[string]int{"ConfigureDevice": 1},
		},
		{
			name:  "peer without endpoint: not kicked",
			mode:  wireguard.ModeKernel,
			setup: applied(want()),
			want: wantWith(func(w *wireguard.Want) {
				w.Peers = append(w.Peers, wireguard.Peer{PublicKey: pubStale, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.244.9.0/24")}})
			}),
			wantKernel:    converged + "wg weft.wg peer stale allowed 10.244.9.0/24\n",
			wantMutations: map[string]int{"ConfigureDevice": 1},
		},
		{
			name:          "mtu changed: in place",
			mode:          wireguard.ModeUserspace,
			setup:         applied(want()),
			want:          wantWith(func(w *wireguard.Want) { w.Device.MTU = 1380 }),
			wantKernel:    strings.Replace(userConverged, "mtu 1420", "mtu 1380", 1),
			wantMutations: map[string]int{"LinkSetMTU": 1},
		},
		{
			name:          "address changed: added, then the old one deleted",
			mode:          wireguard.ModeKernel,
			setup:         applied(want()),
			want:          wantWith(func(w *wireguard.Want) { w.Device.Addr = netip.MustParsePrefix("10.99.0.9/24") }),
			wantKernel:    strings.Replace(converged, "10.99.0.1/24", "10.99.0.9/24", 1),
			wantMutations: map[string]int{"AddrReplace": 1, "AddrDel": 1},
		},
		{
			name:  "kernel: no device: weft's wireguard links go, others stay",
			mode:  wireguard.ModeKernel,
			setup: then(applied(want()), kernelLink("weft.old"), kernelLink("wg0")),
			want:  wireguard.Want{},
			wantKernel: `link eth0 dummy mtu 1500 up
link wg0 wireguard mtu 1500 down
wg wg0 key none port 0
`,
			wantMutations: map[string]int{"LinkDel": 2},
		},
		{
			name:          "user space: no device: stopped",
			mode:          wireguard.ModeUserspace,
			setup:         applied(want()),
			want:          wireguard.Want{},
			wantKernel:    "link eth0 dummy mtu 1500 up\n",
			wantMutations: map[string]int{"Close": 1},
		},
		{
			name:          "user space: a kernel device of that name is replaced",
			mode:          wireguard.ModeUserspace,
			setup:         kernelLink(wireguard.DefaultDevice),
			want:          want(),
			wantKernel:    userConverged,
			wantMutations: map[string]int{"LinkDel": 1, "Start": 1, "LinkSetUp": 1, "Up": 1, "AddrReplace": 1, "ConfigureDevice": 1},
			wantKicks:     map[string]int{"peer2": 1, "peer3": 1},
		},
		{
			name:       "user space: link deleted under the device: restarted",
			mode:       wireguard.ModeUserspace,
			setup:      then(applied(want()), do(deleteLink(wireguard.DefaultDevice))),
			want:       want(),
			wantKernel: userConverged,
			wantMutations: map[string]int{
				"Close": 1, "Start": 1, "LinkSetUp": 1, "Up": 1, "AddrReplace": 1, "ConfigureDevice": 1,
			},
			wantKicks: map[string]int{"peer2": 1, "peer3": 1},
		},
		{
			name: "kernel: a foreign link of that name is replaced",
			mode: wireguard.ModeKernel,
			setup: do(func(t *testing.T, k *wgtest.Kernel) {
				must(t, k.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: wireguard.DefaultDevice}}))
			}),
			want:          want(),
			wantKernel:    converged,
			wantMutations: map[string]int{"LinkDel": 1, "LinkAdd": 1, "LinkSetUp": 1, "AddrReplace": 1, "ConfigureDevice": 1},
			wantKicks:     map[string]int{"peer2": 1, "peer3": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			k := base(t)
			d := newDriver(t, k, tt.mode)
			tt.setup(t, k, d)
			k.ResetMutations()
			if err := d.Apply(ctx, tt.want); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if diff := cmp.Diff(tt.wantKernel, k.String()); diff != "" {
				t.Errorf("kernel after Apply (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantMutations, k.Mutations()); diff != "" {
				t.Errorf("mutating calls of Apply (-want +got):\n%s", diff)
			}
			wantKicks := tt.wantKicks
			if wantKicks == nil {
				wantKicks = map[string]int{}
			}
			if diff := cmp.Diff(wantKicks, k.Kicks()); diff != "" {
				t.Errorf("handshake kicks of Apply (-want +got):\n%s", diff)
			}

			k.ResetMutations()
			if err := d.Apply(ctx, tt.want); err != nil {
				t.Fatalf("second Apply: %v", err)
			}
			if diff := cmp.Diff(map[string]int{}, k.Mutations()); diff != "" {
				t.Errorf("mutating calls of the second Apply (-want +got):\n%s", diff)
			}
			diffs, err := d.Check(ctx, tt.want)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if len(diffs) != 0 {
				t.Errorf("Check after Apply = %q, want none", diffs)
			}
		})
	}
}

func roam(pub wireguard.PublicKey, ep string, at time.Time) setup {
	return do(func(t *testing.T, k *wgtest.Kernel) {
		must(t, k.Roam(wireguard.DefaultDevice, wgtypes.Key(pub), netip.MustParseAddrPort(ep), at))
	})
}

func deleteLink(name string) func(t *testing.T, k *wgtest.Kernel) {
	return func(t *testing.T, k *wgtest.Kernel) {
		l, err := k.LinkByName(name)
		must(t, err)
		must(t, k.LinkDel(l))
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name  string
		mode  string
		setup setup
		want  wireguard.Want
		diffs []string
	}{
		{"kernel: empty", wireguard.ModeKernel, then(), want(), []string{"device weft.wg missing"}},
		{"user space: not started", wireguard.ModeUserspace, then(), want(), []string{"device weft.wg not running"}},
		{"user space: a foreign tun", wireguard.ModeUserspace, do(func(t *testing.T, k *wgtest.Kernel) {
			must(t, k.LinkAdd(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: wireguard.DefaultDevice}}))
		}), want(), []string{"device weft.wg not running"}},
		{"kernel: messy", wireguard.ModeKernel, messy, want(), messyDiffs()},
		{"kernel: foreign kind", wireguard.ModeKernel, do(func(t *testing.T, k *wgtest.Kernel) {
			must(t, k.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: wireguard.DefaultDevice}}))
		}), want(), []string{"device weft.wg is dummy, want wireguard"}},
		{"kernel: stale weft device", wireguard.ModeKernel, then(applied(want()), kernelLink("weft.old")), want(), []string{"device weft.old unwanted"}},
		{"user space: unwanted", wireguard.ModeUserspace, applied(want()), wireguard.Want{}, []string{"device weft.wg unwanted"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			k := base(t)
			d := newDriver(t, k, tt.mode)
			tt.setup(t, k, d)
			before := k.String()
			k.ResetMutations()
			diffs, err := d.Check(ctx, tt.want)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if diff := cmp.Diff(tt.diffs, diffs); diff != "" {
				t.Errorf("Check (-want +got):\n%s", diff)
			}
			if n := k.Mutations(); len(n) != 0 {
				t.Errorf("Check made mutating calls %v", n)
			}
			if diff := cmp.Diff(before, k.String()); diff != "" {
				t.Errorf("Check changed the kernel (-before +after):\n%s", diff)
			}
		})
	}
}
