// Package wgtest provides an in-memory model of a namespace's links and
// WireGuard devices for tests of package wireguard: one Kernel is at once its
// wireguard.Link, its wireguard.Client and, through Start, its
// wireguard.Starter.
package wgtest

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weft-net/weft/encap/wireguard"
)

var (
	_ wireguard.Link     = (*Kernel)(nil)
	_ wireguard.Client   = (*Kernel)(nil)
	_ wireguard.Starter  = (*Kernel)(nil).Start
	_ wireguard.Embedded = (*embedded)(nil)
)

// mutating are the methods that change state.
func mutating(kind string) bool {
	switch kind {
	case "LinkAdd", "LinkDel", "LinkSetMTU", "LinkSetUp", "AddrReplace", "AddrDel",
		"ConfigureDevice", "Start", "Close", "Up":
		return true
	}
	return false
}

// known reports whether kind names a method FailNext can fail.
func known(kind string) bool {
	switch kind {
	case "LinkByName", "LinkList", "AddrList", "Device":
		return true
	}
	return mutating(kind)
}

// Kernel is an in-memory model of the links and addresses of one network
// namespace and of the WireGuard devices on them, with the semantics the
// driver depends on: errors (unix.EEXIST, ENODEV, EADDRNOTAVAIL,
// EOPNOTSUPP, os.ErrNotExist), deleting a link deletes its addresses and its
// device, ConfigureDevice applies entries in order as wireguard-go does (an
// allowed IP moves to the last peer given it, a peer with the device's own
// key is ignored, turning a keepalive on while the link is up sends a
// keepalive: a handshake kick, counted by Kicks). It starts empty. Its
// methods are safe for concurrent use. The zero value is not usable: call
// New.
type Kernel struct {
	mu         sync.Mutex
	links      map[int]*link
	nextIndex  int
	noWG       bool
	muts       map[string]int
	fail       map[string]error
	kicks      map[wgtypes.Key]int
	names      map[wgtypes.Key]string
	generation int // of Start; tells embedded devices apart
}

type link struct {
	attrs netlink.LinkAttrs
	kind  string
	addrs []netip.Prefix
	wg    *device // nil for links other than WireGuard devices
	gen   int     // the Start that made it; 0: LinkAdd
}

type device struct {
	priv  wgtypes.Key
	port  int
	peers map[wgtypes.Key]*peer
}

type peer struct {
	endpoint      netip.AddrPort
	keepalive     time.Duration
	allowed       []netip.Prefix
	lastHandshake time.Time
}

// New returns an empty Kernel that has WireGuard.
func New() *Kernel {
	return &Kernel{
		links: map[int]*link{}, nextIndex: 1, muts: map[string]int{}, fail: map[string]error{},
		kicks: map[wgtypes.Key]int{}, names: map[wgtypes.Key]string{},
	}
}

// RefuseWireGuard makes LinkAdd refuse WireGuard links from now on with
// unix.EOPNOTSUPP, as a kernel without the module does.
func (k *Kernel) RefuseWireGuard() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.noWG = true
}

// NameKey makes String show key as name instead of its base64.
func (k *Kernel) NameKey(key wgtypes.Key, name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.names[key] = name
}

// FailNext makes the next call of method kind (such as "ConfigureDevice",
// or "Close" and "Up" of a started device) return err and change nothing.
// It panics if kind is not such a method, which is a mistake in the test.
func (k *Kernel) FailNext(kind string, err error) {
	if !known(kind) {
		panic(fmt.Sprintf("wgtest: FailNext(%q): not a method of the fake", kind))
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
	return maps(k.muts)
}

// ResetMutations sets the counts of Mutations and Kicks back to zero.
func (k *Kernel) ResetMutations() {
	k.mu.Lock()
	defer k.mu.Unlock()
	clear(k.muts)
	clear(k.kicks)
}

// Kicks returns the keepalives sent at once (handshake kicks) so far, by
// peer (its name, or its key in base64).
func (k *Kernel) Kicks() map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	m := map[string]int{}
	for key, n := range k.kicks {
		m[k.nameLocked(key)] = n
	}
	return m
}

