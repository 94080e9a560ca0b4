package e2e

import (
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

// healthHoldDown is the hold-down the path-health tests run with, shorter
// than the default so that they finish sooner.
const healthHoldDown = 5 * time.Second

// newHealthLab builds topo, starts an agent per host with a short
// hold-down, waits for convergence and gives every host a workload.
func newHealthLab(t *testing.T, topo netlab.Topology) (*lab.Cluster, map[string]netlab.Workload) {
	t.Helper()
	c := newCluster(t, topo, map[string]any{
		"resyncPeriod": "5s",
		"health":       map[string]any{"holdDown": healthHoldDown.String()},
	})
	l := c.Lab()
	hosts := l.Hosts()
	startAll(t, c, hosts, []string{l.HostAddr(hosts[0]).String()})
	waitConverged(t, c, hosts, 60*time.Second)
	ws := map[string]netlab.Workload{}
	ctx := context.Background()
	for i, h := range hosts {
		w := netlab.Workload{Name: fmt.Sprintf("w%d", i+1), Host: h, Addr: status(t, c, h).Subnet.Addr().Next().Next()}
		if err := l.AddWorkload(ctx, w); err != nil {
			t.Fatal(err)
		}
		ws[h] = w
	}
	poll(t, 60*time.Second, "data planes ready", func() (bool, string) { return c.DataPlaneReady(ctx, hosts) })
	return c, ws
}

// pathOf returns the path from's agent uses to reach to, and its health line.
func pathOf(t *testing.T, c *lab.Cluster, from, to string) (string, string) {
	t.Helper()
	p, ok := peerOf(t, c, from, to)
	if !ok {
		return "", "not a peer"
	}
	why := "no health"
	if h := p.Health; h != nil {
		why = fmt.Sprintf("state %s, loss %.0f%%", h.State, h.Loss*100)
		if lc := h.LastChange; lc != nil {
			why += fmt.Sprintf(", last change %s->%s (%s)", lc.From, lc.To, lc.Reason)
		}
	}
	return p.Path, why
}

// waitPaths waits until a and b reach each other over path, and returns how
// long that took.
func waitPaths(t *testing.T, c *lab.Cluster, a, b, path string, within time.Duration) time.Duration {
	t.Helper()
	return poll(t, within, fmt.Sprintf("%s <-> %s on %s", a, b, path), func() (bool, string) {
		pa, why := pathOf(t, c, a, b)
		pb, whyB := pathOf(t, c, b, a)
		return pa == path && pb == path, fmt.Sprintf("%s->%s %s (%s); %s->%s %s (%s)", a, b, pa, why, b, a, pb, whyB)
	})
}

// nft runs nft -f with rules inside node's namespace ("sw" is the switch).
func nft(t *testing.T, l *netlab.Lab, node, rules string) {
	t.Helper()
	var cmd *exec.Cmd
	if node == "sw" {
		cmd = exec.Command("ip", "netns", "exec", l.NSName("sw"), "nft", "-f", "-")
	} else {
		cmd = l.Command(context.Background(), node, "nft", "-f", "-")
	}
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v\n%s\n%s", node, err, out, rules)
	}
}

// tcpStream is a TCP stream from one workload to another that keeps
// writing until stopped.
type tcpStream struct {
	sent     atomic.Int64
	stop     chan struct{}
	wg       sync.WaitGroup
	received chan int64
	conn     net.Conn
}

func startStream(t *testing.T, l *netlab.Lab, from, to netlab.Workload, port uint16) *tcpStream {
	t.Helper()
	s := &tcpStream{stop: make(chan struct{}), received: make(chan int64, 1)}
	ln := listenIn(t, l, to.Name, netip.AddrPortFrom(to.Addr, port))
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			s.received <- -1
			return
		}
		n, _ := io.Copy(io.Discard, conn)
		s.received <- n
	}()
	err := l.Do(from.Name, func() error {
		var err error
		s.conn, err = net.DialTimeout("tcp", netip.AddrPortFrom(to.Addr, port).String(), 5*time.Second)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		buf := make([]byte, 16<<10)
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			// Long enough to ride out a fallback: TCP retransmits meanwhile.
			s.conn.SetWriteDeadline(time.Now().Add(60 * time.Second))
			n, err := s.conn.Write(buf)
			s.sent.Add(int64(n))
			if err != nil {
				t.Errorf("stream broke after %d bytes: %v", s.sent.Load(), err)
				return
			}
			time.Sleep(time.Millisecond) // a steady stream, not a flood
		}
	}()
	poll(t, 10*time.Second, "stream flowing", func() (bool, string) { return s.sent.Load() > 1<<20, fmt.Sprint(s.sent.Load()) })
	return s
}

