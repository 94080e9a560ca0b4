package ipip

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// noNamespace is netns.None(): open in the caller's namespace.
const noNamespace = netns.NsHandle(-1)

// ProbeDevice is the ipip device Detect makes, and deletes again, to learn
// whether the kernel has IP-in-IP.
const ProbeDevice = "weft.ipipprobe"

// Detect reports the mode the namespace of k supports: ModeKernel if it
// has an ipip device already (the module's tunl0) or can make one,
// ModeUserspace if the kernel says it has no such device type
// (EOPNOTSUPP, as on kernels without the ipip module). Any other refusal
// is an error. Making the probe loads the ipip module where the kernel has
// it, and with it tunl0; the probe itself, ProbeDevice, is deleted again.
// It blocks for a few netlink requests.
func Detect(k Kernel) (Mode, error) {
	if l, err := k.LinkByName("tunl0"); err == nil {
		if _, ok := l.(*netlink.Iptun); ok {
			return ModeKernel, nil
		}
	} else if !errors.Is(err, unix.ENODEV) {
		return "", fmt.Errorf("detect ipip: look up tunl0: %w", err)
	}
	probe := &netlink.Iptun{LinkAttrs: netlink.LinkAttrs{Name: ProbeDevice}, PMtuDisc: 1}
	err := k.LinkAdd(probe)
	switch {
	case errors.Is(err, unix.EOPNOTSUPP):
		return ModeUserspace, nil
	case errors.Is(err, unix.EEXIST):
		// tunl0 appeared (the module loaded on this very request and made
		// its fallback device, which has the probe's all-any addresses),
		// or a probe was left behind: either way the kernel has ipip.
	case err != nil:
		return "", fmt.Errorf("detect ipip: add probe device %s: %w", ProbeDevice, err)
	}
	l, err := k.LinkByName(ProbeDevice)
	switch {
	case errors.Is(err, unix.ENODEV):
		return ModeKernel, nil
	case err != nil:
		return "", fmt.Errorf("detect ipip: look up probe device %s: %w", ProbeDevice, err)
	}
	if _, ok := l.(*netlink.Iptun); !ok {
		return ModeKernel, nil // someone else's link of that name: not ours to delete
	}
	if err := k.LinkDel(l); err != nil {
		return "", fmt.Errorf("detect ipip: delete probe device %s: %w", ProbeDevice, err)
	}
	return ModeKernel, nil
}

// OpenLinux returns the Opener for Linux. It opens the TUN device with
// IFF_MULTI_QUEUE (one file per queue, so that several goroutines read it;
// the kernel spreads flows over the queues by hash), IFF_VNET_HDR and TCP
// and UDP segmentation offload (through wireguard-go's tun package: one
// read brings up to 64 KB of a flow, split in user space, and writes
// coalesce a flow's segments), and makes it persistent, so that the device
// and the routes through it outlive an agent restart (it drops packets
// while no agent has it open). It opens the raw socket with 8 MiB buffers.
// Both are opened inside namespace ns (netns.None(): the caller's), on a
// thread of their own, and stay there whichever thread uses them later.
// The caller keeps ns.
func OpenLinux(ns netns.NsHandle) Opener {
	return func(dev Device, queues int) (Endpoints, error) {
		var ep Endpoints
		err := inNamespace(ns, func() error {
			var err error
			ep, err = openLinux(dev, queues)
			return err
		})
		return ep, err
	}
}

// inNamespace runs do with the thread in namespace ns. The switch happens
// on a goroutine locked to its own thread; if the thread cannot be switched
// back it is never unlocked, so the runtime ends it with the goroutine.
func inNamespace(ns netns.NsHandle, do func() error) error {
	if ns == noNamespace {
		return do()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		err = do()
		if errBack := netns.Set(orig); errBack != nil {
			errc <- errors.Join(err, fmt.Errorf("return to namespace %s: %w", orig, errBack))
			return // still locked: the thread goes with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

func openLinux(dev Device, queues int) (ep Endpoints, err error) {
	defer func() {
		if err != nil {
			for _, q := range ep.Queues {
				q.Close()
			}
			ep = Endpoints{}
		}
	}()
	for i := range max(queues, 1) {
		q, err := openQueue(dev.Name, i == 0)
		if err != nil {
			return ep, fmt.Errorf("open tun %s queue %d: %w", dev.Name, i, err)
		}
		ep.Queues = append(ep.Queues, q)
	}
	ep.Conn, err = openRawConn(dev.Local)
	return ep, err
}

// openQueue opens one queue of the multi-queue TUN device name, creating
// it, persistent, if it is not there.
func openQueue(name string, persist bool) (TUN, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("name %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR | unix.IFF_MULTI_QUEUE)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF: %w", err)
	}
	if persist {
		if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("TUNSETPERSIST: %w", err)
		}
	}
	// wireguard-go takes the file over: non-blocking, in the runtime's
	// poller, and the offloads (TUNSETOFFLOAD) set.
	d, _, err := tun.CreateUnmonitoredTUNFromFD(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set up offloads: %w", err)
	}
	return tunQueue{d}, nil
}

// tunQueue adapts a wireguard-go tun.Device to TUN.
type tunQueue struct{ tun.Device }

// Read implements TUN. A read that split into more segments than bufs
// hold keeps those that fit: TCP sends the rest again.
func (q tunQueue) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := q.Device.Read(bufs, sizes, offset)
	if errors.Is(err, tun.ErrTooManySegments) {
		return max(n, 0), nil
	}
	return n, err // a closed file or a deleted device (EBADFD) is os.ErrClosed
}
