// Package wireguard applies the WireGuard part of a node's plan: one
// WireGuard device (its link, MTU, address, private key and port) and its
// peers (public key, endpoint, allowed IPs, keepalive), and keeps the node's
// key pair in the state dir.
//
// Kernel or user space is decided once, by Open: it tries to create a kernel
// WireGuard link through netlink; where the kernel refuses (EOPNOTSUPP,
// "Unknown device type", as on the test VMs) the agent runs wireguard-go
// embedded: a TUN device with virtio-net offloads (TSO/GSO/GRO, batched
// reads and writes) and a UAPI socket at SocketDir/<name>.sock, which wg(8)
// and wgctrl also use. Either way the driver reads the device back and
// configures it through the same Client code (wgtypes), and the same Link
// code sets the link's MTU, up state and address.
//
// Data flow: [Want] (from the plan) -> [Driver.Apply] validates it, makes
// the device if missing, reads back the link, its addresses and the
// WireGuard configuration, and changes only the difference; the WireGuard
// part goes out in at most one ConfigureDevice call, and in none when
// nothing differs (a reconfiguration can cost a handshake). [Driver.Check]
// runs the same comparison without changing anything. Routes to the peers'
// subnets belong to the route applier, not to this package.
//
// Restarts. A kernel device outlives the agent: stopping the agent leaves
// the data plane in place, and the next Apply finds it converged. A
// user-space device cannot: it lives in the agent's process, so stopping the
// agent (or Close) removes the link and with it the routes through it, and
// encrypted paths are down until the agent runs again. The next start makes
// it again in milliseconds; peers are added with a handshake kick (below),
// so sessions come back within one round trip instead of after the peers'
// 5-15 s handshake timers.
//
// Key rotation. Rotate writes a new key; the agent then applies it (the
// device drops its sessions at once) and publishes the new public key. Each
// peer, on the new record, replaces the old peer entry with the new key in
// one ConfigureDevice call (add before remove, so the allowed IPs move
// atomically) and kicks a handshake at once: the peer entry is created with
// a persistent keepalive, which sends a keepalive, and so a handshake
// initiation, immediately (wireguard-go and the kernel both do this when
// keepalive turns on), and a second entry in the same call turns the
// keepalive back off where none is wanted. The gap is thus the record's
// propagation plus one round trip, which TCP retransmits through; no old key
// needs to be kept. Applying the new key before publishing it matters: a
// peer that switched first would kick a handshake at a device still on the
// old key, and then wait 5 s for its next try. Two rarer cases also fall
// back to that retry: WireGuard's flood protection ignores a kick less than
// 20 ms after the peer's last initiation, and a kick that crosses an
// initiation of the other side within a round trip leaves both handshakes
// incomplete (each side answers the other's and drops the answer to its
// own). Both need the two sides to act within milliseconds of each other,
// which the record's propagation makes unlikely.
package wireguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Modes of the driver, shown by weft status.
const (
	ModeKernel    = "kernel"    // the kernel's WireGuard device
	ModeUserspace = "userspace" // wireguard-go embedded in the agent
)

const (
	// DefaultDevice is the name of weft's WireGuard device.
	DefaultDevice = "weft.wg"
	// DefaultPort is WireGuard's customary UDP port.
	DefaultPort = 51820
	// DefaultKeepalive is the persistent keepalive for peers behind NAT:
	// shorter than the 30 s that the shortest common NAT UDP timeouts
	// allow (wg(8) suggests 25).
	DefaultKeepalive = 25 * time.Second
	// Overhead is what WireGuard adds to each packet, counted for an IPv6
	// underlay so that the MTU is safe on both: outer IPv6 40 + UDP 8 +
	// WireGuard header 16 + authentication tag 16.
	Overhead = 80
	// DefaultSocketDir is where wg(8) and wgctrl look for user-space
	// devices' UAPI sockets.
	DefaultSocketDir = "/var/run/wireguard"
	// LinkPrefix starts the name of every link weft makes; the driver
	// removes kernel WireGuard links so named that are not wanted, and no
	// others.
	LinkPrefix = "weft."
)

