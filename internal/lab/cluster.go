// Package lab runs weft agents inside a netlab topology: one real agent
// process per host namespace, each with its own config, state and run
// directories under one work directory. The end-to-end tests and `weft lab`
// both drive agents through it.
package lab

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/weft-net/weft/gossip"
	"github.com/weft-net/weft/internal/api"
	"github.com/weft-net/weft/internal/netlab"
)

// ClusterName is the cluster name lab agents use.
const ClusterName = "lab"

// DefaultRegions maps the segments of netlab.DefaultTopology to regions:
// r1a and r1b are region r1, r2a and r2n (behind the NAT gateway) region r2.
func DefaultRegions() map[string]string {
	return map[string]string{"r1a": "r1", "r1b": "r1", "r2a": "r2", "r2n": "r2"}
}

// ClusterOptions configures a Cluster.
type ClusterOptions struct {
	// Binary is the weft binary to run (for `weft lab`, itself).
	Binary string
	// Dir is the work directory; every host gets Dir/<host>/.
	Dir string
	// Regions maps segment names to region names for the hosts' location.
	Regions map[string]string
	// Config holds config fields (YAML names) given to every agent, over the lab's own.
	Config map[string]any
}

// Agent is one agent process of a Cluster.
type Agent struct {
	Host    string
	Dir     string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
}

// Cluster is a set of agents in a lab. Its methods are safe for concurrent use.
type Cluster struct {
	lab  *netlab.Lab
	opts ClusterOptions
	key  string

	mu     sync.Mutex
	agents map[string]*Agent
}

// NewCluster makes the work directory and a cluster key in it.
func NewCluster(l *netlab.Lab, o ClusterOptions) (*Cluster, error) {
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create lab work dir %s: %w", o.Dir, err)
	}
	c := &Cluster{lab: l, opts: o, key: filepath.Join(o.Dir, "cluster.key"), agents: map[string]*Agent{}}
	k, err := gossip.GenerateKey()
	if err != nil {
		return nil, err
	}
	if err := gossip.WriteKeyFile(c.key, k, true); err != nil {
		return nil, err
	}
	return c, nil
}

// KeyFile returns the path of the cluster key every agent uses by default.
func (c *Cluster) KeyFile() string { return c.key }

// Lab returns the lab the cluster runs in.
func (c *Cluster) Lab() *netlab.Lab { return c.lab }

// HostDir returns the directory of host's config, state, run dir and log.
func (c *Cluster) HostDir(host string) string { return filepath.Join(c.opts.Dir, host) }

// RunDir returns host's agent run directory (where its API socket lives).
func (c *Cluster) RunDir(host string) string { return filepath.Join(c.HostDir(host), "run") }

// Client returns an API client for host's agent.
func (c *Cluster) Client(host string) *api.Client { return api.NewClient(c.RunDir(host)) }

// hostSegment returns the segment of host's first interface.
func (c *Cluster) hostSegment(host string) string {
	n, ok := c.lab.Plan().Node(host)
	if !ok || len(n.Ifaces) == 0 {
		return ""
	}
	return n.Ifaces[0].Segment
}

// ConfigFor returns the config fields the lab gives host: the cluster's,
// then ClusterOptions.Config, then extra.
func (c *Cluster) ConfigFor(host string, seeds []string, extra map[string]any) map[string]any {
	cfg := map[string]any{
		"nodeName":       host,
		"clusterName":    ClusterName,
		"clusterKeyFile": c.key,
		"stateDir":       filepath.Join(c.HostDir(host), "state"),
		"runDir":         c.RunDir(host),
		"logLevel":       "info",
		"location":       map[string]any{"cloud": "lab", "region": c.opts.Regions[c.hostSegment(host)]},
	}
	if len(seeds) > 0 {
		cfg["join"] = seeds
	}
	// A host behind a NAT gateway advertises the gateway's address, where
	// its gossip port is forwarded, and says it is behind NAT: WireGuard is
	// not forwarded, so peers reach it over the sessions it opens.
	if gw, ok := c.lab.NATGateway(host); ok {
		cfg["advertiseAddress"] = gw.String()
		cfg["publicAddress"] = gw.String()
		cfg["wireguard"] = map[string]any{"behindNAT": true}
	}
	maps.Copy(cfg, c.opts.Config)
	maps.Copy(cfg, extra)
	return cfg
}

// Start writes host's config and starts its agent; it returns once the
// process runs (not once it has joined). Starting a running host is an error.
func (c *Cluster) Start(host string, seeds []string, extra map[string]any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, ok := c.agents[host]; ok && a.running() {
		return fmt.Errorf("start agent on %s: already running", host)
	}
	dir := c.HostDir(host)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	data, err := yaml.Marshal(c.ConfigFor(host, seeds, extra))
	if err != nil {
		return fmt.Errorf("render config of %s: %w", host, err)
	}
	cfgPath := filepath.Join(dir, "weft.yaml")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		return fmt.Errorf("write config of %s: %w", host, err)
	}
	logPath := filepath.Join(dir, "agent.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open log of %s: %w", host, err)
	}
	// Not CommandContext: the agent's life is managed by Stop, Kill and Close.
	cmd := c.lab.Command(context.Background(), host, c.opts.Binary, "agent", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C at the terminal reaches `weft lab`,
	// which tears down in order, not the agents directly; and with --keep
	// the agents outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start agent on %s: %w", host, err)
	}
	a := &Agent{Host: host, Dir: dir, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		a.err = cmd.Wait()
		logf.Close()
		close(a.done)
	}()
	c.agents[host] = a
	return nil
}

