package ipip

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
)

// TUN is one queue of the TUN device: IPv4 packets without any header in
// front (what the kernel routes into the device, and what it takes back as
// received on it). wireguard-go's tun.Device has this shape.
type TUN interface {
	// Read reads one or more packets into bufs[i][offset:] and their
	// lengths into sizes (len(sizes) >= len(bufs)), returning how many.
	// It blocks until at least one packet is there, and returns an error
	// for which errors.Is(err, os.ErrClosed) holds once the queue is
	// closed or the device is gone. Called from one goroutine at a time.
	Read(bufs [][]byte, sizes []int, offset int) (int, error)
	// Write hands each bufs[i][offset:] to the kernel as a packet
	// received on the device. It may modify bufs (to coalesce packets of
	// one flow), including the offset bytes in front of each packet:
	// offset must be at least Headroom. Safe for concurrent use.
	Write(bufs [][]byte, offset int) (int, error)
	// BatchSize is the most packets one Read returns and one Write
	// should take. It does not change.
	BatchSize() int
	// Close closes the queue; a blocked Read returns. Idempotent.
	Close() error
}

// Conn is the raw IPPROTO_IPIP socket.
type Conn interface {
	// ReadBatch reads one or more datagrams of IP protocol 4, each whole
	// with its outer IPv4 header as raw sockets deliver it, into
	// bufs[i][offset:] and their lengths into sizes, returning how many.
	// It blocks until at least one is there, and returns an error for
	// which errors.Is(err, os.ErrClosed) holds once closed. A datagram
	// longer than its buffer is cut short. Called from one goroutine.
	ReadBatch(bufs [][]byte, sizes []int, offset int) (int, error)
	// WriteBatch sends each pkts[i], an IPv4 packet, to dsts[i] inside an
	// outer IPv4 header of protocol 4 that the kernel adds (source: the
	// address the socket is bound to, or the route's). It tries every
	// packet, blocking while the socket's buffer is full, and returns how
	// many were sent with the error of the first that was not. It does
	// not keep pkts. Safe for concurrent use.
	WriteBatch(pkts [][]byte, dsts []netip.Addr) (int, error)
	// Close closes the socket; a blocked ReadBatch returns. Idempotent.
	Close() error
}

// Opener opens the user-space data path for dev: the TUN device dev.Name
// with the given number of queues (created, or attached to if it persists
// from an earlier agent) and the raw socket, bound to dev.Local if that is
// valid. It blocks while it opens; the Endpoints are the caller's to
// close. It must return at least one queue.
type Opener func(dev Device, queues int) (Endpoints, error)

// Endpoints are the TUN queues and the raw socket of the user-space path.
type Endpoints struct {
	Queues []TUN
	Conn   Conn
}

const (
	// Headroom is the space the forwarder leaves in front of each packet
	// it writes to a TUN: wireguard-go's offload header (10 bytes) fits,
	// and so does a received packet's outer IPv4 header, so that stripping
	// it moves nothing.
	Headroom = 32
	// rxOffset is where a datagram from the raw socket is read to: its
	// 20-byte outer header ends at Headroom.
	rxOffset = Headroom - ipv4HeaderLen
	// bufSize holds the largest IPv4 packet behind Headroom.
	bufSize = Headroom + 65535
	// maxReadErrors is how many reads in a row may fail before a loop
	// gives up: a transient error (a malformed offload header) is
	// counted and skipped, a lasting one must not spin.
	maxReadErrors = 100
)

// forwarder moves packets between the TUN queues and the raw socket until
// stopped. Its table is swapped whole by Apply.
type forwarder struct {
	log   *slog.Logger
	dev   Device // what it was opened for
	ep    Endpoints
	stats *counters
	tab   atomic.Pointer[table]

	wg       sync.WaitGroup
	stopping atomic.Bool
	mu       sync.Mutex
	failed   error // the first loop that ended by itself, and why
}

