package nft

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/weft-net/weft/internal/netlab"
	"github.com/weft-net/weft/policy"
)

var (
	diffSeed  = flag.Uint64("seed", 1, "seed of the differential test's random cases")
	diffCases = flag.Int("cases", 40, "number of random cases of the differential test")
	diffOnly  = flag.Int("case", -1, "run only this case of the differential test (with the same seed)")
	// TestDifferentialIncremental: cases, each with this many changes.
	diffIncCases = flag.Int("inc-cases", 8, "number of random cases of the incremental differential test")
	diffSteps    = flag.Int("steps", 5, "random changes per case of the incremental differential test")
)

// Probe timeouts. A denied flow costs the short one (the flows of a case
// run at once); an allowed flow that misses it is probed again, from
// another source port, with the long one before it counts as denied.
const (
	probeShort = 300 * time.Millisecond
	probeLong  = 5 * time.Second
)

// diffLab builds one host with four workloads on routed veths, and an
// external node on the host's segment that routes the workload network
// through the host.
func diffLab(t *testing.T) (*netlab.Lab, diffWorld) {
	t.Helper()
	ctx := context.Background()
	topo := netlab.Topology{
		Segments: []netlab.Segment{{Name: "seg", Prefix: netip.MustParsePrefix("198.18.77.0/24")}},
		Hosts:    []netlab.Host{{Name: "h", Segment: "seg"}, {Name: "x", Segment: "seg"}},
	}
	lab, err := netlab.Build(ctx, topo, netlab.Options{Prefix: "nftd" + randomHex(t, 2)})
	if err != nil {
		t.Fatalf("build lab: %v", err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})
	w := diffWorld{hostNode: "h", hostAddr: lab.HostAddr("h"), extNode: "x", extAddr: lab.HostAddr("x")}
	for i := 1; i <= 4; i++ {
		wl := netlab.Workload{Name: fmt.Sprintf("w%d", i), Host: "h", Addr: netip.AddrFrom4([4]byte{198, 19, 200, byte(i)})}
		if err := lab.AddWorkload(ctx, wl); err != nil {
			t.Fatalf("add workload: %v", err)
		}
		w.workloads = append(w.workloads, diffWorkload{node: wl.Name, iface: wl.HostVeth(), addr: wl.Addr})
	}
	err = lab.Do("h", func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644); err != nil {
			return err
		}
		// Answer proxy ARP at once, as Calico configures it; the kernel's
		// default delays each answer by up to 0.8 s.
		for _, wl := range w.workloads {
			if err := os.WriteFile("/proc/sys/net/ipv4/neigh/"+wl.iface+"/proxy_delay", []byte("0\n"), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("configure h: %v", err)
	}
	// Proxy ARP answers a workload's ARP for its gateway only when the host
	// has a route to the gateway address: give the host a default route.
	hh := nsHandle(t, lab.NetNSPath("h"))
	if err := hh.RouteAdd(&netlink.Route{Gw: w.extAddr.AsSlice()}); err != nil {
		t.Fatalf("default route on h: %v", err)
	}
	xh := nsHandle(t, lab.NetNSPath("x"))
	_, wlNet, _ := net.ParseCIDR("198.19.200.0/24")
	if err := xh.RouteAdd(&netlink.Route{Dst: wlNet, Gw: w.hostAddr.AsSlice()}); err != nil {
		t.Fatalf("route the workloads through h on x: %v", err)
	}
	return lab, w
}

// nsHandle returns a netlink handle bound to the namespace at path.
func nsHandle(t *testing.T, path string) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatalf("open netns %s: %v", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", path, err)
	}
	t.Cleanup(h.Close)
	return h
}

