package vxlan_test

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weft-net/weft/encap/vxlan"
	"github.com/weft-net/weft/encap/vxlan/vxlantest"
	"github.com/weft-net/weft/fabric"
)

// MACs of the test: this node's VTEP, two peers' VTEPs, and leftovers.
const (
	macSelf  = "0a:58:0a:f4:01:00"
	macPeer2 = "0a:58:0a:f4:02:00"
	macPeer3 = "0a:58:0a:f4:03:00"
	macOld   = "0a:58:0a:f4:01:99"
	macStale = "0a:58:0a:f4:09:09"
)

// converged is the fake after applying want() to base().
const converged = `addr 10.244.1.0/32 dev weft.vxlan
addr 198.18.1.1/24 dev eth0
fdb 0a:58:0a:f4:02:00 dev weft.vxlan dst 198.18.2.2 self permanent
fdb 0a:58:0a:f4:03:00 dev weft.vxlan dst 198.18.3.3 self permanent
link eth0 dummy mtu 1500 mac 02:00:00:00:00:01 up
link weft.vxlan vxlan vni 1 port 4789 local 198.18.1.1 dev eth0 nolearning mtu 1450 mac 0a:58:0a:f4:01:00 up
neigh 10.244.2.0 dev weft.vxlan lladdr 0a:58:0a:f4:02:00 permanent
neigh 10.244.3.0 dev weft.vxlan lladdr 0a:58:0a:f4:03:00 permanent
`

// want is the desired state of node 1 with peers 2 and 3.
func want() vxlan.Want {
	return vxlan.Want{
		Device: &fabric.VXLANDevice{
			Name:  fabric.DefaultVXLANDevice,
			VNI:   1,
			Port:  fabric.DefaultVXLANPort,
			Local: netip.MustParseAddr("198.18.1.1"),
			Dev:   "eth0",
			MAC:   mac(macSelf),
			MTU:   1450,
			Addr:  netip.MustParsePrefix("10.244.1.0/32"),
		},
		Neighbors: []fabric.Neighbor{
			{Dev: fabric.DefaultVXLANDevice, IP: netip.MustParseAddr("10.244.2.0"), MAC: mac(macPeer2)},
			{IP: netip.MustParseAddr("10.244.3.0"), MAC: mac(macPeer3)},
		},
		FDB: []fabric.FDBEntry{
			{Dev: fabric.DefaultVXLANDevice, MAC: mac(macPeer2), Dst: netip.MustParseAddr("198.18.2.2")},
			{MAC: mac(macPeer3), Dst: netip.MustParseAddr("198.18.3.3")},
		},
	}
}

// wantWith returns want() changed by edit.
func wantWith(edit func(*vxlan.Want)) vxlan.Want {
	w := want()
	edit(&w)
	return w
}

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err) // constants of the test
	}
	return m
}

