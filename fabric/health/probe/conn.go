package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weft-net/weft/fabric"
	"github.com/weft-net/weft/fabric/health"
)

// ErrNotReady says a probe could not be sent for a reason that says nothing
// about the path: this node has no subnet address yet, or the peer's MAC
// is not in the neighbour table yet (its resolution was started). The
// caller should not count it as a miss.
var ErrNotReady = errors.New("not ready to probe")

// ErrTooBig says the kernel refused a path MTU probe as larger than the
// device (or the path it knows) carries: that size is refuted.
var ErrTooBig = errors.New("probe larger than the path carries")

// Local is this node as the prober needs it.
type Local struct {
	Name string
	// Addr is the node's own address in its subnet (the VTEP address);
	// probes are sent from it and answered to it.
	Addr        netip.Addr
	UnderlayDev string
	VTEPMAC     net.HardwareAddr
	VNI         int
	VXLANPort   int
	// WireGuardDev is the WireGuard device; answers to probes that came
	// over WireGuard go back through it. Empty: none.
	WireGuardDev string
}

// Peer is a peer as the prober needs it.
type Peer struct {
	Name     string
	Addr     netip.Addr // the peer's subnet address (its VTEP address)
	Underlay netip.Addr // the underlay address it is reached at
	VTEPMAC  net.HardwareAddr
}

// Reply is an answer to one of this node's probes: a health.ProbeReply, or
// a health.ProbeEcho of a self-test packet (with its payload).
type Reply struct {
	Probe health.Probe
	At    time.Time
}

// Config configures a Conn.
type Config struct {
	// Port is the UDP port probes go to (health.Config.Port).
	Port int
	// Key authenticates probes (health.ProbeKey).
	Key []byte
	// Peer returns what the prober needs of a peer, by name; it must be
	// safe for concurrent use.
	Peer   func(name string) (Peer, bool)
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// InNS runs fn in the namespace the Conn was opened in, for the socket
	// it opens later (bound to the node's subnet address once that exists);
	// nil runs fn directly, right for a process that lives in one
	// namespace (the agent). Tests pass their lab's.
	InNS func(fn func() error) error
}

// Conn is the prober of one network namespace (the caller's at Listen).
// Its methods are safe for concurrent use.
type Conn struct {
	cfg     Config
	log     *slog.Logger
	listen  *net.UDPConn
	any     *net.UDPConn // VXLAN frames and neighbour resolution
	packet  int          // AF_PACKET, SOCK_DGRAM, send only
	nl      *netlink.Handle
	replies chan Reply

	// sendMu is held shared by every send and exclusively by Close, so
	// that no send uses a closed (and maybe reused) descriptor.
	sendMu sync.RWMutex
	closed bool

	mu    sync.Mutex
	local Local
	// bound holds sockets bound to local.Addr, by the device they are
	// bound to ("": none, the routing table decides).
	bound map[string]*net.UDPConn
}

// Listen opens the prober's sockets in the current network namespace: UDP
// cfg.Port on every address, a socket for VXLAN frames, a send-only packet
// socket and a netlink handle. Run reads; Close closes.
func Listen(cfg Config) (*Conn, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.InNS == nil {
		cfg.InNS = func(fn func() error) error { return fn() }
	}
	c := &Conn{cfg: cfg, log: cfg.Logger.With("component", "probe"), packet: -1, replies: make(chan Reply, 1024)}
	var err error
	if c.listen, err = net.ListenUDP("udp4", &net.UDPAddr{Port: cfg.Port}); err != nil {
		return nil, fmt.Errorf("listen for probes on udp port %d: %w", cfg.Port, err)
	}
	if c.any, err = net.ListenUDP("udp4", nil); err != nil {
		c.Close()
		return nil, fmt.Errorf("open probe socket: %w", err)
	}
	// DF on every built VXLAN frame, and no local fragmentation whatever
	// the kernel's path MTU cache says: a too-big frame must be lost (or
	// refused here), so that path MTU probes measure the path.
	if err := setPMTUProbe(c.any); err != nil {
		c.Close()
		return nil, err
	}
	// Protocol 0: the socket receives nothing; each send names its protocol.
	if c.packet, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
		c.Close()
		return nil, fmt.Errorf("open packet socket: %w", err)
	}
	if c.nl, err = netlink.NewHandle(); err != nil {
		c.Close()
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	return c, nil
}

