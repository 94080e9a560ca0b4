package wgtest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weft-net/weft/encap/wireguard"
)

// Device implements wireguard.Client.
func (k *Kernel) Device(name string) (*wgtypes.Device, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginLocked("Device"); err != nil {
		return nil, err
	}
	l := k.byNameLocked(name)
	if l == nil || l.wg == nil {
		return nil, fmt.Errorf("wireguard device %s: %w", name, os.ErrNotExist)
	}
	d := &wgtypes.Device{Name: name, Type: wgtypes.LinuxKernel, PrivateKey: l.wg.priv, ListenPort: l.wg.port}
	if l.kind != "wireguard" {
		d.Type = wgtypes.Userspace
	}
	if l.wg.priv != (wgtypes.Key{}) {
		d.PublicKey = l.wg.priv.PublicKey()
	}
	for key, p := range l.wg.peers {
		wp := wgtypes.Peer{PublicKey: key, PersistentKeepaliveInterval: p.keepalive, LastHandshakeTime: p.lastHandshake, ProtocolVersion: 1}
		if p.endpoint.IsValid() {
			wp.Endpoint = net.UDPAddrFromAddrPort(p.endpoint)
		}
		for _, a := range p.allowed {
			wp.AllowedIPs = append(wp.AllowedIPs, net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())})
		}
		d.Peers = append(d.Peers, wp)
	}
	// The kernel dumps peers in an order of its own: not sorted.
	sort.Slice(d.Peers, func(i, j int) bool { return d.Peers[i].PublicKey.String() > d.Peers[j].PublicKey.String() })
	return d, nil
}

// ConfigureDevice implements wireguard.Client, applying cfg entirely (or,
// with an injected failure, not at all).
func (k *Kernel) ConfigureDevice(name string, cfg wgtypes.Config) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginLocked("ConfigureDevice"); err != nil {
		return err
	}
	l := k.byNameLocked(name)
	if l == nil || l.wg == nil {
		return fmt.Errorf("wireguard device %s: %w", name, os.ErrNotExist)
	}
	d := l.wg
	if cfg.PrivateKey != nil && *cfg.PrivateKey != d.priv {
		d.priv = *cfg.PrivateKey
		delete(d.peers, d.priv.PublicKey())
	}
	if cfg.ListenPort != nil {
		d.port = *cfg.ListenPort
	}
	if cfg.ReplacePeers {
		clear(d.peers)
	}
	up := l.attrs.Flags&net.FlagUp != 0
	for _, pc := range cfg.Peers {
		if d.priv != (wgtypes.Key{}) && pc.PublicKey == d.priv.PublicKey() {
			continue // wireguard-go and the kernel ignore the device's own key
		}
		if pc.Remove {
			delete(d.peers, pc.PublicKey)
			continue
		}
		p, ok := d.peers[pc.PublicKey]
		if !ok {
			if pc.UpdateOnly {
				continue
			}
			p = &peer{}
			d.peers[pc.PublicKey] = p
		}
		if pc.Endpoint != nil {
			ap := pc.Endpoint.AddrPort()
			p.endpoint = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
		if pc.PersistentKeepaliveInterval != nil {
			old := p.keepalive
			p.keepalive = *pc.PersistentKeepaliveInterval
			if old == 0 && p.keepalive != 0 && up {
				k.kicks[pc.PublicKey]++
			}
		}
		if pc.ReplaceAllowedIPs {
			p.allowed = nil
		}
		for _, n := range pc.AllowedIPs {
			a := prefix(&n).Masked()
			for _, other := range d.peers {
				if i := slices.Index(other.allowed, a); i >= 0 {
					other.allowed = slices.Delete(other.allowed, i, i+1)
				}
			}
			p.allowed = append(p.allowed, a)
		}
	}
	return nil
}

// Start implements wireguard.Starter: it adds a TUN link called name, down,
// with an unconfigured WireGuard device, as wireguard-go does.
func (k *Kernel) Start(name string, mtu int) (wireguard.Embedded, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.beginLocked("Start"); err != nil {
		return nil, err
	}
	l, err := k.addLocked(name, "tuntap", mtu, 0)
	if err != nil {
		return nil, fmt.Errorf("create tun %s: %w", name, unix.EBUSY)
	}
	k.generation++
	l.gen = k.generation
	l.wg = &device{peers: map[wgtypes.Key]*peer{}}
	return &embedded{k: k, index: l.attrs.Index, gen: l.gen}, nil
}

// embedded is a device made by Start.
type embedded struct {
	k      *Kernel
	index  int
	gen    int
	closed bool
}

// Close implements wireguard.Embedded: the link goes, if it is still this
// device's.
func (e *embedded) Close() error {
	e.k.mu.Lock()
	defer e.k.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	err := e.k.beginLocked("Close")
	if l, ok := e.k.links[e.index]; ok && l.gen == e.gen {
		delete(e.k.links, e.index)
	}
	return err
}

// Up implements wireguard.Embedded.
func (e *embedded) Up() error {
	e.k.mu.Lock()
	defer e.k.mu.Unlock()
	return e.k.beginLocked("Up")
}

// Offload implements wireguard.Embedded: true.
func (e *embedded) Offload() bool { return true }
