package vxlantest

import (
	"net"
	"sync"

	"github.com/vishvananda/netlink"

	"github.com/weft-net/weft/encap/vxlan"
)

var _ vxlan.Kernel = (*Counter)(nil)

// Counter is a vxlan.Kernel that passes every call through to another and
// counts the mutating ones (failed ones included), such as to show that a
// second Apply against a real kernel changes nothing. It is safe for
// concurrent use if the Kernel it wraps is.
type Counter struct {
	k    vxlan.Kernel
	mu   sync.Mutex
	muts map[string]int
}

// NewCounter returns a Counter passing calls through to k.
func NewCounter(k vxlan.Kernel) *Counter {
	return &Counter{k: k, muts: map[string]int{}}
}

// Mutations returns the number of mutating calls so far, by method name;
// methods not called are absent.
func (c *Counter) Mutations() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[string]int{}
	for kind, n := range c.muts {
		m[kind] = n
	}
	return m
}

// ResetMutations sets the counts of Mutations back to zero.
func (c *Counter) ResetMutations() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.muts)
}

func (c *Counter) count(kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.muts[kind]++
}

// LinkByName implements vxlan.Kernel.
func (c *Counter) LinkByName(name string) (netlink.Link, error) { return c.k.LinkByName(name) }

// LinkList implements vxlan.Kernel.
func (c *Counter) LinkList() ([]netlink.Link, error) { return c.k.LinkList() }

// LinkAdd implements vxlan.Kernel.
func (c *Counter) LinkAdd(l netlink.Link) error {
	c.count("LinkAdd")
	return c.k.LinkAdd(l)
}

// LinkDel implements vxlan.Kernel.
func (c *Counter) LinkDel(l netlink.Link) error {
	c.count("LinkDel")
	return c.k.LinkDel(l)
}

// LinkSetMTU implements vxlan.Kernel.
func (c *Counter) LinkSetMTU(l netlink.Link, mtu int) error {
	c.count("LinkSetMTU")
	return c.k.LinkSetMTU(l, mtu)
}

// LinkSetUp implements vxlan.Kernel.
func (c *Counter) LinkSetUp(l netlink.Link) error {
	c.count("LinkSetUp")
	return c.k.LinkSetUp(l)
}

// LinkSetHardwareAddr implements vxlan.Kernel.
func (c *Counter) LinkSetHardwareAddr(l netlink.Link, hw net.HardwareAddr) error {
	c.count("LinkSetHardwareAddr")
	return c.k.LinkSetHardwareAddr(l, hw)
}

// AddrList implements vxlan.Kernel.
func (c *Counter) AddrList(l netlink.Link, family int) ([]netlink.Addr, error) {
	return c.k.AddrList(l, family)
}

// AddrReplace implements vxlan.Kernel.
func (c *Counter) AddrReplace(l netlink.Link, a *netlink.Addr) error {
	c.count("AddrReplace")
	return c.k.AddrReplace(l, a)
}

// AddrDel implements vxlan.Kernel.
func (c *Counter) AddrDel(l netlink.Link, a *netlink.Addr) error {
	c.count("AddrDel")
	return c.k.AddrDel(l, a)
}

// NeighList implements vxlan.Kernel.
func (c *Counter) NeighList(linkIndex, family int) ([]netlink.Neigh, error) {
	return c.k.NeighList(linkIndex, family)
}

// NeighSet implements vxlan.Kernel.
func (c *Counter) NeighSet(n *netlink.Neigh) error {
	c.count("NeighSet")
	return c.k.NeighSet(n)
}

// NeighDel implements vxlan.Kernel.
func (c *Counter) NeighDel(n *netlink.Neigh) error {
	c.count("NeighDel")
	return c.k.NeighDel(n)
}
