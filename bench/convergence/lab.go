package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/weft-net/weft/bench/internal/cpuload"
	"github.com/weft-net/weft/gossip"
	"github.com/weft-net/weft/internal/api"
	"github.com/weft-net/weft/internal/lab"
	"github.com/weft-net/weft/internal/netlab"
)

// labPoll is how often the lab runs ask the agents for their views: the
// resolution of the lab numbers.
const labPoll = 100 * time.Millisecond

// slowConverge is when a lab run starts logging what it still waits for.
const slowConverge = 5 * time.Second

// labTopology returns two L2 segments joined by router rt, with hosts
// h1..hn split between them (the first half on sa), all in one region.
func labTopology(n int) netlab.Topology {
	t := netlab.Topology{
		Segments: []netlab.Segment{
			{Name: "sa", Prefix: netip.MustParsePrefix("198.18.10.0/24")},
			{Name: "sb", Prefix: netip.MustParsePrefix("198.18.20.0/24")},
		},
		Routers: []netlab.Router{{Name: "rt", Segments: []string{"sa", "sb"}}},
	}
	for i := 1; i <= n; i++ {
		seg := "sa"
		if i > (n+1)/2 {
			seg = "sb"
		}
		t.Hosts = append(t.Hosts, netlab.Host{Name: fmt.Sprintf("h%d", i), Segment: seg})
	}
	return t
}

// buildWeft builds the weft binary into dir and returns its path.
func buildWeft(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "weft")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/weft-net/weft/cmd/weft").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build weft: %w\n%s", err, out)
	}
	return bin, nil
}

// gossipConfig returns the agent config fields for p's timings; zero fields
// are left out, so the agent uses its defaults.
func gossipConfig(p profile) map[string]any {
	g := map[string]any{}
	if p.ProbeInterval > 0 {
		g["probeInterval"] = p.ProbeInterval.String()
	}
	if p.ProbeTimeout > 0 {
		g["probeTimeout"] = p.ProbeTimeout.String()
	}
	if p.SuspicionMult > 0 {
		g["suspicionMult"] = p.SuspicionMult
	}
	if len(g) == 0 {
		return nil
	}
	return map[string]any{"gossip": g}
}

// runLab measures one lab of n hosts, each running a real `weft agent` in its
// own network namespace: every agent is started at once (seeded by the first
// host of each segment), the lab is left alone for o.settle, then one
// non-seed agent is killed with SIGKILL and the survivors are asked, every
// labPoll, until all of them report it dead. The namespaces are removed
// before it returns, whatever happens.
func runLab(ctx context.Context, p profile, n, run int, o options) (res Result) {
	res = Result{Mode: "lab", Profile: p.Name, N: n, Run: run, ConvergeMS: -1, AliveMS: -1, DetectFirstMS: -1, DetectMedianMS: -1, DetectAllMS: -1}
	fail := func(what string, err error) Result {
		res.Err = fmt.Sprintf("%s: %v", what, err)
		return res
	}
	l, err := netlab.Build(ctx, labTopology(n), netlab.Options{})
	if err != nil {
		return fail("build lab", err)
	}
	o.log.Debug("lab built", "prefix", l.Prefix(), "hosts", n)
	defer func() {
		if err := l.Close(); err != nil {
			res.Err = strings.TrimPrefix(res.Err+"; ", "; ") + fmt.Sprintf("close lab: %v", err)
		}
	}()
	dir, err := os.MkdirTemp("", "weft-bench-lab-")
	if err != nil {
		return fail("make work dir", err)
	}
	keep := o.keepLogs // a failed run keeps its agents' logs for a look
	defer func() {
		if !keep {
			os.RemoveAll(dir)
		}
	}()
	c, err := lab.NewCluster(l, lab.ClusterOptions{
		Binary:  o.binary,
		Dir:     dir,
		Regions: map[string]string{"sa": "r1", "sb": "r1"},
		Config:  gossipConfig(p),
	})
	if err != nil {
		return fail("new cluster", err)
	}
	hosts := l.Hosts()
	v := newViewer(c, hosts)
	victim := hosts[1+rand.N(len(hosts)-1)]
	seeds := []string{l.HostAddr(hosts[0]).String()}
	if last := hosts[len(hosts)-1]; n > 2 {
		seeds = append(seeds, l.HostAddr(last).String())
		for victim == last {
			victim = hosts[1+rand.N(len(hosts)-1)]
		}
	}
	peak := cpuload.StartPeak()
	defer func() {
		// Count before stopping the agents: agents stopped one after the
		// other read as deaths to those still running. Runs before l.Close.
		res.FalseDeaths = countFalseDeaths(c, hosts, victim)
		if err := c.Close(); err != nil {
			res.Err = strings.TrimPrefix(res.Err+"; ", "; ") + fmt.Sprintf("stop agents: %v", err)
		}
		res.CPUPeak = peak.Stop()
	}()

	c0 := cpuload.Now()
	for _, h := range hosts {
		if err := c.Start(h, seeds, nil); err != nil {
			return fail("start agents", err)
		}
	}
	why, lastWhy := "", ""
	aliveAt := make(map[string]time.Duration, n) // when each host first saw all n alive
	conv, err := pollUntil(ctx, o.convergeTimeout, c0.Wall, hosts, func(views []lab.View) []bool {
		now := time.Since(c0.Wall)
		ok := make([]bool, len(views))
		for i, v := range views {
			if _, seen := aliveAt[v.Host]; !seen && v.Err == nil && numAlive(v) == n {
				aliveAt[v.Host] = now
			}
			var w string
			if ok[i], w = lab.Converged([]lab.View{v}, hosts); !ok[i] {
				why = w
			}
		}
		if why != lastWhy && now > slowConverge {
			slog.Info("still converging", "after_s", fmt.Sprintf("%.1f", now.Seconds()), "waiting_for", why)
			lastWhy = why
		}
		return ok
	}, v)
	c1 := cpuload.Now()
	res.CPUConverge = cpuload.Cores(c0, c1)
	if len(aliveAt) == n {
		res.AliveMS = ms(slices.Max(slices.Collect(maps.Values(aliveAt))))
	}
	if err != nil {
		res.MinView = labMinView(v.views(ctx, hosts))
		keep = true
		return fail("converge", fmt.Errorf("%w (last: %s; logs in %s)", err, why, dir))
	}
	res.ConvergeMS, res.MinView = ms(slices.Max(conv)), n

	if err := wait(ctx, nil, o.settle); err != nil {
		return fail("settle", err)
	}
	c2 := cpuload.Now()
	res.CPUSteady = cpuload.Cores(c1, c2)

	survivors := slices.DeleteFunc(slices.Clone(hosts), func(h string) bool { return h == victim })
	crashedAt := time.Now()
	if err := c.Kill(victim); err != nil {
		return fail("kill "+victim, err)
	}
	times, err := pollUntil(ctx, o.detectTimeout, crashedAt, survivors, func(views []lab.View) []bool {
		dead := make([]bool, len(views))
		for i, v := range views {
			for _, p := range v.Peers {
				if p.Name == victim && p.State == gossip.StateDead {
					dead[i] = true
				}
			}
		}
		return dead
	}, v)
	res.CPUDetect = cpuload.Cores(c2, cpuload.Now())
	detectStats(&res, slices.DeleteFunc(times, func(d time.Duration) bool { return d < 0 }))
	if err != nil {
		keep = true
		return fail(fmt.Sprintf("detect: %d of %d survivors saw %s die (logs in %s)", res.Detected, n-1, victim, dir), err)
	}
	return res
}