const (
	// maxLinkName is the longest link name Linux takes (IFNAMSIZ 16, less
	// the terminating NUL).
	maxLinkName = 15
	// minMTU is the smallest MTU an IPv4 link takes (RFC 791).
	minMTU = 68
	// defaultMTU is the MTU of a new device when Device.MTU is 0: a 1500
	// underlay less Overhead, as wg-quick and wireguard-go use.
	defaultMTU = 1500 - Overhead
	// maxKeepalive is the largest keepalive WireGuard takes: 16-bit seconds.
	maxKeepalive = 65535 * time.Second
)

// MTU returns the device MTU for an underlay MTU: underlayMTU - Overhead.
func MTU(underlayMTU int) int { return underlayMTU - Overhead }

// Want is the whole desired WireGuard state of the node.
type Want struct {
	// Device is the WireGuard device; nil: no device (the embedded one is
	// stopped, kernel WireGuard links named LinkPrefix* are deleted).
	Device *Device
	// Peers are the peers of Device, in any order.
	Peers []Peer
}

// Device is the node's WireGuard device.
type Device struct {
	Name       string     // such as DefaultDevice
	ListenPort int        // UDP port, 1..65535 (in the node record)
	PrivateKey PrivateKey // required
	// MTU of the link (MTU(underlay MTU)); 0 leaves the link's (a new
	// device gets 1420).
	MTU int
	// Addr is the tunnel address on the link, such as 10.99.0.1/24;
	// invalid: none. Other addresses on the link are removed (IPv6
	// link-local ones excepted).
	Addr netip.Prefix
}

// Peer is one peer of the device.
type Peer struct {
	PublicKey PublicKey // required; unique among Peers
	// Endpoint is where this host sends to the peer; invalid: unknown (a
	// peer behind NAT that this host cannot reach: it reaches us, and
	// WireGuard learns its endpoint from its packets). A learned endpoint
	// that differs from Endpoint is left alone while the peer's session is
	// live (it roamed, or a NAT rewrote its port): it works.
	Endpoint netip.AddrPort
	// AllowedIPs are the prefixes routed to the peer and accepted from it;
	// compared masked, each at most once among all Peers.
	AllowedIPs []netip.Prefix
	// PersistentKeepalive, in whole seconds; 0: off.
	PersistentKeepalive time.Duration
}

// Validate reports the first field of w that the driver cannot apply, with
// its value: a device name that Linux would refuse, a port, MTU or keepalive
// out of range, a missing or repeated key, a peer with the device's own key,
// an endpoint or prefix that is not unicast, or a prefix allowed to two
// peers (WireGuard would give it to the last, and Apply would never
// converge). Keys are named by their public key, never the private one.
func (w Want) Validate() error {
	if err := w.validate(); err != nil {
		return fmt.Errorf("wireguard want: %w", err)
	}
	return nil
}

func (w Want) validate() error {
	dev := w.Device
	if dev == nil {
		if len(w.Peers) > 0 {
			return fmt.Errorf("Peers: %d peers but no Device", len(w.Peers))
		}
		return nil
	}
	if err := validLinkName(dev.Name); err != nil {
		return fmt.Errorf("Device.Name %q: %w", dev.Name, err)
	}
	switch {
	case dev.ListenPort < 1 || dev.ListenPort > 65535:
		return fmt.Errorf("Device.ListenPort %d: outside 1..65535", dev.ListenPort)
	case dev.PrivateKey.IsZero():
		return errors.New("Device.PrivateKey: missing")
	case dev.MTU != 0 && (dev.MTU < minMTU || dev.MTU > 65535):
		return fmt.Errorf("Device.MTU %d: outside %d..65535", dev.MTU, minMTU)
	case dev.Addr.IsValid() && !unicast(dev.Addr.Addr()):
		return fmt.Errorf("Device.Addr %s: not a unicast address without zone", dev.Addr)
	}
	self := dev.PrivateKey.PublicKey()
	keys := map[PublicKey]bool{}
	allowed := map[netip.Prefix]PublicKey{}
	for i, p := range w.Peers {
		switch {
		case p.PublicKey.IsZero():
			return fmt.Errorf("Peers[%d].PublicKey: missing", i)
		case p.PublicKey == self:
			return fmt.Errorf("Peers[%d].PublicKey %s: the device's own key", i, p.PublicKey)
		case keys[p.PublicKey]:
			return fmt.Errorf("Peers[%d].PublicKey %s: repeated", i, p.PublicKey)
		case p.Endpoint.IsValid() && (!unicast(p.Endpoint.Addr()) || p.Endpoint.Port() == 0):
			return fmt.Errorf("Peers[%d].Endpoint %s: not a unicast address and port", i, p.Endpoint)
		case p.PersistentKeepalive < 0 || p.PersistentKeepalive > maxKeepalive || p.PersistentKeepalive%time.Second != 0:
			return fmt.Errorf("Peers[%d].PersistentKeepalive %s: not whole seconds in 0..65535", i, p.PersistentKeepalive)
		}
		keys[p.PublicKey] = true
		for j, a := range p.AllowedIPs {
			if !a.IsValid() || a.Addr().Zone() != "" || a.Addr().Is4In6() {
				return fmt.Errorf("Peers[%d].AllowedIPs[%d] %s: not a prefix", i, j, a)
			}
			m := a.Masked()
			if other, ok := allowed[m]; ok && other != p.PublicKey {
				return fmt.Errorf("Peers[%d].AllowedIPs[%d] %s: also allowed to peer %s", i, j, a, other)
			}
			allowed[m] = p.PublicKey
		}
	}
	return nil
}

