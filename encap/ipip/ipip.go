// Package ipip carries workload packets between nodes in IP-in-IP (RFC 2003:
// an outer IPv4 header of protocol 4 and nothing else), in one of two modes
// that interoperate on the wire.
//
// Kernel mode, where Linux has the ipip module: one tunnel device, as
// Calico's tunl0, with a local (source) address and any remote, up, with the
// tunnel MTU (underlay MTU - Overhead). The kernel encapsulates whatever is
// routed into the device to the route's next hop, so each peer subnet
// needs a route via the peer's underlay address, onlink, out of the device:
// that route belongs to the route applier, not to this package.
//
// User-space mode, where it has not: a TUN device of the same name and a raw
// socket(AF_INET, SOCK_RAW, IPPROTO_IPIP). From the TUN, each inner packet is
// matched by destination against the peers' subnets (longest prefix) and
// sent to that peer's underlay address through the raw socket, which adds
// the outer header as the kernel's ipip would. From the raw socket, which
// delivers each datagram with its outer header, packets from an underlay
// address that is no peer are dropped (no open relay); the others lose the
// outer header and go into the TUN. The same routes as in kernel mode point
// at the TUN: the forwarder looks up the inner destination itself, so the
// next hop on them only has to be on-link.
//
// Data flow: [Want] -> [Driver.Apply] reads back the device through
// [Kernel] and changes only the difference; in user-space mode it also
// opens the TUN and the raw socket once ([Opener]) and swaps in the peers.
// [Driver.Check] reports the differences without changing anything.
//
// The forwarder (user space) reads and writes in batches on several
// goroutines: one per TUN queue reads the TUN (a multi-queue TUN with TCP
// and UDP segmentation offload, so one read brings up to 64 KB of a flow,
// split in user space) and sends with sendmmsg; one reads the raw socket
// with recvmmsg and writes to the TUN, coalescing TCP segments (GRO) into
// one write. Its buffers are allocated once per goroutine.
package ipip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
)

// Mode is how the node carries IP-in-IP.
type Mode string

// The modes.
const (
	ModeKernel    Mode = "kernel"    // the kernel's ipip device
	ModeUserspace Mode = "userspace" // a TUN device and a raw socket in the agent
)

const (
	// DefaultDevice is the name of the tunnel device (either mode).
	DefaultDevice = "weft.ipip"
	// LinkPrefix starts the name of every link weft makes.
	LinkPrefix = "weft."
	// Alias (IFLA_IFALIAS) marks the devices this driver made, whatever
	// their name or mode, so that it finds them after a restart without
	// any memory, and never removes anyone else's.
	Alias = "weft-ipip"
	// DefaultQueues bounds the TUN queues (goroutines reading the TUN)
	// when Config.Queues is 0: more than the cores only adds switching.
	DefaultQueues = 4

	maxLinkName = 15 // IFNAMSIZ 16, less the terminating NUL
	minMTU      = 68 // the smallest MTU an IPv4 link takes (RFC 791)
	// maxMTU is the largest tunnel MTU: an inner packet must fit in one
	// outer IPv4 datagram.
	maxMTU = 65535 - Overhead
)

// Device is the tunnel device.
type Device struct {
	// Name is the link name; it should start with LinkPrefix.
	Name string
	// Local is the underlay address packets leave from and arrive at.
	// Kernel mode needs it: an ipip device with neither local nor remote
	// address is the module's own fallback device (tunl0), and a second
	// one cannot be made. User space binds the raw socket to it; invalid
	// leaves the source to the kernel's route.
	Local netip.Addr
	// MTU is the tunnel MTU: the underlay MTU less Overhead. 0 leaves the
	// device's own (then the forwarder uses what the device has).
	MTU int
	// Addr is the device's address, a single IPv4 address (/32), such as
	// the first address of the node's subnet, so that the host's own
	// packets to peer workloads leave with a workload-range source.
	// Invalid: no address; other IPv4 addresses on the device are removed.
	Addr netip.Prefix
}

// Peer is a node reached through the tunnel.
type Peer struct {
	// Remote is the peer's underlay address: outer destination of what
	// goes to it, and the only outer source accepted from it.
	Remote netip.Addr
	// Subnets are the peer's workload subnets (IPv4).
	Subnets []netip.Prefix
}

// Want is the whole desired IP-in-IP state of the node.
type Want struct {
	// Device is the tunnel device; nil: none, and the driver removes every
	// device marked with Alias (and, in user space, stops forwarding).
	Device *Device
	// Peers are the nodes this node sends to over the tunnel. In kernel
	// mode the routes do that and Peers are only validated; in user space
	// they are the forwarder's table.
	Peers []Peer
}

