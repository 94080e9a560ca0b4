package ipiptest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"

	"github.com/weft-net/weft/encap/ipip"
)

var (
	_ ipip.TUN  = (*TUN)(nil)
	_ ipip.Conn = (*Conn)(nil)
)

// BatchSize is the fakes' batch size: small, so that tests cross batches.
const BatchSize = 8

// queueLen bounds what a fake holds unread; a fuller queue drops, as a
// kernel queue would.
const queueLen = 1024

// Net is a fake underlay: each Host opens a raw socket on it at its
// Device.Local, and what one sends reaches the host with the destination
// address, inside the outer IPv4 header the kernel would add. Safe for
// concurrent use. The zero value is not usable: call NewNet.
type Net struct {
	mu    sync.Mutex
	conns map[netip.Addr]*Conn
}

// NewNet returns an empty underlay.
func NewNet() *Net { return &Net{conns: map[netip.Addr]*Conn{}} }

// Host is one node on a Net: Open, its ipip.Opener, makes the TUN link in
// Kernel and returns the fake endpoints, which TUN and Conn then return.
type Host struct {
	Kernel *Kernel
	net    *Net

	mu    sync.Mutex
	opens int
	tun   *TUN
	conn  *Conn
}

// Host returns a host on n whose links live in k.
func (n *Net) Host(k *Kernel) *Host { return &Host{Kernel: k, net: n} }

// Open implements ipip.Opener: one TUN queue whatever queues asks, and a
// raw socket at dev.Local, which must be valid and not taken.
func (h *Host) Open(dev ipip.Device, queues int) (ipip.Endpoints, error) {
	if !dev.Local.IsValid() {
		return ipip.Endpoints{}, errors.New("ipiptest: Open needs Device.Local")
	}
	c := &Conn{net: h.net, local: dev.Local, in: make(chan []byte, queueLen), done: make(chan struct{}), sent: make(chan Sent, queueLen)}
	h.net.mu.Lock()
	if _, ok := h.net.conns[dev.Local]; ok {
		h.net.mu.Unlock()
		return ipip.Endpoints{}, fmt.Errorf("ipiptest: %s already has a raw socket", dev.Local)
	}
	h.net.conns[dev.Local] = c
	h.net.mu.Unlock()
	t := &TUN{in: make(chan []byte, queueLen), out: make(chan []byte, queueLen), done: make(chan struct{})}
	h.Kernel.openTUN(dev.Name, func() { t.Close() })
	h.mu.Lock()
	defer h.mu.Unlock()
	h.opens++
	h.tun, h.conn = t, c
	return ipip.Endpoints{Queues: []ipip.TUN{t}, Conn: c}, nil
}

// Opens returns how many times Open succeeded.
func (h *Host) Opens() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.opens
}

// TUN returns the TUN queue opened last, nil before Open.
func (h *Host) TUN() *TUN {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tun
}

// Conn returns the raw socket opened last, nil before Open.
func (h *Host) Conn() *Conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conn
}

// TUN is a fake TUN queue. Inject plays the kernel routing packets into
// the device; Written receives what the driver writes to it.
type TUN struct {
	in, out chan []byte
	done    chan struct{}
	once    sync.Once
}

// Inject queues pkts (copied) for the driver to read, as the kernel routes
// them into the device.
func (t *TUN) Inject(pkts ...[]byte) {
	for _, p := range pkts {
		t.in <- append([]byte(nil), p...)
	}
}

// Written delivers each packet the driver writes into the device (as the
// host receives it), one a packet.
func (t *TUN) Written() <-chan []byte { return t.out }

// Read implements ipip.TUN: it blocks for one packet and takes those
// queued behind it, up to len(bufs).
func (t *TUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case p := <-t.in:
		sizes[0] = copy(bufs[0][offset:], p)
	case <-t.done:
		return 0, os.ErrClosed
	}
	n := 1
	for n < len(bufs) {
		select {
		case p := <-t.in:
			sizes[n] = copy(bufs[n][offset:], p)
			n++
		default:
			return n, nil
		}
	}
	return n, nil
}