// SetLocal sets what the prober knows of this node. It never blocks.
func (c *Conn) SetLocal(l Local) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l.Addr != c.local.Addr || l.WireGuardDev != c.local.WireGuardDev {
		for dev, conn := range c.bound {
			conn.Close()
			delete(c.bound, dev)
		}
	}
	c.local = l
}

// Replies delivers the answers to this node's probes. It is closed when
// Run returns.
func (c *Conn) Replies() <-chan Reply { return c.replies }

// Send sends one probe request for target, numbered seq and stamped sent;
// with size > 0 (a path MTU probe) padded so that the IP packet carrying it
// (the inner one for VXLAN) has size bytes, with DF set. It does not block
// on the network. ErrNotReady, ErrTooBig: see there.
func (c *Conn) Send(target health.Target, seq uint64, sent time.Time, size int) error {
	c.sendMu.RLock()
	defer c.sendMu.RUnlock()
	if c.closed {
		return net.ErrClosed
	}
	l := c.getLocal()
	p, ok := c.cfg.Peer(target.Peer)
	if !ok {
		return fmt.Errorf("probe %s: %w: unknown peer", target, ErrNotReady)
	}
	pad := 0
	if size > 0 {
		pad = max(0, min(health.MaxPad, size-ipv4HeaderLen-udpHeaderLen-health.ProbeLen(l.Name, 0)))
	}
	return c.send(target, l, p, health.Probe{Type: health.ProbeRequest, Path: target.Path, Node: l.Name, Seq: seq, Sent: sent, Pad: pad})
}

// SendTest sends one encapsulation self-test packet for target carrying
// payload, numbered seq and stamped sent, which the peer echoes (a Reply
// of type health.ProbeEcho). It does not block on the network and does not
// retain payload. ErrNotReady: see there.
func (c *Conn) SendTest(target health.Target, seq uint64, sent time.Time, payload []byte) error {
	c.sendMu.RLock()
	defer c.sendMu.RUnlock()
	if c.closed {
		return net.ErrClosed
	}
	l := c.getLocal()
	p, ok := c.cfg.Peer(target.Peer)
	if !ok {
		return fmt.Errorf("self-test %s: %w: unknown peer", target, ErrNotReady)
	}
	return c.send(target, l, p, health.Probe{Type: health.ProbeTest, Path: target.Path, Node: l.Name, Seq: seq, Sent: sent, Payload: payload})
}

// send encodes pr and sends it over target's path; the caller holds sendMu.
func (c *Conn) send(target health.Target, l Local, p Peer, pr health.Probe) error {
	msg, err := health.AppendProbe(nil, pr, c.cfg.Key)
	if err != nil {
		return fmt.Errorf("probe %s: %w", target, err)
	}
	if target.Route {
		err = c.sendRoute(l, p, msg)
	} else {
		err = c.sendOffPath(target.Path, l, p, msg)
	}
	if err != nil {
		return fmt.Errorf("probe %s: %w", target, err)
	}
	return nil
}

func (c *Conn) getLocal() Local {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.local
}

func (c *Conn) sendOffPath(kind fabric.PathKind, l Local, p Peer, msg []byte) error {
	switch kind {
	case fabric.PathDirect:
		return c.sendDirect(l, p, msg)
	case fabric.PathVXLAN:
		return c.sendVXLAN(l, p, msg)
	}
	return fmt.Errorf("path %s cannot be probed off its route", kind)
}

// sendRoute sends msg from the node's subnet address to the peer's through
// the routing table.
func (c *Conn) sendRoute(l Local, p Peer, msg []byte) error { return c.sendBound(l, p, "", msg) }

