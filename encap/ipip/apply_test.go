package ipip_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weft-net/weft/encap/ipip"
	"github.com/weft-net/weft/encap/ipip/ipiptest"
)

// kernelWant is host 1's state in kernel mode with host 2 as its peer.
func kernelWant() ipip.Want {
	return ipip.Want{
		Device: &ipip.Device{Name: ipip.DefaultDevice, Local: underlay(1), MTU: 1480, Addr: netip.MustParsePrefix("10.244.1.0/32")},
		Peers:  []ipip.Peer{{Remote: underlay(2), Subnets: []netip.Prefix{subnet(2)}}},
	}
}

const kernelConverged = "weft.ipip ipip local 198.18.1.1 remote any pmtudisc 1 ttl 0 mtu 1480 up alias weft-ipip addr 10.244.1.0/32"

func iptun(name, local string, mtu int, alias string) *netlink.Iptun {
	t := &netlink.Iptun{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu, Alias: alias}, PMtuDisc: 1}
	if local != "" {
		t.Local = net.ParseIP(local).To4()
	}
	return t
}

// check runs Check and fails t on an error.
func check(t *testing.T, d *ipip.Driver, want ipip.Want) []string {
	t.Helper()
	lines, err := d.Check(context.Background(), want)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return lines
}

func TestKernelApply(t *testing.T) {
	for _, c := range []struct {
		name   string
		setup  func(k *ipiptest.Kernel)
		lines  []string // Check before Apply
		kernel string   // after Apply
	}{
		{
			name:   "from empty",
			lines:  []string{"device weft.ipip missing"},
			kernel: kernelConverged,
		},
		{
			name: "from a messy kernel",
			setup: func(k *ipiptest.Kernel) {
				k.AddLink(iptun("tunl0", "", 1480, ""))                                                       // the module's: stays
				k.AddLink(iptun("weft.ipip", "198.18.9.9", 1500, ""))                                         // ours, wrong local and MTU: made again
				k.AddLink(iptun("weft.old", "198.18.1.7", 1480, ipip.Alias))                                  // ours, unwanted: goes
				k.AddLink(iptun("weft.notours", "198.18.1.8", 1480, ""))                                      // no alias: stays
				k.AddLink(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "weft.wg", Alias: "weft-wg"}})   // another weft driver's: stays
				k.AddLink(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "weft.tun", Alias: ipip.Alias}}) // ours from user space: goes
			},
			lines: []string{
				"device weft.ipip local 198.18.9.9, want 198.18.1.1",
				"device weft.ipip mtu 1500, want 1480",
				`device weft.ipip alias "", want "weft-ipip"`,
				"device weft.ipip down, want up",
				"device weft.ipip address 10.244.1.0/32 missing",
				"device weft.old unwanted",
				"device weft.tun unwanted",
			},
			kernel: strings.Join([]string{
				"tunl0 ipip local any remote any pmtudisc 1 ttl 0 mtu 1480 down",
				kernelConverged,
				"weft.notours ipip local 198.18.1.8 remote any pmtudisc 1 ttl 0 mtu 1480 down",
				"weft.wg tuntap mtu 1500 down alias weft-wg",
			}, "\n"),
		},
		{
			name: "ours of the other kind",
			setup: func(k *ipiptest.Kernel) {
				k.AddLink(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "weft.ipip", Alias: ipip.Alias}})
			},
			lines:  []string{"device weft.ipip is tuntap, want ipip"},
			kernel: kernelConverged,
		},
		{
			name: "stray addresses",
			setup: func(k *ipiptest.Kernel) {
				k.AddLink(iptun("weft.ipip", "198.18.1.1", 1480, ipip.Alias))
				k.AddAddr("weft.ipip", netip.MustParsePrefix("10.244.9.0/32"))
			},
			lines: []string{
				"device weft.ipip down, want up",
				"device weft.ipip address 10.244.1.0/32 missing",
				"device weft.ipip address 10.244.9.0/32 unwanted",
			},
			kernel: kernelConverged,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := ipiptest.NewKernel(true)
			if c.setup != nil {
				c.setup(k)
			}
			d := newFakeDriver(t, ipip.ModeKernel, k, nil)
			if diff := cmp.Diff(c.lines, check(t, d, kernelWant())); diff != "" {
				t.Errorf("Check before Apply (-want +got):\n%s", diff)
			}
			if err := d.Apply(context.Background(), kernelWant()); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if diff := cmp.Diff(c.kernel, k.String()); diff != "" {
				t.Errorf("kernel after Apply (-want +got):\n%s", diff)
			}
			k.ResetMutations()
			if err := d.Apply(context.Background(), kernelWant()); err != nil {
				t.Fatalf("second Apply: %v", err)
			}
			if m := k.Mutations(); len(m) != 0 {
				t.Errorf("second Apply made calls: %v", m)
			}
			if lines := check(t, d, kernelWant()); len(lines) != 0 {
				t.Errorf("Check after Apply: %q", lines)
			}
		})
	}
}

