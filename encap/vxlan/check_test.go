package vxlan_test

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-net/weft/encap/vxlan"
	"github.com/weft-net/weft/fabric"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name  string
		setup setup
		want  vxlan.Want
		// wantDiffs are exactly the differences, in the order Apply
		// handles them.
		wantDiffs []string
	}{
		{"converged", applied(want()), want(), nil},
		{"empty", then(), want(), emptyDiffs()},
		{"messy", messy, want(), messyDiffs()},
		{
			// Entries are compared with the device as it is, even
			// though Apply would recreate it.
			name:  "recreate",
			setup: applied(wantWith(func(w *vxlan.Want) { w.Device.VNI, w.Device.Local, w.Device.Dev = 2, netip.Addr{}, "" })),
			want:  want(),
			wantDiffs: []string{
				"device weft.vxlan vni 2, want 1",
				"device weft.vxlan local none, want 198.18.1.1",
				"device weft.vxlan underlay ifindex 0, want 1 (eth0)",
			},
		},
		{
			name:  "not permanent",
			setup: then(applied(want()), on("weft.vxlan", neighSet("10.244.2.0", macPeer2, 0x02), fdbSet(macPeer3, "198.18.3.3", 0x02))),
			want:  want(),
			wantDiffs: []string{
				"neigh 10.244.2.0 lladdr 0a:58:0a:f4:02:00 reachable, want lladdr 0a:58:0a:f4:02:00 permanent",
				"fdb 0a:58:0a:f4:03:00 dst 198.18.3.3 reachable, want dst 198.18.3.3 permanent",
			},
		},
		{"no device", withWeftDevices, vxlan.Want{}, []string{"device weft.old unwanted", "device weft.vxlan unwanted"}},
		{"no device, none there", messy, wantWith(func(w *vxlan.Want) { *w = vxlan.Want{} }), []string{"device weft.other unwanted", "device weft.vxlan unwanted"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := base(t)
			tt.setup(t, k)
			k.ResetMutations()
			before := k.String()
			got, err := newDriver(t, k).Check(context.Background(), tt.want)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if diff := cmp.Diff(tt.wantDiffs, got); diff != "" {
				t.Errorf("Check (-want +got):\n%s", diff)
			}
			if n := k.MutationCount(); n != 0 {
				t.Errorf("Check made %d mutating calls %v, want 0", n, k.Mutations())
			}
			if diff := cmp.Diff(before, k.String()); diff != "" {
				t.Errorf("Check changed the kernel (-before +after):\n%s", diff)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		want    vxlan.Want
		wantErr string
	}{
		{"ok", want(), ""},
		{"ok without device", vxlan.Want{}, ""},
		{"ok minimal device", vxlan.Want{Device: &fabric.VXLANDevice{Name: "weft.v", VNI: 1, Port: 4789}}, ""},
		{"ok duplicate entries", wantWith(func(w *vxlan.Want) {
			w.Neighbors = append(w.Neighbors, w.Neighbors[0])
			w.FDB = append(w.FDB, w.FDB[0])
		}), ""},
		{"entries without device", wantWith(func(w *vxlan.Want) { w.Device = nil }), "vxlan want: Neighbors: 2 entries but no Device"},
		{"fdb without device", vxlan.Want{FDB: want().FDB}, "vxlan want: FDB: 2 entries but no Device"},
		{"empty name", wantWith(func(w *vxlan.Want) { w.Device.Name = "" }), `vxlan want: Device.Name "": empty`},
		{"long name", wantWith(func(w *vxlan.Want) { w.Device.Name = "weft.0123456789a" }), `vxlan want: Device.Name "weft.0123456789a": longer than 15 bytes`},
		{"name with slash", wantWith(func(w *vxlan.Want) { w.Device.Name = "weft/x" }), `vxlan want: Device.Name "weft/x": contains '/'`},
		{"underlay name", wantWith(func(w *vxlan.Want) { w.Device.Dev = "eth 0" }), `vxlan want: Device.Dev "eth 0": contains ' '`},
		{"vni 0", wantWith(func(w *vxlan.Want) { w.Device.VNI = 0 }), "vxlan want: Device.VNI 0: outside 1..16777215"},
		{"vni too big", wantWith(func(w *vxlan.Want) { w.Device.VNI = 1 << 24 }), "vxlan want: Device.VNI 16777216: outside 1..16777215"},
		{"port 0", wantWith(func(w *vxlan.Want) { w.Device.Port = 0 }), "vxlan want: Device.Port 0: outside 1..65535"},
		{"local unspecified", wantWith(func(w *vxlan.Want) { w.Device.Local = netip.IPv4Unspecified() }), "vxlan want: Device.Local 0.0.0.0: not a unicast address without zone"},
		{"mtu", wantWith(func(w *vxlan.Want) { w.Device.MTU = 10 }), "vxlan want: Device.MTU 10: outside 68..65535"},
		{"mac multicast", wantWith(func(w *vxlan.Want) { w.Device.MAC = mac("01:00:5e:00:00:01") }), "vxlan want: Device.MAC 01:00:5e:00:00:01: multicast"},
		{"mac short", wantWith(func(w *vxlan.Want) { w.Device.MAC = net.HardwareAddr{1} }), "vxlan want: Device.MAC 01: not a 6-byte MAC"},
		{"addr not single", wantWith(func(w *vxlan.Want) { w.Device.Addr = netip.MustParsePrefix("10.244.1.0/24") }), "vxlan want: Device.Addr 10.244.1.0/24: not a single address (/32 or /128)"},
		{"neighbour dev", wantWith(func(w *vxlan.Want) { w.Neighbors[1].Dev = "flannel.1" }), `vxlan want: Neighbors[1].Dev "flannel.1": not Device.Name "weft.vxlan"`},
		{"neighbour ip", wantWith(func(w *vxlan.Want) { w.Neighbors[0].IP = netip.Addr{} }), "vxlan want: Neighbors[0].IP invalid IP: not a unicast address without zone"},
		{"neighbour mac", wantWith(func(w *vxlan.Want) { w.Neighbors[0].MAC = nil }), `vxlan want: Neighbors[0].MAC "": not a 6-byte MAC`},
		{"neighbour conflict", wantWith(func(w *vxlan.Want) { w.Neighbors[1].IP = w.Neighbors[0].IP }), "vxlan want: Neighbors[1]: IP 10.244.2.0 has MACs 0a:58:0a:f4:02:00 and 0a:58:0a:f4:03:00"},
		{"fdb dev", wantWith(func(w *vxlan.Want) { w.FDB[0].Dev = "eth0" }), `vxlan want: FDB[0].Dev "eth0": not Device.Name "weft.vxlan"`},
		{"fdb dst", wantWith(func(w *vxlan.Want) { w.FDB[1].Dst = netip.IPv6Unspecified() }), "vxlan want: FDB[1].Dst ::: not a unicast address without zone"},
		{"fdb mac zero", wantWith(func(w *vxlan.Want) { w.FDB[0].MAC = make(net.HardwareAddr, 6) }), "vxlan want: FDB[0].MAC 00:00:00:00:00:00: all zeros"},
		{"fdb conflict", wantWith(func(w *vxlan.Want) { w.FDB[1].MAC = w.FDB[0].MAC }), "vxlan want: FDB[1]: MAC 0a:58:0a:f4:02:00 has destinations 198.18.2.2 and 198.18.3.3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.want.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if diff := cmp.Diff(tt.wantErr, got); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
			if err == nil {
				return
			}
			// An invalid want changes nothing.
			k := base(t)
			messy(t, k)
			k.ResetMutations()
			before := k.String()
			d := newDriver(t, k)
			if err := d.Apply(context.Background(), tt.want); err == nil {
				t.Errorf("Apply accepted an invalid want")
			}
			if _, err := d.Check(context.Background(), tt.want); err == nil {
				t.Errorf("Check accepted an invalid want")
			}
			if diff := cmp.Diff(before, k.String()); diff != "" {
				t.Errorf("Apply with an invalid want changed the kernel (-before +after):\n%s", diff)
			}
		})
	}
}
