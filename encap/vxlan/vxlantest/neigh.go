package vxlantest

import (
	"bytes"
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NeighList implements vxlan.Kernel. Family unix.AF_BRIDGE lists FDB
// entries, unix.AF_INET or unix.AF_INET6 neighbour entries of that family,
// 0 all neighbour entries; linkIndex 0 means every link.
func (k *Kernel) NeighList(linkIndex, family int) ([]netlink.Neigh, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginLocked("NeighList"); err != nil {
		return nil, err
	}
	var out []netlink.Neigh
	if family == unix.AF_BRIDGE {
		for _, n := range k.fdb {
			if linkIndex == 0 || n.link == linkIndex {
				out = append(out, n.export(unix.AF_BRIDGE))
			}
		}
		return out, nil
	}
	for _, n := range sortedNeighs(k.neighs) {
		f := familyOf(n.ip)
		if (linkIndex == 0 || n.link == linkIndex) && (family == 0 || family == f) {
			out = append(out, n.export(f))
		}
	}
	return out, nil
}

func (n neigh) export(family int) netlink.Neigh {
	out := netlink.Neigh{LinkIndex: n.link, Family: family, State: n.state, HardwareAddr: slices.Clone(n.mac)}
	if n.ip.IsValid() {
		out.IP = net.IP(n.ip.AsSlice())
	}
	if family == unix.AF_BRIDGE {
		out.Flags = netlink.NTF_SELF
	}
	return out
}

func sortedNeighs(ns []neigh) []neigh {
	return slices.SortedFunc(slices.Values(ns), func(a, b neigh) int {
		return cmp.Or(cmp.Compare(a.link, b.link), a.ip.Compare(b.ip))
	})
}

// NeighSet implements vxlan.Kernel. For FDB entries (unix.AF_BRIDGE) it
// follows the VXLAN driver: a unicast MAC has one destination, which a set
// replaces; the all-zeros and multicast MACs get one entry per destination.
// An FDB entry without IP is kept (as the kernel lists the device's own
// addresses).
func (k *Kernel) NeighSet(n *netlink.Neigh) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginLocked("NeighSet"); err != nil {
		return err
	}
	if _, ok := k.links[n.LinkIndex]; !ok {
		return fmt.Errorf("neighbour on link index %d: %w", n.LinkIndex, unix.ENODEV)
	}
	if len(n.HardwareAddr) != 6 {
		return fmt.Errorf("neighbour lladdr %q: %w", n.HardwareAddr, unix.EINVAL)
	}
	ip, _ := netip.AddrFromSlice(n.IP)
	ip = ip.Unmap()
	e := neigh{link: n.LinkIndex, ip: ip, mac: slices.Clone(n.HardwareAddr), state: n.State}
	if n.Family == unix.AF_BRIDGE {
		single := n.HardwareAddr[0]&1 == 0 && !bytes.Equal(n.HardwareAddr, make([]byte, 6))
		i := slices.IndexFunc(k.fdb, func(f neigh) bool {
			return f.link == e.link && bytes.Equal(f.mac, e.mac) && (single || f.ip == e.ip)
		})
		if i < 0 {
			k.fdb = append(k.fdb, e)
		} else {
			k.fdb[i] = e
		}
		return nil
	}
	if !ip.IsValid() {
		return fmt.Errorf("neighbour without IP: %w", unix.EINVAL)
	}
	i := slices.IndexFunc(k.neighs, func(o neigh) bool { return o.link == e.link && o.ip == e.ip })
	if i < 0 {
		k.neighs = append(k.neighs, e)
	} else {
		k.neighs[i] = e
	}
	return nil
}

// NeighDel implements vxlan.Kernel. An FDB entry is matched by link, MAC
// and, when n.IP is set, destination.
func (k *Kernel) NeighDel(n *netlink.Neigh) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginLocked("NeighDel"); err != nil {
		return err
	}
	ip, _ := netip.AddrFromSlice(n.IP)
	ip = ip.Unmap()
	if n.Family == unix.AF_BRIDGE {
		before := len(k.fdb)
		k.fdb = slices.DeleteFunc(k.fdb, func(f neigh) bool {
			return f.link == n.LinkIndex && bytes.Equal(f.mac, n.HardwareAddr) && (n.IP == nil || f.ip == ip)
		})
		if len(k.fdb) == before {
			return fmt.Errorf("fdb %s dst %s: %w", n.HardwareAddr, n.IP, unix.ENOENT)
		}
		return nil
	}
	i := slices.IndexFunc(k.neighs, func(o neigh) bool { return o.link == n.LinkIndex && o.ip == ip })
	if i < 0 {
		return fmt.Errorf("neighbour %s: %w", n.IP, unix.ENOENT)
	}
	k.neighs = slices.Delete(k.neighs, i, i+1)
	return nil
}