// Roam makes the peer key of device dev look as if it had just handshaken
// from ep at time at, as WireGuard records a peer that roamed.
func (k *Kernel) Roam(dev string, key wgtypes.Key, ep netip.AddrPort, at time.Time) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.byNameLocked(dev)
	if l == nil || l.wg == nil || l.wg.peers[key] == nil {
		return fmt.Errorf("wgtest: roam: no peer %s on %s", key, dev)
	}
	p := l.wg.peers[key]
	p.endpoint, p.lastHandshake = ep, at
	return nil
}

func maps(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// beginLocked counts a call of kind and returns the error injected for it.
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

func (k *Kernel) byNameLocked(name string) *link {
	for _, l := range k.links {
		if l.attrs.Name == name {
			return l
		}
	}
	return nil
}

func (k *Kernel) byLinkLocked(nl netlink.Link) (*link, error) {
	a := nl.Attrs()
	if a.Index == 0 {
		if l := k.byNameLocked(a.Name); l != nil {
			return l, nil
		}
	}
	if l, ok := k.links[a.Index]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("link index %d: %w", a.Index, unix.ENODEV)
}

func (k *Kernel) nameLocked(key wgtypes.Key) string {
	if n, ok := k.names[key]; ok {
		return n
	}
	return key.String()
}

// export returns a copy of l as netlink would decode it.
func (l *link) export() netlink.Link {
	a := l.attrs
	a.HardwareAddr = slices.Clone(a.HardwareAddr)
	switch l.kind {
	case "wireguard":
		return &netlink.Wireguard{LinkAttrs: a}
	case "tuntap":
		return &netlink.Tuntap{LinkAttrs: a}
	}
	return &netlink.GenericLink{LinkAttrs: a, LinkType: l.kind}
}

// addLocked adds a link called name of kind, down, with mtu.
func (k *Kernel) addLocked(name, kind string, mtu int, flags net.Flags) (*link, error) {
	if k.byNameLocked(name) != nil {
		return nil, fmt.Errorf("add link %s: %w", name, unix.EEXIST)
	}
	if mtu == 0 {
		mtu = 1500
	}
	l := &link{attrs: netlink.LinkAttrs{Name: name, Index: k.nextIndex, MTU: mtu, Flags: flags & net.FlagUp}, kind: kind}
	k.links[l.attrs.Index] = l
	k.nextIndex++
	return l, nil
}

// String renders the namespace as sorted lines, each ending in a newline
// ("" when empty): links, addresses, and per WireGuard device its key (shown
// by its public key) and port, and its peers.
func (k *Kernel) String() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var lines []string
	for _, l := range k.links {
		up := "down"
		if l.attrs.Flags&net.FlagUp != 0 {
			up = "up"
		}
		lines = append(lines, fmt.Sprintf("link %s %s mtu %d %s", l.attrs.Name, l.kind, l.attrs.MTU, up))
		for _, a := range l.addrs {
			lines = append(lines, fmt.Sprintf("addr %s dev %s", a, l.attrs.Name))
		}
		if l.wg == nil {
			continue
		}
		key := "none"
		if l.wg.priv != (wgtypes.Key{}) {
			key = k.nameLocked(l.wg.priv.PublicKey())
		}
		lines = append(lines, fmt.Sprintf("wg %s key %s port %d", l.attrs.Name, key, l.wg.port))
		for pk, p := range l.wg.peers {
			s := fmt.Sprintf("wg %s peer %s", l.attrs.Name, k.nameLocked(pk))
			if p.endpoint.IsValid() {
				s += " endpoint " + p.endpoint.String()
			}
			if p.keepalive != 0 {
				s += " keepalive " + p.keepalive.String()
			}
			allowed := slices.Clone(p.allowed)
			slices.SortFunc(allowed, func(a, b netip.Prefix) int {
				if c := a.Addr().Compare(b.Addr()); c != 0 {
					return c
				}
				return a.Bits() - b.Bits()
			})
			for _, a := range allowed {
				s += " allowed " + a.String()
			}
			lines = append(lines, s)
		}
	}
	if len(lines) == 0 {
		return ""
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

// LinkByName implements wireguard.Link.
func (k *Kernel) LinkByName(name string) (netlink.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginLocked("LinkByName"); err != nil {
		return nil, err
	}
	if l := k.byNameLocked(name); l != nil {
		return l.export(), nil
	}
	return nil, fmt.Errorf("link %s: %w", name, unix.ENODEV)
}

// LinkList implements wireguard.Link; links come in index order.
func (k *Kernel) LinkList() ([]netlink.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginLocked("LinkList"); err != nil {
		return nil, err
	}
	idx := make([]int, 0, len(k.links))
	for i := range k.links {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	out := make([]netlink.Link, 0, len(idx))
	for _, i := range idx {
		out = append(out, k.links[i].export())
	}
	return out, nil
}

// LinkAdd implements wireguard.Link. A *netlink.Wireguard gets an
// unconfigured WireGuard device; any other link is kept by its Type.
func (k *Kernel) LinkAdd(nl netlink.Link) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginLocked("LinkAdd"); err != nil {
		return err
	}
	a := nl.Attrs()
	if nl.Type() == "wireguard" && k.noWG {
		return fmt.Errorf("add link %s: %w", a.Name, unix.EOPNOTSUPP)
	}
	l, err := k.addLocked(a.Name, nl.Type(), a.MTU, a.Flags)
	if err != nil {
		return err
	}
	if l.kind == "wireguard" {
		l.wg = &device{peers: map[wgtypes.Key]*peer{}}
	}
	return nil
}

// LinkDel implements wireguard.Link.
func (k *Kernel) LinkDel(nl netlink.Link) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginLocked("LinkDel"); err != nil {
		return err
	}
	l, err := k.byLinkLocked(nl)
	if err != nil {
		return err
	}
	delete(k.links, l.attrs.Index)
	return nil
}

// LinkSetMTU implements wireguard.Link.
func (k *Kernel) LinkSetMTU(nl netlink.Link, mtu int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginLocked("LinkSetMTU"); err != nil {
		return err
	}
	l, err := k.byLinkLocked(nl)
	if err != nil {
		return err
	}
	l.attrs.MTU = mtu
	return nil
}

// LinkSetUp implements wireguard.Link.
func (k *Kernel) LinkSetUp(nl netlink.Link) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginLocked("LinkSetUp"); err != nil {
		return err
	}
	l, err := k.byLinkLocked(nl)
	if err != nil {
		return err
	}
	l.attrs.Flags |= net.FlagUp
	return nil
}