func TestKernelApplyRefuses(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(k *ipiptest.Kernel)
		want  ipip.Want
		err   string
	}{
		{"someone else's link of our name", func(k *ipiptest.Kernel) {
			k.AddLink(&netlink.GenericLink{LinkAttrs: netlink.LinkAttrs{Name: "weft.ipip"}, LinkType: "dummy"})
		}, kernelWant(), "link weft.ipip is of type dummy, not ipip, and not weft's: leaving it alone"},
		{"an ipip link with someone else's alias", func(k *ipiptest.Kernel) {
			k.AddLink(iptun("weft.ipip", "198.18.1.1", 1480, "calico"))
		}, kernelWant(), `link weft.ipip has alias "calico", not "weft-ipip": someone else's, leaving it alone`},
		{"no local address", nil, ipip.Want{Device: &ipip.Device{Name: "weft.ipip"}},
			"ipip want: Device.Local: none, but kernel mode needs one"},
		{"invalid want", nil, ipip.Want{Device: &ipip.Device{Name: ""}}, `ipip want: Device.Name "": empty`},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := ipiptest.NewKernel(true)
			if c.setup != nil {
				c.setup(k)
			}
			before := k.String()
			d := newFakeDriver(t, ipip.ModeKernel, k, nil)
			err := d.Apply(context.Background(), c.want)
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Apply error %v, want one containing %q", err, c.err)
			}
			if got := k.String(); got != before {
				t.Errorf("kernel changed:\n%s\nwas:\n%s", got, before)
			}
		})
	}
}

// TestKernelApplyFailures injects a failure into each call Apply makes
// from a messy kernel, then checks that the next Apply converges.
func TestKernelApplyFailures(t *testing.T) {
	for _, kind := range []string{"LinkByName", "LinkList", "LinkAdd", "LinkDel", "LinkSetMTU", "LinkSetUp", "LinkSetAlias", "AddrList", "AddrReplace", "AddrDel"} {
		t.Run(kind, func(t *testing.T) {
			k := ipiptest.NewKernel(true)
			k.AddLink(iptun("weft.ipip", "198.18.1.1", 1500, ""))
			k.AddAddr("weft.ipip", netip.MustParsePrefix("10.244.9.0/32"))
			k.AddLink(iptun("weft.old", "198.18.1.7", 1480, ipip.Alias))
			if kind == "LinkAdd" { // the device must be made for LinkAdd to be called
				k.DeleteLink("weft.ipip")
			}
			d := newFakeDriver(t, ipip.ModeKernel, k, nil)
			injected := fmt.Errorf("injected %s failure: %w", kind, unix.EIO)
			k.FailNext(kind, injected)
			if err := d.Apply(context.Background(), kernelWant()); !errors.Is(err, unix.EIO) {
				t.Fatalf("Apply with %s failing: %v, want the injected error", kind, err)
			}
			if err := d.Apply(context.Background(), kernelWant()); err != nil {
				t.Fatalf("Apply after the failure: %v", err)
			}
			if diff := cmp.Diff(kernelConverged, k.String()); diff != "" {
				t.Errorf("kernel after recovery (-want +got):\n%s", diff)
			}
		})
	}
}