func unicast(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() && a.Zone() == "" && !a.Is4In6()
}

// validLinkName reports why Linux would refuse name as a link name.
func validLinkName(name string) error {
	switch {
	case name == "":
		return errors.New("empty")
	case len(name) > maxLinkName:
		return fmt.Errorf("longer than %d bytes", maxLinkName)
	case name == "." || name == "..":
		return errors.New("reserved")
	}
	for _, c := range []byte(name) {
		if c == '/' || c == ':' || c <= ' ' || c == 0x7f {
			return fmt.Errorf("contains %q", c)
		}
	}
	return nil
}

// Embedded is a running user-space WireGuard device.
type Embedded interface {
	// Close stops the device: its link, UDP sockets and UAPI socket go.
	// It blocks until they are gone; calls after the first do nothing.
	Close() error
	// Up brings the device up at once, opening its UDP sockets, instead of
	// on the TUN's link event (which comes later, from another
	// goroutine): peers configured right after it get their handshake
	// kick. Call it once the link is up. Idempotent.
	Up() error
	// Offload reports whether the device's TUN uses virtio-net headers:
	// TSO/GSO on send, GRO on receive, batched reads and writes.
	Offload() bool
}

// Starter starts an embedded user-space device called name with link MTU
// mtu, in the driver's namespace, so that the driver's Client answers for
// name. It blocks until the link exists (down, no address) and its UAPI
// socket listens. It may be called again for the same name once the last
// Embedded of that name is closed.
type Starter func(name string, mtu int) (Embedded, error)

// Config configures a Driver made by New. Open makes one for the real
// kernel.
type Config struct {
	// Mode is ModeKernel or ModeUserspace; required.
	Mode string
	// Link is the namespace's links and addresses; required.
	Link Link
	// Client reads and configures WireGuard devices; required.
	Client Client
	// Start starts the user-space device; required in ModeUserspace.
	Start Starter
	// Logger receives changes (debug), a summary per Apply that changed
	// something (info) and device starts and stops (info); nil discards.
	Logger *slog.Logger
	// Now is the clock for the roaming rule of Peer.Endpoint; nil:
	// time.Now.
	Now func() time.Time
}

// Driver applies a Want. In kernel mode it keeps no memory of earlier
// calls: what it owns is recognised by name and kind. In user-space mode
// it owns the embedded device it started. Its methods are safe for
// concurrent use; calls are serialized.
type Driver struct {
	mode   string
	link   Link
	client Client
	start  Starter
	log    *slog.Logger
	now    func() time.Time

	mu     sync.Mutex
	emb    Embedded // the running user-space device; nil if none
	embDev string   // its name
	closed bool
	// closers are closed by Close after the embedded device: what Open
	// made (the wgctrl client, the netlink handle, the namespace handle).
	closers []func() error
	// kicks holds when a handshake with each peer was last kicked off.
	kicks map[wgtypes.Key]time.Time
}

