package netlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// maxPrefix bounds the run prefix so namespace names stay short and readable.
const maxPrefix = 32

// Options tunes [Build].
type Options struct {
	// Prefix starts every namespace name of the run and must be unique per
	// run. Empty means "wl" followed by 4 random hex digits.
	Prefix string
	// Logger receives debug lines per step and an info line per lab built
	// or removed. Nil discards them.
	Logger *slog.Logger
	// Progress, when set, is called with a short description before each
	// build step ("create switch namespace", "add host h1 on r1a
	// (198.18.1.2)"), on the goroutine that called Build.
	Progress func(step string)
}

// Lab is a built topology. Its methods are safe for concurrent use.
type Lab struct {
	prefix string
	plan   Plan
	topo   Topology
	log    *slog.Logger

	mu   sync.Mutex
	sw   *netlink.Handle // bound to the switch namespace; nil once closed
	made []string        // namespace names to remove on Close, in creation order
	// workloads maps workload names to their hosts (see AddWorkload).
	workloads map[string]Workload
}

// Build validates t, then creates its namespaces, bridges, veths, addresses,
// routes and sysctls. It checks ctx between steps. On any failure it removes
// everything it made and returns the error wrapped with the failed step. The
// root namespace gets no link, address or route; the one thing Build may
// change outside the lab is the machine-wide neighbour table limit, raised
// (never lowered) when the lab needs more entries than it allows (see
// neigh.go). The caller owns the returned Lab and must Close it.
func Build(ctx context.Context, t Topology, o Options) (*Lab, error) {
	plan, err := t.Plan()
	if err != nil {
		return nil, err
	}
	prefix := o.Prefix
	if prefix == "" {
		if prefix, err = randomPrefix(); err != nil {
			return nil, err
		}
	} else if err := checkName("options.prefix", prefix, maxPrefix); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Lab{prefix: prefix, plan: plan, topo: t, log: log.With("component", "netlab", "lab", prefix)}
	if err := l.raiseNeighLimits(); err != nil {
		return nil, fmt.Errorf("build lab %s: %w", prefix, err)
	}
	b := &builder{lab: l, ctx: ctx, progress: o.Progress}
	err = b.build()
	b.close()
	if err != nil {
		if cerr := l.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("tear down partial lab: %w", cerr))
		}
		return nil, fmt.Errorf("build lab %s: %w", prefix, err)
	}
	l.log.Info("lab built", "segments", len(plan.Segments), "nodes", len(plan.Nodes))
	return l, nil
}

func randomPrefix() (string, error) {
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate lab prefix: %w", err)
	}
	return "wl" + hex.EncodeToString(b[:]), nil
}

// builder holds what only Build needs.
type builder struct {
	lab      *Lab
	ctx      context.Context
	progress func(string)
	swNS     netns.NsHandle // open while building, for veth peers
}

func (b *builder) close() {
	if b.swNS.IsOpen() {
		b.swNS.Close()
	}
}

func (b *builder) step(name string, fn func() error) error {
	if err := b.ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if b.progress != nil {
		b.progress(name)
	}
	b.lab.log.Debug("build step", "step", name)
	if err := fn(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func (b *builder) build() error {
	l := b.lab
	b.swNS = netns.None()
	if err := b.step("create switch namespace", b.buildSwitch); err != nil {
		return err
	}
	for _, s := range l.plan.Segments {
		name := fmt.Sprintf("create segment %s (%s)", s.Name, s.Prefix)
		if err := b.step(name, func() error { return b.buildSegment(s) }); err != nil {
			return err
		}
	}
	for _, n := range l.plan.Nodes {
		name := "add router " + n.Name
		if !n.Router {
			i := n.Ifaces[0]
			name = fmt.Sprintf("add host %s on %s (%s)", n.Name, i.Segment, i.Addr.Addr())
		}
		if err := b.step(name, func() error { return b.buildNode(n) }); err != nil {
			return err
		}
	}
	return nil
}

// newNS creates the named namespace, records it for teardown, and opens it.
func (b *builder) newNS(name string) (netns.NsHandle, error) {
	made, err := createNamedNS(name)
	if made {
		b.lab.mu.Lock()
		b.lab.made = append(b.lab.made, name)
		b.lab.mu.Unlock()
	}
	if err != nil {
		return netns.None(), err
	}
	ns, err := netns.GetFromPath(filepath.Join(netnsDir, name))
	if err != nil {
		return netns.None(), fmt.Errorf("open netns %s: %w", name, err)
	}
	return ns, nil
}

func (b *builder) buildSwitch() error {
	l := b.lab
	ns, err := b.newNS(l.NSName(switchNode))
	if err != nil {
		return err
	}
	b.swNS = ns
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("open netlink in switch netns: %w", err)
	}
	l.mu.Lock()
	l.sw = h
	l.mu.Unlock()
	return setUp(h, "lo")
}

func (b *builder) buildSegment(s Segment) error {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: s.Name}}
	if err := b.lab.sw.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge %s: %w", s.Name, err)
	}
	return setUp(b.lab.sw, s.Name)
}