func ipNet(s string) *net.IPNet {
	p := netip.MustParsePrefix(s)
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func newDriver(t *testing.T, k vxlan.Kernel) *vxlan.Driver {
	return vxlan.New(vxlan.Config{Kernel: k, Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func index(t *testing.T, k vxlan.Kernel, name string) int {
	t.Helper()
	l, err := k.LinkByName(name)
	must(t, err)
	return l.Attrs().Index
}

// setup brings a fake kernel to a starting state.
type setup func(t *testing.T, k *vxlantest.Kernel)

// base is a fresh fake with the underlay device eth0 and its address.
func base(t *testing.T) *vxlantest.Kernel {
	k := vxlantest.New()
	must(t, k.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth0", Flags: net.FlagUp}}))
	eth0, err := k.LinkByName("eth0")
	must(t, err)
	must(t, k.AddrReplace(eth0, &netlink.Addr{IPNet: ipNet("198.18.1.1/24")}))
	return k
}

// applied is the state a driver leaves after applying w.
func applied(w vxlan.Want) setup {
	return func(t *testing.T, k *vxlantest.Kernel) {
		must(t, vxlan.New(vxlan.Config{Kernel: k}).Apply(context.Background(), w))
	}
}

// then runs the setups in order.
func then(steps ...setup) setup {
	return func(t *testing.T, k *vxlantest.Kernel) {
		for _, s := range steps {
			s(t, k)
		}
	}
}

func neighSet(ip, lladdr string, state int) func(t *testing.T, k *vxlantest.Kernel, link int) {
	return func(t *testing.T, k *vxlantest.Kernel, link int) {
		must(t, k.NeighSet(&netlink.Neigh{LinkIndex: link, State: state, IP: net.ParseIP(ip), HardwareAddr: mac(lladdr)}))
	}
}

func fdbSet(lladdr, dst string, state int) func(t *testing.T, k *vxlantest.Kernel, link int) {
	return func(t *testing.T, k *vxlantest.Kernel, link int) {
		must(t, k.NeighSet(&netlink.Neigh{LinkIndex: link, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
			State: state, IP: net.ParseIP(dst), HardwareAddr: mac(lladdr)}))
	}
}

// on applies entry setters to the link called name.
func on(name string, entries ...func(*testing.T, *vxlantest.Kernel, int)) setup {
	return func(t *testing.T, k *vxlantest.Kernel) {
		idx := index(t, k, name)
		for _, e := range entries {
			e(t, k, idx)
		}
	}
}

// foreign adds what is not weft's: a flannel device with permanent entries.
func foreign(t *testing.T, k *vxlantest.Kernel) {
	must(t, k.LinkAdd(&netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: "flannel.1", MTU: 1450, HardwareAddr: mac("0a:58:0a:f5:00:01"), Flags: net.FlagUp},
		VxlanId:   1, Port: 8472, VtepDevIndex: index(t, k, "eth0"),
	}))
	on("flannel.1",
		neighSet("10.245.2.0", "0a:58:0a:f5:02:00", netlink.NUD_PERMANENT),
		fdbSet("0a:58:0a:f5:02:00", "198.18.2.2", netlink.NUD_PERMANENT),
	)(t, k)
}

// messy is a kernel where weft.vxlan is off in every way that can be
// fixed in place, with foreign links and entries around it.
func messy(t *testing.T, k *vxlantest.Kernel) {
	foreign(t, k)
	must(t, k.LinkAdd(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "weft.other"}, VxlanId: 7, Port: 4790}))
	must(t, k.LinkAdd(&netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: "weft.vxlan", MTU: 1500, HardwareAddr: mac(macOld)},
		VxlanId:   1, Port: 4789, SrcAddr: net.ParseIP("198.18.1.1"), VtepDevIndex: index(t, k, "eth0"),
	}))
	dev, err := k.LinkByName("weft.vxlan")
	must(t, err)
	must(t, k.AddrReplace(dev, &netlink.Addr{IPNet: ipNet("10.1.1.1/24")}))
	on("weft.vxlan",
		neighSet("10.244.2.0", macStale, netlink.NUD_PERMANENT),
		neighSet("10.244.9.0", macStale, netlink.NUD_PERMANENT),
		neighSet("10.244.8.0", "0a:58:0a:f4:08:08", netlink.NUD_REACHABLE),
		neighSet("fd00::9", macStale, netlink.NUD_PERMANENT),
		fdbSet(macPeer2, "198.18.9.2", netlink.NUD_PERMANENT),
		fdbSet(macStale, "198.18.9.9", netlink.NUD_PERMANENT),
		fdbSet("00:00:00:00:00:00", "198.18.9.9", netlink.NUD_PERMANENT),
		fdbSet("0a:58:0a:f4:07:07", "198.18.7.7", netlink.NUD_REACHABLE),
		fdbSet(macOld, "", netlink.NUD_PERMANENT), // no destination: the device's own
	)(t, k)
}