// sendBound sends msg from the node's subnet address to the peer's on a
// socket bound to dev; "" is the routing table. Bound to a device with no
// route to the peer, the kernel sends it out of that device as if the peer
// were on-link (ip_route_output_key_hash_rcu: "Apparently, routing tables
// are wrong. Assume, that the destination is on link."): on a WireGuard
// device, the peer whose allowed IPs hold the address gets it, encrypted,
// whatever the routing table says.
func (c *Conn) sendBound(l Local, p Peer, dev string, msg []byte) error {
	if !l.Addr.Is4() || !p.Addr.Is4() {
		return fmt.Errorf("%w: no IPv4 subnet address (this node %s, peer %s)", ErrNotReady, l.Addr, p.Addr)
	}
	c.mu.Lock()
	conn := c.bound[dev]
	if conn == nil {
		lc := net.ListenConfig{}
		if dev != "" {
			lc.Control = func(_, _ string, raw syscall.RawConn) error {
				var serr error
				if err := raw.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), dev) }); err != nil {
					return err
				}
				return serr
			}
		}
		err := c.cfg.InNS(func() error {
			pc, err := lc.ListenPacket(context.Background(), "udp4", netip.AddrPortFrom(l.Addr, 0).String())
			if err == nil {
				conn = pc.(*net.UDPConn)
			}
			return err
		})
		if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENODEV) {
			// The tunnel device with the address is not made yet.
			c.mu.Unlock()
			return fmt.Errorf("%w: bind %s %s: %v", ErrNotReady, l.Addr, dev, err)
		}
		if err != nil {
			c.mu.Unlock()
			return fmt.Errorf("bind %s %s: %w", l.Addr, dev, err)
		}
		if c.bound == nil {
			c.bound = map[string]*net.UDPConn{}
		}
		c.bound[dev] = conn
	}
	c.mu.Unlock()
	if _, err := conn.WriteToUDPAddrPort(msg, netip.AddrPortFrom(p.Addr, uint16(c.cfg.Port))); err != nil {
		return fmt.Errorf("send to %s: %w", p.Addr, err)
	}
	return nil
}

// sendDirect puts an IPv4/UDP packet from the node's subnet address to the
// peer's on the underlay, addressed to the peer's MAC.
func (c *Conn) sendDirect(l Local, p Peer, msg []byte) error {
	if !l.Addr.Is4() || !p.Addr.Is4() || !p.Underlay.Is4() {
		return fmt.Errorf("%w: IPv4 only", ErrNotReady)
	}
	link, err := c.nl.LinkByName(l.UnderlayDev)
	if err != nil {
		return fmt.Errorf("look up underlay %s: %w", l.UnderlayDev, err)
	}
	mac, err := c.neighbour(link.Attrs().Index, p.Underlay)
	if err != nil {
		return err
	}
	pkt := appendIPv4UDP(nil, l.Addr, p.Addr, uint16(c.cfg.Port), uint16(c.cfg.Port), msg)
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: link.Attrs().Index, Halen: 6}
	copy(sa.Addr[:], mac)
	if err := unix.Sendto(c.packet, pkt, unix.MSG_DONTWAIT, sa); err != nil {
		if errors.Is(err, unix.EMSGSIZE) {
			return fmt.Errorf("%w: %d bytes on %s: %v", ErrTooBig, len(pkt), l.UnderlayDev, err)
		}
		return fmt.Errorf("send on %s to %s: %w", l.UnderlayDev, mac, err)
	}
	return nil
}

// neighbour returns the MAC of addr on the link with index ifindex from the
// neighbour table; when it is not there, it starts its resolution (a
// datagram to the probe port, which the peer ignores) and returns
// ErrNotReady.
func (c *Conn) neighbour(ifindex int, addr netip.Addr) (net.HardwareAddr, error) {
	neighs, err := c.nl.NeighList(ifindex, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list neighbours: %w", err)
	}
	for _, n := range neighs {
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok || ip.Unmap() != addr || len(n.HardwareAddr) != 6 ||
			n.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE|netlink.NUD_NOARP) != 0 {
			continue
		}
		return n.HardwareAddr, nil
	}
	c.any.WriteToUDPAddrPort(nil, netip.AddrPortFrom(addr, uint16(c.cfg.Port)))
	return nil, fmt.Errorf("%w: no neighbour entry for %s yet", ErrNotReady, addr)
}

