package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/weft-net/weft/internal/api"
	"github.com/weft-net/weft/internal/netlab"
)

// RunOptions configures Run, the `weft lab` command.
type RunOptions struct {
	// Binary is the weft binary the agents run.
	Binary string
	// Dir is the work directory; empty means a new temporary one, removed at the end.
	Dir string
	// Out receives the progress lines and the tables.
	Out io.Writer
	// Timeout bounds the wait for convergence.
	Timeout time.Duration
	// Hold keeps the lab running after the report until ctx is done.
	Hold bool
	// PrintPeers renders one host's view of its peers as a table.
	PrintPeers func(w io.Writer, peers []api.Peer) error
	Logger     *slog.Logger
}

// Run builds the default topology, runs an agent on every host, waits until
// they all see each other with distinct subnets, prints `weft peers` as seen
// from each host, and tears everything down (after ctx is done, with Hold).
func Run(ctx context.Context, o RunOptions) (err error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	step := 0
	say := func(format string, args ...any) {
		step++
		fmt.Fprintf(o.Out, "[%d] %s\n", step, fmt.Sprintf(format, args...))
	}
	if os.Geteuid() != 0 {
		return errors.New("weft lab needs root: it makes network namespaces, veths and bridges")
	}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "weft-lab-")
		if err != nil {
			return fmt.Errorf("make lab work dir: %w", err)
		}
		o.Dir = d
		defer os.RemoveAll(d)
	}

	topo := netlab.DefaultTopology()
	say("build topology: %d segments, %d routers, %d hosts in network namespaces (underlay 198.18.0.0/15)", len(topo.Segments), len(topo.Routers), len(topo.Hosts))
	l, err := netlab.Build(ctx, topo, netlab.Options{
		Logger:   o.Logger,
		Progress: func(s string) { fmt.Fprintf(o.Out, "      %s\n", s) },
	})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintf(o.Out, "[%d] tear down: stop agents, remove namespaces %s-*\n", step+1, l.Prefix())
		if cerr := l.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()

	c, err := NewCluster(l, ClusterOptions{Binary: o.Binary, Dir: o.Dir, Regions: DefaultRegions()})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := c.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	hosts := l.Hosts()
	// Two seeds in different regions: the whole fabric starts at once and
	// every agent retries its seeds until one answers.
	seeds := []string{l.HostAddr(hosts[0]).String(), l.HostAddr(hosts[len(hosts)-1]).String()}
	say("start %d agents (cluster key %s, seeds %v)", len(hosts), c.KeyFile(), seeds)
	for _, h := range hosts {
		if err := c.Start(h, seeds, nil); err != nil {
			return err
		}
		fmt.Fprintf(o.Out, "      %s: weft agent at %s, region %s, log %s\n", h, l.HostAddr(h), DefaultRegions()[c.hostSegment(h)], c.HostDir(h)+"/agent.log")
	}

	say("wait until every agent sees all %d with distinct subnets", len(hosts))
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := c.WaitConverged(wctx, hosts, func(why string) { fmt.Fprintf(o.Out, "      waiting: %s\n", why) }); err != nil {
		for _, h := range hosts {
			fmt.Fprintf(o.Out, "--- log of %s ---\n%s", h, tail(c.Log(h), 20))
		}
		return err
	}
	fmt.Fprintf(o.Out, "      converged in %s\n", time.Since(start).Round(10*time.Millisecond))

	say("weft peers, as seen from each host")
	for _, v := range c.Views(ctx, hosts) {
		fmt.Fprintf(o.Out, "\n$ weft peers   # on %s\n", v.Host)
		if v.Err != nil {
			return v.Err
		}
		if err := o.PrintPeers(o.Out, v.Peers); err != nil {
			return err
		}
	}
	fmt.Fprintln(o.Out)
	if o.Hold {
		fmt.Fprintf(o.Out, "lab is up; ask an agent with: weft peers --run-dir %s (Ctrl-C tears it down)\n", c.RunDir(hosts[0]))
		<-ctx.Done()
	}
	return nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := 0
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			lines++
			if lines > n {
				return s[i+1:]
			}
		}
	}
	return s
}