func (a *Agent) running() bool {
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

// Pids returns the process ids of the running agents by host.
func (c *Cluster) Pids() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for h, a := range c.agents {
		if a.running() {
			out[h] = a.cmd.Process.Pid
		}
	}
	return out
}

// Running reports whether host's agent process is running.
func (c *Cluster) Running(host string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.agents[host]
	return ok && a.running()
}

// Exited waits up to timeout for host's agent to exit on its own and returns its exit error.
func (c *Cluster) Exited(host string, timeout time.Duration) error {
	c.mu.Lock()
	a, ok := c.agents[host]
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("no agent on %s", host)
	}
	select {
	case <-a.done:
		return a.err
	case <-time.After(timeout):
		return fmt.Errorf("agent on %s still running after %s", host, timeout)
	}
}

// Kill stops host's agent with SIGKILL (a crash) and waits for it to exit.
func (c *Cluster) Kill(host string) error { return c.signal(host, syscall.SIGKILL, 0) }

// Stop stops host's agent with SIGTERM and waits up to 10 s, then kills it.
func (c *Cluster) Stop(host string) error { return c.signal(host, syscall.SIGTERM, 10*time.Second) }

func (c *Cluster) signal(host string, sig syscall.Signal, grace time.Duration) error {
	c.mu.Lock()
	a, ok := c.agents[host]
	c.mu.Unlock()
	if !ok || !a.running() {
		return nil
	}
	if err := a.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal agent on %s: %w", host, err)
	}
	if grace > 0 {
		select {
		case <-a.done:
			return nil
		case <-time.After(grace):
			_ = a.cmd.Process.Kill()
		}
	}
	<-a.done
	return nil
}

// Close stops every agent (SIGTERM, then SIGKILL).
func (c *Cluster) Close() error {
	c.mu.Lock()
	hosts := slices.Collect(maps.Keys(c.agents))
	c.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(hosts))
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Stop(h)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Log returns host's agent log so far.
func (c *Cluster) Log(host string) string {
	b, _ := os.ReadFile(filepath.Join(c.HostDir(host), "agent.log"))
	return string(b)
}

// View is what one agent reports of the cluster.
type View struct {
	Host  string
	Peers []api.Peer
	Err   error
}

// Views asks every given host's agent for its peers, concurrently.
func (c *Cluster) Views(ctx context.Context, hosts []string) []View {
	out := make([]View, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			p, err := c.Client(h).Peers(qctx)
			out[i] = View{Host: h, Peers: p, Err: err}
		}()
	}
	wg.Wait()
	return out
}

// Converged reports whether every view lists exactly want as alive members,
// each with a subnet, all distinct and without conflict; when not, it says why.
func Converged(views []View, want []string) (bool, string) {
	for _, v := range views {
		if v.Err != nil {
			return false, fmt.Sprintf("%s: %v", v.Host, v.Err)
		}
		var alive []string
		subnets := map[netip.Prefix]string{}
		for _, p := range v.Peers {
			if p.State != gossip.StateAlive {
				continue
			}
			alive = append(alive, p.Name)
			if !p.Subnet.IsValid() {
				return false, fmt.Sprintf("%s: %s has no subnet yet", v.Host, p.Name)
			}
			if p.Conflict != "" {
				return false, fmt.Sprintf("%s: %s: %s", v.Host, p.Name, p.Conflict)
			}
			if o, dup := subnets[p.Subnet]; dup {
				return false, fmt.Sprintf("%s: %s and %s both hold %s", v.Host, o, p.Name, p.Subnet)
			}
			subnets[p.Subnet] = p.Name
		}
		slices.Sort(alive)
		w := slices.Sorted(slices.Values(want))
		if !slices.Equal(alive, w) {
			return false, fmt.Sprintf("%s sees %d of %d alive", v.Host, len(alive), len(w))
		}
	}
	return true, ""
}

// WaitConverged polls until every host in hosts sees exactly hosts alive with
// distinct subnets, or ctx is done. progress, if set, gets each new reason for
// waiting.
func (c *Cluster) WaitConverged(ctx context.Context, hosts []string, progress func(string)) error {
	last := ""
	for {
		ok, why := Converged(c.Views(ctx, hosts), hosts)
		if ok {
			return nil
		}
		if why != last && progress != nil {
			progress(why)
		}
		last = why
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d agents to converge: %w (last: %s)", len(hosts), ctx.Err(), why)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
