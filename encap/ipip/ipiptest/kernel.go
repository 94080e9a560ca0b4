// Package ipiptest provides fakes for testing code that uses package ipip
// without root: an in-memory ipip.Kernel, and a fake underlay (Net) whose
// hosts open fake TUN queues and raw sockets through an ipip.Opener, with
// the kernel's IP-in-IP encapsulation between them.
package ipiptest

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weft-net/weft/encap/ipip"
)

var _ ipip.Kernel = (*Kernel)(nil)

// method reports whether kind is an ipip.Kernel method, and whether it
// changes state.
func method(kind string) (known, mutating bool) {
	switch kind {
	case "LinkByName", "LinkList", "AddrList":
		return true, false
	case "LinkAdd", "LinkDel", "LinkSetMTU", "LinkSetUp", "LinkSetAlias", "AddrReplace", "AddrDel":
		return true, true
	}
	return false, false
}

// Kernel is an in-memory model of the links and IPv4 addresses of one
// network namespace, with the kernel's semantics where the driver depends
// on them: unix.EEXIST for a taken name or a second ipip device with the
// same local and remote addresses, unix.EOPNOTSUPP for ipip when the
// kernel has no ipip, unix.ENODEV and unix.EADDRNOTAVAIL. Deleting a TUN
// link closes the fake TUN opened on it. It starts empty (no "lo").
// Its methods are safe for concurrent use. The zero value is not usable:
// call NewKernel.
type Kernel struct {
	mu        sync.Mutex
	noIPIP    bool
	links     map[int]*link
	nextIndex int
	muts      map[string]int
	fail      map[string]error
	onDelete  map[string]func() // by link name: close the fake TUN
}

type link struct {
	attrs netlink.LinkAttrs
	kind  string         // "ipip", "tuntap" or another
	iptun *netlink.Iptun // ipip attributes; nil for other kinds
	addrs []netip.Prefix
}

// NewKernel returns an empty Kernel; ipip tells whether it has IP-in-IP
// (LinkAdd of an ipip link is unix.EOPNOTSUPP otherwise).
func NewKernel(ipip bool) *Kernel {
	return &Kernel{noIPIP: !ipip, links: map[int]*link{}, nextIndex: 1, muts: map[string]int{},
		fail: map[string]error{}, onDelete: map[string]func(){}}
}

// FailNext makes the next call of method kind (such as "LinkAdd") return
// err and change nothing. It panics if kind is not an ipip.Kernel method,
// which is a mistake in the test.
func (k *Kernel) FailNext(kind string, err error) {
	if known, _ := method(kind); !known {
		panic(fmt.Sprintf("ipiptest: FailNext(%q): not an ipip.Kernel method", kind))
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.fail[kind] = err
}

// Mutations returns the number of mutating calls made so far (failed ones
// included), by method name; methods not called are absent.
func (k *Kernel) Mutations() map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	m := map[string]int{}
	for kind, n := range k.muts {
		m[kind] = n
	}
	return m
}

// ResetMutations sets the counts of Mutations back to zero.
func (k *Kernel) ResetMutations() {
	k.mu.Lock()
	defer k.mu.Unlock()
	clear(k.muts)
}

// AddLink puts a link into the kernel as someone else would, without
// counting a mutation: kind "ipip" for an *netlink.Iptun, "tuntap" for a
// *netlink.Tuntap, any other kind (l.Type()) as a GenericLink. It returns
// its index.
func (k *Kernel) AddLink(l netlink.Link) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.addLocked(l)
}

func (k *Kernel) addLocked(l netlink.Link) int {
	a := *l.Attrs()
	a.Index = k.nextIndex
	k.nextIndex++
	if a.MTU == 0 {
		a.MTU = 1500
		if _, ok := l.(*netlink.Iptun); ok {
			a.MTU = 1480
		}
	}
	ln := &link{attrs: a, kind: l.Type()}
	if t, ok := l.(*netlink.Iptun); ok {
		c := *t
		c.Local, c.Remote = slices.Clone(c.Local), slices.Clone(c.Remote)
		ln.iptun = &c
	}
	k.links[a.Index] = ln
	return a.Index
}

