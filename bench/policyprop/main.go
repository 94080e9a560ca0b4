// Command policyprop measures how long a policy change made on one host
// takes to be in force on every host of a lab of real `weft agent`
// processes in network namespaces (needs root): from just before `weft
// policy apply` (or `weft endpoint add`) starts on h1 until each agent has
// applied a ruleset built from a store holding the change (its status:
// the policy or endpoint count, and the time the ruleset was applied, by
// the machine's one clock). The baseline, in the same run, is h1 itself:
// the same path without gossip.
//
//	go run ./bench/policyprop -n 5,20 -runs 5
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weft-net/weft/internal/api"
	"github.com/weft-net/weft/internal/lab"
	"github.com/weft-net/weft/internal/netlab"
)

func main() {
	sizes := flag.String("n", "5,20", "lab sizes (hosts), comma separated")
	runs := flag.Int("runs", 5, "changes of each kind per size")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "policyprop needs root: it builds network namespaces")
		os.Exit(1)
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "weft-policyprop-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "weft")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/weft-net/weft/cmd/weft").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build weft: %v\n%s", err, out)
		os.Exit(1)
	}
	fmt.Printf("# %s, %s, %d CPUs, load average at start: %s\n", time.Now().UTC().Format(time.RFC3339), kernel(), nproc(), loadavg())
	fmt.Println("| hosts | change | runs | h1 itself (baseline) median / max | every other host: median / p90 / max of all | last host per run, median | busy cores (machine) |")
	fmt.Println("| ---: | --- | ---: | --- | --- | --- | ---: |")
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 2 {
			fmt.Fprintf(os.Stderr, "-n: %q: want sizes of 2 or more\n", s)
			os.Exit(2)
		}
		if err := runSize(ctx, bin, filepath.Join(dir, strconv.Itoa(n)), n, *runs, log); err != nil {
			fmt.Fprintln(os.Stderr, "size", n, ":", err)
			os.Exit(1)
		}
	}
}

