package vxlan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weft-net/weft/fabric"
)

// session is one Apply or Check: it reads the kernel back, records every
// difference with want and, when applying, makes the call that removes it.
type session struct {
	ctx     context.Context
	k       Kernel
	log     *slog.Logger
	apply   bool     // false: record the differences only (Check)
	diffs   []string // every difference found, in the order handled
	errs    []error  // every read or change that failed
	stopped bool     // ctx was done: make no more changes
}

// run compares the whole of want with the kernel.
func (s *session) run(want Want) {
	if err := s.ctx.Err(); err != nil {
		s.fail(fmt.Errorf("vxlan: %w", err))
		return
	}
	if want.Device == nil {
		s.removeDevices()
		return
	}
	link, ok := s.device(want.Device)
	if !ok {
		// No device to work on (a read or the create failed): the
		// entries cannot be compared or applied.
		return
	}
	s.addresses(link, want.Device)
	s.neighbors(link, want)
	s.fdb(link, want)
}

// change records a difference, described by lines, and when applying makes
// the call do, described by op (for its error and the log). It reports
// whether do ran and succeeded.
func (s *session) change(op string, do func() error, lines ...string) bool {
	s.diffs = append(s.diffs, lines...)
	if !s.apply || s.stopped {
		return false
	}
	if err := s.ctx.Err(); err != nil {
		s.stopped = true
		s.fail(fmt.Errorf("stop before %s: %w", op, err))
		return false
	}
	if err := do(); err != nil {
		s.fail(fmt.Errorf("%s: %w", op, err))
		return false
	}
	s.log.Debug("changed", "op", op)
	return true
}

func (s *session) fail(err error) { s.errs = append(s.errs, err) }

// removeDevices deletes every VXLAN device named LinkPrefix*: weft's, from
// this or an earlier configuration. Other links are never touched.
func (s *session) removeDevices() {
	links, err := s.k.LinkList()
	if err != nil {
		s.fail(fmt.Errorf("list links: %w", err))
		return
	}
	slices.SortFunc(links, func(a, b netlink.Link) int { return strings.Compare(a.Attrs().Name, b.Attrs().Name) })
	for _, l := range links {
		name := l.Attrs().Name
		if _, ok := l.(*netlink.Vxlan); !ok || !strings.HasPrefix(name, LinkPrefix) {
			continue
		}
		if s.change("delete vxlan device "+name, func() error { return s.k.LinkDel(l) }, "device "+name+" unwanted") {
			s.log.Info("vxlan device removed", "link", name)
		}
	}
}

// lookup returns the link called name, nil if there is none. ok is false
// when the read failed (recorded).
func (s *session) lookup(name string) (link netlink.Link, ok bool) {
	l, err := s.k.LinkByName(name)
	switch {
	case errors.Is(err, unix.ENODEV):
		return nil, true
	case err != nil:
		s.fail(fmt.Errorf("look up link %s: %w", name, err))
		return nil, false
	}
	return l, true
}

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

// addresses makes want.Addr the only address of its family on link, leaving
// IPv6 link-local addresses (the kernel's own) alone. link is nil when the
// device is missing (Check only).
func (s *session) addresses(link netlink.Link, want *fabric.VXLANDevice) {
	family := netlink.FAMILY_V4
	if want.Addr.IsValid() && want.Addr.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	var have []netlink.Addr
	if link != nil {
		var err error
		if have, err = s.k.AddrList(link, family); err != nil {
			s.fail(fmt.Errorf("list addresses of %s: %w", want.Name, err))
			return
		}
	}
	found := false
	var stale []netlink.Addr
	for _, a := range have {
		p, ok := addrPrefix(a)
		switch {
		case !ok || p.Addr().Is6() && p.Addr().IsLinkLocalUnicast():
		case p == want.Addr:
			found = true
		default:
			stale = append(stale, a)
		}
	}
	if want.Addr.IsValid() && !found {
		s.change(fmt.Sprintf("add address %s to %s", want.Addr, want.Name),
			func() error { return s.k.AddrReplace(link, &netlink.Addr{IPNet: ipNet(want.Addr)}) },
			fmt.Sprintf("addr %s missing", want.Addr))
	}
	slices.SortFunc(stale, func(a, b netlink.Addr) int { return strings.Compare(a.IPNet.String(), b.IPNet.String()) })
	for _, a := range stale {
		s.change(fmt.Sprintf("delete address %s from %s", a.IPNet, want.Name),
			func() error { return s.k.AddrDel(link, &a) },
			fmt.Sprintf("addr %s unwanted", a.IPNet))
	}
}

