package vxlan_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weft-net/weft/encap/vxlan"
	"github.com/weft-net/weft/encap/vxlan/vxlantest"
)

func TestApply(t *testing.T) {
	tests := []struct {
		name  string
		setup setup
		want  vxlan.Want
		// wantKernel is the fake rendered after Apply.
		wantKernel string
		// wantMutations counts the mutating calls Apply made.
		wantMutations map[string]int
	}{
		{
			name:       "from empty",
			setup:      then(),
			want:       want(),
			wantKernel: converged,
			// The device is created with its MTU, MAC and up flag.
			wantMutations: map[string]int{"LinkAdd": 1, "AddrReplace": 1, "NeighSet": 4},
		},
		{
			name:       "from messy: foreign objects survive, stale weft entries go",
			setup:      messy,
			want:       want(),
			wantKernel: messyConverged,
			wantMutations: map[string]int{
				"LinkSetMTU": 1, "LinkSetHardwareAddr": 1, "LinkSetUp": 1,
				"AddrReplace": 1, "AddrDel": 1, "NeighSet": 4, "NeighDel": 4,
			},
		},
		{
			name:          "already converged",
			setup:         applied(want()),
			want:          want(),
			wantKernel:    converged,
			wantMutations: map[string]int{},
		},
		{
			name:          "vni changed: recreated",
			setup:         applied(wantWith(func(w *vxlan.Want) { w.Device.VNI = 2 })),
			want:          want(),
			wantKernel:    converged,
			wantMutations: map[string]int{"LinkDel": 1, "LinkAdd": 1, "AddrReplace": 1, "NeighSet": 4},
		},
		{
			name:          "port changed: recreated",
			setup:         applied(wantWith(func(w *vxlan.Want) { w.Device.Port = 8472 })),
			want:          want(),
			wantKernel:    converged,
			wantMutations: map[string]int{"LinkDel": 1, "LinkAdd": 1, "AddrReplace": 1, "NeighSet": 4},
		},
		{
			name:          "mtu changed: in place",
			setup:         applied(wantWith(func(w *vxlan.Want) { w.Device.MTU = 1400 })),
			want:          want(),
			wantKernel:    converged,
			wantMutations: map[string]int{"LinkSetMTU": 1},
		},
		{
			name:          "address changed: replaced",
			setup:         applied(wantWith(func(w *vxlan.Want) { w.Device.Addr = netip.PrefixFrom(w.Device.Addr.Addr().Next(), 32) })),
			want:          want(),
			wantKernel:    converged,
			wantMutations: map[string]int{"AddrReplace": 1, "AddrDel": 1},
		},
		{
			name:  "peer gone: its entries go",
			setup: applied(want()),
			want: wantWith(func(w *vxlan.Want) {
				w.Neighbors, w.FDB = w.Neighbors[:1], w.FDB[:1]
			}),
			wantKernel: `addr 10.244.1.0/32 dev weft.vxlan
addr 198.18.1.1/24 dev eth0
fdb 0a:58:0a:f4:02:00 dev weft.vxlan dst 198.18.2.2 self permanent
link eth0 dummy mtu 1500 mac 02:00:00:00:00:01 up
link weft.vxlan vxlan vni 1 port 4789 local 198.18.1.1 dev eth0 nolearning mtu 1450 mac 0a:58:0a:f4:01:00 up
neigh 10.244.2.0 dev weft.vxlan lladdr 0a:58:0a:f4:02:00 permanent
`,
			wantMutations: map[string]int{"NeighDel": 2},
		},
		{
			name:  "no device: weft's vxlan devices go, other links stay",
			setup: withWeftDevices,
			want:  vxlan.Want{},
			wantKernel: `addr 198.18.1.1/24 dev eth0
fdb 0a:58:0a:f5:02:00 dev flannel.1 dst 198.18.2.2 self permanent
link eth0 dummy mtu 1500 mac 02:00:00:00:00:01 up
link flannel.1 vxlan vni 1 port 8472 dev eth0 nolearning mtu 1450 mac 0a:58:0a:f5:00:01 up
link weft.veth veth mtu 1500 mac 02:00:00:00:00:05 down
neigh 10.245.2.0 dev flannel.1 lladdr 0a:58:0a:f5:02:00 permanent
`,
			wantMutations: map[string]int{"LinkDel": 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			k := base(t)
			tt.setup(t, k)
			k.ResetMutations()
			d := newDriver(t, k)
			if err := d.Apply(ctx, tt.want); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if diff := cmp.Diff(tt.wantKernel, k.String()); diff != "" {
				t.Errorf("kernel after Apply (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantMutations, k.Mutations()); diff != "" {
				t.Errorf("mutating calls of Apply (-want +got):\n%s", diff)
			}

			k.ResetMutations()
			if err := d.Apply(ctx, tt.want); err != nil {
				t.Fatalf("second Apply: %v", err)
			}
			if n := k.MutationCount(); n != 0 {
				t.Errorf("second Apply made %d mutating calls %v, want 0", n, k.Mutations())
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

func TestApplyFailureThenRecovery(t *testing.T) {
	errInjected := errors.New("injected")
	// fdbDrift is converged but for one FDB entry deleted by hand.
	fdbDrift := then(applied(want()), on("weft.vxlan", func(t *testing.T, k *vxlantest.Kernel, link int) {
		must(t, k.NeighDel(&netlink.Neigh{LinkIndex: link, Family: unix.AF_BRIDGE, IP: want().FDB[1].Dst.AsSlice(), HardwareAddr: mac(macPeer3)}))
	}))
	// fdbStale is converged plus a stale FDB entry.
	fdbStale := then(applied(want()), on("weft.vxlan", fdbSet(macStale, "198.18.9.9", netlink.NUD_PERMANENT)))
	vniChanged := applied(wantWith(func(w *vxlan.Want) { w.Device.VNI = 2 }))
	tests := []struct {
		name  string
		setup setup
		want  vxlan.Want
		fail  string // the Kernel method whose next call fails
		// wantDiffs is what Check reports after the failed Apply: the
		// failed change and what depends on it, nothing else.
		wantDiffs []string
	}{
		{"underlay lookup", then(), want(), "LinkByName", emptyDiffs()},
		{"create", then(), want(), "LinkAdd", emptyDiffs()},
		{"delete to recreate", vniChanged, want(), "LinkDel", []string{"device weft.vxlan vni 2, want 1"}},
		{"create after delete", vniChanged, want(), "LinkAdd", emptyDiffs()},
		{"set mtu", messy, want(), "LinkSetMTU", messyDiffs()[0:1]},
		{"set mac", messy, want(), "LinkSetHardwareAddr", messyDiffs()[1:2]},
		{"set up", messy, want(), "LinkSetUp", messyDiffs()[2:3]},
		{"list addresses", messy, want(), "AddrList", messyDiffs()[3:5]},
		{"add address", messy, want(), "AddrReplace", messyDiffs()[3:4]},
		{"delete address", messy, want(), "AddrDel", messyDiffs()[4:5]},
		{"list neighbours", messy, want(), "NeighList", messyDiffs()[5:9]},
		{"set neighbour", messy, want(), "NeighSet", messyDiffs()[5:6]},
		{"delete neighbour", messy, want(), "NeighDel", messyDiffs()[7:8]},
		{"set fdb", fdbDrift, want(), "NeighSet", []string{"fdb 0a:58:0a:f4:03:00 dst 198.18.3.3 missing"}},
		{"delete fdb", fdbStale, want(), "NeighDel", []string{"fdb 0a:58:0a:f4:09:09 dst 198.18.9.9 unwanted"}},
		{"list links", withWeftDevices, vxlan.Want{}, "LinkList", []string{"device weft.old unwanted", "device weft.vxlan unwanted"}},
		{"delete device", withWeftDevices, vxlan.Want{}, "LinkDel", []string{"device weft.old unwanted"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			// The same start applied without failure gives the state
			// to recover to.
			clean := base(t)
			tt.setup(t, clean)
			must(t, newDriver(t, clean).Apply(ctx, tt.want))

			k := base(t)
			tt.setup(t, k)
			d := newDriver(t, k)
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
			k.ResetMutations()
			must(t, d.Apply(ctx, tt.want))
			if n := k.MutationCount(); n != 0 {
				t.Errorf("Apply after recovery made %d mutating calls %v, want 0", n, k.Mutations())
			}
		})
	}
}

func TestApplyStopsWhenCancelled(t *testing.T) {
	k := base(t)
	messy(t, k)
	k.ResetMutations()
	before := k.String()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := newDriver(t, k).Apply(ctx, want()); !errors.Is(err, context.Canceled) {
		t.Errorf("Apply with a cancelled context = %v, want context.Canceled", err)
	}
	if n := k.MutationCount(); n != 0 {
		t.Errorf("Apply with a cancelled context made %d mutating calls, want 0", n)
	}
	if diff := cmp.Diff(before, k.String()); diff != "" {
		t.Errorf("kernel changed (-before +after):\n%s", diff)
	}
}

func TestApplyRefuses(t *testing.T) {
	tests := []struct {
		name  string
		setup setup
		want  vxlan.Want
		// wantErr is what the error wraps; nil: any error.
		wantErr error
	}{
		{
			name: "our name taken by a link that is not vxlan",
			setup: func(t *testing.T, k *vxlantest.Kernel) {
				must(t, k.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "weft.vxlan"}}))
			},
			want: want(),
		},
		{
			name:    "underlay device missing",
			setup:   then(),
			want:    wantWith(func(w *vxlan.Want) { w.Device.Dev = "eth1" }),
			wantErr: unix.ENODEV,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := base(t)
			tt.setup(t, k)
			k.ResetMutations()
			before := k.String()
			err := newDriver(t, k).Apply(context.Background(), tt.want)
			if err == nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Apply = %v, want an error wrapping %v", err, tt.wantErr)
			}
			t.Logf("Apply: %v", err)
			if n := k.MutationCount(); n != 0 {
				t.Errorf("Apply made %d mutating calls %v, want 0", n, k.Mutations())
			}
			if diff := cmp.Diff(before, k.String()); diff != "" {
				t.Errorf("kernel changed (-before +after):\n%s", diff)
			}
		})
	}
}
