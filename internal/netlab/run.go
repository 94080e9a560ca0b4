package netlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
)

// Prefix returns the run prefix that starts every namespace name of l.
func (l *Lab) Prefix() string { return l.prefix }

// Plan returns the addresses and routes l was built from. The result is a
// copy owned by the caller.
func (l *Lab) Plan() Plan {
	p := Plan{Segments: append([]Segment(nil), l.plan.Segments...)}
	for _, n := range l.plan.Nodes {
		n.Ifaces = append([]Iface(nil), n.Ifaces...)
		n.Routes = append([]Route(nil), n.Routes...)
		p.Nodes = append(p.Nodes, n)
	}
	return p
}

// Hosts returns the host names in topology order, in a new slice.
func (l *Lab) Hosts() []string { return l.nodes(false) }

// Routers returns the router names in topology order, in a new slice.
func (l *Lab) Routers() []string { return l.nodes(true) }

func (l *Lab) nodes(routers bool) []string {
	var names []string
	for _, n := range l.plan.Nodes {
		if n.Router == routers {
			names = append(names, n.Name)
		}
	}
	return names
}

// HostAddr returns the address of host, or the zero Addr when l has no such
// host.
func (l *Lab) HostAddr(host string) netip.Addr {
	n, ok := l.plan.Node(host)
	if !ok || n.Router {
		return netip.Addr{}
	}
	return n.Ifaces[0].Addr.Addr()
}

// Addr returns the address of node (host or router) on segment, or the zero
// Addr when it has none there.
func (l *Lab) Addr(node, segment string) netip.Addr {
	n, _ := l.plan.Node(node)
	i, ok := n.Iface(segment)
	if !ok {
		return netip.Addr{}
	}
	return i.Addr.Addr()
}

// Interface returns the name of node's interface on segment inside node's
// namespace ("eth0", ...), or "" when it has none there.
func (l *Lab) Interface(node, segment string) string {
	n, _ := l.plan.Node(node)
	i, _ := n.Iface(segment)
	return i.Name
}

// NSName returns the namespace name of a host or router ("<prefix>-<node>"),
// of the switch namespace for node "sw", or "" when l has no such node.
func (l *Lab) NSName(node string) string {
	if _, ok := l.plan.Node(node); !ok && node != switchNode && !l.isWorkload(node) {
		return ""
	}
	return l.prefix + "-" + node
}

// NetNSPath returns /run/netns/<prefix>-<node> for a host or router, or ""
// when l has no such node. The path stops existing once l is closed.
func (l *Lab) NetNSPath(node string) string {
	name := l.NSName(node)
	if name == "" || node == switchNode {
		return ""
	}
	return filepath.Join(netnsDir, name)
}

// Command returns a command that runs name with args inside node's network
// namespace, through `ip netns exec`, which also gives the process a /sys of
// that namespace. ctx kills the process as with exec.CommandContext. For an
// unknown node the command's Start fails.
func (l *Lab) Command(ctx context.Context, node string, name string, args ...string) *exec.Cmd {
	ns := l.NSName(node)
	if ns == "" || node == switchNode {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Err = fmt.Errorf("run %s in lab %s: unknown node %q", name, l.prefix, node)
		return cmd
	}
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// SetLink sets node's port on segment up or down on the switch side, which
// takes the carrier of node's interface down with it: a cut cable. It is
// idempotent, and fails once l is closed.
func (l *Lab) SetLink(ctx context.Context, node, segment string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	n, _ := l.plan.Node(node)
	i, ok := n.Iface(segment)
	if !ok {
		return fmt.Errorf("set link of %q on %q %s: no such node on that segment", node, segment, state)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("set switch port %s %s: %w", i.Port, state, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sw == nil {
		return fmt.Errorf("set switch port %s %s: lab %s is closed", i.Port, state, l.prefix)
	}
	port, err := l.sw.LinkByName(i.Port)
	if err != nil {
		return fmt.Errorf("find switch port %s: %w", i.Port, err)
	}
	if up {
		err = l.sw.LinkSetUp(port)
	} else {
		err = l.sw.LinkSetDown(port)
	}
	if err != nil {
		return fmt.Errorf("set switch port %s %s: %w", i.Port, state, err)
	}
	l.log.Info("link changed", "node", node, "segment", segment, "state", state)
	return nil
}

// Do runs fn on a goroutine locked to an OS thread that is switched into
// node's network namespace, waits for it, and returns fn's error unchanged.
// The thread is switched back afterwards; if that fails, the runtime
// discards the thread. Because fn runs on another goroutine it must not call
// t.FailNow; a panic in fn is re-raised in the caller. Only the network
// namespace changes: the filesystem (including /sys) is the caller's.
func (l *Lab) Do(node string, fn func() error) error {
	path := l.NetNSPath(node)
	if path == "" {
		return fmt.Errorf("run in lab %s: unknown node %q", l.prefix, node)
	}
	return inNetNS(path, fn)
}

// Close removes every namespace l made, which removes their links, addresses
// and routes with them. It keeps going after a failure, returns all of them
// joined, and a later call retries only what is left: it is idempotent and
// safe for concurrent use, and works on partly built labs. Processes still
// running in a namespace keep it alive, unnamed, until they exit.
func (l *Lab) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sw != nil {
		l.sw.Close()
		l.sw = nil
	}
	if len(l.made) == 0 {
		return nil
	}
	var errs []error
	var left []string
	for _, name := range l.made {
		if err := removeNamedNS(name); err != nil {
			errs = append(errs, err)
			left = append(left, name)
		}
	}
	l.made = left
	if len(errs) > 0 {
		return fmt.Errorf("close lab %s: %w", l.prefix, errors.Join(errs...))
	}
	l.log.Info("lab removed")
	return nil
}