// neighbors makes the permanent neighbour entries on link exactly
// want.Neighbors. Other entries (the kernel's, resolved or failed) are left
// alone unless a wanted one replaces them.
func (s *session) neighbors(link netlink.Link, want Want) {
	idx := linkIndex(link)
	have := map[netip.Addr]netlink.Neigh{}
	for _, family := range []int{unix.AF_INET, unix.AF_INET6} {
		if link == nil {
			break
		}
		list, err := s.k.NeighList(idx, family)
		if err != nil {
			s.fail(fmt.Errorf("list neighbours of %s: %w", want.Device.Name, err))
			return
		}
		for _, n := range list {
			if ip, ok := toAddr(n.IP); ok && n.LinkIndex == idx {
				have[ip] = n
			}
		}
	}
	wanted := map[netip.Addr]bool{}
	for _, w := range want.Neighbors {
		if wanted[w.IP] {
			continue // a duplicate; Validate refused conflicting ones
		}
		wanted[w.IP] = true
		h, ok := have[w.IP]
		if ok && isPermanent(h) && bytes.Equal(h.HardwareAddr, w.MAC) {
			continue
		}
		line := fmt.Sprintf("neigh %s lladdr %s missing", w.IP, w.MAC)
		if ok {
			line = fmt.Sprintf("neigh %s lladdr %s %s, want lladdr %s permanent", w.IP, h.HardwareAddr, stateName(h.State), w.MAC)
		}
		n := &netlink.Neigh{
			LinkIndex:    idx,
			Family:       family(w.IP),
			State:        netlink.NUD_PERMANENT,
			Type:         unix.RTN_UNICAST,
			IP:           net.IP(w.IP.AsSlice()),
			HardwareAddr: slices.Clone(w.MAC),
		}
		s.change(fmt.Sprintf("set neighbour %s lladdr %s dev %s", w.IP, w.MAC, want.Device.Name),
			func() error { return s.k.NeighSet(n) }, line)
	}
	for _, ip := range slices.SortedFunc(maps.Keys(have), netip.Addr.Compare) {
		h := have[ip]
		if wanted[ip] || !isPermanent(h) {
			continue
		}
		n := &netlink.Neigh{LinkIndex: idx, Family: h.Family, IP: h.IP, HardwareAddr: h.HardwareAddr}
		s.change(fmt.Sprintf("delete neighbour %s dev %s", ip, want.Device.Name),
			func() error { return s.k.NeighDel(n) },
			fmt.Sprintf("neigh %s lladdr %s unwanted", ip, h.HardwareAddr))
	}
}