// startForwarder starts one goroutine per TUN queue and one for the raw
// socket, with an empty table until setTable.
func startForwarder(log *slog.Logger, dev Device, ep Endpoints, stats *counters) *forwarder {
	f := &forwarder{log: log, dev: dev, ep: ep, stats: stats}
	f.tab.Store(newTable(nil, 0))
	for i, q := range ep.Queues {
		f.goLoop(fmt.Sprintf("tun queue %d", i), func() error { return f.fromTUN(q) })
	}
	f.goLoop("raw socket", func() error { return f.fromConn(ep.Queues[0]) })
	return f
}

func (f *forwarder) goLoop(name string, loop func() error) {
	f.wg.Go(func() {
		err := loop()
		if f.stopping.Load() {
			return
		}
		if err == nil || errors.Is(err, os.ErrClosed) {
			err = fmt.Errorf("%s closed under the forwarder: %w", name, os.ErrClosed)
		}
		f.log.Error("ipip forwarder stopped", "loop", name, "err", err)
		f.mu.Lock()
		if f.failed == nil {
			f.failed = err
		}
		f.mu.Unlock()
	})
}

// err returns why the forwarder stopped by itself, nil while it runs.
func (f *forwarder) err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

func (f *forwarder) table() *table     { return f.tab.Load() }
func (f *forwarder) setTable(t *table) { f.tab.Store(t) }

// stop closes the endpoints and waits for the loops to end.
func (f *forwarder) stop() error {
	f.stopping.Store(true)
	var errs []error
	for i, q := range f.ep.Queues {
		if err := q.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close tun queue %d: %w", i, err))
		}
	}
	if err := f.ep.Conn.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close raw socket: %w", err))
	}
	f.wg.Wait()
	return errors.Join(errs...)
}

// batch is one goroutine's buffers, allocated once.
type batch struct {
	bufs  [][]byte
	sizes []int
}

func newBatch(n, size int) batch {
	b := batch{bufs: make([][]byte, n), sizes: make([]int, n)}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, size)
	}
	return b
}

// fromTUN reads packets from q and sends each to the peer whose subnet
// holds its destination; a packet over the tunnel MTU with DF set gets
// ICMP fragmentation-needed back into q instead.
func (f *forwarder) fromTUN(q TUN) error {
	n := max(q.BatchSize(), 1)
	in := newBatch(n, bufSize)
	icmp := newBatch(n, Headroom+icmpErrorMax)
	out := make([][]byte, 0, n)
	dsts := make([]netip.Addr, 0, n)
	replies := make([][]byte, 0, n)
	errs := 0
	for {
		cnt, err := q.Read(in.bufs, in.sizes, Headroom)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return err
			}
			if errs++; errs >= maxReadErrors {
				return fmt.Errorf("read tun: %w", err)
			}
			f.stats.readErrors.Add(1)
			f.log.Debug("read tun", "err", err)
			continue
		}
		errs = 0
		var c tally
		t := f.tab.Load()
		out, dsts, replies = out[:0], dsts[:0], replies[:0]
		for i := range cnt {
			pkt := in.bufs[i][Headroom : Headroom+in.sizes[i]]
			remote, v := t.route(pkt)
			switch v {
			case pass:
				out = append(out, pkt)
				dsts = append(dsts, netip.AddrFrom4(remote))
				c.bytes += uint64(len(pkt))
			case dropTooBig:
				if m := fragNeeded(icmp.bufs[len(replies)][Headroom:], pkt, t.mtu); m > 0 {
					replies = append(replies, icmp.bufs[len(replies)][:Headroom+m])
				}
			}
			c.drop[v]++
		}
		if len(out) > 0 {
			sent, err := f.ep.Conn.WriteBatch(out, dsts)
			c.packets = uint64(sent)
			c.drop[dropSend] = uint64(len(out) - sent)
			if err != nil {
				f.log.Debug("send to peers", "failed", len(out)-sent, "err", err)
			}
		}
		if len(replies) > 0 {
			if _, err := q.Write(replies, Headroom); err != nil {
				c.drop[dropWrite] += uint64(len(replies))
				f.log.Debug("write frag-needed to tun", "err", err)
			}
			c.fragNeeded = uint64(len(replies))
		}
		f.stats.addTx(&c)
	}
}

