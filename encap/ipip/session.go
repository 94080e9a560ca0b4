package ipip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// session is one Apply or Check: it reads the node back, records every
// difference with want and, when applying, makes the change that removes it.
type session struct {
	ctx     context.Context
	d       *Driver
	apply   bool     // false: record the differences only (Check)
	diffs   []string // every difference found, in the order handled
	errs    []error  // every read or change that failed
	stopped bool     // ctx was done: make no more changes
}

// run compares the whole of want with the node.
func (s *session) run(want Want) {
	if err := s.ctx.Err(); err != nil {
		s.fail(fmt.Errorf("ipip: %w", err))
		return
	}
	if want.Device == nil {
		s.stopForwarder("no device wanted")
		s.sweep("")
		return
	}
	if s.d.mode == ModeKernel && !want.Device.Local.IsValid() {
		s.fail(errors.New("ipip want: Device.Local: none, but kernel mode needs one"))
		return
	}
	var (
		link netlink.Link
		ok   bool
	)
	if s.d.mode == ModeKernel {
		link, ok = s.kernelDevice(want.Device)
	} else {
		link, ok = s.tunDevice(want.Device)
	}
	if ok && link != nil {
		s.adjust(link, want.Device)
		s.addresses(link, want.Device)
	}
	s.sweep(want.Device.Name)
	if s.d.mode == ModeUserspace {
		s.peers(want, link)
	}
}

// change records a difference, described by lines, and when applying
// makes the call do, described by op (for its error and the log). It
// reports whether do ran and succeeded.
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
	s.d.log.Debug("changed", "op", op)
	return true
}

func (s *session) fail(err error) { s.errs = append(s.errs, err) }

// lookup returns the link called name, nil if there is none. ok is false
// when the read failed (recorded).
func (s *session) lookup(name string) (link netlink.Link, ok bool) {
	l, err := s.d.k.LinkByName(name)
	switch {
	case errors.Is(err, unix.ENODEV):
		return nil, true
	case err != nil:
		s.fail(fmt.Errorf("look up link %s: %w", name, err))
		return nil, false
	}
	return l, true
}

// isForeign reports whether link is marked as someone else's: an alias
// that is not Alias. A link of the right kind and name without an alias is
// adopted (weft may have stopped between making it and marking it).
func isForeign(link netlink.Link) bool {
	if link == nil {
		return false
	}
	a := link.Attrs().Alias
	return a != "" && a != Alias
}

// clear deletes cur, a link called name that is not of the kind the mode
// needs, if it is weft's (by Alias) and reports whether it is gone. Anyone
// else's link is left alone and the failure recorded.
func (s *session) clear(cur netlink.Link, want string) bool {
	name := cur.Attrs().Name
	if cur.Attrs().Alias != Alias {
		s.fail(fmt.Errorf("link %s is of type %s, not %s, and not weft's: leaving it alone", name, cur.Type(), want))
		return false
	}
	return s.change("delete "+cur.Type()+" device "+name,
		func() error { return s.d.k.LinkDel(cur) },
		fmt.Sprintf("device %s is %s, want %s", name, cur.Type(), want))
}

// kernelDevice makes the kernel's ipip device match want and returns it:
// nil when it is missing and this is a Check. ok is false when there is no
// device to work on because a read or a change failed.
func (s *session) kernelDevice(want *Device) (link netlink.Link, ok bool) {
	cur, ok := s.lookup(want.Name)
	if !ok {
		return nil, false
	}
	spec := kernelSpec(want)
	create := func() (netlink.Link, bool) {
		if !s.change("add ipip device "+want.Name, func() error { return s.d.k.LinkAdd(spec) }) {
			return nil, false
		}
		s.d.log.Info("ipip device created", "link", want.Name, "local", want.Local)
		cur, ok := s.lookup(want.Name)
		if ok && cur == nil {
			s.fail(fmt.Errorf("look up ipip device %s after adding it: %w", want.Name, unix.ENODEV))
			return nil, false
		}
		return cur, ok
	}
	switch tun, isIPIP := cur.(*netlink.Iptun); {
	case isForeign(cur):
		s.fail(fmt.Errorf("link %s has alias %q, not %q: someone else's, leaving it alone", want.Name, cur.Attrs().Alias, Alias))
		return nil, false
	case cur == nil:
		s.diffs = append(s.diffs, "device "+want.Name+" missing")
		if !s.apply {
			return nil, true
		}
		return create()
	case !isIPIP:
		if !s.clear(cur, "ipip") {
			return nil, !s.apply
		}
		return create()
	default:
		lines := fixedDiffs(tun, spec)
		if len(lines) == 0 {
			return cur, true
		}
		// These attributes cannot be changed in place. A failed delete
		// leaves the old device, which still gets the rest.
		if !s.change("delete ipip device "+want.Name+" to recreate it", func() error { return s.d.k.LinkDel(tun) }, lines...) {
			return cur, true
		}
		return create()
	}
}