func (b *builder) buildNode(n Node) error {
	l := b.lab
	ns, err := b.newNS(l.NSName(n.Name))
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("open netlink in netns %s: %w", l.NSName(n.Name), err)
	}
	defer h.Close()
	if err := setUp(h, "lo"); err != nil {
		return err
	}
	if err := setForwarding(l.NetNSPath(n.Name), n.Router); err != nil {
		return err
	}
	index := make(map[string]int, len(n.Ifaces))
	for _, i := range n.Ifaces {
		idx, err := b.addIface(h, i)
		if err != nil {
			return err
		}
		index[i.Name] = idx
	}
	for _, r := range n.Routes {
		route := &netlink.Route{LinkIndex: index[r.Dev], Gw: net.IP(r.Via.AsSlice())}
		if r.Dst.Bits() > 0 {
			route.Dst = ipNet(r.Dst)
		}
		if err := h.RouteAdd(route); err != nil {
			return fmt.Errorf("add route %s: %w", r, err)
		}
	}
	return l.applyNAT(n)
}

// addIface creates the veth pair for i straight across the node and switch
// namespaces (the request goes through the node's handle and names the
// switch as the peer's namespace, so the root namespace never sees it),
// attaches the switch end to the segment's bridge, addresses the node end
// and brings both up. It returns the node end's index.
func (b *builder) addIface(h *netlink.Handle, i Iface) (int, error) {
	sw := b.lab.sw
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: i.Name},
		PeerName:      i.Port,
		PeerNamespace: netlink.NsFd(b.swNS),
	}
	if err := h.LinkAdd(veth); err != nil {
		return 0, fmt.Errorf("add veth %s (switch port %s): %w", i.Name, i.Port, err)
	}
	port, err := sw.LinkByName(i.Port)
	if err != nil {
		return 0, fmt.Errorf("find switch port %s: %w", i.Port, err)
	}
	br, err := sw.LinkByName(i.Segment)
	if err != nil {
		return 0, fmt.Errorf("find bridge %s: %w", i.Segment, err)
	}
	if err := sw.LinkSetMaster(port, br); err != nil {
		return 0, fmt.Errorf("attach switch port %s to bridge %s: %w", i.Port, i.Segment, err)
	}
	if err := sw.LinkSetUp(port); err != nil {
		return 0, fmt.Errorf("set switch port %s up: %w", i.Port, err)
	}
	link, err := h.LinkByName(i.Name)
	if err != nil {
		return 0, fmt.Errorf("find %s: %w", i.Name, err)
	}
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipNet(i.Addr)}); err != nil {
		return 0, fmt.Errorf("add address %s dev %s: %w", i.Addr, i.Name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return 0, fmt.Errorf("set %s up: %w", i.Name, err)
	}
	return link.Attrs().Index, nil
}

func setUp(h *netlink.Handle, name string) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// setForwarding writes net.ipv4.ip_forward inside the namespace at path:
// /proc/sys/net belongs to the network namespace of the thread that opens it.
// Hosts get an explicit 0 rather than whatever a new namespace inherits.
func setForwarding(path string, on bool) error {
	v := "0\n"
	if on {
		v = "1\n"
	}
	err := inNetNS(path, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte(v), 0o644)
	})
	if err != nil {
		return fmt.Errorf("set net.ipv4.ip_forward=%s: %w", v[:1], err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
