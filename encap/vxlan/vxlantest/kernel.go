// Package vxlantest provides an in-memory vxlan.Kernel for tests, and a
// decorator that counts the mutating calls made to any vxlan.Kernel.
package vxlantest

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weft-net/weft/encap/vxlan"
)

var _ vxlan.Kernel = (*Kernel)(nil)

// mutating are the Kernel methods that change state.
func mutating(kind string) bool {
	switch kind {
	case "LinkAdd", "LinkDel", "LinkSetMTU", "LinkSetUp", "LinkSetHardwareAddr",
		"AddrReplace", "AddrDel", "NeighSet", "NeighDel":
		return true
	}
	return false
}

// known reports whether kind names a vxlan.Kernel method.
func known(kind string) bool {
	switch kind {
	case "LinkByName", "LinkList", "AddrList", "NeighList":
		return true
	}
	return mutating(kind)
}

// Kernel is an in-memory model of the links, addresses, neighbour entries
// and FDB entries of one network namespace, with the kernel's semantics
// where the driver depends on them: errors (unix.EEXIST, ENODEV, ENOENT,
// EADDRNOTAVAIL), deleting a link deletes its addresses and entries and the
// VXLAN devices on it, a unicast MAC has one FDB destination. It starts
// empty (no "lo"). Its methods are safe for concurrent use. The zero value
// is not usable: call New.
type Kernel struct {
	mu        sync.Mutex
	links     map[int]*link
	nextIndex int
	neighs    []neigh
	fdb       []neigh // Family AF_BRIDGE
	muts      map[string]int
	fail      map[string]error
}

type link struct {
	attrs netlink.LinkAttrs
	kind  string
	vx    *netlink.Vxlan // VXLAN attributes; nil for other kinds
	addrs []netip.Prefix
}

type neigh struct {
	link  int
	ip    netip.Addr
	mac   net.HardwareAddr
	state int
}

// New returns an empty Kernel.
func New() *Kernel {
	return &Kernel{links: map[int]*link{}, nextIndex: 1, muts: map[string]int{}, fail: map[string]error{}}
}