// TestDifferential judges random flows under random policies twice: by the
// reference evaluator, policy.Evaluate, and by real packets through the
// compiled nftables ruleset on a host whose workloads are network
// namespaces on routed veths. Any disagreement fails and prints the case.
// Rerun one case with -seed=S -case=N.
func TestDifferential(t *testing.T) {
	requireRoot(t)
	lab, world := diffLab(t)
	nodeOf := map[netip.Addr]string{world.hostAddr: world.hostNode, world.extAddr: world.extNode}
	for _, w := range world.workloads {
		nodeOf[w.addr] = w.node
	}
	p := newProber(t, lab, nodeOf)
	warmUp(t, p, nodeOf)
	hostNS, err := netns.GetFromPath(lab.NetNSPath("h"))
	if err != nil {
		t.Fatal(err)
	}
	defer hostNS.Close()
	conn, err := Connect(int(hostNS))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseLasting()
	applier := New(Config{Conn: conn})
	ct := nsHandle(t, lab.NetNSPath("h"))
	ctx := context.Background()

	start, checked := time.Now(), 0
	for i := range *diffCases {
		if *diffOnly >= 0 && i != *diffOnly {
			continue
		}
		g := &caseGen{r: rand.New(rand.NewPCG(*diffSeed, uint64(i))), w: world}
		c, set := decodeCase(t, g)
		rs, err := Compile(set, world.host(), c.opts)
		if err != nil {
			t.Fatalf("case %d: Compile: %v\n%s", i, err, c.yaml)
		}
		if err := applier.Apply(ctx, rs); err != nil {
			t.Fatalf("case %d: Apply: %v\n%s", i, err, c.yaml)
		}
		if err := ct.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
			t.Fatalf("flush conntrack on h: %v", err)
		}
		report := judgeAll(p, set, c.opts, c.flows)
		checked += len(c.flows)
		if report != "" {
			t.Fatalf("case %d disagrees (rerun: go test ./policy/nft -run TestDifferential -seed=%d -case=%d)\n"+
				"resources:\n%s\nhost %s %s, external %s, workloads %v\noptions: %+v\n%s\nruleset:\n%s",
				i, *diffSeed, i, c.yaml, world.hostNode, world.hostAddr, world.extAddr, world.host().Workloads, c.opts, report, rs.String())
		}
	}
	t.Logf("%d flows agreed in %v (seed %d)", checked, time.Since(start).Round(time.Millisecond), *diffSeed)
}

