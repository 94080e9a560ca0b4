package wireguard

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

// linkKind is what netlink reports as the type of a kernel WireGuard link.
const linkKind = "wireguard"

// session is one Apply or Check: it reads the device back, records every
// difference with want and, when applying, makes the call that removes it.
// It runs with d.mu held.
type session struct {
	ctx     context.Context
	d       *Driver
	apply   bool     // false: record the differences only (Check)
	diffs   []string // every difference found, in the order handled
	errs    []error  // every read or change that failed
	stopped bool     // ctx was done: make no more changes
	started bool     // this Apply started the embedded device
}

// run compares the whole of want with the namespace.
func (s *session) run(want Want) {
	if err := s.ctx.Err(); err != nil {
		s.fail(fmt.Errorf("wireguard: %w", err))
		return
	}
	name := ""
	if want.Device != nil {
		name = want.Device.Name
	}
	s.sweep(name)
	if want.Device == nil {
		if s.d.emb != nil {
			s.record("device " + s.d.embDev + " unwanted")
			s.do("stop wireguard device "+s.d.embDev, s.stopEmbedded)
		}
		return
	}
	link, ok := s.device(want.Device)
	if !ok {
		return // no device to compare with (reported)
	}
	s.linkState(link, want.Device)
	s.peers(want)
}

// record notes a difference.
func (s *session) record(line string) { s.diffs = append(s.diffs, line) }

// do makes the change fn when applying, described by op (for its error and
// the log). It reports whether fn ran and succeeded.
func (s *session) do(op string, fn func() error) bool {
	if !s.apply || s.stopped {
		return false
	}
	if err := s.ctx.Err(); err != nil {
		s.stopped = true
		s.fail(fmt.Errorf("stop before %s: %w", op, err))
		return false
	}
	if err := fn(); err != nil {
		s.fail(fmt.Errorf("%s: %w", op, err))
		return false
	}
	s.d.log.Debug("changed", "op", op)
	return true
}

func (s *session) fail(err error) { s.errs = append(s.errs, err) }

// sweep deletes the kernel WireGuard links named LinkPrefix* other than
// keep: weft's, from an earlier configuration. Other links are never
// touched.
func (s *session) sweep(keep string) {
	links, err := s.d.link.LinkList()
	if err != nil {
		s.fail(fmt.Errorf("list links: %w", err))
		return
	}
	slices.SortFunc(links, func(a, b netlink.Link) int { return strings.Compare(a.Attrs().Name, b.Attrs().Name) })
	for _, l := range links {
		name := l.Attrs().Name
		if l.Type() != linkKind || name == keep || !strings.HasPrefix(name, LinkPrefix) {
			continue
		}
		s.record("device " + name + " unwanted")
		if s.do("delete wireguard device "+name, func() error { return s.d.link.LinkDel(l) }) {
			s.d.log.Info("wireguard device removed", "link", name)
		}
	}
}

// lookup returns the link called name, nil if there is none. ok is false
// when the read failed (recorded).
func (s *session) lookup(name string) (link netlink.Link, ok bool) {
	l, err := s.d.link.LinkByName(name)
	switch {
	case errors.Is(err, unix.ENODEV):
		return nil, true
	case err != nil:
		s.fail(fmt.Errorf("look up link %s: %w", name, err))
		return nil, false
	}
	return l, true
}

// device returns the device's link, making the device first if it is
// missing or of the wrong kind. ok is false when there is no device to
// work on (a read or a change failed, or Check found it missing).
func (s *session) device(dev *Device) (netlink.Link, bool) {
	link, ok := s.lookup(dev.Name)
	if !ok {
		return nil, false
	}
	mtu := dev.MTU
	if mtu == 0 {
		mtu = defaultMTU
	}
	if s.d.mode == ModeKernel {
		if link != nil && link.Type() == linkKind {
			return link, true
		}
		if !s.kernelDevice(dev.Name, mtu, link) {
			return nil, false
		}
	} else {
		if s.d.emb != nil && s.d.embDev == dev.Name && link != nil {
			return link, true
		}
		if !s.userDevice(dev.Name, mtu, link) {
			return nil, false
		}
	}
	return s.lookupMade(dev.Name)
}

// lookupMade returns the link of a device just made.
func (s *session) lookupMade(name string) (netlink.Link, bool) {
	link, ok := s.lookup(name)
	if ok && link == nil {
		s.fail(fmt.Errorf("look up link %s: %w", name, unix.ENODEV))
		return nil, false
	}
	return link, ok
}