func TestKernelApplyNoDevice(t *testing.T) {
	k := ipiptest.NewKernel(true)
	d := newFakeDriver(t, ipip.ModeKernel, k, nil)
	if err := d.Apply(context.Background(), kernelWant()); err != nil {
		t.Fatal(err)
	}
	k.AddLink(iptun("weft.x", "198.18.1.9", 1480, "")) // not marked: stays
	if diff := cmp.Diff([]string{"device weft.ipip unwanted"}, check(t, d, ipip.Want{})); diff != "" {
		t.Errorf("Check (-want +got):\n%s", diff)
	}
	if err := d.Apply(context.Background(), ipip.Want{}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("weft.x ipip local 198.18.1.9 remote any pmtudisc 1 ttl 0 mtu 1480 down", k.String()); diff != "" {
		t.Errorf("kernel (-want +got):\n%s", diff)
	}
}

func TestUserspaceApply(t *testing.T) {
	hosts := newFakeCluster(t, 2)
	x := hosts[0]
	const converged = "weft.ipip tuntap mtu 1480 up alias weft-ipip addr 10.244.1.0/32"
	if diff := cmp.Diff(converged, x.k.String()); diff != "" {
		t.Errorf("kernel after Apply (-want +got):\n%s", diff)
	}
	x.k.ResetMutations()
	if err := x.d.Apply(context.Background(), x.want); err != nil {
		t.Fatal(err)
	}
	if m := x.k.Mutations(); len(m) != 0 || x.h.Opens() != 1 {
		t.Errorf("second Apply: calls %v, opened %d times; want none, 1", m, x.h.Opens())
	}

	t.Run("tun deleted under the forwarder", func(t *testing.T) {
		x.k.DeleteLink(ipip.DefaultDevice)
		eventually(t, 10*time.Second, func() error {
			lines := check(t, x.d, x.want)
			want := []string{"device weft.ipip missing",
				"forwarder stopped: tun queue 0 closed under the forwarder: file already closed"}
			if diff := cmp.Diff(want, lines); diff != "" {
				return fmt.Errorf("Check (-want +got):\n%s", diff)
			}
			return nil
		})
		if err := x.d.Apply(context.Background(), x.want); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(converged, x.k.String()); diff != "" || x.h.Opens() != 2 {
			t.Errorf("after Apply, opened %d times (want 2); kernel (-want +got):\n%s", x.h.Opens(), diff)
		}
		pkt := packet("10.244.1.2", "10.244.2.2", 17, df, []byte("again"))
		x.h.TUN().Inject(pkt)
		receive(t, hosts[1].h.TUN().Written(), "at host 2")
	})

	t.Run("mtu drift", func(t *testing.T) {
		x.k.SetMTU(ipip.DefaultDevice, 1500)
		if diff := cmp.Diff([]string{"device weft.ipip mtu 1500, want 1480"}, check(t, x.d, x.want)); diff != "" {
			t.Errorf("Check (-want +got):\n%s", diff)
		}
		if err := x.d.Apply(context.Background(), x.want); err != nil {
			t.Fatal(err)
		}
		if x.h.Opens() != 2 {
			t.Errorf("an MTU change reopened the TUN")
		}
	})

	t.Run("new local address reopens", func(t *testing.T) {
		want := x.want
		dev := *want.Device
		dev.Local = netip.MustParseAddr("198.18.1.11")
		want.Device = &dev
		if diff := cmp.Diff([]string{"forwarder on weft.ipip local 198.18.1.1, want weft.ipip local 198.18.1.11"}, check(t, x.d, want)); diff != "" {
			t.Errorf("Check (-want +got):\n%s", diff)
		}
		if err := x.d.Apply(context.Background(), want); err != nil {
			t.Fatal(err)
		}
		if x.h.Opens() != 3 || len(check(t, x.d, want)) != 0 {
			t.Errorf("opened %d times, want 3; Check %q", x.h.Opens(), check(t, x.d, want))
		}
	})

	t.Run("open fails, then works", func(t *testing.T) {
		k := ipiptest.NewKernel(false)
		h := ipiptest.NewNet().Host(k)
		fail := true
		d := newFakeDriver(t, ipip.ModeUserspace, k, func(dev ipip.Device, queues int) (ipip.Endpoints, error) {
			if fail {
				return ipip.Endpoints{}, unix.EBUSY
			}
			return h.Open(dev, queues)
		})
		if err := d.Apply(context.Background(), x.want); !errors.Is(err, unix.EBUSY) {
			t.Errorf("Apply with open failing: %v", err)
		}
		fail = false
		if err := d.Apply(context.Background(), x.want); err != nil {
			t.Errorf("Apply after: %v", err)
		}
	})

	t.Run("no device stops and removes", func(t *testing.T) {
		if diff := cmp.Diff([]string{"forwarder running, no device wanted", "device weft.ipip unwanted"}, check(t, x.d, ipip.Want{})); diff != "" {
			t.Errorf("Check (-want +got):\n%s", diff)
		}
		if err := x.d.Apply(context.Background(), ipip.Want{}); err != nil {
			t.Fatal(err)
		}
		if got := x.k.String(); got != "" {
			t.Errorf("kernel after Apply(no device):\n%s", got)
		}
		if lines := check(t, x.d, ipip.Want{}); len(lines) != 0 {
			t.Errorf("Check: %q", lines)
		}
	})
}

func TestDetect(t *testing.T) {
	for _, c := range []struct {
		name  string
		ipip  bool
		setup func(k *ipiptest.Kernel)
		fail  string // method to fail with EPERM
		want  ipip.Mode
		err   bool
	}{
		{name: "tunl0 there", ipip: true, setup: func(k *ipiptest.Kernel) { k.AddLink(iptun("tunl0", "", 1480, "")) }, want: ipip.ModeKernel},
		{name: "can make one", ipip: true, want: ipip.ModeKernel},
		{name: "no ipip", ipip: false, want: ipip.ModeUserspace},
		{name: "refused", ipip: true, fail: "LinkAdd", err: true},
		{name: "probe left behind", ipip: true, setup: func(k *ipiptest.Kernel) { k.AddLink(iptun(ipip.ProbeDevice, "", 1480, "")) }, want: ipip.ModeKernel},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := ipiptest.NewKernel(c.ipip)
			if c.setup != nil {
				c.setup(k)
			}
			if c.fail != "" {
				k.FailNext(c.fail, unix.EPERM)
			}
			before := k.String()
			mode, err := ipip.Detect(k)
			if (err != nil) != c.err || mode != c.want {
				t.Errorf("Detect() = %q, %v; want %q, error %t", mode, err, c.want, c.err)
			}
			after := k.String()
			if c.name == "probe left behind" {
				before = "" // the leftover probe is removed
			}
			if after != before {
				t.Errorf("kernel after Detect:\n%s\nwant:\n%s", after, before)
			}
		})
	}
}

func TestNewRefuses(t *testing.T) {
	k := ipiptest.NewKernel(false)
	for _, c := range []struct {
		cfg ipip.Config
		err string
	}{
		{ipip.Config{Kernel: k}, `ipip config: Mode "": not "kernel" or "userspace"`},
		{ipip.Config{Mode: ipip.ModeKernel}, "ipip config: Kernel: nil"},
		{ipip.Config{Mode: ipip.ModeUserspace, Kernel: k, Queues: -1}, "ipip config: Queues -1: negative"},
	} {
		if _, err := ipip.New(c.cfg); err == nil || err.Error() != c.err {
			t.Errorf("New(%+v) error %v, want %q", c.cfg, err, c.err)
		}
	}
}