// String renders the links, one a line sorted by name: name, kind, ipip
// attributes, mtu, up or down, alias and addresses.
func (k *Kernel) String() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var lines []string
	for _, ln := range k.links {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s", ln.attrs.Name, ln.kind)
		if t := ln.iptun; t != nil {
			fmt.Fprintf(&b, " local %s remote %s pmtudisc %d ttl %d", ipOrAny(t.Local), ipOrAny(t.Remote), t.PMtuDisc, t.Ttl)
		}
		fmt.Fprintf(&b, " mtu %d", ln.attrs.MTU)
		if ln.attrs.Flags&net.FlagUp != 0 {
			b.WriteString(" up")
		} else {
			b.WriteString(" down")
		}
		if ln.attrs.Alias != "" {
			fmt.Fprintf(&b, " alias %s", ln.attrs.Alias)
		}
		for _, p := range ln.addrs {
			fmt.Fprintf(&b, " addr %s", p)
		}
		lines = append(lines, b.String())
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func ipOrAny(ip net.IP) string {
	if ip == nil || ip.IsUnspecified() {
		return "any"
	}
	return ip.String()
}

// beginLocked counts a call of kind and returns the error injected for it.
func (k *Kernel) beginLocked(kind string) error {
	if _, mutating := method(kind); mutating {
		k.muts[kind]++
	}
	if err, ok := k.fail[kind]; ok {
		delete(k.fail, kind)
		return err
	}
	return nil
}

func (k *Kernel) byNameLocked(name string) *link {
	for _, ln := range k.links {
		if ln.attrs.Name == name {
			return ln
		}
	}
	return nil
}

func (k *Kernel) byIndexLocked(l netlink.Link) (*link, error) {
	if ln, ok := k.links[l.Attrs().Index]; ok {
		return ln, nil
	}
	return nil, fmt.Errorf("link index %d: %w", l.Attrs().Index, unix.ENODEV)
}

// export returns a copy of ln as netlink would decode it.
func (ln *link) export() netlink.Link {
	attrs := ln.attrs
	switch {
	case ln.iptun != nil:
		t := *ln.iptun
		t.LinkAttrs = attrs
		t.Local, t.Remote = slices.Clone(t.Local), slices.Clone(t.Remote)
		return &t
	case ln.kind == "tuntap":
		return &netlink.Tuntap{LinkAttrs: attrs, Mode: netlink.TUNTAP_MODE_TUN}
	}
	return &netlink.GenericLink{LinkAttrs: attrs, LinkType: ln.kind}
}

// LinkByName implements ipip.Kernel.
func (k *Kernel) LinkByName(name string) (netlink.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginLocked("LinkByName"); err != nil {
		return nil, err
	}
	if ln := k.byNameLocked(name); ln != nil {
		return ln.export(), nil
	}
	return nil, fmt.Errorf("link %s: %w", name, unix.ENODEV)
}

// LinkList implements ipip.Kernel; links come in index order.
func (k *Kernel) LinkList() ([]netlink.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginLocked("LinkList"); err != nil {
		return nil, err
	}
	var out []netlink.Link
	for i := range k.nextIndex {
		if ln, ok := k.links[i]; ok {
			out = append(out, ln.export())
		}
	}
	return out, nil
}

// LinkAdd implements ipip.Kernel for *netlink.Iptun.
func (k *Kernel) LinkAdd(l netlink.Link) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginLocked("LinkAdd"); err != nil {
		return err
	}
	t, ok := l.(*netlink.Iptun)
	switch {
	case !ok:
		return fmt.Errorf("ipiptest: LinkAdd of %s: %w", l.Type(), unix.EOPNOTSUPP)
	case k.noIPIP:
		return unix.EOPNOTSUPP
	case k.byNameLocked(t.Name) != nil:
		return unix.EEXIST
	}
	for _, ln := range k.links {
		if ln.iptun != nil && ipOrAny(ln.iptun.Local) == ipOrAny(t.Local) && ipOrAny(ln.iptun.Remote) == ipOrAny(t.Remote) {
			return unix.EEXIST // the kernel tells ipip tunnels apart by their addresses
		}
	}
	k.addLocked(t)
	return nil
}