// kernelSpec is the ipip device to create for want: local address, any
// remote (the route's next hop is the outer destination), TTL inherited
// from the inner packet and path MTU discovery on (outer DF set), as
// iproute2 makes it by default.
func kernelSpec(want *Device) *netlink.Iptun {
	return &netlink.Iptun{
		LinkAttrs: netlink.LinkAttrs{Name: want.Name, MTU: want.MTU, Flags: net.FlagUp},
		Local:     net.IP(want.Local.AsSlice()),
		PMtuDisc:  1,
	}
}

// fixedDiffs describes each attribute of cur, which cannot be changed in
// place, that differs from spec.
func fixedDiffs(cur, spec *netlink.Iptun) []string {
	var lines []string
	diff := func(attr string, have, want any) {
		lines = append(lines, fmt.Sprintf("device %s %s %v, want %v", spec.Name, attr, have, want))
	}
	if have, want := ipString(cur.Local), ipString(spec.Local); have != want {
		diff("local", have, want)
	}
	if have := ipString(cur.Remote); have != "any" {
		diff("remote", have, "any")
	}
	if cur.PMtuDisc != spec.PMtuDisc {
		diff("pmtudisc", cur.PMtuDisc, spec.PMtuDisc)
	}
	if cur.Ttl != spec.Ttl {
		diff("ttl", cur.Ttl, "inherit")
	}
	if cur.Link != 0 {
		diff("underlay ifindex", cur.Link, "none")
	}
	if cur.FlowBased {
		diff("external", true, false)
	}
	return lines
}

func ipString(ip net.IP) string {
	if ip == nil || ip.IsUnspecified() {
		return "any"
	}
	return ip.String()
}

// tunDevice makes the user-space path match want: the TUN device open and
// the forwarder running on it. It returns the TUN link: nil when it is
// missing and this is a Check.
func (s *session) tunDevice(want *Device) (link netlink.Link, ok bool) {
	cur, ok := s.lookup(want.Name)
	if !ok {
		return nil, false
	}
	if isForeign(cur) {
		s.fail(fmt.Errorf("link %s has alias %q, not %q: someone else's, leaving it alone", want.Name, cur.Attrs().Alias, Alias))
		return nil, false
	}
	if _, isTUN := cur.(*netlink.Tuntap); cur != nil && !isTUN {
		if !s.clear(cur, "tun") {
			return nil, !s.apply
		}
		cur = nil
	}
	f := s.d.fwd
	// MTU and address change in place; name and local address (the raw
	// socket's binding) need the endpoints opened again.
	same := f != nil && f.dev.Name == want.Name && f.dev.Local == want.Local
	running := same && f.err() == nil && cur != nil
	if running {
		return cur, true
	}
	if cur == nil {
		s.diffs = append(s.diffs, "device "+want.Name+" missing")
	}
	switch {
	case f == nil:
		s.diffs = append(s.diffs, "forwarder not running")
	case f.err() != nil:
		s.diffs = append(s.diffs, "forwarder stopped: "+f.err().Error())
	case !same:
		s.diffs = append(s.diffs, fmt.Sprintf("forwarder on %s local %s, want %s local %s",
			f.dev.Name, addrString(f.dev.Local), want.Name, addrString(want.Local)))
	}
	if !s.apply || s.stopped {
		return cur, true
	}
	s.stopForwarder("")
	ep, err := s.d.open(*want, s.d.queues)
	if err != nil {
		s.fail(fmt.Errorf("open tun %s and raw socket: %w", want.Name, err))
		return nil, false
	}
	s.d.fwd = startForwarder(s.d.log, *want, ep, s.d.stats)
	s.d.log.Info("ipip forwarder started", "link", want.Name, "queues", len(ep.Queues))
	if cur, ok = s.lookup(want.Name); ok && cur == nil {
		s.fail(fmt.Errorf("look up tun %s after opening it: %w", want.Name, unix.ENODEV))
		return nil, false
	}
	return cur, ok
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return "any"
	}
	return a.String()
}

// stopForwarder stops the forwarder if one runs, recording why as a
// difference when why is not empty.
func (s *session) stopForwarder(why string) {
	if s.d.fwd == nil {
		return
	}
	if why != "" {
		s.diffs = append(s.diffs, "forwarder running, "+why)
	}
	if !s.apply {
		return
	}
	if err := s.d.fwd.stop(); err != nil {
		s.fail(fmt.Errorf("stop forwarder on %s: %w", s.d.fwd.dev.Name, err))
	}
	s.d.log.Info("ipip forwarder stopped", "link", s.d.fwd.dev.Name)
	s.d.fwd = nil
}