// New returns a Driver working through c. It refuses a Config without a
// valid Mode, Link or Client, or without Start in user-space mode.
func New(c Config) (*Driver, error) {
	switch {
	case c.Mode != ModeKernel && c.Mode != ModeUserspace:
		return nil, fmt.Errorf("wireguard config: Mode %q: not %q or %q", c.Mode, ModeKernel, ModeUserspace)
	case c.Link == nil:
		return nil, errors.New("wireguard config: Link: missing")
	case c.Client == nil:
		return nil, errors.New("wireguard config: Client: missing")
	case c.Mode == ModeUserspace && c.Start == nil:
		return nil, errors.New("wireguard config: Start: missing in user-space mode")
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := c.Now
	if now == nil {
		now = time.Now
	}
	return &Driver{
		mode: c.Mode, link: c.Link, client: c.Client, start: c.Start, now: now,
		log: log.With("component", "wireguard", "mode", c.Mode),
	}, nil
}

// Mode returns ModeKernel or ModeUserspace, fixed for the Driver's life.
func (d *Driver) Mode() string { return d.mode }

// Offload reports whether the running user-space device's TUN uses
// offloads (see Embedded.Offload); false in kernel mode or with no device
// running.
func (d *Driver) Offload() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.emb != nil && d.emb.Offload()
}

// Apply makes the device and its peers match want. It validates want first
// (an invalid want changes nothing), makes the device if missing (starting
// the embedded one in user-space mode), sets the link's MTU, address and up
// state, then reads the WireGuard configuration back and sends the
// difference in one ConfigureDevice call: private key, port, peers added or
// updated (new peers with a handshake kick), then peers no longer wanted
// removed. It is idempotent: a second Apply with the same want makes no
// mutating call, ConfigureDevice included. After a failure it goes on with
// what does not depend on the failed step and returns all failures joined.
// It stops making calls once ctx is done. It does not keep want.
func (d *Driver) Apply(ctx context.Context, want Want) error {
	if err := want.Validate(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("wireguard: driver closed")
	}
	s := &session{ctx: ctx, d: d, apply: true}
	s.run(want)
	for _, line := range s.diffs {
		d.log.Debug("difference", "diff", line)
	}
	if len(s.diffs) > 0 {
		d.log.Info("wireguard applied", "changes", len(s.diffs), "failed", len(s.errs))
	}
	return errors.Join(s.errs...)
}

// Check reports every difference between want and the device, one readable
// line each (such as "peer <key> endpoint 198.18.2.2:51820, want
// 198.18.2.3:51820"), without changing anything. No lines and a nil error
// mean Apply would make no call. Private keys are never shown. The error
// joins the validation error or the reads that failed; the lines found are
// returned with it.
func (d *Driver) Check(ctx context.Context, want Want) ([]string, error) {
	if err := want.Validate(); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s := &session{ctx: ctx, d: d}
	s.run(want)
	return s.diffs, errors.Join(s.errs...)
}

// Waiting returns the wanted peers that this node must open a session to
// (they have an endpoint and a keepalive: this node is behind NAT) and that
// have not completed a handshake yet. Apply kicks them again every few
// seconds; until they answer, the node is not reachable from them.
func (d *Driver) Waiting(want Want) ([]PublicKey, error) {
	if want.Device == nil {
		return nil, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	cur, err := d.client.Device(want.Device.Name)
	if err != nil {
		return nil, fmt.Errorf("read wireguard device %s: %w", want.Device.Name, err)
	}
	shook := map[PublicKey]bool{}
	for _, p := range cur.Peers {
		if !p.LastHandshakeTime.IsZero() {
			shook[PublicKey(p.PublicKey)] = true
		}
	}
	var out []PublicKey
	for _, p := range want.Peers {
		if p.Endpoint.IsValid() && p.PersistentKeepalive > 0 && !shook[p.PublicKey] {
			out = append(out, p.PublicKey)
		}
	}
	return out, nil
}

// Close stops the embedded user-space device, if one runs (its link and
// the routes through it go: this is the limitation of user space, see the
// package doc), and releases what Open made. A kernel device is left in
// place. Apply and Check fail after Close; Close again does nothing.
func (d *Driver) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	if d.emb != nil {
		if err := d.emb.Close(); err != nil {
			errs = append(errs, fmt.Errorf("stop wireguard device %s: %w", d.embDev, err))
		}
		d.log.Info("wireguard device stopped", "link", d.embDev)
		d.emb, d.embDev = nil, ""
	}
	for _, c := range slices.Backward(d.closers) {
		if err := c(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