// flowing waits until the stream has sent more bytes after now.
func (s *tcpStream) flowing(t *testing.T, within time.Duration) {
	t.Helper()
	base := s.sent.Load()
	poll(t, within, "stream flowing again", func() (bool, string) {
		return s.sent.Load() > base+1<<20, fmt.Sprintf("%d bytes since", s.sent.Load()-base)
	})
}

// finish stops the stream and checks every byte arrived.
func (s *tcpStream) finish(t *testing.T) {
	t.Helper()
	close(s.stop)
	s.wg.Wait()
	s.conn.Close()
	select {
	case n := <-s.received:
		if n != s.sent.Load() {
			t.Errorf("sent %d bytes, received %d", s.sent.Load(), n)
		}
		t.Logf("stream: %d bytes sent and received", n)
	case <-time.After(30 * time.Second):
		t.Errorf("receiver did not finish; sent %d bytes", s.sent.Load())
	}
}

// TestHealthDirectToOverlay: two hosts on one segment talk directly; the
// switch starts dropping their plain (non-encapsulated) workload packets,
// silently. Both move to the VXLAN overlay, a TCP stream between their
// workloads keeps going, and once the drop goes they return to the direct
// path after the hold-down.
func TestHealthDirectToOverlay(t *testing.T) {
	// Two hosts on segment sa; the router gives them their default route.
	c, ws := newHealthLab(t, twoSegments(2, 0))
	l := c.Lab()
	waitPaths(t, c, "a1", "a2", "direct", 30*time.Second)
	s := startStream(t, l, ws["a1"], ws["a2"], 5010)

	// Plain workload packets have workload addresses on the wire; VXLAN
	// carries them inside UDP between underlay addresses.
	nft(t, l, "sw", "table bridge weftdrop {\n chain dropplain {\n  type filter hook forward priority 0;\n  ip saddr 10.244.0.0/16 drop\n }\n}\n")
	took := waitPaths(t, c, "a1", "a2", "vxlan", 30*time.Second)
	t.Logf("both moved to vxlan %s after plain packets were dropped", took.Round(10*time.Millisecond))
	s.flowing(t, 30*time.Second)
	if !lab.Ping(context.Background(), l, ws["a2"].Name, ws["a1"].Addr, 3) {
		t.Errorf("w2 cannot ping w1 over the overlay")
	}

	nft(t, l, "sw", "delete table bridge weftdrop\n")
	back := waitPaths(t, c, "a1", "a2", "direct", 30*time.Second+healthHoldDown)
	t.Logf("both back on direct %s after the drop was removed (hold-down %s)", back.Round(10*time.Millisecond), healthHoldDown)
	s.flowing(t, 30*time.Second)
	s.finish(t)
}

// TestHealthOverlayToWireGuard: hosts on two segments use VXLAN; the
// router starts dropping the VXLAN port. The pair may encrypt (encryption
// cross-region, so both have WireGuard), so it falls back to WireGuard;
// while the port stays blocked it stays there; once unblocked, it returns to
// VXLAN after the hold-down.
func TestHealthOverlayToWireGuard(t *testing.T) {
	c, ws := newHealthLab(t, twoSegments(1, 1))
	l := c.Lab()
	waitPaths(t, c, "a1", "b1", "vxlan", 30*time.Second)
	s := startStream(t, l, ws["a1"], ws["b1"], 5011)

	nft(t, l, "rt", "table inet weftblock {\n chain forward {\n  type filter hook forward priority 0;\n  udp dport 4789 drop\n }\n}\n")
	took := waitPaths(t, c, "a1", "b1", "wireguard", 30*time.Second)
	t.Logf("both moved to wireguard %s after the VXLAN port was blocked", took.Round(10*time.Millisecond))
	s.flowing(t, 30*time.Second)
	if !lab.Ping(context.Background(), l, ws["b1"].Name, ws["a1"].Addr, 3) {
		t.Errorf("w2 cannot ping w1 over WireGuard")
	}
	// No return while blocked: the overlay keeps failing its probes.
	deadline := time.Now().Add(2 * healthHoldDown)
	for time.Now().Before(deadline) {
		if p, why := pathOf(t, c, "a1", "b1"); p != "wireguard" {
			t.Fatalf("a1 -> b1 left wireguard while VXLAN is blocked: %s (%s)", p, why)
		}
		time.Sleep(200 * time.Millisecond)
	}

	nft(t, l, "rt", "delete table inet weftblock\n")
	back := waitPaths(t, c, "a1", "b1", "vxlan", 30*time.Second+healthHoldDown)
	t.Logf("both back on vxlan %s after the port was unblocked (hold-down %s)", back.Round(10*time.Millisecond), healthHoldDown)
	s.flowing(t, 30*time.Second)
	s.finish(t)
}