// sendVXLAN sends the probe inside a VXLAN frame to the peer's underlay
// address, as the kernel's VXLAN device would.
func (c *Conn) sendVXLAN(l Local, p Peer, msg []byte) error {
	if !l.Addr.Is4() || !p.Addr.Is4() || !p.Underlay.Is4() {
		return fmt.Errorf("%w: IPv4 only", ErrNotReady)
	}
	if len(l.VTEPMAC) != 6 || len(p.VTEPMAC) != 6 || l.VXLANPort == 0 {
		return fmt.Errorf("%w: no VTEP MAC or VXLAN port", ErrNotReady)
	}
	ip := appendIPv4UDP(nil, l.Addr, p.Addr, uint16(c.cfg.Port), uint16(c.cfg.Port), msg)
	frame := appendVXLAN(nil, uint32(l.VNI), p.VTEPMAC, l.VTEPMAC, ip)
	if _, err := c.any.WriteToUDPAddrPort(frame, netip.AddrPortFrom(p.Underlay, uint16(l.VXLANPort))); err != nil {
		if errors.Is(err, unix.EMSGSIZE) {
			return fmt.Errorf("%w: inner %d bytes to %s: %v", ErrTooBig, len(ip), p.Underlay, err)
		}
		return fmt.Errorf("send vxlan frame to %s:%d: %w", p.Underlay, l.VXLANPort, err)
	}
	return nil
}

// Run answers requests and delivers replies until ctx is done or the
// socket fails; it closes the Conn and Replies when it returns.
func (c *Conn) Run(ctx context.Context) error {
	defer close(c.replies)
	stop := context.AfterFunc(ctx, func() { c.listen.Close() })
	defer stop()
	defer c.Close()
	buf := make([]byte, 1<<16) // path MTU probes are as large as the path
	for {
		n, from, err := c.listen.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read probes: %w", err)
		}
		at := c.cfg.Now()
		p, err := health.DecodeProbe(buf[:n], c.cfg.Key)
		if err != nil {
			if n > 0 {
				c.log.Debug("probe dropped", "from", from, "err", err)
			}
			continue
		}
		switch p.Type {
		case health.ProbeReply, health.ProbeEcho:
			select {
			case c.replies <- Reply{Probe: p, At: at}:
			default:
				c.log.Warn("probe reply dropped: nobody reads them", "peer", p.Node)
			}
		case health.ProbeRequest, health.ProbeTest:
			if err := c.answer(p); err != nil {
				c.log.Debug("probe not answered", "peer", p.Node, "path", p.Path, "err", err)
			}
		}
	}
}

// answer replies to request p over the same kind of path.
func (c *Conn) answer(p health.Probe) error {
	c.sendMu.RLock()
	defer c.sendMu.RUnlock()
	if c.closed {
		return net.ErrClosed
	}
	l := c.getLocal()
	peer, ok := c.cfg.Peer(p.Node)
	if !ok || p.Node == l.Name {
		return fmt.Errorf("unknown peer %q", p.Node)
	}
	reply := health.Probe{Type: health.ProbeReply, Path: p.Path, Node: l.Name, Seq: p.Seq, Sent: p.Sent}
	if p.Type == health.ProbeTest {
		// A self-test packet: its pattern goes back as it came.
		reply.Type, reply.Payload = health.ProbeEcho, p.Payload
	}
	msg, err := health.AppendProbe(nil, reply, c.cfg.Key)
	if err != nil {
		return err
	}
	switch {
	case health.OffPath(p.Path):
		return c.sendOffPath(p.Path, l, peer, msg)
	case p.Path == fabric.PathWireGuard && l.WireGuardDev != "":
		// Back through the tunnel it came by, even while this node's
		// route to the peer is another path (the two ends switch paths
		// at slightly different times).
		return c.sendBound(l, peer, l.WireGuardDev, msg)
	}
	return c.sendRoute(l, peer, msg)
}

// Close closes every socket; it is safe to call more than once.
func (c *Conn) Close() error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.closed = true
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.listen != nil {
		c.listen.Close()
	}
	if c.any != nil {
		c.any.Close()
	}
	for dev, conn := range c.bound {
		conn.Close()
		delete(c.bound, dev)
	}
	if c.packet >= 0 {
		unix.Close(c.packet)
		c.packet = -1
	}
	if c.nl != nil {
		c.nl.Close()
		c.nl = nil
	}
	if c.listen != nil {
		c.listen.Close()
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// setPMTUProbe sets IP_MTU_DISCOVER to IP_PMTUDISC_PROBE on conn: DF set,
// the cached path MTU ignored.
func setPMTUProbe(conn *net.UDPConn) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("probe socket: %w", err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE)
	}); err != nil {
		return fmt.Errorf("probe socket: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("set IP_MTU_DISCOVER on the probe socket: %w", serr)
	}
	return nil
}
