package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/weft-net/weft/internal/api"
	"github.com/weft-net/weft/internal/netlab"
)

// StateDir holds one directory per lab: configs, state and logs of its
// agents, and lab.json, which `weft lab down` reads.
const StateDir = "/run/weft-lab"

// RunOptions configures Run, the `weft lab` command.
type RunOptions struct {
	// Binary is the weft binary the agents run.
	Binary string
	// Out receives the report: tables, or JSON with JSON set.
	Out io.Writer
	// Progress receives the steps as they happen.
	Progress io.Writer
	// JSON prints the report as JSON on Out.
	JSON bool
	// Timeout bounds the waits for convergence.
	Timeout time.Duration
	// Keep leaves the lab running; `weft lab down` removes it.
	Keep bool
	// PrintPeers renders one host's view of its peers as a table.
	PrintPeers func(w io.Writer, peers []api.Peer) error
	Logger     *slog.Logger
}

// ErrUnreachable is returned by Run when some workload could not reach another.
var ErrUnreachable = errors.New("some workloads cannot reach each other")

// Report is what Run found, as printed with --output json.
type Report struct {
	Prefix    string            `json:"prefix"`
	Hosts     []HostInfo        `json:"hosts"`
	Workloads []netlab.Workload `json:"workloads"`
	Paths     Matrix            `json:"paths"`
	Pings     Matrix            `json:"pings"`
	Failed    int               `json:"failed"`
	Kept      bool              `json:"kept"`
}

// HostInfo describes one lab host.
type HostInfo struct {
	Name    string       `json:"name"`
	Addr    netip.Addr   `json:"addr"`
	Region  string       `json:"region"`
	Subnet  netip.Prefix `json:"subnet"`
	RunDir  string       `json:"runDir"`
	Netns   string       `json:"netns"`
	LogFile string       `json:"logFile"`
}

// Run builds the default topology, runs an agent on every host, waits until
// they all see each other, attaches a workload to every host, waits until
// every data plane is in place, and reports the chosen paths and pings
// between every pair of workloads. Without Keep it tears everything down at
// the end (also when ctx is cancelled). It returns ErrUnreachable (after the
// report) when any ping failed.
func Run(ctx context.Context, o RunOptions) (err error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	step := 0
	say := func(format string, args ...any) {
		step++
		fmt.Fprintf(o.Progress, "[%d] %s\n", step, fmt.Sprintf(format, args...))
	}
	detail := func(format string, args ...any) { fmt.Fprintf(o.Progress, "      "+format+"\n", args...) }
	if os.Geteuid() != 0 {
		return errors.New("weft lab needs root: it makes network namespaces, veths and bridges")
	}

	topo := netlab.DefaultTopology()
	say("build topology: %d segments, %d routers, %d hosts in network namespaces (underlay 198.18.0.0/15)", len(topo.Segments), len(topo.Routers), len(topo.Hosts))
	l, err := netlab.Build(ctx, topo, netlab.Options{Logger: o.Logger, Progress: func(s string) { detail("%s", s) }})
	if err != nil {
		return err
	}
	dir := filepath.Join(StateDir, l.Prefix())
	var c *Cluster
	defer func() {
		if o.Keep && err == nil || o.Keep && errors.Is(err, ErrUnreachable) {
			return
		}
		fmt.Fprintf(o.Progress, "[%d] tear down: stop agents, remove namespaces %s-*\n", step+1, l.Prefix())
		if c != nil {
			err = errors.Join(err, c.Close())
		}
		err = errors.Join(err, l.Close(), os.RemoveAll(dir))
	}()

	c, err = NewCluster(l, ClusterOptions{
		Binary:  o.Binary,
		Dir:     dir,
		Regions: DefaultRegions(),
	})
	if err != nil {
		return err
	}
	hosts := l.Hosts()
	// Two seeds in different regions: the whole fabric starts at once and
	// every agent retries its seeds until one answers.
	seeds := []string{l.HostAddr(hosts[0]).String()}
	for i := len(hosts) - 1; i > 0; i-- {
		if _, natted := l.NATGateway(hosts[i]); !natted {
			seeds = append(seeds, l.HostAddr(hosts[i]).String())
			break
		}
	}
	say("start %d agents (encryption: cross-region, seeds %v)", len(hosts), seeds)
	for _, h := range hosts {
		if err := c.Start(h, seeds, nil); err != nil {
			return err
		}
		note := ""
		if gw, ok := l.NATGateway(h); ok {
			note = fmt.Sprintf(", behind NAT gateway %s (only the gossip port forwarded)", gw)
		}
		detail("%s: weft agent at %s, region %s%s", h, l.HostAddr(h), DefaultRegions()[c.hostSegment(h)], note)
	}

	say("wait until every agent sees all %d with distinct subnets", len(hosts))
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := c.WaitConverged(wctx, hosts, func(why string) { detail("waiting: %s", why) }); err != nil {
		c.dumpLogs(o.Progress, hosts)
		return err
	}
	detail("converged in %s", time.Since(start).Round(10*time.Millisecond))

	rep := Report{Prefix: l.Prefix(), Kept: o.Keep}
	say("attach one labelled workload to every host (a routed veth, as Calico does) and register it for policy")
	for i, v := range c.Views(ctx, hosts) {
		var subnet netip.Prefix
		for _, p := range v.Peers {
			if p.Local {
				subnet = p.Subnet
			}
		}
		h := v.Host
		rep.Hosts = append(rep.Hosts, HostInfo{Name: h, Addr: l.HostAddr(h), Region: DefaultRegions()[c.hostSegment(h)],
			Subnet: subnet, RunDir: c.RunDir(h), Netns: l.NSName(h), LogFile: filepath.Join(c.HostDir(h), "agent.log")})
		w := netlab.Workload{Name: fmt.Sprintf("w%d", i+1), Host: h, Addr: subnet.Addr().Next().Next(), Labels: WorkloadLabels(i)}
		if err := l.AddWorkload(ctx, w); err != nil {
			return err
		}
		if err := c.RegisterWorkload(ctx, w); err != nil {
			return err
		}
		rep.Workloads = append(rep.Workloads, w)
		detail("%s on %s: %s, labels %s, registered as endpoint %s/%s", w.Name, h, w.Addr, LabelsString(w.Labels), h, w.Name)
	}

	say("wait until every host has a route to every other in its kernel")
	start = time.Now()
	last := ""
	for {
		ok, why := c.DataPlaneReady(ctx, hosts)
		if ok {
			break
		}
		if why != last {
			detail("waiting: %s", why)
			last = why
		}
		select {
		case <-wctx.Done():
			c.dumpLogs(o.Progress, hosts)
			return fmt.Errorf("wait for data planes: %w (last: %s)", wctx.Err(), why)
		case <-time.After(100 * time.Millisecond):
		}
	}
	detail("data planes ready in %s", time.Since(start).Round(10*time.Millisecond))

	say("ask every agent which path it chose to every other host")
	if rep.Paths, err = c.PathMatrix(ctx, hosts); err != nil {
		return err
	}
	say("ping between every pair of workloads")
	rep.Pings, rep.Failed = PingMatrix(ctx, l, rep.Workloads)

	if o.Keep {
		if err := writeState(dir, State{Prefix: l.Prefix(), Dir: dir, Pids: c.Pids()}); err != nil {
			return err
		}
	}
	if o.JSON {
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printReport(o.Out, rep, c, o.PrintPeers)
	}
	if rep.Failed > 0 {
		return fmt.Errorf("%w: %d of %d pings failed", ErrUnreachable, rep.Failed, len(rep.Workloads)*(len(rep.Workloads)-1))
	}
	return nil
}