// Validate reports the first field of w that the driver cannot apply, with
// its value.
func (w Want) Validate() error {
	if err := w.validate(); err != nil {
		return fmt.Errorf("ipip want: %w", err)
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
	if dev.Local.IsValid() && (!dev.Local.Is4() || !isUnicast(dev.Local.As4())) {
		return fmt.Errorf("Device.Local %s: not a unicast IPv4 address", dev.Local)
	}
	if dev.MTU != 0 && (dev.MTU < minMTU || dev.MTU > maxMTU) {
		return fmt.Errorf("Device.MTU %d: outside %d..%d", dev.MTU, minMTU, maxMTU)
	}
	if a := dev.Addr; a.IsValid() && (!a.Addr().Is4() || a.Bits() != 32) {
		return fmt.Errorf("Device.Addr %s: not a single IPv4 address (/32)", a)
	}
	return validatePeers(w.Peers)
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

// Config configures a Driver.
type Config struct {
	// Mode is the mode to run in (see Detect); required.
	Mode Mode
	// Kernel is the namespace the device lives in; required.
	Kernel Kernel
	// Open opens the TUN device and the raw socket (user space only);
	// nil: OpenLinux(netns.None()), the caller's namespace.
	Open Opener
	// Queues is the number of TUN queues, each read by its own goroutine
	// (user space only); 0: the number of CPUs, at most DefaultQueues.
	Queues int
	// Logger receives the changes made (debug), a summary per Apply that
	// changed something (info) and forwarder failures (error); nil
	// discards them.
	Logger *slog.Logger
}

// Driver applies a Want. It keeps no memory of earlier calls for the
// kernel's state (what it owns is recognised by Alias); in user space it
// owns the forwarder, which runs from the first Apply with a device until
// Close or an Apply without one. Its methods are safe for concurrent use;
// calls are serialized.
type Driver struct {
	mode   Mode
	k      Kernel
	open   Opener
	queues int
	log    *slog.Logger

	stats *counters // the forwarder's, across its restarts

	mu  sync.Mutex
	fwd *forwarder // user space: the running forwarder, nil if none
}

// New returns a Driver, or an error naming the Config field it cannot use.
// It opens nothing: the first Apply does.
func New(c Config) (*Driver, error) {
	if c.Mode != ModeKernel && c.Mode != ModeUserspace {
		return nil, fmt.Errorf("ipip config: Mode %q: not %q or %q", c.Mode, ModeKernel, ModeUserspace)
	}
	if c.Kernel == nil {
		return nil, errors.New("ipip config: Kernel: nil")
	}
	if c.Queues < 0 {
		return nil, fmt.Errorf("ipip config: Queues %d: negative", c.Queues)
	}
	d := &Driver{mode: c.Mode, k: c.Kernel, open: c.Open, queues: c.Queues, log: c.Logger, stats: &counters{}}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.log = d.log.With("component", "ipip", "mode", string(c.Mode))
	if d.open == nil {
		d.open = OpenLinux(noNamespace)
	}
	if d.queues == 0 {
		d.queues = min(runtime.NumCPU(), DefaultQueues)
	}
	return d, nil
}

// Mode reports the mode the driver runs in, as `weft status` shows it.
func (d *Driver) Mode() Mode { return d.mode }

// Apply makes the node match want. It validates want first (an invalid want
// changes nothing), then reads back the device and changes only the
// difference: it creates the device (kernel mode) or opens the TUN and
// the raw socket and starts forwarding (user space; again after the
// forwarder stopped on an error or the TUN vanished), sets MTU, alias, up
// and address, removes the devices marked with Alias that are not wanted
// (after the wanted one is in place), and swaps in the peers. A kernel
// device whose local address or settings differ is deleted and made
// again. After a failure Apply keeps going with what does not depend on it
// and returns all failures joined. It is idempotent: a second Apply with
// the same want makes no mutating kernel call and opens nothing. It stops
// making changes once ctx is done. It does not keep want or its slices.
func (d *Driver) Apply(ctx context.Context, want Want) error {
	if err := want.Validate(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s := &session{ctx: ctx, d: d, apply: true}
	s.run(want)
	if len(s.diffs) > 0 {
		d.log.Info("ipip applied", "changes", len(s.diffs), "failed", len(s.errs))
	}
	return errors.Join(s.errs...)
}

// Check reports every difference between want and the node, one readable
// line each (such as "device weft.ipip mtu 1500, want 1480"), without
// changing anything. No lines and a nil error mean Apply would change
// nothing. The error joins the validation error or the reads that failed;
// the lines found are returned with it.
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

// Stats returns the forwarder's counters (user space), all zero in kernel
// mode or before the first Apply. They keep counting across restarts of
// the forwarder within one Driver. Safe for concurrent use; never blocks.
func (d *Driver) Stats() Stats { return d.stats.snapshot() }

// Close stops the forwarder (user space) and closes the TUN and the raw
// socket. It leaves the kernel as it is: the devices, like the routes, stay
// for the next agent (a persistent TUN carries no traffic without one).
// It is idempotent.
func (d *Driver) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fwd == nil {
		return nil
	}
	err := d.fwd.stop()
	d.fwd = nil
	return err
}
