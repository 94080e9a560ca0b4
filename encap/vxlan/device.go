package vxlan

import (
	"bytes"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weft-net/weft/fabric"
)

// device makes the VXLAN device match want and returns it: nil when it is
// missing and this is a Check. ok is false when there is no device to work
// on because a read or a change failed.
func (s *session) device(want *fabric.VXLANDevice) (link netlink.Link, ok bool) {
	under := 0
	if want.Dev != "" {
		l, err := s.k.LinkByName(want.Dev)
		if err != nil {
			s.fail(fmt.Errorf("look up underlay device %s of %s: %w", want.Dev, want.Name, err))
			return nil, false
		}
		under = l.Attrs().Index
	}
	spec := deviceSpec(want, under)
	cur, ok := s.lookup(want.Name)
	if !ok {
		return nil, false
	}
	create := func() (netlink.Link, bool) {
		if !s.change("add vxlan device "+want.Name, func() error { return s.k.LinkAdd(spec) }) {
			return nil, false
		}
		cur, ok := s.lookup(want.Name)
		if ok && cur == nil {
			s.fail(fmt.Errorf("look up vxlan device %s after adding it: %w", want.Name, unix.ENODEV))
			return nil, false
		}
		return cur, ok
	}
	switch vx, isVXLAN := cur.(*netlink.Vxlan); {
	case cur == nil:
		s.diffs = append(s.diffs, "device "+want.Name+" missing")
		if !s.apply {
			return nil, true
		}
		if cur, ok = create(); !ok {
			return nil, false
		}
		s.log.Info("vxlan device created", "link", want.Name, "vni", want.VNI)
	case !isVXLAN:
		// Someone else's link has our name: refuse rather than delete it.
		s.fail(fmt.Errorf("link %s is of type %s, not vxlan: leaving it alone", want.Name, cur.Type()))
		return nil, false
	default:
		lines := fixedDiffs(vx, spec, want.Dev)
		if len(lines) == 0 {
			break
		}
		// These attributes cannot be changed in place. A failed delete
		// leaves the old device, which still gets the rest.
		if !s.change("delete vxlan device "+want.Name+" to recreate it", func() error { return s.k.LinkDel(vx) }, lines...) {
			break
		}
		if cur, ok = create(); !ok {
			return nil, false
		}
		s.log.Info("vxlan device recreated", "link", want.Name, "reason", strings.Join(lines, "; "))
	}
	s.adjust(cur, want)
	return cur, true
}

// adjust changes in place the device attributes that allow it.
func (s *session) adjust(cur netlink.Link, want *fabric.VXLANDevice) {
	a := cur.Attrs()
	if want.MTU != 0 && a.MTU != want.MTU {
		s.change(fmt.Sprintf("set mtu %d on %s", want.MTU, want.Name),
			func() error { return s.k.LinkSetMTU(cur, want.MTU) },
			fmt.Sprintf("device %s mtu %d, want %d", want.Name, a.MTU, want.MTU))
	}
	if want.MAC != nil && !bytes.Equal(a.HardwareAddr, want.MAC) {
		s.change(fmt.Sprintf("set mac %s on %s", want.MAC, want.Name),
			func() error { return s.k.LinkSetHardwareAddr(cur, slices.Clone(want.MAC)) },
			fmt.Sprintf("device %s mac %s, want %s", want.Name, a.HardwareAddr, want.MAC))
	}
	if a.Flags&net.FlagUp == 0 {
		s.change("set "+want.Name+" up",
			func() error { return s.k.LinkSetUp(cur) },
			fmt.Sprintf("device %s down, want up", want.Name))
	}
}

// deviceSpec is the device to create for want, on the underlay device
// with index under (0: none).
func deviceSpec(want *fabric.VXLANDevice, under int) *netlink.Vxlan {
	v := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{
			Name:         want.Name,
			MTU:          want.MTU,
			HardwareAddr: slices.Clone(want.MAC),
			Flags:        net.FlagUp,
		},
		VxlanId:      want.VNI,
		VtepDevIndex: under,
		Port:         want.Port,
		// Learning off: every peer is configured by FDB and neighbour
		// entries, and a learnt entry could send a peer's traffic to a
		// stale or forged source.
		Learning: false,
	}
	if want.Local.IsValid() {
		v.SrcAddr = net.IP(want.Local.AsSlice())
	}
	return v
}

// fixedDiffs describes each attribute of cur, which cannot be changed in
// place, that differs from spec. underName names spec's underlay device.
func fixedDiffs(cur, spec *netlink.Vxlan, underName string) []string {
	var lines []string
	diff := func(attr string, have, want any) {
		lines = append(lines, fmt.Sprintf("device %s %s %v, want %v", spec.Name, attr, have, want))
	}
	if cur.VxlanId != spec.VxlanId {
		diff("vni", cur.VxlanId, spec.VxlanId)
	}
	if cur.Port != spec.Port {
		diff("port", cur.Port, spec.Port)
	}
	if have, want := ipString(cur.SrcAddr), ipString(spec.SrcAddr); have != want {
		diff("local", have, want)
	}
	if cur.VtepDevIndex != spec.VtepDevIndex {
		want := "none"
		if spec.VtepDevIndex != 0 {
			want = fmt.Sprintf("%d (%s)", spec.VtepDevIndex, underName)
		}
		diff("underlay ifindex", cur.VtepDevIndex, want)
	}
	if cur.Learning != spec.Learning {
		diff("learning", cur.Learning, spec.Learning)
	}
	if have := ipString(cur.Group); have != "none" {
		diff("group", have, "none")
	}
	if cur.FlowBased {
		diff("external", true, false)
	}
	return lines
}
