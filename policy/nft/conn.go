package nft

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// SocketBuffer is the size of the send and receive buffers Connect gives
// its netlink socket. Apply sends a whole table as one transaction, which
// the library writes with one sendmsg: the kernel refuses it (EMSGSIZE)
// when it is larger than the send buffer, and drops acknowledgements
// (ENOBUFS) that do not fit the receive buffer. 10,000 workloads take
// about 2 MB; the default buffers (net.core.wmem_max) hold about 200 kB.
// The memory is only used while a transaction is in flight.
const SocketBuffer = 64 << 20

// Connect opens a lasting nftables connection (one netlink socket, kept
// open; close it with CloseLasting) for an Applier, in the network
// namespace whose file descriptor is nsFd, or in the caller's when nsFd is
// negative. Its buffers are SocketBuffer bytes when the process has
// CAP_NET_ADMIN (SO_SNDBUFFORCE), else as large as net.core.wmem_max and
// rmem_max allow.
func Connect(nsFd int) (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(setBuffers)}
	if nsFd >= 0 {
		opts = append(opts, nftables.WithNetNSFd(nsFd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("open nftables connection: %w", err)
	}
	return c, nil
}

// setBuffers enlarges the socket's buffers to SocketBuffer.
func setBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	var errs []error
	err = rc.Control(func(fd uintptr) {
		for _, o := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], SocketBuffer) == nil {
				continue
			}
			// Without CAP_NET_ADMIN: as much as the sysctl limits allow.
			if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], SocketBuffer); err != nil {
				errs = append(errs, fmt.Errorf("set netlink socket buffer: %w", err))
			}
		}
	})
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	return errors.Join(errs...)
}
