package ipip

import (
	"errors"
	"fmt"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Kernel is the part of rtnetlink the driver uses, bound to one network
// namespace. Every method blocks for one netlink request (a dump for the
// List methods) and must be safe for concurrent use. The List methods and
// LinkByName change nothing. Links are identified by Attrs().Index, which
// the driver always sets from a link it read back. The driver does not keep
// the arguments it passes, nor modify the values it gets back.
type Kernel interface {
	// LinkByName returns the link called name: a *netlink.Iptun for an
	// ipip device, a *netlink.Tuntap for a TUN. A missing link is an
	// error for which errors.Is(err, unix.ENODEV) holds.
	LinkByName(name string) (netlink.Link, error)
	// LinkList returns every link of the namespace.
	LinkList() ([]netlink.Link, error)
	// LinkAdd creates link (a *netlink.Iptun here) with the MTU and up
	// flag set in it. Not idempotent: a taken name, or a second ipip
	// device with the same local and remote, is unix.EEXIST; a kernel
	// without ipip says unix.EOPNOTSUPP.
	LinkAdd(link netlink.Link) error
	// LinkDel deletes link with its addresses and routes. Not idempotent:
	// a missing link is unix.ENODEV.
	LinkDel(link netlink.Link) error
	// LinkSetMTU sets the MTU of link. Idempotent.
	LinkSetMTU(link netlink.Link, mtu int) error
	// LinkSetUp sets link administratively up. Idempotent.
	LinkSetUp(link netlink.Link) error
	// LinkSetAlias sets the alias (IFLA_IFALIAS) of link. Idempotent.
	LinkSetAlias(link netlink.Link, alias string) error
	// AddrList returns the addresses on link of family (netlink.FAMILY_V4
	// here).
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	// AddrReplace adds addr to link, or updates it if present. Idempotent.
	AddrReplace(link netlink.Link, addr *netlink.Addr) error
	// AddrDel removes addr from link. Not idempotent: a missing address is
	// unix.EADDRNOTAVAIL.
	AddrDel(link netlink.Link, addr *netlink.Addr) error
}

// dumpAttempts bounds the retries of a dump that the kernel marked
// interrupted (NLM_F_DUMP_INTR: the table changed while it was read, so the
// answer may be incomplete and must not be used to delete anything).
const dumpAttempts = 3

// netlinkKernel passes each call through to a netlink.Handle. A handle
// bound to a namespace shares one socket per protocol and is not safe for
// concurrent use, so calls are serialized.
type netlinkKernel struct {
	mu sync.Mutex
	h  *netlink.Handle
}

// NewNetlinkKernel returns a Kernel that passes each call through to h: a
// handle bound to a namespace (netlink.NewHandleAt) or to the current one
// (netlink.NewHandle). The caller keeps ownership of h and closes it after
// the last call. The Kernel is safe for concurrent use (it serializes
// calls), retries a dump that the kernel reports as interrupted, and
// reports a missing link as unix.ENODEV.
func NewNetlinkKernel(h *netlink.Handle) Kernel {
	return &netlinkKernel{h: h}
}

func (k *netlinkKernel) LinkByName(name string) (netlink.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l, err := k.h.LinkByName(name)
	if _, ok := errors.AsType[netlink.LinkNotFoundError](err); ok {
		return nil, fmt.Errorf("link %s: %w", name, unix.ENODEV)
	}
	return l, err
}

func (k *netlinkKernel) LinkList() ([]netlink.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return retryDump(k.h.LinkList)
}

func (k *netlinkKernel) LinkAdd(link netlink.Link) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.LinkAdd(link)
}

func (k *netlinkKernel) LinkDel(link netlink.Link) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.LinkDel(link)
}

func (k *netlinkKernel) LinkSetMTU(link netlink.Link, mtu int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.LinkSetMTU(link, mtu)
}

func (k *netlinkKernel) LinkSetUp(link netlink.Link) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.LinkSetUp(link)
}

func (k *netlinkKernel) LinkSetAlias(link netlink.Link, alias string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.LinkSetAlias(link, alias)
}

func (k *netlinkKernel) AddrList(link netlink.Link, family int) ([]netlink.Addr, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return retryDump(func() ([]netlink.Addr, error) { return k.h.AddrList(link, family) })
}

func (k *netlinkKernel) AddrReplace(link netlink.Link, addr *netlink.Addr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.AddrReplace(link, addr)
}

func (k *netlinkKernel) AddrDel(link netlink.Link, addr *netlink.Addr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.AddrDel(link, addr)
}

// retryDump runs dump until it is not interrupted, at most dumpAttempts
// times; the last interrupted answer is returned with its error.
func retryDump[T any](dump func() ([]T, error)) ([]T, error) {
	var (
		res []T
		err error
	)
	for range dumpAttempts {
		res, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return res, err
}
