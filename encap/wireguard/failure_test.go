package wireguard_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weft-net/weft/encap/wireguard"
	"github.com/weft-net/weft/encap/wireguard/wgtest"
)

func TestApplyFailureThenRecovery(t *testing.T) {
	errInjected := errors.New("injected")
	stale := then(applied(want()), kernelLink("weft.old"))
	tests := []struct {
		name  string
		mode  string
		setup setup
		want  wireguard.Want
		fail  string // the fake's method whose next call fails
		// wantDiffs is what Check reports after the failed Apply: the
		// failed change and what depends on it, nothing else.
		wantDiffs []string
	}{
		{"list links", wireguard.ModeKernel, then(), want(), "LinkList", nil},
		{"look up device", wireguard.ModeKernel, then(), want(), "LinkByName", []string{"device weft.wg missing"}},
		{"create", wireguard.ModeKernel, then(), want(), "LinkAdd", []string{"device weft.wg missing"}},
		{"set up", wireguard.ModeKernel, then(), want(), "LinkSetUp", []string{"device weft.wg down"}},
		{"set mtu", wireguard.ModeKernel, messy, want(), "LinkSetMTU", messyDiffs()[0:1]},
		{"list addresses", wireguard.ModeKernel, messy, want(), "AddrList", messyDiffs()[1:3]},
		{"add address", wireguard.ModeKernel, messy, want(), "AddrReplace", messyDiffs()[1:2]},
		{"delete address", wireguard.ModeKernel, messy, want(), "AddrDel", messyDiffs()[2:3]},
		{"read wireguard device", wireguard.ModeKernel, messy, want(), "Device", messyDiffs()[4:]},
		{"configure", wireguard.ModeKernel, messy, want(), "ConfigureDevice", messyDiffs()[4:]},
		{"delete stale device", wireguard.ModeKernel, stale, want(), "LinkDel", []string{"device weft.old unwanted"}},
		{"start", wireguard.ModeUserspace, then(), want(), "Start", []string{"device weft.wg not running"}},
		{"bring up", wireguard.ModeUserspace, then(), want(), "Up", nil},
		{"configure in user space", wireguard.ModeUserspace, then(), want(), "ConfigureDevice", []string{
			"device weft.wg private key differs",
			"device weft.wg listen port 0, want 51820",
			"peer " + pub3.String() + " missing",
			"peer " + pub2.String() + " missing",
		}},
		// The device is forgotten even when its Close fails.
		{"stop", wireguard.ModeUserspace, applied(want()), wireguard.Want{}, "Close", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			// The same start applied without failure gives the state
			// to recover to.
			clean := base(t)
			cd := newDriver(t, clean, tt.mode)
			tt.setup(t, clean, cd)
			must(t, cd.Apply(ctx, tt.want))

			k := base(t)
			d := newDriver(t, k, tt.mode)
			tt.setup(t, k, d)
			k.FailNext(tt.fail, errInjected)
			if err := d.Apply(ctx, tt.want); !errors.Is(err, errInjected) {
				t.Fatalf("Apply with %s failing = %v, want the injected error", tt.fail, err)
			}
			diffs, err := d.Check(ctx, tt.want)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if diff := cmp.Diff(tt.wantDiffs, diffs); diff != "" {
				t.Errorf("Check after the failed Apply (-want +got):\n%s", diff)
			}
			if err := d.Apply(ctx, tt.want); err != nil {
				t.Fatalf("Apply after the failure: %v", err)
			}
			if diff := cmp.Diff(clean.String(), k.String()); diff != "" {
				t.Errorf("kernel after recovery (-want +got):\n%s", diff)
			}
			if diffs, err := d.Check(ctx, tt.want); err != nil || len(diffs) != 0 {
				t.Errorf("Check after recovery = %q, %v; want none", diffs, err)
			}
		})
	}
}