func printReport(w io.Writer, rep Report, c *Cluster, printPeers func(io.Writer, []api.Peer) error) {
	first := rep.Hosts[0].Name
	fmt.Fprintf(w, "\n$ weft peers   # on %s\n", first)
	for _, v := range c.Views(context.Background(), []string{first}) {
		if v.Err == nil && printPeers != nil {
			_ = printPeers(w, v.Peers)
		}
	}
	fmt.Fprintln(w, "\npaths chosen (row: from host, column: to host)")
	_ = rep.Paths.Render(w, "from\\to")
	fmt.Fprintln(w, "\nping between workloads (row: from, column: to)")
	_ = rep.Pings.Render(w, "from\\to")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "workloads (registered as policy endpoints; `weft endpoint list` shows them):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tHOST\tADDRESS\tLABELS")
	for _, wl := range rep.Workloads {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", wl.Name, wl.Host, wl.Addr, LabelsString(wl.Labels))
	}
	_ = tw.Flush()
	if rep.Kept {
		wl := rep.Workloads[0]
		to := rep.Workloads[len(rep.Workloads)-1]
		h := rep.Hosts[0]
		fmt.Fprintf(w, "\nthe lab keeps running; try it by hand:\n")
		fmt.Fprintf(w, "  ip netns exec %s-%s ping %s          # from workload %s to %s\n", rep.Prefix, wl.Name, to.Addr, wl.Name, to.Name)
		fmt.Fprintf(w, "  ip netns exec %s ip route               # host %s's routes\n", h.Netns, h.Name)
		fmt.Fprintf(w, "  weft routes --run-dir %s        # what %s's agent planned\n", h.RunDir, h.Name)
		fmt.Fprintf(w, "  weft endpoint list --run-dir %s # every host's workloads and labels\n", h.RunDir)
		fmt.Fprintf(w, "  weft policy apply -f FILE --run-dir %s  # a policy for the whole lab\n", h.RunDir)
		fmt.Fprintf(w, "  weft lab down                                    # remove it\n")
	}
}

func (c *Cluster) dumpLogs(w io.Writer, hosts []string) {
	for _, h := range hosts {
		fmt.Fprintf(w, "--- log of %s ---\n%s", h, tail(c.Log(h), 20))
	}
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