// FailNext makes the next call of method kind (such as "NeighSet") return
// err and change nothing. It panics if kind is not a vxlan.Kernel method,
// which is a mistake in the test.
func (k *Kernel) FailNext(kind string, err error) {
	if !known(kind) {
		panic(fmt.Sprintf("vxlantest: FailNext(%q): not a vxlan.Kernel method", kind))
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

// MutationCount returns the total of Mutations.
func (k *Kernel) MutationCount() int {
	n := 0
	for _, c := range k.Mutations() {
		n += c
	}
	return n
}

// ResetMutations sets the counts of Mutations back to zero.
func (k *Kernel) ResetMutations() {
	k.mu.Lock()
	defer k.mu.Unlock()
	clear(k.muts)
}

// beginLocked counts a call of kind and returns the error injected for it.
// k.mu must be held.
func (k *Kernel) beginLocked(kind string) error {
	if mutating(kind) {
		k.muts[kind]++
	}
	if err, ok := k.fail[kind]; ok {
		delete(k.fail, kind)
		return err
	}
	return nil
}

func (k *Kernel) byIndexLocked(l netlink.Link) (*link, error) {
	a := l.Attrs()
	if a.Index == 0 { // as netlink's ensureIndex
		for _, ln := range k.links {
			if ln.attrs.Name == a.Name {
				return ln, nil
			}
		}
	}
	if ln, ok := k.links[a.Index]; ok {
		return ln, nil
	}
	return nil, fmt.Errorf("link index %d: %w", a.Index, unix.ENODEV)
}

func (k *Kernel) byNameLocked(name string) *link {
	for _, ln := range k.links {
		if ln.attrs.Name == name {
			return ln
		}
	}
	return nil
}

// export returns a copy of ln as netlink would decode it.
func (ln *link) export() netlink.Link {
	attrs := ln.attrs
	attrs.HardwareAddr = slices.Clone(attrs.HardwareAddr)
	if ln.vx != nil {
		v := *ln.vx
		v.LinkAttrs = attrs
		v.SrcAddr = slices.Clone(v.SrcAddr)
		v.Group = slices.Clone(v.Group)
		return &v
	}
	return &netlink.GenericLink{LinkAttrs: attrs, LinkType: ln.kind}
}

// LinkByName implements vxlan.Kernel.
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

// LinkList implements vxlan.Kernel; links come in index order.
func (k *Kernel) LinkList() ([]netlink.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginLocked("LinkList"); err != nil {
		return nil, err
	}
	var out []netlink.Link
	for _, i := range k.indexesLocked() {
		out = append(out, k.links[i].export())
	}
	return out, nil
}

func (k *Kernel) indexesLocked() []int {
	idx := make([]int, 0, len(k.links))
	for i := range k.links {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	return idx
}

// LinkAdd implements vxlan.Kernel. Any link type is accepted (for test
// set-up); a *netlink.Vxlan keeps its VXLAN attributes and needs its
// underlay device to exist. Missing MTU and MAC get defaults (1450 for
// VXLAN, else 1500; 02:00:00:00:00:<index>). Only the up flag is kept.
func (k *Kernel) LinkAdd(l netlink.Link) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginLocked("LinkAdd"); err != nil {
		return err
	}
	a := *l.Attrs()
	switch {
	case a.Name == "" || len(a.Name) > 15:
		return fmt.Errorf("link name %q: %w", a.Name, unix.EINVAL)
	case k.byNameLocked(a.Name) != nil:
		return fmt.Errorf("link %s: %w", a.Name, unix.EEXIST)
	case a.HardwareAddr != nil && (len(a.HardwareAddr) != 6 || a.HardwareAddr[0]&1 != 0):
		return fmt.Errorf("link %s mac %s: %w", a.Name, a.HardwareAddr, unix.EADDRNOTAVAIL)
	}
	ln := &link{kind: l.Type()}
	idx := k.nextIndex
	if v, ok := l.(*netlink.Vxlan); ok {
		if v.VtepDevIndex != 0 && k.links[v.VtepDevIndex] == nil {
			return fmt.Errorf("vxlan %s underlay index %d: %w", a.Name, v.VtepDevIndex, unix.ENODEV)
		}
		vc := *v
		vc.SrcAddr = slices.Clone(v.SrcAddr)
		vc.Group = slices.Clone(v.Group)
		ln.vx = &vc
		if a.MTU == 0 {
			a.MTU = 1450
		}
	}
	if a.MTU == 0 {
		a.MTU = 1500
	}
	if a.HardwareAddr == nil {
		a.HardwareAddr = net.HardwareAddr{2, 0, 0, 0, 0, byte(idx)}
	}
	ln.attrs = netlink.LinkAttrs{
		Index:        idx,
		Name:         a.Name,
		MTU:          a.MTU,
		HardwareAddr: slices.Clone(a.HardwareAddr),
		Flags:        a.Flags & net.FlagUp,
	}
	k.links[idx] = ln
	k.nextIndex++
	return nil
}

// LinkDel implements vxlan.Kernel: it also deletes the link's addresses and
// entries, and the VXLAN devices whose underlay it is.
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
	k.deleteLocked(ln.attrs.Index)
	return nil
}

func (k *Kernel) deleteLocked(idx int) {
	delete(k.links, idx)
	gone := func(n neigh) bool { return n.link == idx }
	k.neighs = slices.DeleteFunc(k.neighs, gone)
	k.fdb = slices.DeleteFunc(k.fdb, gone)
	for _, i := range k.indexesLocked() {
		if ln := k.links[i]; ln != nil && ln.vx != nil && ln.vx.VtepDevIndex == idx {
			k.deleteLocked(i)
		}
	}
}

// LinkSetMTU implements vxlan.Kernel.
func (k *Kernel) LinkSetMTU(l netlink.Link, mtu int) error {
	return k.setLink("LinkSetMTU", l, func(ln *link) error {
		if mtu < 68 || mtu > 65535 {
			return fmt.Errorf("mtu %d: %w", mtu, unix.EINVAL)
		}
		ln.attrs.MTU = mtu
		return nil
	})
}

// LinkSetUp implements vxlan.Kernel.
func (k *Kernel) LinkSetUp(l netlink.Link) error {
	return k.setLink("LinkSetUp", l, func(ln *link) error {
		ln.attrs.Flags |= net.FlagUp
		return nil
	})
}

// LinkSetHardwareAddr implements vxlan.Kernel.
func (k *Kernel) LinkSetHardwareAddr(l netlink.Link, hw net.HardwareAddr) error {
	return k.setLink("LinkSetHardwareAddr", l, func(ln *link) error {
		if len(hw) != 6 || hw[0]&1 != 0 {
			return fmt.Errorf("mac %s: %w", hw, unix.EADDRNOTAVAIL)
		}
		ln.attrs.HardwareAddr = slices.Clone(hw)
		return nil
	})
}

func (k *Kernel) setLink(kind string, l netlink.Link, set func(*link) error) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginLocked(kind); err != nil {
		return err
	}
	ln, err := k.byIndexLocked(l)
	if err != nil {
		return err
	}
	return set(ln)
}

