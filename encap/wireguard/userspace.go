package wireguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

// userspace starts embedded wireguard-go devices in one network namespace.
//
// wireguard-go makes its kernel objects in whatever namespace the calling
// thread is in: the TUN (CreateTUN), the UDP sockets (Bind.Open, called when
// the device comes up or its port changes, from wireguard-go's goroutines),
// and the MTU it reads back by name on link events (MTU). In another
// namespace than the process's, each of these runs on a thread locked and
// switched into it; the TUN fd and the sockets stay in that namespace
// afterwards, whatever thread uses them. The UAPI socket is a path, not in
// any network namespace: each namespace needs its own socket dir.
type userspace struct {
	ns  string // namespace path; "": the process's own
	dir string // UAPI socket dir
	log *slog.Logger
}

// NewStarter returns the Starter of embedded wireguard-go devices in the
// network namespace at path netNS ("": the process's own), with UAPI
// sockets in socketDir (DefaultSocketDir where wg(8) finds them). Their
// wireguard-go logs go to log (nil discards): verbose lines at debug,
// errors at warn. It is safe for concurrent use.
func NewStarter(netNS, socketDir string, log *slog.Logger) Starter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u := &userspace{ns: netNS, dir: socketDir, log: log.With("component", "wireguard-go")}
	return u.start
}

// start implements Starter.
func (u *userspace) start(name string, mtu int) (Embedded, error) {
	var inner tun.Device
	err := inNetNS(u.ns, func() (err error) {
		inner, err = tun.CreateTUN(name, mtu)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create tun %s: %w", name, err)
	}
	t := &nsTUN{Device: inner, ns: u.ns, events: make(chan tun.Event, 8)}
	go t.forward()
	var bind conn.Bind = conn.NewDefaultBind()
	if u.ns != "" {
		// Hides the StdNetBind from wireguard-go, which then skips its
		// sticky-socket route listener: that listener's netlink socket
		// would be opened in the process's namespace.
		bind = &nsBind{Bind: bind, ns: u.ns}
	}
	dev := device.NewDevice(t, bind, u.logger(name))
	l, err := listenUAPI(u.dir, name)
	if err != nil {
		dev.Close()
		return nil, err
	}
	e := &embedded{dev: dev, l: l, offload: inner.BatchSize() > 1, served: make(chan struct{})}
	go e.serve()
	return e, nil
}

// logger feeds wireguard-go's log into u.log: its verbose lines at debug
// (formatted only when debug is on), its errors at warn.
func (u *userspace) logger(name string) *device.Logger {
	log := u.log.With("link", name)
	l := &device.Logger{
		Verbosef: device.DiscardLogf,
		Errorf:   func(f string, a ...any) { log.Warn("wireguard-go", "detail", fmt.Sprintf(f, a...)) },
	}
	if log.Enabled(context.Background(), slog.LevelDebug) {
		l.Verbosef = func(f string, a ...any) { log.Debug("wireguard-go", "detail", fmt.Sprintf(f, a...)) }
	}
	return l
}

// listenUAPI listens on dir/name.sock (mode 0600: the socket reveals the
// private key), replacing a socket that nothing answers on (left by a
// process that died) but not one that a live process serves.
func listenUAPI(dir, name string) (*net.UnixListener, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("make uapi socket dir %s: %w", dir, err)
	}
	path := sockPath(dir, name)
	addr := &net.UnixAddr{Name: path, Net: "unix"}
	l, err := net.ListenUnix("unix", addr)
	if errors.Is(err, unix.EADDRINUSE) {
		if c, derr := net.Dial("unix", path); derr == nil {
			c.Close()
			return nil, fmt.Errorf("listen on uapi socket %s: another process serves it", path)
		}
		if rerr := os.Remove(path); rerr != nil {
			return nil, fmt.Errorf("remove stale uapi socket %s: %w", path, rerr)
		}
		l, err = net.ListenUnix("unix", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("listen on uapi socket %s: %w", path, err)
	}
	// Connecting needs write permission: 0600 leaves root alone.
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod uapi socket %s: %w", path, err)
	}
	return l, nil
}

// embedded is a running wireguard-go device with its UAPI socket.
type embedded struct {
	dev     *device.Device
	l       *net.UnixListener
	offload bool
	served  chan struct{} // closed when serve returns
	once    sync.Once
}

// serve answers UAPI connections until the listener closes.
func (e *embedded) serve() {
	defer close(e.served)
	for {
		c, err := e.l.Accept()
		if err != nil {
			return
		}
		go e.dev.IpcHandle(c)
	}
}

// Close implements Embedded: the socket is unlinked, the device (its TUN
// and UDP sockets) closed.
func (e *embedded) Close() error {
	var err error
	e.once.Do(func() {
		err = e.l.Close() // unlinks the socket
		<-e.served
		e.dev.Close()
	})
	return err
}

// Up implements Embedded.
func (e *embedded) Up() error { return e.dev.Up() }

// Offload implements Embedded: wireguard-go's CreateTUN asks for
// IFF_VNET_HDR and TSO/USO offloads, and batches only when the kernel took
// them.
func (e *embedded) Offload() bool { return e.offload }

// nsTUN is a TUN that reads its MTU in its namespace, and drops stale down
// events (see forward).
type nsTUN struct {
	tun.Device
	ns     string
	events chan tun.Event
}

// MTU reads the MTU by name, in the TUN's namespace.
func (t *nsTUN) MTU() (int, error) {
	var mtu int
	err := inNetNS(t.ns, func() (err error) {
		mtu, err = t.Device.MTU()
		return err
	})
	return mtu, err
}

// Events returns the events of the TUN as forward passes them.
func (t *nsTUN) Events() <-chan tun.Event { return t.events }

// forward passes the TUN's events on, less the down events of a link that
// is up. wireguard-go polls the link's state once at start and may report
// it down after the driver has set the link up and brought the device up
// (Embedded.Up): that stale event would take the device down and drop the
// handshakes just kicked off; the link's next event brings it up anyway,
// but without them.
func (t *nsTUN) forward() {
	defer close(t.events)
	for ev := range t.Device.Events() {
		if ev&tun.EventDown != 0 && t.isUp() {
			ev &^= tun.EventDown
		}
		if ev != 0 {
			t.events <- ev
		}
	}
}

// isUp reports whether the TUN's link is up, as wireguard-go tells: an
// empty write is refused with EINVAL when it is up, EIO when it is down.
func (t *nsTUN) isUp() bool {
	sc, err := t.File().SyscallConn()
	if err != nil {
		return false
	}
	var werr error
	if err := sc.Control(func(fd uintptr) { _, werr = unix.Write(int(fd), nil) }); err != nil {
		return false
	}
	return errors.Is(werr, unix.EINVAL)
}

// nsBind opens its UDP sockets in its namespace.
type nsBind struct {
	conn.Bind
	ns string
}

// Open opens the sockets on a thread switched into the namespace.
func (b *nsBind) Open(port uint16) (fns []conn.ReceiveFunc, actual uint16, err error) {
	err = inNetNS(b.ns, func() error {
		var oerr error
		fns, actual, oerr = b.Bind.Open(port)
		return oerr
	})
	return fns, actual, err
}
