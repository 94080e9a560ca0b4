package wireguard

import (
	"errors"
	"fmt"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Link is the part of rtnetlink the driver uses, bound to one network
// namespace. Every method blocks for one netlink request (a dump for the
// List methods) and must be safe for concurrent use. LinkByName and the List
// methods change nothing. The driver passes links it read back (their
// Attrs().Index set), never keeps the arguments it passes, and never
// modifies the values it gets back.
type Link interface {
	// LinkByName returns the link called name. A missing link is an error
	// for which errors.Is(err, unix.ENODEV) holds.
	LinkByName(name string) (netlink.Link, error)
	// LinkList returns every link of the namespace.
	LinkList() ([]netlink.Link, error)
	// LinkAdd creates link (a *netlink.Wireguard here) with its MTU. Not
	// idempotent: a taken name is unix.EEXIST; a kernel without WireGuard
	// refuses with unix.EOPNOTSUPP ("Unknown device type").
	LinkAdd(link netlink.Link) error
	// LinkDel deletes link with its addresses and routes. Not idempotent:
	// a missing link is unix.ENODEV.
	LinkDel(link netlink.Link) error
	// LinkSetMTU sets the MTU of link. Idempotent.
	LinkSetMTU(link netlink.Link, mtu int) error
	// LinkSetUp sets link administratively up. Idempotent.
	LinkSetUp(link netlink.Link) error
	// AddrList returns the addresses on link of family (netlink.FAMILY_ALL
	// here).
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	// AddrReplace adds addr to link, or updates it if present. Idempotent.
	AddrReplace(link netlink.Link, addr *netlink.Addr) error
	// AddrDel removes addr from link. Not idempotent: a missing address is
	// unix.EADDRNOTAVAIL.
	AddrDel(link netlink.Link, addr *netlink.Addr) error
}

// Client is the part of wgctrl the driver uses: *wgctrl.Client (for kernel
// devices, created inside the namespace) and the client of NewUAPIClient
// (for the embedded user-space device) both satisfy it, so one code path
// configures either. Methods block for one request, must be safe for
// concurrent use, and do not keep their arguments.
type Client interface {
	// Device returns the WireGuard configuration and state of the device
	// called name. A missing device is an error for which
	// errors.Is(err, os.ErrNotExist) holds.
	Device(name string) (*wgtypes.Device, error)
	// ConfigureDevice applies cfg to the device called name, in order:
	// device fields, then each peer entry (an entry may name a peer
	// already configured by an earlier entry of the same cfg). Not
	// idempotent in general (a Remove of a missing peer is ignored, a
	// create is not); on error, a prefix of cfg may have been applied.
	ConfigureDevice(name string, cfg wgtypes.Config) error
}

// dumpAttempts bounds the retries of a dump that the kernel marked
// interrupted (NLM_F_DUMP_INTR: the table changed while it was read, so the
// answer may be incomplete and must not be used to delete anything).
const dumpAttempts = 3

// netlinkLink passes each call through to a netlink.Handle. A handle bound
// to a namespace shares one socket per protocol and is not safe for
// concurrent use, so calls are serialized.
type netlinkLink struct {
	mu sync.Mutex
	h  *netlink.Handle
}

// NewNetlinkLink returns a Link that passes each call through to h: a handle
// bound to a namespace (netlink.NewHandleAt) or to the current one
// (netlink.NewHandle). The caller keeps ownership of h and closes it after
// the last call. The Link is safe for concurrent use (it serializes calls),
// retries a dump that the kernel reports as interrupted, and reports a
// missing link as unix.ENODEV.
func NewNetlinkLink(h *netlink.Handle) Link {
	return &netlinkLink{h: h}
}

func (k *netlinkLink) LinkByName(name string) (netlink.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l, err := k.h.LinkByName(name)
	if _, ok := errors.AsType[netlink.LinkNotFoundError](err); ok {
		return nil, fmt.Errorf("link %s: %w", name, unix.ENODEV)
	}
	return l, err
}

func (k *netlinkLink) LinkList() ([]netlink.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return retryDump(k.h.LinkList)
}

func (k *netlinkLink) LinkAdd(link netlink.Link) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.LinkAdd(link)
}

func (k *netlinkLink) LinkDel(link netlink.Link) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.LinkDel(link)
}

func (k *netlinkLink) LinkSetMTU(link netlink.Link, mtu int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.LinkSetMTU(link, mtu)
}

func (k *netlinkLink) LinkSetUp(link netlink.Link) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.LinkSetUp(link)
}

func (k *netlinkLink) AddrList(link netlink.Link, family int) ([]netlink.Addr, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return retryDump(func() ([]netlink.Addr, error) { return k.h.AddrList(link, family) })
}

func (k *netlinkLink) AddrReplace(link netlink.Link, addr *netlink.Addr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.h.AddrReplace(link, addr)
}

func (k *netlinkLink) AddrDel(link netlink.Link, addr *netlink.Addr) error {
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
