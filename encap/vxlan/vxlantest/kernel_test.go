package vxlantest

import (
	"errors"
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestKernel(t *testing.T) {
	up := net.FlagUp
	eth0 := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth0", Flags: up}}
	vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vx", Index: 2}, VxlanId: 5, Port: 4789, VtepDevIndex: 1, Learning: true}
	mac := func(s string) net.HardwareAddr {
		m, err := net.ParseMAC(s)
		if err != nil {
			panic(err) // constants of the test
		}
		return m
	}
	fdb := func(m, dst string) *netlink.Neigh {
		return &netlink.Neigh{LinkIndex: 2, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT, IP: net.ParseIP(dst), HardwareAddr: mac(m)}
	}
	tests := []struct {
		name    string
		ops     func(k *Kernel) error // stops at the first error
		wantErr error
		want    string
	}{
		{
			name: "unicast fdb mac has one destination",
			ops: func(k *Kernel) error {
				return errors.Join(k.LinkAdd(eth0), k.LinkAdd(vx), k.NeighSet(fdb("0a:00:00:00:00:01", "198.18.0.1")), k.NeighSet(fdb("0a:00:00:00:00:01", "198.18.0.2")))
			},
			want: `fdb 0a:00:00:00:00:01 dev vx dst 198.18.0.2 self permanent
link eth0 dummy mtu 1500 mac 02:00:00:00:00:01 up
link vx vxlan vni 5 port 4789 dev eth0 mtu 1450 mac 02:00:00:00:00:02 down
`,
		},
		{
			name: "all-zeros fdb mac has one entry per destination",
			ops: func(k *Kernel) error {
				return errors.Join(k.LinkAdd(eth0), k.LinkAdd(vx), k.NeighSet(fdb("00:00:00:00:00:00", "198.18.0.1")), k.NeighSet(fdb("00:00:00:00:00:00", "198.18.0.2")))
			},
			want: `fdb 00:00:00:00:00:00 dev vx dst 198.18.0.1 self permanent
fdb 00:00:00:00:00:00 dev vx dst 198.18.0.2 self permanent
link eth0 dummy mtu 1500 mac 02:00:00:00:00:01 up
link vx vxlan vni 5 port 4789 dev eth0 mtu 1450 mac 02:00:00:00:00:02 down
`,
		},
		{
			name: "deleting the underlay deletes the vxlan device and its entries",
			ops: func(k *Kernel) error {
				return errors.Join(k.LinkAdd(eth0), k.LinkAdd(vx), k.NeighSet(fdb("0a:00:00:00:00:01", "198.18.0.1")),
					k.NeighSet(&netlink.Neigh{LinkIndex: 2, State: netlink.NUD_PERMANENT, IP: net.ParseIP("10.0.0.1"), HardwareAddr: mac("0a:00:00:00:00:01")}),
					k.AddrReplace(vx, &netlink.Addr{IPNet: &net.IPNet{IP: net.IP{10, 0, 0, 2}, Mask: net.CIDRMask(32, 32)}}),
					k.LinkDel(eth0))
			},
			want: "\n",
		},
		{
			name:    "taken name",
			ops:     func(k *Kernel) error { return errors.Join(k.LinkAdd(eth0), k.LinkAdd(eth0)) },
			wantErr: unix.EEXIST,
			want:    "link eth0 dummy mtu 1500 mac 02:00:00:00:00:01 up\n",
		},
		{
			name:    "missing link",
			ops:     func(k *Kernel) error { _, err := k.LinkByName("eth0"); return err },
			wantErr: unix.ENODEV,
			want:    "\n",
		},
		{
			name: "missing fdb entry",
			ops: func(k *Kernel) error {
				return errors.Join(k.LinkAdd(eth0), k.LinkAdd(vx), k.NeighDel(fdb("0a:00:00:00:00:01", "198.18.0.1")))
			},
			wantErr: unix.ENOENT,
			want: `link eth0 dummy mtu 1500 mac 02:00:00:00:00:01 up
link vx vxlan vni 5 port 4789 dev eth0 mtu 1450 mac 02:00:00:00:00:02 down
`,
		},
		{
			name: "missing address",
			ops: func(k *Kernel) error {
				return errors.Join(k.LinkAdd(eth0), k.AddrDel(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: net.IP{10, 0, 0, 2}, Mask: net.CIDRMask(32, 32)}}))
			},
			wantErr: unix.EADDRNOTAVAIL,
			want:    "link eth0 dummy mtu 1500 mac 02:00:00:00:00:01 up\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := New()
			if err := tt.ops(k); !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Errorf("ops = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, k.String()); diff != "" {
				t.Errorf("kernel (-want +got):\n%s", diff)
			}
		})
	}
}

func TestKernelFailNext(t *testing.T) {
	injected := errors.New("injected")
	k := New()
	k.FailNext("LinkAdd", injected)
	eth0 := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}}
	got := []error{k.LinkAdd(eth0), k.LinkAdd(eth0)}
	if !errors.Is(got[0], injected) || got[1] != nil {
		t.Errorf("LinkAdd twice after FailNext = %v, want the injected error then nil", got)
	}
	if _, err := k.LinkByName("eth0"); err != nil {
		t.Errorf("LinkByName after the retry: %v", err)
	}
	if diff := cmp.Diff(map[string]int{"LinkAdd": 2}, k.Mutations()); diff != "" {
		t.Errorf("Mutations (-want +got):\n%s", diff)
	}
	defer func() {
		if recover() == nil {
			t.Errorf("FailNext with an unknown method did not panic")
		}
	}()
	k.FailNext("RouteAdd", injected)
}