func TestApplyRefusals(t *testing.T) {
	ctx := context.Background()
	t.Run("foreign tun of that name", func(t *testing.T) {
		k := base(t)
		must(t, k.LinkAdd(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: wireguard.DefaultDevice}}))
		d := newDriver(t, k, wireguard.ModeUserspace)
		if err := d.Apply(ctx, want()); !errors.Is(err, unix.EBUSY) {
			t.Errorf("Apply = %v, want EBUSY", err)
		}
		if d.Offload() {
			t.Error("Offload with no device running = true")
		}
	})
	t.Run("context done", func(t *testing.T) {
		k := base(t)
		d := newDriver(t, k, wireguard.ModeKernel)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		k.ResetMutations()
		if err := d.Apply(cctx, want()); !errors.Is(err, context.Canceled) {
			t.Errorf("Apply = %v, want context.Canceled", err)
		}
		if m := k.Mutations(); len(m) != 0 {
			t.Errorf("Apply with ctx done made calls %v", m)
		}
	})
	t.Run("closed", func(t *testing.T) {
		k := base(t)
		d := newDriver(t, k, wireguard.ModeUserspace)
		must(t, d.Apply(ctx, want()))
		if !d.Offload() {
			t.Error("Offload of the running fake = false")
		}
		k.ResetMutations()
		must(t, d.Close())
		must(t, d.Close())
		if diff := cmp.Diff(map[string]int{"Close": 1}, k.Mutations()); diff != "" {
			t.Errorf("calls of Close (-want +got):\n%s", diff)
		}
		if got := k.String(); got != "link eth0 dummy mtu 1500 up\n" {
			t.Errorf("after Close:\n%s", got)
		}
		if err := d.Apply(ctx, want()); err == nil {
			t.Error("Apply after Close succeeded")
		}
	})
	t.Run("kernel device outlives Close", func(t *testing.T) {
		k := base(t)
		d := newDriver(t, k, wireguard.ModeKernel)
		must(t, d.Apply(ctx, want()))
		must(t, d.Close())
		if diff := cmp.Diff(converged, k.String()); diff != "" {
			t.Errorf("after Close (-want +got):\n%s", diff)
		}
		// A new driver (the agent restarted) finds it converged.
		k.ResetMutations()
		must(t, newDriver(t, k, wireguard.ModeKernel).Apply(ctx, want()))
		if m := k.Mutations(); len(m) != 0 {
			t.Errorf("Apply after restart made calls %v", m)
		}
	})
}