// judgeAll probes flows at once and returns the report of those on which
// the packets disagree with Evaluate ("" when none).
func judgeAll(p *prober, set *policy.Set, opts policy.Options, flows []policy.Flow) string {
	var report strings.Builder
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, f := range flows {
		wg.Go(func() {
			if msg := judge(p, set, opts, f); msg != "" {
				mu.Lock()
				report.WriteString(msg)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return report.String()
}

// TestDifferentialIncremental is TestDifferential with the ruleset changed
// one delta at a time: each case starts from a random case, then goes
// through -steps random changes (labels, endpoints gone and back, rules,
// network sets), each applied incrementally (the test fails if Apply
// replaces the table) and judged by packets against Evaluate.
// Rerun one case with -seed=S -case=N.
func TestDifferentialIncremental(t *testing.T) {
	requireRoot(t)
	lab, world := diffLab(t)
	nodeOf := map[netip.Addr]string{world.hostAddr: world.hostNode, world.extAddr: world.extNode}
	for _, w := range world.workloads {
		nodeOf[w.addr] = w.node
	}
	p := newProber(t, lab, nodeOf)
	warmUp(t, p, nodeOf)
	hostNS, err := netns.GetFromPath(lab.NetNSPath("h"))
	if err != nil {
		t.Fatal(err)
	}
	defer hostNS.Close()
	nc, err := Connect(int(hostNS))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.CloseLasting()
	conn := &countingConn{Conn: nc}
	applier := New(Config{Conn: conn})
	ct := nsHandle(t, lab.NetNSPath("h"))
	ctx := context.Background()

	start, checked, deltas := time.Now(), 0, 0
	for i := range *diffIncCases {
		if *diffOnly >= 0 && i != *diffOnly {
			continue
		}
		g := &caseGen{r: rand.New(rand.NewPCG(*diffSeed, uint64(i)+1<<32)), w: world}
		c, set := decodeCase(t, g)
		var history []string
		for step := 0; step <= *diffSteps; step++ {
			if step > 0 {
				for range 100 {
					next := g.mutate(c)
					if s, ok := decodeSet(next.yaml); ok {
						c, set = next, s
						break
					}
				}
			}
			rs, err := Compile(set, world.host(), c.opts)
			if err != nil {
				t.Fatalf("case %d step %d: Compile: %v\n%s", i, step, err, c.yaml)
			}
			replaces := conn.replaces
			if err := applier.Apply(ctx, rs); err != nil {
				t.Fatalf("case %d step %d: Apply: %v\n%s", i, step, err, c.yaml)
			}
			if step > 0 && conn.replaces != replaces {
				t.Fatalf("case %d step %d: Apply replaced the table, want a delta", i, step)
			}
			if step > 0 {
				deltas++
			}
			history = append(history, rs.Version)
			if err := ct.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
				t.Fatalf("flush conntrack on h: %v", err)
			}
			report := judgeAll(p, set, c.opts, c.flows)
			checked += len(c.flows)
			if report != "" {
				t.Fatalf("case %d step %d disagrees (rerun: go test ./policy/nft -run TestDifferentialIncremental -seed=%d -case=%d)\n"+
					"resources:\n%s\nhost %s %s, external %s, workloads %v\noptions: %+v\n%s\nruleset:\n%s",
					i, step, *diffSeed, i, c.yaml, world.hostNode, world.hostAddr, world.extAddr, world.host().Workloads, c.opts, report, rs.String())
			}
		}
	}
	t.Logf("%d flows agreed in %v over %d incremental applies (seed %d)", checked, time.Since(start).Round(time.Millisecond), deltas, *diffSeed)
}

// warmUp waits, with no ruleset, until every node answers a ping from
// every other, so that neighbour tables are filled and a slow first
// packet is not taken for a denied flow.
func warmUp(t *testing.T, p *prober, nodeOf map[netip.Addr]string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for src := range nodeOf {
		for dst := range nodeOf {
			if src == dst {
				continue
			}
			typ, code := uint8(8), uint8(0)
			f := policy.Flow{Src: src, Dst: dst, Protocol: policy.ProtoICMP, ICMPType: &typ, ICMPCode: &code}
			for {
				ok, err := p.probe(f, time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("lab not ready: no answer to %s", f)
				}
			}
		}
	}
}

// decodeCase makes cases until one decodes.
func decodeCase(t *testing.T, g *caseGen) (diffCase, *policy.Set) {
	t.Helper()
	for range 200 {
		c := g.newCase()
		objs, err := policy.Decode("case.yaml", []byte(c.yaml))
		if err != nil {
			continue
		}
		if set, err := policy.NewSet(objs); err == nil {
			return c, set
		}
	}
	t.Fatal("no random case decoded in 200 attempts: the generator makes invalid resources")
	return diffCase{}, nil
}

// judge probes one flow and returns "" when the packets agree with
// Evaluate, else the flow, both verdicts and the evaluator's trace.
func judge(p *prober, set *policy.Set, opts policy.Options, f policy.Flow) string {
	f = p.withSourcePort(f)
	want := policy.Evaluate(set, f, opts)
	got, err := p.probe(f, probeShort)
	if err == nil && want.Allowed() && !got {
		// Slow, or denied: again, from a fresh source port, with time.
		f = p.withSourcePort(f)
		want = policy.Evaluate(set, f, opts)
		got, err = p.probe(f, probeLong)
	}
	if err != nil {
		return fmt.Sprintf("\nflow %s: probe failed: %v\n", f, err)
	}
	if got == want.Allowed() {
		return ""
	}
	packets := "deny"
	if got {
		packets = "allow"
	}
	var trace strings.Builder
	_ = want.WriteText(&trace)
	return fmt.Sprintf("\nflow %s: reference %s, packets %s\n%s", f, want.Verdict, packets, trace.String())
}
