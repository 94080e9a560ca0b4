package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/weft-net/weft/fabric"
	"github.com/weft-net/weft/internal/lab"
	"github.com/weft-net/weft/internal/netlab"
)

// weftLab is netlab's default topology with weft agents on h1..h5 (default
// config: encryption cross-region), workloads w1 on h1 and w4 on h4, and
// newcomer hosts n1.. on r2a whose agents are not started yet.
type weftLab struct {
	l     *netlab.Lab
	c     *lab.Cluster
	dir   string
	base  []string // hosts started at build time
	seeds []string
	w1    netlab.Workload
	w4    netlab.Workload
}

// newcomerSubnet is the static workload subnet of newcomer i (from 0),
// inside weft's default cluster range, so that a workload can be attached
// before its agent starts.
func newcomerSubnet(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(200 + i), 0}), 24)
}

// newWeftLab builds the lab with prefix and newcomers extra hosts, starts
// the agents of h1..h5 and waits until their data planes are ready and
// h1 -> h4 runs over WireGuard. It always returns a weftLab, which the
// caller must Close, also after an error.
func newWeftLab(ctx context.Context, o options, prefix string, newcomers int) (*weftLab, error) {
	f := &weftLab{}
	topo := netlab.DefaultTopology()
	for _, h := range topo.Hosts {
		f.base = append(f.base, h.Name)
	}
	for i := range newcomers {
		topo.Hosts = append(topo.Hosts, netlab.Host{Name: fmt.Sprintf("n%d", i+1), Segment: "r2a"})
	}
	o.log.Info("build weft lab", "prefix", prefix, "hosts", len(topo.Hosts))
	var err error
	if f.l, err = netlab.Build(ctx, topo, netlab.Options{Prefix: prefix}); err != nil {
		return f, err
	}
	if f.dir, err = os.MkdirTemp("", "weft-bench-wg-"+prefix+"-"); err != nil {
		return f, fmt.Errorf("make work dir: %w", err)
	}
	if f.c, err = lab.NewCluster(f.l, lab.ClusterOptions{Binary: o.weft, Dir: f.dir, Regions: lab.DefaultRegions()}); err != nil {
		return f, err
	}
	f.seeds = []string{f.l.HostAddr("h1").String(), f.l.HostAddr("h4").String()}
	for _, h := range f.base {
		if err := f.c.Start(h, f.seeds, nil); err != nil {
			return f, err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, o.waitTimeout)
	defer cancel()
	if err := f.c.WaitConverged(wctx, f.base, nil); err != nil {
		return f, fmt.Errorf("%w\n%s", err, f.logTails(f.base))
	}
	for _, w := range []*netlab.Workload{&f.w1, &f.w4} {
		host := "h1"
		if w == &f.w4 {
			host = "h4"
		}
		st, err := f.c.Client(host).Status(wctx)
		if err != nil {
			return f, fmt.Errorf("status of %s: %w", host, err)
		}
		*w = netlab.Workload{Name: "w" + host[1:], Host: host, Addr: st.Subnet.Addr().Next().Next()}
		if err := f.l.AddWorkload(ctx, *w); err != nil {
			return f, err
		}
	}
	if err := f.waitReady(wctx); err != nil {
		return f, err
	}
	m, err := f.c.PathMatrix(ctx, []string{"h1", "h4"})
	if err != nil {
		return f, err
	}
	if got := m.Cells["h1"]["h4"]; got != "wireguard" {
		return f, fmt.Errorf("weft's path h1 -> h4 is %q, want wireguard", got)
	}
	return f, nil
}

// waitReady polls until every base host has its routes in the kernel (and
// no more peers than the base hosts), or ctx is done.
func (f *weftLab) waitReady(ctx context.Context) error {
	for {
		ok, why := f.c.DataPlaneReady(ctx, f.base)
		if ok {
			return nil
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("wait for data planes: %w (last: %s)\n%s", err, why, f.logTails(f.base))
		}
	}
}

// status returns host's `weft status` WireGuard line.
func (f *weftLab) status(ctx context.Context, host string) (string, error) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := f.c.Client(host).Status(qctx)
	if err != nil {
		return "", fmt.Errorf("status of %s: %w", host, err)
	}
	return st.WireGuard, nil
}

// sock returns the UAPI socket of host's embedded wireguard-go: lab agents
// keep it in their run dir.
func (f *weftLab) sock(host string) string {
	return filepath.Join(f.c.RunDir(host), "wireguard", fabric.DefaultWireGuardDevice+".sock")
}

// agentPids returns the agent process ids of hosts.
func (f *weftLab) agentPids(hosts ...string) ([]int, error) {
	all := f.c.Pids()
	var out []int
	for _, h := range hosts {
		pid, ok := all[h]
		if !ok {
			return nil, fmt.Errorf("agent of %s is not running", h)
		}
		out = append(out, pid)
	}
	return out, nil
}

// logTails returns the last lines of every host's agent log.
func (f *weftLab) logTails(hosts []string) string {
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

// Close stops the agents, removes the namespaces and the work dir, and
// returns every failure joined. It is safe on a partly made lab.
func (f *weftLab) Close() error {
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
