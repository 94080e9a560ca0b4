package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/weft-net/weft/internal/lab"
	"github.com/weft-net/weft/internal/netlab"
)

// buildWeft builds the weft binary into dir and returns its path.
func buildWeft(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "weft")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/weft-net/weft/cmd/weft").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build weft: %w\n%s", err, out)
	}
	return bin, nil
}

// newPrefix returns a fresh namespace prefix: "wd" and 4 random hex digits.
// Not netlab's default "wl": netlab.Sweep("wl") elsewhere must not take
// this benchmark's labs with it.
func newPrefix() (string, error) {
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate lab prefix: %w", err)
	}
	return "wd" + hex.EncodeToString(b[:]), nil
}

// testbed is a netlab topology with a (not yet started) cluster of agents.
type testbed struct {
	l   *netlab.Lab
	c   *lab.Cluster
	dir string
}

// newTestbed builds topo in namespaces and prepares a cluster of agents with
// encryption off (WireGuard is not there yet) in a temp dir. It always
// returns a testbed, which the caller must Close, also after an error.
func newTestbed(ctx context.Context, topo netlab.Topology, regions map[string]string, o options) (*testbed, error) {
	f := &testbed{}
	prefix, err := newPrefix()
	if err != nil {
		return f, err
	}
	o.log.Info("build lab", "prefix", prefix, "hosts", len(topo.Hosts))
	// Build removes what it made when it fails.
	if f.l, err = netlab.Build(ctx, topo, netlab.Options{Prefix: prefix}); err != nil {
		return f, err
	}
	if f.dir, err = os.MkdirTemp("", "weft-bench-dp-"+prefix+"-"); err != nil {
		return f, fmt.Errorf("make work dir: %w", err)
	}
	f.c, err = lab.NewCluster(f.l, lab.ClusterOptions{
		Binary: o.binary, Dir: f.dir, Regions: regions,
		Config: map[string]any{"encryption": "never"},
	})
	return f, err
}

// Close stops the agents, removes the namespaces and the work dir, and
// returns every failure joined. It is safe on a partly made testbed.
func (f *testbed) Close() error {
	var errs []error
	if f.c != nil {
		errs = append(errs, f.c.Close())
	}
	if f.l != nil {
		errs = append(errs, f.l.Close())
	}
	if f.dir != "" {
		errs = append(errs, os.RemoveAll(f.dir))
	}
	return errors.Join(errs...)
}

// start starts the agents of hosts, all seeded with seeds.
func (f *testbed) start(hosts []string, seeds []netip.Addr) error {
	var s []string
	for _, a := range seeds {
		s = append(s, a.String())
	}
	for _, h := range hosts {
		if err := f.c.Start(h, s, nil); err != nil {
			return err
		}
	}
	return nil
}

// waitReady waits until the agents of hosts see each other with distinct
// subnets and every one of them has a route to every other in its kernel.
func (f *testbed) waitReady(ctx context.Context, hosts []string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := f.c.WaitConverged(ctx, hosts, nil); err != nil {
		return fmt.Errorf("%w\n%s", err, f.logTails(hosts))
	}
	for {
		ok, why := f.c.DataPlaneReady(ctx, hosts)
		if ok {
			return nil
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("wait for %d data planes: %w (last: %s)\n%s", len(hosts), err, why, f.logTails(hosts))
		}
	}
}

// keepLogs writes every host's agent log to dir as <prefix>-<host>.log. With
// stacks, it first sends each running agent SIGQUIT, so that the Go runtime
// appends every goroutine's stack to the log (and the agent exits): what a
// stuck agent was waiting for.
func (f *testbed) keepLogs(dir string, hosts []string, stacks bool) error {
	if stacks {
		pids := f.c.Pids()
		for _, h := range hosts {
			if pid, ok := pids[h]; ok {
				_ = syscall.Kill(pid, syscall.SIGQUIT)
			}
		}
		for _, h := range hosts {
			_ = f.c.Exited(h, 5*time.Second) // the exit status of a SIGQUIT is expected
		}
	}
	var errs []error
	for _, h := range hosts {
		name := filepath.Join(dir, f.l.Prefix()+"-"+h+".log")
		errs = append(errs, os.WriteFile(name, []byte(f.c.Log(h)), 0o644))
	}
	return errors.Join(errs...)
}

// subnet asks host's agent for its workload subnet.
func (f *testbed) subnet(ctx context.Context, host string) (netip.Prefix, error) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := f.c.Client(host).Status(qctx)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("status of %s: %w", host, err)
	}
	return st.Subnet, nil
}

// logTails returns the last lines of every host's agent log.
func (f *testbed) logTails(hosts []string) string {
	var sb strings.Builder
	for _, h := range hosts {
		lines := strings.Split(strings.TrimRight(f.c.Log(h), "\n"), "\n")
		if len(lines) > 8 {
			lines = lines[len(lines)-8:]
		}
		fmt.Fprintf(&sb, "--- log of %s ---\n%s\n", h, strings.Join(lines, "\n"))
	}
	return sb.String()
}

// twoSegments returns a topology of two L2 segments joined by router rt,
// with (n+1)/2 hosts a1.. on sa and n/2 hosts b1.. on sb, as the end-to-end
// tests' twoSegments does.
func twoSegments(n int) netlab.Topology {
	t := netlab.Topology{
		Segments: []netlab.Segment{
			{Name: "sa", Prefix: netip.MustParsePrefix("198.18.10.0/24")},
			{Name: "sb", Prefix: netip.MustParsePrefix("198.18.20.0/24")},
		},
		Routers: []netlab.Router{{Name: "rt", Segments: []string{"sa", "sb"}}},
	}
	for i := 1; i <= (n+1)/2; i++ {
		t.Hosts = append(t.Hosts, netlab.Host{Name: fmt.Sprintf("a%d", i), Segment: "sa"})
	}
	for i := 1; i <= n/2; i++ {
		t.Hosts = append(t.Hosts, netlab.Host{Name: fmt.Sprintf("b%d", i), Segment: "sb"})
	}
	return t
}

// nsCommand runs name with args inside the named network namespace.
func nsCommand(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// prefixOf converts a kernel route destination to a prefix (zero for none).
func prefixOf(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}