// Write implements ipip.TUN. It fails if offset is less than
// ipip.Headroom, which the real device needs.
func (t *TUN) Write(bufs [][]byte, offset int) (int, error) {
	if offset < ipip.Headroom {
		return 0, fmt.Errorf("ipiptest: write with offset %d, less than ipip.Headroom", offset)
	}
	select {
	case <-t.done:
		return 0, os.ErrClosed
	default:
	}
	for _, b := range bufs {
		select {
		case t.out <- append([]byte(nil), b[offset:]...):
		default: // full: dropped, as a full backlog would
		}
	}
	return len(bufs), nil
}

// BatchSize implements ipip.TUN.
func (t *TUN) BatchSize() int { return BatchSize }

// Close implements ipip.TUN.
func (t *TUN) Close() error {
	t.once.Do(func() { close(t.done) })
	return nil
}

// Sent is one packet a Conn sent: the inner packet and where to.
type Sent struct {
	Dst   netip.Addr
	Inner []byte
}

// Conn is a fake raw IPPROTO_IPIP socket on a Net.
type Conn struct {
	net   *Net
	local netip.Addr
	in    chan []byte
	sent  chan Sent
	done  chan struct{}
	once  sync.Once

	mu       sync.Mutex
	failNext error
}

// Receive queues datagram (copied), which must hold its outer IPv4
// header, for the driver to read, as if it came off the wire.
func (c *Conn) Receive(datagram []byte) { c.in <- append([]byte(nil), datagram...) }

// Sent delivers each packet the driver sent, whether or not any host has
// its destination.
func (c *Conn) Sent() <-chan Sent { return c.sent }

// FailNextWrite makes the next packet WriteBatch sends fail with err.
func (c *Conn) FailNextWrite(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failNext = err
}

// ReadBatch implements ipip.Conn.
func (c *Conn) ReadBatch(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case p := <-c.in:
		sizes[0] = copy(bufs[0][offset:], p)
	case <-c.done:
		return 0, os.ErrClosed
	}
	n := 1
	for n < len(bufs) {
		select {
		case p := <-c.in:
			sizes[n] = copy(bufs[n][offset:], p)
			n++
		default:
			return n, nil
		}
	}
	return n, nil
}

// WriteBatch implements ipip.Conn: each packet goes, inside the outer
// header Encapsulate makes, to the Conn at its destination, if any.
func (c *Conn) WriteBatch(pkts [][]byte, dsts []netip.Addr) (int, error) {
	sent := 0
	var first error
	for i, p := range pkts {
		c.mu.Lock()
		err := c.failNext
		c.failNext = nil
		c.mu.Unlock()
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		select {
		case c.sent <- Sent{Dst: dsts[i], Inner: append([]byte(nil), p...)}:
		default:
		}
		c.net.mu.Lock()
		to := c.net.conns[dsts[i]]
		c.net.mu.Unlock()
		if to != nil {
			select {
			case to.in <- Encapsulate(c.local, dsts[i], p):
			default:
			}
		}
		sent++
	}
	return sent, first
}

// Close implements ipip.Conn; the Conn leaves the Net.
func (c *Conn) Close() error {
	c.once.Do(func() {
		close(c.done)
		c.net.mu.Lock()
		if c.net.conns[c.local] == c {
			delete(c.net.conns, c.local)
		}
		c.net.mu.Unlock()
	})
	return nil
}

// Encapsulate returns inner inside the outer IPv4 header a raw
// IPPROTO_IPIP socket gets from the kernel: version 4, IHL 5, TOS 0, ID 0,
// DF, TTL 64, protocol 4, the header checksum, src and dst.
func Encapsulate(src, dst netip.Addr, inner []byte) []byte {
	p := make([]byte, 20+len(inner))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[6:], 0x4000)
	p[8], p[9] = 64, 4
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[10:], Checksum(p[:20]))
	copy(p[20:], inner)
	return p
}

// Checksum returns the Internet checksum (RFC 1071) of b: stored in a
// header whose checksum field was zero, it makes Checksum of the header 0.
func Checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}