// kernelDevice makes the kernel device called name in place of link (its
// current link, of another kind, or nil), and reports whether it made it.
func (s *session) kernelDevice(name string, mtu int, link netlink.Link) bool {
	if link != nil {
		s.record(fmt.Sprintf("device %s is %s, want %s", name, link.Type(), linkKind))
		if !s.do("delete link "+name+" to make it "+linkKind, func() error { return s.d.link.LinkDel(link) }) {
			return false
		}
	} else {
		s.record("device " + name + " missing")
	}
	add := &netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}}
	if !s.do("create wireguard device "+name, func() error { return s.d.link.LinkAdd(add) }) {
		return false
	}
	s.d.log.Info("wireguard device created", "link", name)
	return true
}

// userDevice starts the embedded device called name, which does not run
// (or has lost its link, or runs under another name), and reports whether
// it started it. link is the current link called name, or nil.
func (s *session) userDevice(name string, mtu int, link netlink.Link) bool {
	d := s.d
	if d.emb != nil {
		// Renamed, or its link was deleted under it (which stops
		// wireguard-go): start it again.
		s.record(fmt.Sprintf("device %s not running", name))
		if !s.do("stop wireguard device "+d.embDev, s.stopEmbedded) {
			return false
		}
	} else if link != nil && link.Type() == linkKind {
		// A kernel device left by a run in kernel mode.
		s.record(fmt.Sprintf("device %s is %s, want user space", name, linkKind))
		if !s.do("delete link "+name+" to run it in user space", func() error { return d.link.LinkDel(link) }) {
			return false
		}
	} else {
		// A TUN of this name that another process holds makes Start
		// fail (EBUSY), which is reported.
		s.record(fmt.Sprintf("device %s not running", name))
	}
	var emb Embedded
	if !s.do("start wireguard device "+name, func() (err error) { emb, err = d.start(name, mtu); return err }) {
		return false
	}
	d.emb, d.embDev, s.started = emb, name, true
	d.log.Info("wireguard device started", "link", name, "offload", emb.Offload())
	return true
}

// stopEmbedded closes the embedded device; it is forgotten even if Close
// fails (wireguard-go has stopped using it either way).
func (s *session) stopEmbedded() error {
	name := s.d.embDev
	err := s.d.emb.Close()
	s.d.emb, s.d.embDev = nil, ""
	s.d.log.Info("wireguard device stopped", "link", name)
	return err
}

// linkState sets the link's MTU, address and up state.
func (s *session) linkState(link netlink.Link, dev *Device) {
	a := link.Attrs()
	if dev.MTU != 0 && a.MTU != dev.MTU {
		s.record(fmt.Sprintf("device %s mtu %d, want %d", dev.Name, a.MTU, dev.MTU))
		s.do(fmt.Sprintf("set mtu %d on %s", dev.MTU, dev.Name), func() error { return s.d.link.LinkSetMTU(link, dev.MTU) })
	}
	s.addresses(link, dev)
	up := a.Flags&net.FlagUp != 0
	if !up {
		s.record("device " + dev.Name + " down")
		up = s.do("set "+dev.Name+" up", func() error { return s.d.link.LinkSetUp(link) })
	}
	if up && s.started {
		// Bring wireguard-go up now rather than on its link event, so that
		// the handshake kicks of the peers added next are sent.
		s.do("bring wireguard device "+dev.Name+" up", s.d.emb.Up)
	}
}

// addresses makes dev.Addr the only address on link, IPv6 link-local ones
// aside: adds before it deletes.
func (s *session) addresses(link netlink.Link, dev *Device) {
	addrs, err := s.d.link.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		s.fail(fmt.Errorf("list addresses of %s: %w", dev.Name, err))
		return
	}
	have := false
	var stale []netlink.Addr
	for _, a := range addrs {
		p, ok := prefixOf(a.IPNet)
		switch {
		case !ok || p.Addr().IsLinkLocalUnicast() && p.Addr().Is6():
			continue
		case p == dev.Addr:
			have = true
		default:
			stale = append(stale, a)
		}
	}
	if dev.Addr.IsValid() && !have {
		s.record(fmt.Sprintf("address %s missing", dev.Addr))
		addr := &netlink.Addr{IPNet: ipNet(dev.Addr)}
		s.do(fmt.Sprintf("add address %s to %s", dev.Addr, dev.Name), func() error { return s.d.link.AddrReplace(link, addr) })
	}
	for _, a := range stale {
		p, _ := prefixOf(a.IPNet)
		s.record(fmt.Sprintf("address %s unwanted", p))
		s.do(fmt.Sprintf("delete address %s from %s", p, dev.Name), func() error { return s.d.link.AddrDel(link, &a) })
	}
}

// prefixOf converts an address as netlink returns it (the address with the
// prefix length, not masked).
func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := n.Mask.Size()
	a = a.Unmap()
	if bits != a.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}

// ipNet converts p without masking it (an interface address).
func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