func runSize(ctx context.Context, bin, dir string, n, runs int, log *slog.Logger) error {
	topo := netlab.Topology{
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
		topo.Hosts = append(topo.Hosts, netlab.Host{Name: fmt.Sprintf("h%d", i), Segment: seg})
	}
	l, err := netlab.Build(ctx, topo, netlab.Options{Logger: log})
	if err != nil {
		return err
	}
	defer l.Close()
	c, err := lab.NewCluster(l, lab.ClusterOptions{Binary: bin, Dir: dir, Regions: map[string]string{"sa": "r1", "sb": "r1"}})
	if err != nil {
		return err
	}
	defer c.Close()
	hosts := l.Hosts()
	seeds := []string{l.HostAddr(hosts[0]).String(), l.HostAddr(hosts[len(hosts)-1]).String()}
	for _, h := range hosts {
		if err := c.Start(h, seeds, nil); err != nil {
			return err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := c.WaitConverged(wctx, hosts, nil); err != nil {
		return err
	}
	// One endpoint per host (no workload behind it: only the agents' work
	// is measured), so that every host has a ruleset to rebuild.
	for i, h := range hosts {
		s, err := c.Client(h).Status(ctx)
		if err != nil {
			return err
		}
		w := netlab.Workload{Name: "w" + strconv.Itoa(i+1), Host: h, Addr: s.Subnet.Addr().Next().Next(), Labels: lab.WorkloadLabels(i)}
		if err := c.RegisterWorkload(ctx, w); err != nil {
			return err
		}
	}
	if _, err := waitAll(ctx, c, hosts, time.Now().Add(-time.Hour), func(p *api.PolicyStatus) bool { return p.Endpoints == n }); err != nil {
		return err
	}
	var policy, endpoint result
	cpuStart, wallStart := machineBusy(), time.Now()
	for r := 1; r <= runs; r++ {
		doc := fmt.Sprintf("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: bench-%d}\n"+
			"spec: {order: %d, selector: app == 'db', ingress: [{action: Allow, protocol: TCP, source: {selector: app == 'api'}, destination: {ports: [%d]}}]}\n", r, r, 5000+r)
		f := filepath.Join(dir, fmt.Sprintf("p%d.yaml", r))
		if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
			return err
		}
		start := time.Now()
		if out, err := exec.Command(bin, "policy", "apply", "-f", f, "--run-dir", c.RunDir(hosts[0])).CombinedOutput(); err != nil {
			return fmt.Errorf("policy apply: %v\n%s", err, out)
		}
		lat, err := waitAll(ctx, c, hosts, start, func(p *api.PolicyStatus) bool { return p.Policies == r })
		if err != nil {
			return err
		}
		policy.add(hosts[0], lat)

		start = time.Now()
		s, err := c.Client(hosts[0]).Status(ctx)
		if err != nil {
			return err
		}
		addr := s.Subnet.Addr()
		for range 10 + r {
			addr = addr.Next()
		}
		if out, err := exec.Command(bin, "endpoint", "add", fmt.Sprintf("extra%d", r), "--iface", fmt.Sprintf("wlx%d", r),
			"--ip", addr.String(), "--labels", "app=api", "--run-dir", c.RunDir(hosts[0])).CombinedOutput(); err != nil {
			return fmt.Errorf("endpoint add: %v\n%s", err, out)
		}
		lat, err = waitAll(ctx, c, hosts, start, func(p *api.PolicyStatus) bool { return p.Endpoints == n+r })
		if err != nil {
			return err
		}
		endpoint.add(hosts[0], lat)
	}
	busy := float64(machineBusy()-cpuStart) / float64(time.Since(wallStart))
	policy.print(n, "GlobalNetworkPolicy applied (`weft policy apply`)", busy)
	endpoint.print(n, "endpoint added (`weft endpoint add`)", busy)
	return nil
}

// waitAll polls every agent's status until ok holds with a ruleset
// applied after start, and returns, per host, how long after start its
// agent applied it.
func waitAll(ctx context.Context, c *lab.Cluster, hosts []string, start time.Time, ok func(*api.PolicyStatus) bool) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(hosts))
	for _, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(30 * time.Second)
			last := "no answer"
			for time.Now().Before(deadline) {
				qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				s, err := c.Client(h).Status(qctx)
				cancel()
				if err != nil {
					last = err.Error()
				} else if s.Policy != nil {
					last = fmt.Sprintf("%+v", *s.Policy)
				}
				if err == nil && s.Policy != nil && ok(s.Policy) && s.Policy.LastError == "" && !s.Policy.AppliedAt.Before(start) {
					mu.Lock()
					out[h] = s.Policy.AppliedAt.Sub(start)
					mu.Unlock()
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			var notes []string
			for _, line := range strings.Split(c.Log(h), "\n") {
				if strings.Contains(line, "store") || strings.Contains(line, "refus") || strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
					notes = append(notes, line)
				}
			}
			if len(notes) > 20 {
				notes = notes[len(notes)-20:]
			}
			errs <- fmt.Errorf("%s: change not in force within 30s; last status: %s\nits log (store, warnings, errors):\n%s", h, last, strings.Join(notes, "\n"))
		}()
	}
	wg.Wait()
	close(errs)
	return out, <-errs
}

// result collects latencies: the applying host's, and the others'.
type result struct {
	local, others []time.Duration
	last          []time.Duration
}

func (r *result) add(origin string, lat map[string]time.Duration) {
	var worst time.Duration
	for h, d := range lat {
		if h == origin {
			r.local = append(r.local, d)
			continue
		}
		r.others = append(r.others, d)
		worst = max(worst, d)
	}
	r.last = append(r.last, worst)
}

func (r *result) print(n int, what string, busy float64) {
	fmt.Printf("| %d | %s | %d | %s / %s | %s / %s / %s | %s | %.2f |\n", n, what, len(r.local),
		ms(pct(r.local, 50)), ms(pct(r.local, 100)),
		ms(pct(r.others, 50)), ms(pct(r.others, 90)), ms(pct(r.others, 100)), ms(pct(r.last, 50)), busy)
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s) - 1) * p / 100
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

// machineBusy is the CPU time all processes of the machine have used
// (user, nice, system, irq, softirq from /proc/stat).
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var ticks int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return "Linux " + strings.TrimSpace(string(b))
}

func nproc() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}