// AddrList implements wireguard.Link (every family).
func (k *Kernel) AddrList(nl netlink.Link, family int) ([]netlink.Addr, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginLocked("AddrList"); err != nil {
		return nil, err
	}
	l, err := k.byLinkLocked(nl)
	if err != nil {
		return nil, err
	}
	var out []netlink.Addr
	for _, p := range l.addrs {
		out = append(out, netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, LinkIndex: l.attrs.Index})
	}
	return out, nil
}

// AddrReplace implements wireguard.Link.
func (k *Kernel) AddrReplace(nl netlink.Link, addr *netlink.Addr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginLocked("AddrReplace"); err != nil {
		return err
	}
	l, err := k.byLinkLocked(nl)
	if err != nil {
		return err
	}
	p := prefix(addr.IPNet)
	if !slices.Contains(l.addrs, p) {
		l.addrs = append(l.addrs, p)
	}
	return nil
}

// AddrDel implements wireguard.Link.
func (k *Kernel) AddrDel(nl netlink.Link, addr *netlink.Addr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginLocked("AddrDel"); err != nil {
		return err
	}
	l, err := k.byLinkLocked(nl)
	if err != nil {
		return err
	}
	p := prefix(addr.IPNet)
	i := slices.Index(l.addrs, p)
	if i < 0 {
		return fmt.Errorf("delete address %s: %w", p, unix.EADDRNOTAVAIL)
	}
	l.addrs = slices.Delete(l.addrs, i, i+1)
	return nil
}

func prefix(n *net.IPNet) netip.Prefix {
	a, _ := netip.AddrFromSlice(n.IP)
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}