func TestValidate(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		name string
		edit func(w *wireguard.Want)
		want string // in the error; "" for none
	}{
		{"valid", func(w *wireguard.Want) {}, ""},
		{"no device", func(w *wireguard.Want) { *w = wireguard.Want{} }, ""},
		{"peers without device", func(w *wireguard.Want) { w.Device = nil }, "Peers: 2 peers but no Device"},
		{"empty name", func(w *wireguard.Want) { w.Device.Name = "" }, `Device.Name "": empty`},
		{"long name", func(w *wireguard.Want) { w.Device.Name = "weft.wireguard0" + "x" }, `Device.Name "weft.wireguard0x": longer than 15 bytes`},
		{"port", func(w *wireguard.Want) { w.Device.ListenPort = 0 }, "Device.ListenPort 0: outside 1..65535"},
		{"no key", func(w *wireguard.Want) { w.Device.PrivateKey = wireguard.PrivateKey{} }, "Device.PrivateKey: missing"},
		{"mtu", func(w *wireguard.Want) { w.Device.MTU = 67 }, "Device.MTU 67: outside 68..65535"},
		{"addr", func(w *wireguard.Want) { w.Device.Addr = p("0.0.0.0/0") }, "Device.Addr 0.0.0.0/0: not a unicast"},
		{"peer key missing", func(w *wireguard.Want) { w.Peers[1].PublicKey = wireguard.PublicKey{} }, "Peers[1].PublicKey: missing"},
		{"own key", func(w *wireguard.Want) { w.Peers[0].PublicKey = keySelf.PublicKey() }, "Peers[0].PublicKey " + keySelf.PublicKey().String() + ": the device's own key"},
		{"repeated key", func(w *wireguard.Want) { w.Peers[1].PublicKey = w.Peers[0].PublicKey }, "Peers[1].PublicKey " + pub3.String() + ": repeated"},
		{"endpoint port", func(w *wireguard.Want) { w.Peers[0].Endpoint = netip.MustParseAddrPort("198.18.3.3:0") }, "Peers[0].Endpoint 198.18.3.3:0: not a unicast address and port"},
		{"keepalive fraction", func(w *wireguard.Want) { w.Peers[0].PersistentKeepalive = 1500 * time.Millisecond }, "Peers[0].PersistentKeepalive 1.5s: not whole seconds"},
		{"keepalive range", func(w *wireguard.Want) { w.Peers[0].PersistentKeepalive = 65536 * time.Second }, "Peers[0].PersistentKeepalive 18h12m16s: not whole seconds in 0..65535"},
		{"invalid prefix", func(w *wireguard.Want) { w.Peers[0].AllowedIPs = []netip.Prefix{{}} }, "Peers[0].AllowedIPs[0] invalid Prefix: not a prefix"},
		{"prefix twice", func(w *wireguard.Want) { w.Peers[1].AllowedIPs = append(w.Peers[1].AllowedIPs, p("10.244.3.9/24")) }, "Peers[1].AllowedIPs[2] 10.244.3.9/24: also allowed to peer " + pub3.String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := want()
			tt.edit(&w)
			err := w.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if tt.want == "" && err != nil || tt.want != "" && !strings.Contains(got, tt.want) {
				t.Errorf("Validate() = %q, want it to contain %q", got, tt.want)
			}
			if err == nil {
				return
			}
			// An invalid want changes nothing.
			k := base(t)
			d := newDriver(t, k, wireguard.ModeKernel)
			k.ResetMutations()
			if aerr := d.Apply(context.Background(), w); aerr == nil || len(k.Mutations()) != 0 {
				t.Errorf("Apply of an invalid want = %v with calls %v, want the error and none", aerr, k.Mutations())
			}
		})
	}
}

func TestDetect(t *testing.T) {
	tests := []struct {
		name     string
		refuse   bool
		probe    bool // a probe link left by a crash
		wantMode string
		wantErr  error
	}{
		{"kernel wireguard", false, false, wireguard.ModeKernel, nil},
		{"probe left behind", false, true, wireguard.ModeKernel, nil},
		{"no kernel wireguard", true, false, wireguard.ModeUserspace, unix.EOPNOTSUPP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := base(t)
			if tt.probe {
				must(t, k.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: "weft.wgprobe"}}))
			}
			if tt.refuse {
				k.RefuseWireGuard()
			}
			mode, why := wireguard.Detect(k)
			if mode != tt.wantMode || !errors.Is(why, tt.wantErr) || (tt.wantErr == nil) != (why == nil) {
				t.Errorf("Detect = %q, %v; want %q, %v", mode, why, tt.wantMode, tt.wantErr)
			}
			if got := k.String(); got != "link eth0 dummy mtu 1500 up\n" {
				t.Errorf("Detect left:\n%s", got)
			}
		})
	}
}

func TestNew(t *testing.T) {
	k := wgtest.New()
	tests := []struct {
		name string
		c    wireguard.Config
		want string
	}{
		{"no mode", wireguard.Config{Link: k, Client: k}, `Mode "": not "kernel" or "userspace"`},
		{"no link", wireguard.Config{Mode: wireguard.ModeKernel, Client: k}, "Link: missing"},
		{"no client", wireguard.Config{Mode: wireguard.ModeKernel, Link: k}, "Client: missing"},
		{"no starter", wireguard.Config{Mode: wireguard.ModeUserspace, Link: k, Client: k}, "Start: missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := wireguard.New(tt.c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, %v; want an error containing %q", d, err, tt.want)
			}
		})
	}
}
