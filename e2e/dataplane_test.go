package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-net/weft/internal/lab"
	"github.com/weft-net/weft/internal/netlab"
)

// fabricLab is the default lab topology with an agent and a workload per host.
type fabricLab struct {
	c         *lab.Cluster
	l         *netlab.Lab
	hosts     []string
	workloads map[string]netlab.Workload // by host
}

func newFabric(t *testing.T) *fabricLab { return newFabricWith(t, nil) }

// newFabricWith is newFabric with extra config fields for every agent.
func newFabricWith(t *testing.T, extra map[string]any) *fabricLab {
	t.Helper()
	netlab.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := netlab.Build(ctx, netlab.DefaultTopology(), netlab.Options{})
	if err != nil {
		t.Fatalf("build lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})
	c, err := lab.NewCluster(l, lab.ClusterOptions{
		Binary: weftBinary, Dir: t.TempDir(), Regions: lab.DefaultRegions(),
		Config: mergeConfig(map[string]any{"resyncPeriod": "5s"}, extra),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("stop agents: %v", err)
		}
		if t.Failed() {
			for _, h := range l.Hosts() {
				t.Logf("--- log of %s ---\n%s", h, lastLines(c.Log(h), 40))
			}
		}
	})
	f := &fabricLab{c: c, l: l, hosts: l.Hosts(), workloads: map[string]netlab.Workload{}}
	seeds := []string{l.HostAddr("h1").String(), l.HostAddr("h4").String()}
	startAll(t, c, f.hosts, seeds)
	waitConverged(t, c, f.hosts, 60*time.Second)
	for i, h := range f.hosts {
		s := status(t, c, h)
		w := netlab.Workload{Name: fmt.Sprintf("w%d", i+1), Host: h, Addr: s.Subnet.Addr().Next().Next()}
		if err := l.AddWorkload(ctx, w); err != nil {
			t.Fatal(err)
		}
		f.workloads[h] = w
	}
	took := poll(t, 60*time.Second, "data planes ready", func() (bool, string) { return c.DataPlaneReady(ctx, f.hosts) })
	t.Logf("data planes ready %s after the workloads were added", took.Round(10*time.Millisecond))
	return f
}

// ipOut runs a command in node's namespace and returns its output.
func (f *fabricLab) run(t *testing.T, node string, name string, args ...string) string {
	t.Helper()
	out, err := f.l.Command(context.Background(), node, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v in %s: %v\n%s", name, args, node, err, out)
	}
	return string(out)
}

// TestFabricPathsAndReachability: every workload reaches every other by ICMP
// and TCP; same-segment pairs are direct, cross-subnet pairs VXLAN, pairs
// across regions and with the host behind NAT WireGuard.
func TestFabricPathsAndReachability(t *testing.T) {
	f := newFabric(t)
	ctx := context.Background()
	paths, err := f.c.PathMatrix(ctx, f.hosts)
	if err != nil {
		t.Fatal(err)
	}
	region1 := map[string]bool{"h1": true, "h2": true, "h3": true}
	want := map[[2]string]string{{"h1", "h2"}: "direct", {"h2", "h1"}: "direct"}
	for _, a := range f.hosts {
		for _, b := range f.hosts {
			if a == b {
				continue
			}
			w, ok := want[[2]string{a, b}]
			switch {
			case ok:
			case region1[a] && region1[b]:
				w = "vxlan"
			default:
				w = "wireguard"
			}
			if got := paths.Cells[a][b]; got != w {
				t.Errorf("path %s -> %s = %q, want %q", a, b, got, w)
			}
		}
	}

	var ws []netlab.Workload
	for _, h := range f.hosts {
		ws = append(ws, f.workloads[h])
	}
	if m, failed := lab.PingMatrix(ctx, f.l, ws); failed > 0 {
		var sb strings.Builder
		m.Render(&sb, "from\\to")
		t.Errorf("%d pings failed:\n%s", failed, sb.String())
	}

	// TCP: an echo server in every workload, a connection from every other.
	for _, dst := range ws {
		ln := listenIn(t, f.l, dst.Name, netip.AddrPortFrom(dst.Addr, 5001))
		go serveEcho(ln)
	}
	for _, src := range ws {
		for _, dst := range ws {
			if src.Name == dst.Name {
				continue
			}
			if err := echoOnce(f.l, src.Name, netip.AddrPortFrom(dst.Addr, 5001)); err != nil {
				t.Errorf("tcp %s -> %s: %v", src.Name, dst.Name, err)
			}
		}
	}
}

// TestFabricWire: a capture on the underlay shows the plain workload packet
// between same-segment hosts, and UDP to the VXLAN port between subnets.
func TestFabricWire(t *testing.T) {
	f := newFabric(t)
	w1, w2, w3 := f.workloads["h1"], f.workloads["h2"], f.workloads["h3"]
	// h1 -> h2: direct; the capture on h2's underlay sees ICMP between the workloads.
	got := captureWhile(t, f.l, "h2", fmt.Sprintf("icmp and src host %s and dst host %s", w1.Addr, w2.Addr), func() {
		lab.Ping(context.Background(), f.l, w1.Name, w2.Addr, 3)
	})
	if !strings.Contains(got, w1.Addr.String()+" > "+w2.Addr.String()) {
		t.Errorf("direct path: capture on h2 did not show the plain workload packet:\n%s", got)
	}
	// h1 -> h3: VXLAN; the capture on h3's underlay sees UDP to port 4789 from h1.
	got = captureWhile(t, f.l, "h3", fmt.Sprintf("udp dst port 4789 and src host %s", f.l.HostAddr("h1")), func() {
		lab.Ping(context.Background(), f.l, w1.Name, w3.Addr, 3)
	})
	if !strings.Contains(got, "VXLAN") && !strings.Contains(got, ".4789") {
		t.Errorf("vxlan path: capture on h3 did not show VXLAN:\n%s", got)
	}
}

// TestFabricDrift: a weft route or FDB entry deleted by hand comes back; an
// unrelated route added by hand is never touched.
func TestFabricDrift(t *testing.T) {
	f := newFabric(t)
	s3 := status(t, f.c, "h3").Subnet
	f.run(t, "h1", "ip", "route", "add", "198.19.200.0/24", "via", f.l.Addr("rt1", "r1a").String(), "proto", "static")

	f.run(t, "h1", "ip", "route", "del", s3.String())
	took := poll(t, 10*time.Second, "route to h3's subnet restored", func() (bool, string) {
		out := f.run(t, "h1", "ip", "route", "show", s3.String())
		return strings.Contains(out, "proto 87"), out
	})
	t.Logf("route restored after %s", took.Round(time.Millisecond))

	fdb := f.run(t, "h1", "bridge", "fdb", "show", "dev", "weft.vxlan")
	var mac, dst string
	for _, line := range strings.Split(fdb, "\n") {
		if fs := strings.Fields(line); len(fs) >= 3 && fs[1] == "dst" && fs[2] == f.l.HostAddr("h3").String() {
			mac, dst = fs[0], fs[2]
		}
	}
	if mac == "" {
		t.Fatalf("no FDB entry for h3 on h1:\n%s", fdb)
	}
	f.run(t, "h1", "bridge", "fdb", "del", mac, "dev", "weft.vxlan", "dst", dst)
	took = poll(t, 10*time.Second, "fdb entry restored", func() (bool, string) {
		out := f.run(t, "h1", "bridge", "fdb", "show", "dev", "weft.vxlan")
		return strings.Contains(out, mac+" dst "+dst), out
	})
	t.Logf("fdb entry restored after %s", took.Round(time.Millisecond))
	if !lab.Ping(context.Background(), f.l, f.workloads["h1"].Name, f.workloads["h3"].Addr, 3) {
		t.Error("w1 cannot reach w3 after the repair")
	}
	// Wait for a full resync (5 s here) to have passed; the foreign route stays.
	first := f.c.Client("h1")
	rs, err := first.Routes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	poll(t, 20*time.Second, "a resync pass", func() (bool, string) {
		now, err := first.Routes(context.Background())
		return err == nil && now.Passes > rs.Passes+1, fmt.Sprint(err)
	})
	if out := f.run(t, "h1", "ip", "route", "show", "198.19.200.0/24"); !strings.Contains(out, "proto static") {
		t.Errorf("foreign route gone: %q", out)
	}
}

// TestFabricAgentRestartKeepsTraffic: restart h1's agent while a TCP stream
// and a fast ping cross h1: the stream survives and no ping is lost.
func TestFabricAgentRestartKeepsTraffic(t *testing.T) {
	f := newFabric(t)
	w1, w3 := f.workloads["h1"], f.workloads["h3"]
	ln := listenIn(t, f.l, w3.Name, netip.AddrPortFrom(w3.Addr, 5002))
	received := make(chan int64, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			received <- -1
			return
		}
		n, _ := io.Copy(io.Discard, conn)
		received <- n
	}()
	var conn net.Conn
	err := f.l.Do(w1.Name, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", netip.AddrPortFrom(w3.Addr, 5002).String(), 5*time.Second)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ping := f.l.Command(context.Background(), w1.Name, "ping", "-i", "0.05", "-c", "100", "-n", "-q", w3.Addr.String())
	pingOut := &strings.Builder{}
	ping.Stdout = pingOut
	if err := ping.Start(); err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 32<<10)
		for {
			select {
			case <-stop:
				return
			default:
			}
			conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			n, err := conn.Write(buf)
			sent.Add(int64(n))
			if err != nil {
				t.Errorf("stream broke after %d bytes: %v", sent.Load(), err)
				return
			}
		}
	}()
	poll(t, 10*time.Second, "stream flowing", func() (bool, string) { return sent.Load() > 1<<20, fmt.Sprint(sent.Load()) })
	if err := f.c.Stop("h1"); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Start("h1", []string{f.l.HostAddr("h4").String()}, nil); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, f.c, f.hosts, 30*time.Second)
	close(stop)
	wg.Wait()
	conn.Close()
	if n := <-received; n != sent.Load() {
		t.Errorf("sent %d bytes, received %d", sent.Load(), n)
	}
	if err := ping.Wait(); err != nil {
		t.Errorf("ping: %v\n%s", err, pingOut)
	}
	if !strings.Contains(pingOut.String(), " 0% packet loss") {
		t.Errorf("pings lost during the restart:\n%s", pingOut)
	}
	t.Logf("stream of %d bytes survived the restart; %s", sent.Load(), strings.TrimSpace(lastLines(pingOut.String(), 2)))
}

