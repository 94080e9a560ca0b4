package wireguard

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl"
)

// probeLink is the kernel WireGuard link Detect creates and deletes. A
// probe left behind by a crash is weft's (LinkPrefix) and swept by the next
// Apply.
const probeLink = LinkPrefix + "wgprobe"

// Options configure Open.
type Options struct {
	// NetNS is the path of the network namespace to work in, such as
	// /run/netns/<name>; "": the process's own (the agent's case).
	NetNS string
	// SocketDir holds the user-space device's UAPI socket <name>.sock;
	// "": DefaultSocketDir, where wg(8) finds it. Give each namespace of
	// one host its own.
	SocketDir string
	// Mode forces ModeKernel or ModeUserspace; "": Detect decides.
	Mode string
	// Logger receives the mode chosen and the Driver's logs; nil discards.
	Logger *slog.Logger
}

// Open returns a Driver for the real kernel in o.NetNS. Unless o.Mode
// forces one, it decides the mode once with Detect, and logs it with the
// reason for user space. In kernel mode the Driver configures the device
// through a wgctrl client made inside the namespace; in user-space mode it
// runs wireguard-go in this process and configures it through its UAPI
// socket (NewUAPIClient). The Driver's Close releases what Open made. Open
// blocks for a few netlink requests.
func Open(o Options) (*Driver, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := o.SocketDir
	if dir == "" {
		dir = DefaultSocketDir
	}
	var closers []func() error
	fail := func(err error) (*Driver, error) {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		return nil, err
	}
	var h *netlink.Handle
	if o.NetNS == "" {
		var err error
		if h, err = netlink.NewHandle(); err != nil {
			return fail(fmt.Errorf("open netlink: %w", err))
		}
	} else {
		ns, err := netns.GetFromPath(o.NetNS)
		if err != nil {
			return fail(fmt.Errorf("open netns %s: %w", o.NetNS, err))
		}
		closers = append(closers, ns.Close)
		if h, err = netlink.NewHandleAt(ns); err != nil {
			return fail(fmt.Errorf("open netlink in %s: %w", o.NetNS, err))
		}
	}
	closers = append(closers, func() error { h.Close(); return nil })
	link := NewNetlinkLink(h)

	mode := o.Mode
	if mode == "" {
		var why error
		mode, why = Detect(link)
		if why != nil {
			log.Info("no kernel wireguard: running wireguard-go", "err", why)
		}
	}
	log.Info("wireguard mode", "mode", mode)
	c := Config{Mode: mode, Link: link, Logger: log}
	switch mode {
	case ModeKernel:
		var wc *wgctrl.Client
		// Its generic netlink socket belongs to the namespace it is
		// opened in.
		err := inNetNS(o.NetNS, func() (err error) {
			wc, err = wgctrl.New()
			return err
		})
		if err != nil {
			return fail(fmt.Errorf("open wgctrl: %w", err))
		}
		closers = append(closers, wc.Close)
		c.Client = wc
	case ModeUserspace:
		c.Client = NewUAPIClient(dir)
		c.Start = NewStarter(o.NetNS, dir, log)
	}
	d, err := New(c)
	if err != nil {
		return fail(err)
	}
	d.closers = closers
	return d, nil
}

// Detect reports whether the kernel behind link has WireGuard, by creating
// a kernel WireGuard link (probeLink) and deleting it: ModeKernel if it
// could, else ModeUserspace with the kernel's refusal, such as
// unix.EOPNOTSUPP ("Unknown device type": no wireguard module). It blocks
// for a few netlink requests.
func Detect(link Link) (mode string, why error) {
	err := link.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: probeLink}})
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return ModeUserspace, fmt.Errorf("create wireguard link %s: %w", probeLink, err)
	}
	l, err := link.LinkByName(probeLink)
	if err != nil {
		return ModeUserspace, fmt.Errorf("look up wireguard link %s: %w", probeLink, err)
	}
	if l.Type() != linkKind {
		return ModeUserspace, fmt.Errorf("link %s: is %s, not %s", probeLink, l.Type(), linkKind)
	}
	// A failed delete leaves the probe for the next Apply's sweep.
	_ = link.LinkDel(l)
	return ModeKernel, nil
}

// inNetNS runs fn on a thread switched into the network namespace at path,
// then switches the thread back; with path "" it runs fn as it is. fn runs
// on another goroutine; its error is returned unchanged. If the thread
// cannot be switched back it stays locked, so that the Go runtime discards
// it instead of running other goroutines in the wrong namespace.
func inNetNS(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		restored := false
		defer func() {
			if restored {
				runtime.UnlockOSThread()
			}
		}()
		orig, err := netns.Get()
		if err != nil {
			restored = true
			done <- fmt.Errorf("open current netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(path)
		if err != nil {
			restored = true
			done <- fmt.Errorf("open netns %s: %w", path, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			done <- fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			done <- errors.Join(ferr, fmt.Errorf("leave netns %s: %w", path, err))
			return
		}
		restored = true
		done <- ferr
	}()
	return <-done
}