// AddrList implements vxlan.Kernel.
func (k *Kernel) AddrList(l netlink.Link, family int) ([]netlink.Addr, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginLocked("AddrList"); err != nil {
		return nil, err
	}
	ln, err := k.byIndexLocked(l)
	if err != nil {
		return nil, err
	}
	var out []netlink.Addr
	for _, p := range ln.addrs {
		if family == netlink.FAMILY_ALL || familyOf(p.Addr()) == family {
			out = append(out, netlink.Addr{
				IPNet:     &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
				LinkIndex: ln.attrs.Index,
			})
		}
	}
	return out, nil
}

// AddrReplace implements vxlan.Kernel.
func (k *Kernel) AddrReplace(l netlink.Link, addr *netlink.Addr) error {
	return k.setLink("AddrReplace", l, func(ln *link) error {
		p, err := prefixOf(addr)
		if err != nil {
			return err
		}
		if !slices.Contains(ln.addrs, p) {
			ln.addrs = append(ln.addrs, p)
		}
		return nil
	})
}

// AddrDel implements vxlan.Kernel.
func (k *Kernel) AddrDel(l netlink.Link, addr *netlink.Addr) error {
	return k.setLink("AddrDel", l, func(ln *link) error {
		p, err := prefixOf(addr)
		if err != nil {
			return err
		}
		i := slices.Index(ln.addrs, p)
		if i < 0 {
			return fmt.Errorf("address %s: %w", p, unix.EADDRNOTAVAIL)
		}
		ln.addrs = slices.Delete(ln.addrs, i, i+1)
		return nil
	})
}

func prefixOf(a *netlink.Addr) (netip.Prefix, error) {
	if a == nil || a.IPNet == nil {
		return netip.Prefix{}, fmt.Errorf("address without IPNet: %w", unix.EINVAL)
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	ones, _ := a.Mask.Size()
	if !ok {
		return netip.Prefix{}, fmt.Errorf("address %s: %w", a.IPNet, unix.EINVAL)
	}
	return netip.PrefixFrom(ip.Unmap(), ones), nil
}

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// String renders the whole state as sorted lines, one object each, in the
// style of `ip -d link`, `ip addr`, `ip neigh` and `bridge fdb`, naming
// links rather than their indexes (which change when a link is recreated).
func (k *Kernel) String() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	name := func(idx int) string {
		if ln, ok := k.links[idx]; ok {
			return ln.attrs.Name
		}
		return fmt.Sprintf("if%d", idx)
	}
	var lines []string
	for _, ln := range k.links {
		var b strings.Builder
		fmt.Fprintf(&b, "link %s %s", ln.attrs.Name, ln.kind)
		if v := ln.vx; v != nil {
			fmt.Fprintf(&b, " vni %d port %d", v.VxlanId, v.Port)
			if len(v.SrcAddr) > 0 {
				fmt.Fprintf(&b, " local %s", v.SrcAddr)
			}
			if v.VtepDevIndex != 0 {
				fmt.Fprintf(&b, " dev %s", name(v.VtepDevIndex))
			}
			if !v.Learning {
				b.WriteString(" nolearning")
			}
		}
		state := "down"
		if ln.attrs.Flags&net.FlagUp != 0 {
			state = "up"
		}
		fmt.Fprintf(&b, " mtu %d mac %s %s", ln.attrs.MTU, ln.attrs.HardwareAddr, state)
		lines = append(lines, b.String())
		for _, p := range ln.addrs {
			lines = append(lines, fmt.Sprintf("addr %s dev %s", p, ln.attrs.Name))
		}
	}
	for _, n := range k.neighs {
		lines = append(lines, fmt.Sprintf("neigh %s dev %s lladdr %s %s", n.ip, name(n.link), n.mac, stateName(n.state)))
	}
	for _, n := range k.fdb {
		dst := ""
		if n.ip.IsValid() {
			dst = " dst " + n.ip.String()
		}
		lines = append(lines, fmt.Sprintf("fdb %s dev %s%s self %s", n.mac, name(n.link), dst, stateName(n.state)))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

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
	case st&netlink.NUD_FAILED != 0:
		return "failed"
	}
	return fmt.Sprintf("state%#x", st)
}