// TestFabricDeadPeerRoutesRemoved: kill a host's agent for good: its peers
// drop its routes once they declare it dead.
func TestFabricDeadPeerRoutesRemoved(t *testing.T) {
	f := newFabric(t)
	s5 := status(t, f.c, "h5").Subnet
	if out := f.run(t, "h1", "ip", "route", "show", s5.String()); !strings.Contains(out, "proto 87") {
		t.Fatalf("h1 has no route to h5's subnet: %q", out)
	}
	if err := f.c.Kill("h5"); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"h1", "h3", "h4"} {
		took := poll(t, 20*time.Second, h+" drops the route to h5", func() (bool, string) {
			out := f.run(t, h, "ip", "route", "show", s5.String())
			return out == "", out
		})
		t.Logf("%s dropped h5's route %s after the kill", h, took.Round(10*time.Millisecond))
	}
}

// listenIn opens a TCP listener inside node's namespace.
func listenIn(t *testing.T, l *netlab.Lab, node string, at netip.AddrPort) net.Listener {
	t.Helper()
	var ln net.Listener
	err := l.Do(node, func() error {
		var err error
		ln, err = net.Listen("tcp", at.String())
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s on %s: %v", node, at, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

// echoOnce connects from node to at, sends a line and expects it back.
func echoOnce(l *netlab.Lab, node string, at netip.AddrPort) error {
	var c net.Conn
	err := l.Do(node, func() error {
		var err error
		c, err = net.DialTimeout("tcp", at.String(), 5*time.Second)
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := "hello from " + node + "\n"
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != msg {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// captureWhile runs tcpdump on node's eth0 with filter while fn runs, and
// returns what it printed.
func captureWhile(t *testing.T, l *netlab.Lab, node, filter string, fn func()) string {
	t.Helper()
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Fatalf("tcpdump is needed (apt-get install tcpdump): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := l.Command(ctx, node, "tcpdump", "-i", "eth0", "-n", "-l", "-c", "1", "-v", filter)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// tcpdump says "listening on" on stderr once the capture runs.
	poll(t, 10*time.Second, "tcpdump listening", func() (bool, string) { return strings.Contains(out.String(), "listening on"), out.String() })
	fn()
	cmd.Wait()
	return out.String()
}

// syncBuffer is a strings.Builder safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	sb strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sb.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sb.String()
}

// TestCleanup: `weft cleanup` removes weft's routes, device, nftables table
// and run-dir files, and nothing else.
func TestCleanup(t *testing.T) {
	f := newFabric(t)
	f.run(t, "h1", "ip", "route", "add", "198.19.201.0/24", "via", f.l.Addr("rt1", "r1a").String(), "proto", "static")
	out, err := f.l.Command(context.Background(), "h1", weftBinary, "cleanup", "--run-dir", f.c.RunDir("h1")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "agent is running") {
		t.Fatalf("cleanup with a running agent: %v\n%s", err, out)
	}
	if err := f.c.Stop("h1"); err != nil {
		t.Fatal(err)
	}
	if out, err := f.l.Command(context.Background(), "h1", "nft", "list", "table", "inet", "weft").CombinedOutput(); err != nil {
		t.Fatalf("no policy table before cleanup: %v\n%s", err, out)
	}
	before := f.run(t, "h1", "ip", "route")
	if !strings.Contains(before, "proto 87") || !strings.Contains(f.run(t, "h1", "ip", "link"), "weft.vxlan") {
		t.Fatalf("nothing of weft's to clean up:\n%s", before)
	}
	f.run(t, "h1", weftBinary, "cleanup", "--run-dir", f.c.RunDir("h1"))
	after := f.run(t, "h1", "ip", "route")
	if strings.Contains(after, "proto 87") {
		t.Errorf("weft routes left:\n%s", after)
	}
	for _, keep := range []string{"198.19.201.0/24", "default via", f.workloads["h1"].Addr.String() + " dev wlw1"} {
		if !strings.Contains(after, keep) {
			t.Errorf("cleanup removed %q:\n%s", keep, after)
		}
	}
	if links := f.run(t, "h1", "ip", "link"); strings.Contains(links, "weft.") {
		t.Errorf("weft links left:\n%s", links)
	}
	for _, table := range [][]string{{"ip", "weft-nat"}, {"inet", "weft"}} {
		if out, err := f.l.Command(context.Background(), "h1", "nft", "list", "table", table[0], table[1]).CombinedOutput(); err == nil {
			t.Errorf("nftables table %s %s left:\n%s", table[0], table[1], out)
		}
	}
}

func mergeConfig(a, b map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}
