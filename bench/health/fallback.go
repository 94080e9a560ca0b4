package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/weft-net/weft/bench/internal/cpuload"
	"github.com/weft-net/weft/internal/lab"
	"github.com/weft-net/weft/internal/netlab"
)

// pollEvery is the resolution of the path times: how often both agents are
// asked for their path to each other.
const pollEvery = 50 * time.Millisecond

// echoEvery is the resolution of the traffic times: one UDP echo request
// from workload to workload every echoEvery.
const echoEvery = 20 * time.Millisecond

// scenario is one way of breaking a path.
type scenario struct {
	name     string
	topo     netlab.Topology
	a, b     string // the pair
	from, to string // path before, path after the break
	// node and the nft rules that break and heal the path there.
	node, block, unblock string
}

func twoSegments(nA, nB int) netlab.Topology {
	t := netlab.Topology{
		Segments: []netlab.Segment{
			{Name: "sa", Prefix: netip.MustParsePrefix("198.18.10.0/24")},
			{Name: "sb", Prefix: netip.MustParsePrefix("198.18.20.0/24")},
		},
		Routers: []netlab.Router{{Name: "rt", Segments: []string{"sa", "sb"}}},
	}
	for i := 1; i <= nA; i++ {
		t.Hosts = append(t.Hosts, netlab.Host{Name: fmt.Sprintf("a%d", i), Segment: "sa"})
	}
	for i := 1; i <= nB; i++ {
		t.Hosts = append(t.Hosts, netlab.Host{Name: fmt.Sprintf("b%d", i), Segment: "sb"})
	}
	return t
}

func scenarios() []scenario {
	return []scenario{
		{name: "direct", topo: twoSegments(2, 0), a: "a1", b: "a2", from: "direct", to: "vxlan", node: "sw",
			block:   "table bridge weftbench {\n chain dropplain {\n  type filter hook forward priority 0;\n  ip saddr 10.244.0.0/16 drop\n }\n}\n",
			unblock: "delete table bridge weftbench\n"},
		{name: "vxlan", topo: twoSegments(1, 1), a: "a1", b: "b1", from: "vxlan", to: "wireguard", node: "rt",
			block:   "table inet weftbench {\n chain forward {\n  type filter hook forward priority 0;\n  udp dport 4789 drop\n }\n}\n",
			unblock: "delete table inet weftbench\n"},
	}
}

// FallbackResult is one break-and-heal run.
type FallbackResult struct {
	Scenario string `json:"scenario"`
	Health   bool   `json:"health"`
	Run      int    `json:"run"`
	// PathMillis: from the break until both agents use the fallback path;
	// TrafficMillis: until the first echo sent after the break came back;
	// BackMillis: from the heal until both are on the first path again.
	// -1: not within the limit.
	PathMillis    int64   `json:"pathMs"`
	TrafficMillis int64   `json:"trafficMs"`
	BackMillis    int64   `json:"backMs"`
	Foreign       float64 `json:"foreignCores"`
	Quiet         bool    `json:"quiet"`
}

// echoer sends a UDP echo request every echoEvery from workload wa to wb's
// echo server and records when each answer arrives.
type echoer struct {
	mu     sync.Mutex
	answer []echo // answers: when each request was sent and answered
	conn   *net.UDPConn
}

type echo struct{ sent, back time.Time }

func startEcho(ctx context.Context, l *netlab.Lab, wa, wb netlab.Workload) (*echoer, error) {
	at := netip.AddrPortFrom(wb.Addr, 5100)
	var srv *net.UDPConn
	if err := l.Do(wb.Name, func() error {
		var err error
		srv, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(at))
		return err
	}); err != nil {
		return nil, fmt.Errorf("echo server in %s: %w", wb.Name, err)
	}
	go func() {
		defer srv.Close()
		buf := make([]byte, 64)
		for {
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			srv.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	context.AfterFunc(ctx, func() { srv.Close() })
	e := &echoer{}
	if err := l.Do(wa.Name, func() error {
		var err error
		e.conn, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(at))
		return err
	}); err != nil {
		return nil, fmt.Errorf("echo client in %s: %w", wa.Name, err)
	}
	context.AfterFunc(ctx, func() { e.conn.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := e.conn.Read(buf)
			if err != nil {
				return
			}
			if n == 8 {
				sent := time.Unix(0, int64(binary.BigEndian.Uint64(buf)))
				e.mu.Lock()
				e.answer = append(e.answer, echo{sent, time.Now()})
				e.mu.Unlock()
			}
		}
	}()
	go func() {
		t := time.NewTicker(echoEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				e.conn.Write(binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano())))
			}
		}
	}()
	return e, nil
}

// firstAfter returns when the first answer to a request sent after t came.
func (e *echoer) firstAfter(t time.Time) (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, a := range e.answer {
		if a.sent.After(t) {
			return a.back, true
		}
	}
	return time.Time{}, false
}