// pollUntil asks the hosts not yet done for their views every labPoll until
// done reports true for each, and returns when each was first seen done,
// measured from since (-1 for hosts never seen done). Once all are done it
// asks all of them again, and starts over with those no longer done.
func pollUntil(ctx context.Context, timeout time.Duration, since time.Time, hosts []string, done func([]lab.View) []bool, v *viewer) ([]time.Duration, error) {
	at := make([]time.Duration, len(hosts))
	for i := range at {
		at[i] = -1
	}
	deadline := time.Now().Add(timeout)
	for {
		var ask []int
		for i := range hosts {
			if at[i] < 0 {
				ask = append(ask, i)
			}
		}
		if len(ask) == 0 {
			// Confirm: every host at once.
			ok := done(v.views(ctx, hosts))
			if !slices.Contains(ok, false) {
				return at, nil
			}
			for i, good := range ok {
				if !good {
					at[i] = -1
				}
			}
			continue
		}
		names := make([]string, len(ask))
		for j, i := range ask {
			names[j] = hosts[i]
		}
		ok := done(v.views(ctx, names))
		now := time.Since(since)
		for j, i := range ask {
			if ok[j] {
				at[i] = now
			}
		}
		if time.Now().After(deadline) {
			return at, fmt.Errorf("%w after %s", errTimeout, timeout)
		}
		if err := wait(ctx, nil, labPoll); err != nil {
			return at, err
		}
	}
}

// viewer asks agents for their peers through one API client per agent.
// lab.Cluster.Views makes a new client, with its own keep-alive connection,
// per host and call: polled every labPoll, that runs out of file descriptors
// within minutes.
type viewer struct {
	clients map[string]*api.Client
}

func newViewer(c *lab.Cluster, hosts []string) *viewer {
	v := &viewer{clients: make(map[string]*api.Client, len(hosts))}
	for _, h := range hosts {
		v.clients[h] = c.Client(h)
	}
	return v
}

// views asks every given host's agent for its peers, concurrently.
func (v *viewer) views(ctx context.Context, hosts []string) []lab.View {
	out := make([]lab.View, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			p, err := v.clients[h].Peers(qctx)
			out[i] = lab.View{Host: h, Peers: p, Err: err}
		}()
	}
	wg.Wait()
	return out
}

// labMinView returns the smallest number of live peers any answering agent reports.
func labMinView(views []lab.View) int {
	least := -1
	for _, v := range views {
		if v.Err != nil {
			continue
		}
		if alive := numAlive(v); least < 0 || alive < least {
			least = alive
		}
	}
	return max(least, 0)
}

// numAlive returns how many peers, the agent itself included, v lists as alive.
func numAlive(v lab.View) int {
	alive := 0
	for _, p := range v.Peers {
		if p.State == gossip.StateAlive {
			alive++
		}
	}
	return alive
}

// countFalseDeaths counts the deaths of members other than victim in the agents' logs.
func countFalseDeaths(c *lab.Cluster, hosts []string, victim string) int {
	count := 0
	for _, h := range hosts {
		count += falseDeaths(c.Log(h), victim)
	}
	return count
}

// falseDeaths counts the "member dead" lines of one agent log that name a
// member other than victim.
func falseDeaths(log, victim string) int {
	count := 0
	for line := range strings.Lines(log) {
		if strings.Contains(line, `msg="member dead"`) && !slices.Contains(strings.Fields(line), "node="+victim) {
			count++
		}
	}
	return count
}

// errNotRoot says the lab mode needs root.
var errNotRoot = errors.New("lab mode needs root: it makes network namespaces, veths and bridges")