// route returns where pkt, read from the TUN, goes.
func (t *table) route(pkt []byte) (remote [4]byte, v verdict) {
	dst, total, df, v := innerPacket(pkt)
	if v != pass {
		return remote, v
	}
	remote, ok := t.lookup(dst)
	if !ok {
		return remote, dropNoPeer
	}
	// Over the tunnel MTU without DF: the raw socket sends it anyway and
	// the kernel fragments the outer datagram, as its ipip would.
	if t.mtu > 0 && total > t.mtu && df {
		return remote, dropTooBig
	}
	return remote, pass
}

// fromConn reads datagrams from the raw socket and writes the inner packet
// of each that comes from a peer into q.
func (f *forwarder) fromConn(q TUN) error {
	n := max(q.BatchSize(), 1)
	in := newBatch(n, bufSize)
	var split batch // for packets the underlay's GRO merged; made on first use
	out := make([][]byte, 0, n)
	errs := 0
	for {
		cnt, err := f.ep.Conn.ReadBatch(in.bufs, in.sizes, rxOffset)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return err
			}
			if errs++; errs >= maxReadErrors {
				return fmt.Errorf("read raw socket: %w", err)
			}
			f.stats.readErrors.Add(1)
			f.log.Debug("read raw socket", "err", err)
			continue
		}
		errs = 0
		var c tally
		t := f.tab.Load()
		out = out[:0]
		for i := range cnt {
			b := in.bufs[i]
			inner, v := t.decap(b, in.sizes[i])
			c.drop[v]++
			if v != pass {
				continue
			}
			if mss := tcpMSS(inner, t.mtu); mss > 0 && len(inner) > t.mtu {
				// A TCP packet over the MTU was merged by GRO on the
				// underlay: cut it back to segments the TUN's MTU lets
				// through, else the host would answer frag-needed.
				if len(split.bufs) == 0 || len(split.bufs[0]) < Headroom+t.mtu {
					split = newBatch(n, Headroom+t.mtu)
				}
				if m := splitTCP(inner, mss, split.bufs, split.sizes, Headroom); m > 0 {
					for j := range m {
						out = append(out, split.bufs[j][:Headroom+split.sizes[j]])
						c.bytes += uint64(split.sizes[j])
					}
					c.packets += uint64(m)
					f.write(q, out, &c) // split's buffers are reused next
					out = out[:0]
					continue
				}
			}
			out = append(out, b[:Headroom+len(inner)])
			c.packets++
			c.bytes += uint64(len(inner))
		}
		if len(out) > 0 {
			f.write(q, out, &c)
		}
		f.stats.addRx(&c)
	}
}

// write writes pkts into q, counting a failure against them all (the TUN
// does not say which failed).
func (f *forwarder) write(q TUN, pkts [][]byte, c *tally) {
	if _, err := q.Write(pkts, Headroom); err != nil {
		c.drop[dropWrite] += uint64(len(pkts))
		f.log.Debug("write to tun", "packets", len(pkts), "err", err)
	}
}

// tcpMSS returns the largest TCP payload of a segment of the TCP/IPv4
// packet pkt that fits in mtu, or 0 if pkt is not TCP or mtu is 0.
func tcpMSS(pkt []byte, mtu int) int {
	ihl := int(pkt[0]&0x0f) * 4
	if mtu == 0 || pkt[9] != protoTCP || len(pkt) < ihl+13 {
		return 0
	}
	return max(mtu-ihl-int(pkt[ihl+12]>>4)*4, 0)
}

// decap checks the datagram of length size read to b[rxOffset:] and
// returns its inner packet, moved to start at b[Headroom:] if the outer
// header was longer than 20 bytes.
func (t *table) decap(b []byte, size int) (inner []byte, v verdict) {
	pkt := b[rxOffset : rxOffset+size]
	src, start, end, v := outerPacket(pkt)
	if v != pass {
		return nil, v
	}
	if !t.isPeer(src) {
		return nil, dropUnknownPeer
	}
	if start != ipv4HeaderLen {
		copy(b[Headroom:], pkt[start:end]) // outer options: rare
	}
	return b[Headroom : Headroom+end-start], pass
}