// fdb makes the permanent FDB entries with a destination on link exactly
// want.FDB. Entries without a destination (the device's own addresses) and
// entries that are not permanent are left alone.
func (s *session) fdb(link netlink.Link, want Want) {
	idx := linkIndex(link)
	// Kernel fact: a unicast MAC has a single destination in a VXLAN FDB
	// (append only adds to the all-zeros and multicast MACs), and a
	// replace overwrites it in place; so a wanted MAC is fixed with one
	// NeighSet and never needs a delete.
	have := map[string][]netlink.Neigh{}
	if link != nil {
		list, err := s.k.NeighList(idx, unix.AF_BRIDGE)
		if err != nil {
			s.fail(fmt.Errorf("list fdb of %s: %w", want.Device.Name, err))
			return
		}
		for _, n := range list {
			if ip, ok := toAddr(n.IP); ok && !ip.IsUnspecified() && n.LinkIndex == idx {
				have[string(n.HardwareAddr)] = append(have[string(n.HardwareAddr)], n)
			}
		}
	}
	wanted := map[string]bool{}
	for _, w := range want.FDB {
		if wanted[string(w.MAC)] {
			continue // a duplicate; Validate refused conflicting ones
		}
		wanted[string(w.MAC)] = true
		entries := have[string(w.MAC)]
		if slices.ContainsFunc(entries, func(n netlink.Neigh) bool {
			ip, _ := toAddr(n.IP)
			return ip == w.Dst && isPermanent(n)
		}) {
			continue
		}
		line := fmt.Sprintf("fdb %s dst %s missing", w.MAC, w.Dst)
		if len(entries) > 0 {
			line = fmt.Sprintf("fdb %s dst %s %s, want dst %s permanent", w.MAC, entries[0].IP, stateName(entries[0].State), w.Dst)
		}
		n := &netlink.Neigh{
			LinkIndex:    idx,
			Family:       unix.AF_BRIDGE,
			Flags:        netlink.NTF_SELF,
			State:        netlink.NUD_PERMANENT,
			IP:           net.IP(w.Dst.AsSlice()),
			HardwareAddr: slices.Clone(w.MAC),
		}
		s.change(fmt.Sprintf("set fdb %s dst %s dev %s", w.MAC, w.Dst, want.Device.Name),
			func() error { return s.k.NeighSet(n) }, line)
	}
	for _, mac := range slices.Sorted(maps.Keys(have)) {
		if wanted[mac] {
			continue
		}
		for _, h := range have[mac] {
			if !isPermanent(h) {
				continue
			}
			n := &netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, IP: h.IP, HardwareAddr: h.HardwareAddr}
			s.change(fmt.Sprintf("delete fdb %s dst %s dev %s", h.HardwareAddr, h.IP, want.Device.Name),
				func() error { return s.k.NeighDel(n) },
				fmt.Sprintf("fdb %s dst %s unwanted", h.HardwareAddr, h.IP))
		}
	}
}

func linkIndex(link netlink.Link) int {
	if link == nil {
		return 0
	}
	return link.Attrs().Index
}

// isPermanent reports whether n was configured (by weft or an operator)
// rather than resolved or learnt by the kernel.
func isPermanent(n netlink.Neigh) bool { return n.State&netlink.NUD_PERMANENT != 0 }

// stateName returns the name of neighbour state st as `ip neigh` prints it.
func stateName(st int) string {
	switch {
	case st&netlink.NUD_PERMANENT != 0:
		return "permanent"
	case st&netlink.NUD_NOARP != 0:
		return "noarp"
	case st&netlink.NUD_REACHABLE != 0:
		return "reachable"
	case st&netlink.NUD_STALE != 0:
		return "stale"
	case st&netlink.NUD_DELAY != 0:
		return "delay"
	case st&netlink.NUD_PROBE != 0:
		return "probe"
	case st&netlink.NUD_FAILED != 0:
		return "failed"
	case st&netlink.NUD_INCOMPLETE != 0:
		return "incomplete"
	}
	return "none"
}

func family(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// toAddr converts ip, with IPv4 in either length, to a netip.Addr.
func toAddr(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	return a.Unmap(), ok
}

func ipString(ip net.IP) string {
	if a, ok := toAddr(ip); ok && !a.IsUnspecified() {
		return a.String()
	}
	return "none"
}

func addrPrefix(a netlink.Addr) (netip.Prefix, bool) {
	if a.IPNet == nil {
		return netip.Prefix{}, false
	}
	ip, ok := toAddr(a.IP)
	ones, bits := a.Mask.Size()
	if !ok || bits != ip.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(ip, ones), true
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