// LinkDel implements ipip.Kernel.
func (k *Kernel) LinkDel(l netlink.Link) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginLocked("LinkDel"); err != nil {
		return err
	}
	ln, err := k.byIndexLocked(l)
	if err != nil {
		return err
	}
	k.deleteLocked(ln)
	return nil
}

func (k *Kernel) deleteLocked(ln *link) {
	delete(k.links, ln.attrs.Index)
	if f, ok := k.onDelete[ln.attrs.Name]; ok {
		delete(k.onDelete, ln.attrs.Name)
		go f() // as the kernel detaching the TUN's files
	}
}

// DeleteLink removes the link called name as someone else would, without
// counting a mutation. It reports whether there was one.
func (k *Kernel) DeleteLink(name string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	ln := k.byNameLocked(name)
	if ln == nil {
		return false
	}
	k.deleteLocked(ln)
	return true
}

// SetMTU changes the MTU of link name as someone else would.
func (k *Kernel) SetMTU(name string, mtu int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if ln := k.byNameLocked(name); ln != nil {
		ln.attrs.MTU = mtu
	}
}

func (k *Kernel) set(kind string, l netlink.Link, do func(*link) error) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginLocked(kind); err != nil {
		return err
	}
	ln, err := k.byIndexLocked(l)
	if err != nil {
		return err
	}
	return do(ln)
}

// LinkSetMTU implements ipip.Kernel.
func (k *Kernel) LinkSetMTU(l netlink.Link, mtu int) error {
	return k.set("LinkSetMTU", l, func(ln *link) error { ln.attrs.MTU = mtu; return nil })
}

// LinkSetUp implements ipip.Kernel.
func (k *Kernel) LinkSetUp(l netlink.Link) error {
	return k.set("LinkSetUp", l, func(ln *link) error { ln.attrs.Flags |= net.FlagUp; return nil })
}

// LinkSetAlias implements ipip.Kernel.
func (k *Kernel) LinkSetAlias(l netlink.Link, alias string) error {
	return k.set("LinkSetAlias", l, func(ln *link) error { ln.attrs.Alias = alias; return nil })
}

// AddrList implements ipip.Kernel (IPv4 only).
func (k *Kernel) AddrList(l netlink.Link, family int) ([]netlink.Addr, error) {
	var out []netlink.Addr
	err := k.set("AddrList", l, func(ln *link) error {
		for _, p := range ln.addrs {
			out = append(out, netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}})
		}
		return nil
	})
	return out, err
}

// AddrReplace implements ipip.Kernel.
func (k *Kernel) AddrReplace(l netlink.Link, a *netlink.Addr) error {
	p := toPrefix(a)
	return k.set("AddrReplace", l, func(ln *link) error {
		if !slices.Contains(ln.addrs, p) {
			ln.addrs = append(ln.addrs, p)
		}
		return nil
	})
}

// AddrDel implements ipip.Kernel.
func (k *Kernel) AddrDel(l netlink.Link, a *netlink.Addr) error {
	p := toPrefix(a)
	return k.set("AddrDel", l, func(ln *link) error {
		i := slices.Index(ln.addrs, p)
		if i < 0 {
			return unix.EADDRNOTAVAIL
		}
		ln.addrs = slices.Delete(ln.addrs, i, i+1)
		return nil
	})
}

// AddAddr puts an address on link name as someone else would.
func (k *Kernel) AddAddr(name string, p netip.Prefix) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if ln := k.byNameLocked(name); ln != nil {
		ln.addrs = append(ln.addrs, p)
	}
}

func toPrefix(a *netlink.Addr) netip.Prefix {
	ip, _ := netip.AddrFromSlice(a.IP)
	bits, _ := a.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), bits)
}

// openTUN makes the TUN link name if it is missing (down, MTU 1500, as
// the kernel makes it) and has f run when it is deleted.
func (k *Kernel) openTUN(name string, f func()) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.byNameLocked(name) == nil {
		k.addLocked(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name}})
	}
	k.onDelete[name] = f
}