// messyConverged is the fake after applying want() to messy: the foreign
// and non-permanent objects are still there.
const messyConverged = `addr 10.244.1.0/32 dev weft.vxlan
addr 198.18.1.1/24 dev eth0
fdb 0a:58:0a:f4:01:99 dev weft.vxlan self permanent
fdb 0a:58:0a:f4:02:00 dev weft.vxlan dst 198.18.2.2 self permanent
fdb 0a:58:0a:f4:03:00 dev weft.vxlan dst 198.18.3.3 self permanent
fdb 0a:58:0a:f4:07:07 dev weft.vxlan dst 198.18.7.7 self reachable
fdb 0a:58:0a:f5:02:00 dev flannel.1 dst 198.18.2.2 self permanent
link eth0 dummy mtu 1500 mac 02:00:00:00:00:01 up
link flannel.1 vxlan vni 1 port 8472 dev eth0 nolearning mtu 1450 mac 0a:58:0a:f5:00:01 up
link weft.other vxlan vni 7 port 4790 nolearning mtu 1450 mac 02:00:00:00:00:03 down
link weft.vxlan vxlan vni 1 port 4789 local 198.18.1.1 dev eth0 nolearning mtu 1450 mac 0a:58:0a:f4:01:00 up
neigh 10.244.2.0 dev weft.vxlan lladdr 0a:58:0a:f4:02:00 permanent
neigh 10.244.3.0 dev weft.vxlan lladdr 0a:58:0a:f4:03:00 permanent
neigh 10.244.8.0 dev weft.vxlan lladdr 0a:58:0a:f4:08:08 reachable
neigh 10.245.2.0 dev flannel.1 lladdr 0a:58:0a:f5:02:00 permanent
`

// messyDiffs are the differences between messy and want().
func messyDiffs() []string {
	return []string{
		"device weft.vxlan mtu 1500, want 1450",
		"device weft.vxlan mac 0a:58:0a:f4:01:99, want 0a:58:0a:f4:01:00",
		"device weft.vxlan down, want up",
		"addr 10.244.1.0/32 missing",
		"addr 10.1.1.1/24 unwanted",
		"neigh 10.244.2.0 lladdr 0a:58:0a:f4:09:09 permanent, want lladdr 0a:58:0a:f4:02:00 permanent",
		"neigh 10.244.3.0 lladdr 0a:58:0a:f4:03:00 missing",
		"neigh 10.244.9.0 lladdr 0a:58:0a:f4:09:09 unwanted",
		"neigh fd00::9 lladdr 0a:58:0a:f4:09:09 unwanted",
		"fdb 0a:58:0a:f4:02:00 dst 198.18.9.2 permanent, want dst 198.18.2.2 permanent",
		"fdb 0a:58:0a:f4:03:00 dst 198.18.3.3 missing",
		"fdb 00:00:00:00:00:00 dst 198.18.9.9 unwanted",
		"fdb 0a:58:0a:f4:09:09 dst 198.18.9.9 unwanted",
	}
}

// emptyDiffs are the differences between base and want().
func emptyDiffs() []string {
	return []string{
		"device weft.vxlan missing",
		"addr 10.244.1.0/32 missing",
		"neigh 10.244.2.0 lladdr 0a:58:0a:f4:02:00 missing",
		"neigh 10.244.3.0 lladdr 0a:58:0a:f4:03:00 missing",
		"fdb 0a:58:0a:f4:02:00 dst 198.18.2.2 missing",
		"fdb 0a:58:0a:f4:03:00 dst 198.18.3.3 missing",
	}
}

// withWeftDevices adds weft.vxlan (converged), a leftover weft.old and a
// weft.* link that is not VXLAN, next to the foreign ones.
func withWeftDevices(t *testing.T, k *vxlantest.Kernel) {
	then(applied(want()), foreign)(t, k)
	must(t, k.LinkAdd(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "weft.old"}, VxlanId: 9, Port: 4789}))
	must(t, k.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "weft.veth"}}))
}