// runFallback builds sc's lab, starts its agents (health on or off) and
// breaks and heals the path runs times.
func runFallback(ctx context.Context, sc scenario, healthOn bool, runs int, binary string, o options, log *slog.Logger) ([]FallbackResult, error) {
	l, err := netlab.Build(ctx, sc.topo, netlab.Options{})
	if err != nil {
		return nil, fmt.Errorf("build lab: %w", err)
	}
	defer l.Close()
	dir, err := mkTemp()
	if err != nil {
		return nil, err
	}
	c, err := lab.NewCluster(l, lab.ClusterOptions{Binary: binary, Dir: dir, Regions: map[string]string{"sa": "r1", "sb": "r1"},
		Config: map[string]any{"health": map[string]any{"enabled": healthOn}}})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	hosts := l.Hosts()
	for _, h := range hosts {
		if err := c.Start(h, []string{l.HostAddr(hosts[0]).String()}, nil); err != nil {
			return nil, err
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := c.WaitConverged(cctx, hosts, nil); err != nil {
		return nil, fmt.Errorf("converge: %w", err)
	}
	ws := map[string]netlab.Workload{}
	for i, h := range hosts {
		st, err := c.Client(h).Status(cctx)
		if err != nil {
			return nil, err
		}
		w := netlab.Workload{Name: fmt.Sprintf("w%d", i+1), Host: h, Addr: st.Subnet.Addr().Next().Next()}
		if err := l.AddWorkload(cctx, w); err != nil {
			return nil, err
		}
		ws[h] = w
	}
	if _, err := waitPath(cctx, c, sc.a, sc.b, sc.from, 30*time.Second); err != nil {
		return nil, err
	}
	ectx, stopEcho := context.WithCancel(ctx)
	defer stopEcho()
	e, err := startEcho(ectx, l, ws[sc.a], ws[sc.b])
	if err != nil {
		return nil, err
	}
	var out []FallbackResult
	for run := 1; run <= runs; run++ {
		quiet := cpuload.WaitQuiet(ctx, o.quiet, o.quietWait, log)
		r := FallbackResult{Scenario: sc.name, Health: healthOn, Run: run, PathMillis: -1, TrafficMillis: -1, BackMillis: -1, Quiet: quiet}
		a := cpuload.Now()
		if err := nft(ctx, l, sc.node, sc.block); err != nil {
			return out, err
		}
		t0 := time.Now()
		if healthOn {
			if d, err := waitPath(ctx, c, sc.a, sc.b, sc.to, o.limit); err == nil {
				r.PathMillis = d.Milliseconds()
			}
		}
		deadline := t0.Add(o.limit)
		for time.Now().Before(deadline) {
			if at, ok := e.firstAfter(t0); ok {
				r.TrafficMillis = at.Sub(t0).Milliseconds()
				break
			}
			time.Sleep(pollEvery)
		}
		if err := nft(ctx, l, sc.node, sc.unblock); err != nil {
			return out, err
		}
		if healthOn {
			if d, err := waitPath(ctx, c, sc.a, sc.b, sc.from, o.limit+15*time.Second); err == nil {
				r.BackMillis = d.Milliseconds()
			}
		} else if _, err := waitPath(ctx, c, sc.a, sc.b, sc.from, 5*time.Second); err != nil {
			return out, fmt.Errorf("health off: path changed: %w", err)
		}
		b := cpuload.Now()
		r.Foreign = cpuload.Foreign(a, b)
		r.Quiet = r.Quiet && r.Foreign < o.quiet
		log.Info("run", "scenario", sc.name, "health", healthOn, "run", run, "path_ms", r.PathMillis, "traffic_ms", r.TrafficMillis,
			"back_ms", r.BackMillis, "foreign_cores", fmt.Sprintf("%.2f", r.Foreign))
		out = append(out, r)
		// Let the pair settle before the next run. A break within twice the
		// hold-down of the path's return counts as flapping and doubles the
		// next hold-down: -settle 25s (> 2 x 10 s) measures each run afresh.
		if err := wait(ctx, nil, o.settle); err != nil {
			return out, err
		}
	}
	return out, nil
}

// waitPath polls until a and b reach each other over path.
func waitPath(ctx context.Context, c *lab.Cluster, a, b, path string, within time.Duration) (time.Duration, error) {
	start := time.Now()
	last := ""
	for time.Since(start) < within {
		pa, pb := peerPath(ctx, c, a, b), peerPath(ctx, c, b, a)
		if pa == path && pb == path {
			return time.Since(start), nil
		}
		last = pa + "/" + pb
		if err := wait(ctx, nil, pollEvery); err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("%s <-> %s not on %s within %s (last %s): %w", a, b, path, within, last, errTimeout)
}

func peerPath(ctx context.Context, c *lab.Cluster, from, to string) string {
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	peers, err := c.Client(from).Peers(qctx)
	if err != nil {
		return "error"
	}
	for _, p := range peers {
		if p.Name == to {
			return p.Path
		}
	}
	return "missing"
}

func nft(ctx context.Context, l *netlab.Lab, node, rules string) error {
	var cmd *exec.Cmd
	if node == "sw" {
		cmd = exec.CommandContext(ctx, "ip", "netns", "exec", l.NSName("sw"), "nft", "-f", "-")
	} else {
		cmd = l.Command(ctx, node, "nft", "-f", "-")
	}
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %w\n%s", node, err, out)
	}
	return nil
}