// adjust changes in place the device attributes that allow it.
func (s *session) adjust(cur netlink.Link, want *Device) {
	a := cur.Attrs()
	if want.MTU != 0 && a.MTU != want.MTU {
		s.change(fmt.Sprintf("set mtu %d on %s", want.MTU, want.Name),
			func() error { return s.d.k.LinkSetMTU(cur, want.MTU) },
			fmt.Sprintf("device %s mtu %d, want %d", want.Name, a.MTU, want.MTU))
	}
	if a.Alias != Alias {
		s.change(fmt.Sprintf("set alias %s on %s", Alias, want.Name),
			func() error { return s.d.k.LinkSetAlias(cur, Alias) },
			fmt.Sprintf("device %s alias %q, want %q", want.Name, a.Alias, Alias))
	}
	if a.Flags&net.FlagUp == 0 {
		s.change("set "+want.Name+" up",
			func() error { return s.d.k.LinkSetUp(cur) },
			fmt.Sprintf("device %s down, want up", want.Name))
	}
}

// addresses makes the device's IPv4 addresses exactly want.Addr (or none),
// adding before deleting.
func (s *session) addresses(cur netlink.Link, want *Device) {
	addrs, err := s.d.k.AddrList(cur, netlink.FAMILY_V4)
	if err != nil {
		s.fail(fmt.Errorf("list addresses of %s: %w", want.Name, err))
		return
	}
	have := false
	var stale []netlink.Addr
	for _, a := range addrs {
		p, ok := prefixOf(a)
		if ok && p == want.Addr {
			have = true
			continue
		}
		stale = append(stale, a)
	}
	if want.Addr.IsValid() && !have {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: want.Addr.Addr().AsSlice(), Mask: net.CIDRMask(32, 32)}}
		s.change(fmt.Sprintf("add address %s to %s", want.Addr, want.Name),
			func() error { return s.d.k.AddrReplace(cur, addr) },
			fmt.Sprintf("device %s address %s missing", want.Name, want.Addr))
	}
	for _, a := range stale {
		p, _ := prefixOf(a)
		s.change(fmt.Sprintf("delete address %s from %s", p, want.Name),
			func() error { return s.d.k.AddrDel(cur, &a) },
			fmt.Sprintf("device %s address %s unwanted", want.Name, p))
	}
}

func prefixOf(a netlink.Addr) (netip.Prefix, bool) {
	if a.IPNet == nil {
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := a.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), bits), true
}

// sweep deletes every ipip or TUN link marked with Alias and named
// LinkPrefix* except keep: weft's, from this or an earlier configuration
// or mode. Other links are never touched.
func (s *session) sweep(keep string) {
	links, err := s.d.k.LinkList()
	if err != nil {
		s.fail(fmt.Errorf("list links: %w", err))
		return
	}
	slices.SortFunc(links, func(a, b netlink.Link) int { return strings.Compare(a.Attrs().Name, b.Attrs().Name) })
	for _, l := range links {
		a := l.Attrs()
		if a.Name == keep || a.Alias != Alias || !strings.HasPrefix(a.Name, LinkPrefix) {
			continue
		}
		switch l.(type) {
		case *netlink.Iptun, *netlink.Tuntap:
		default:
			continue
		}
		if s.change("delete "+l.Type()+" device "+a.Name, func() error { return s.d.k.LinkDel(l) }, "device "+a.Name+" unwanted") {
			s.d.log.Info("ipip device removed", "link", a.Name)
		}
	}
}

// peers gives the forwarder the table for want, with the MTU of want or,
// if that is 0, of link.
func (s *session) peers(want Want, link netlink.Link) {
	f := s.d.fwd
	if f == nil {
		return // reported: "forwarder not running"
	}
	mtu := want.Device.MTU
	if mtu == 0 && link != nil {
		mtu = link.Attrs().MTU
	}
	cur := f.table()
	t := newTable(want.Peers, mtu)
	if cur.mtu != t.mtu {
		s.diffs = append(s.diffs, fmt.Sprintf("forwarder mtu %d, want %d", cur.mtu, t.mtu))
	}
	if cur.key == t.key && cur.mtu == t.mtu {
		return
	}
	have, wanted := lines(cur.key), lines(t.key)
	for _, l := range wanted {
		if !slices.Contains(have, l) {
			s.diffs = append(s.diffs, "peer "+l+" missing")
		}
	}
	for _, l := range have {
		if !slices.Contains(wanted, l) {
			s.diffs = append(s.diffs, "peer "+l+" unwanted")
		}
	}
	if s.apply && !s.stopped {
		f.setTable(t)
		s.d.log.Debug("peers set", "peers", len(want.Peers), "mtu", mtu)
	}
}

func lines(key string) []string {
	if key == "" {
		return nil
	}
	return strings.Split(key, "\n")
}
