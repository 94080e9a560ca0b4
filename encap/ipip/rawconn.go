package ipip

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// rawBatch is the most datagrams one recvmmsg or sendmmsg moves
	// (wireguard-go's IdealBatchSize; a TUN read splits into fewer).
	rawBatch = 128
	// rawSocketBuffer is the send and receive buffer of the raw socket:
	// as wireguard-go's UDP sockets, room for bursts of offloaded reads.
	rawSocketBuffer = 8 << 20
)

// rawConn is the raw IPPROTO_IPIP socket, read with recvmmsg and written
// with sendmmsg through the runtime's poller.
type rawConn struct {
	f  *os.File
	rc syscall.RawConn
	// rx is ReadBatch's scratch (one reader at a time).
	rx mmsgs
	// tx holds WriteBatch's scratch, one per concurrent writer.
	tx sync.Pool
	// closed is set by Close: the poller's error for a closed file is
	// not os.ErrClosed, so the calls map it.
	closed atomic.Bool
}

// mmsgs are the headers of one recvmmsg or sendmmsg call.
type mmsgs struct {
	hdrs  [rawBatch]unix.Mmsghdr
	iovs  [rawBatch]unix.Iovec
	addrs [rawBatch]unix.RawSockaddrInet4
}

// openRawConn opens the raw socket in the calling thread's namespace,
// bound to local if valid.
func openRawConn(local netip.Addr) (_ *rawConn, err error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_IPIP)
	if err != nil {
		return nil, fmt.Errorf("open raw ipip socket: %w", err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
		}
	}()
	for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
		// FORCE passes rmem_max/wmem_max with CAP_NET_ADMIN; without it the
		// kernel caps the plain option.
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[0], rawSocketBuffer) != nil {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[1], rawSocketBuffer); err != nil {
				return nil, fmt.Errorf("set raw socket buffer: %w", err)
			}
		}
	}
	if local.IsValid() {
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: local.As4()}); err != nil {
			return nil, fmt.Errorf("bind raw socket to %s: %w", local, err)
		}
	}
	f := os.NewFile(uintptr(fd), "ipip")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("raw socket: %w", err)
	}
	c := &rawConn{f: f, rc: rc}
	c.tx.New = func() any { return new(mmsgs) }
	return c, nil
}

// ReadBatch implements Conn.
func (c *rawConn) ReadBatch(bufs [][]byte, sizes []int, offset int) (int, error) {
	m := &c.rx
	n := min(len(bufs), rawBatch)
	for i := range n {
		m.iovs[i].Base = &bufs[i][offset]
		m.iovs[i].SetLen(len(bufs[i]) - offset)
		m.hdrs[i] = unix.Mmsghdr{}
		m.hdrs[i].Hdr.Iov = &m.iovs[i]
		m.hdrs[i].Hdr.SetIovlen(1)
	}
	var (
		got   int
		errno syscall.Errno
	)
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&m.hdrs[0])), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // wait in the poller
			}
			got, errno = int(r), e
			return true
		}
	})
	runtime.KeepAlive(bufs)
	if err != nil {
		return 0, fmt.Errorf("recvmmsg: %w", c.closedErr(err))
	}
	if errno != 0 {
		return 0, fmt.Errorf("recvmmsg: %w", errno)
	}
	for i := range got {
		sizes[i] = int(m.hdrs[i].Len)
	}
	return got, nil
}

// WriteBatch implements Conn.
func (c *rawConn) WriteBatch(pkts [][]byte, dsts []netip.Addr) (int, error) {
	m := c.tx.Get().(*mmsgs)
	defer c.tx.Put(m)
	sent := 0
	var first error
	for len(pkts) > 0 {
		n := min(len(pkts), rawBatch)
		for i := range n {
			m.addrs[i] = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: dsts[i].As4()}
			m.iovs[i].Base = unsafe.SliceData(pkts[i])
			m.iovs[i].SetLen(len(pkts[i]))
			m.hdrs[i] = unix.Mmsghdr{}
			m.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&m.addrs[i]))
			m.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
			m.hdrs[i].Hdr.Iov = &m.iovs[i]
			m.hdrs[i].Hdr.SetIovlen(1)
		}
		for start := 0; start < n; {
			r, err := c.sendmmsg(m.hdrs[start:n])
			if errors.Is(err, os.ErrClosed) {
				return sent, err
			}
			if err != nil {
				// sendmmsg reports the error of the first datagram it
				// could not send: skip that one, go on with the rest.
				if first == nil {
					first = fmt.Errorf("send to %s: %w", dsts[start], err)
				}
				start++
				continue
			}
			sent += r
			start += r
		}
		pkts, dsts = pkts[n:], dsts[n:]
	}
	return sent, first
}

// sendmmsg sends hdrs, blocking in the poller while the socket buffer is
// full, and returns how many went (at least one) or the error of the
// first.
func (c *rawConn) sendmmsg(hdrs []unix.Mmsghdr) (int, error) {
	var (
		sent  int
		errno syscall.Errno
	)
	err := c.rc.Write(func(fd uintptr) bool {
		for {
			r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), unix.MSG_DONTWAIT, 0, 0)
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			}
			sent, errno = int(r), e
			return true
		}
	})
	if err != nil {
		return 0, c.closedErr(err)
	}
	if errno != 0 {
		return 0, errno
	}
	return sent, nil
}

// closedErr returns os.ErrClosed for the poller's error once Close ran.
func (c *rawConn) closedErr(err error) error {
	if c.closed.Load() {
		return os.ErrClosed
	}
	return err
}

// Close implements Conn.
func (c *rawConn) Close() error {
	c.closed.Store(true)
	err := c.f.Close()
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}
