package vxlan

import (
	"bytes"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weft-net/weft/fabric"
)

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
