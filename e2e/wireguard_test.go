package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-net/weft/internal/lab"
	"github.com/weft-net/weft/internal/netlab"
)

// TestWireGuardWAN: traffic between the regions crosses the WAN router only
// as UDP to the WireGuard port; no workload address is ever seen there.
func TestWireGuardWAN(t *testing.T) {
	f := newFabric(t)
	w1, w4, w5 := f.workloads["h1"], f.workloads["h4"], f.workloads["h5"]
	ln := listenIn(t, f.l, w4.Name, netip.AddrPortFrom(w4.Addr, 5003))
	go serveEcho(ln)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Everything on rt1's WAN side but gossip (control plane, encrypted by
	// memberlist with the cluster key).
	capture := f.l.Command(ctx, "rt1", "tcpdump", "-n", "-l", "-i", f.l.Interface("rt1", "wan"), "not port 7946")
	out := &syncBuffer{}
	capture.Stdout, capture.Stderr = out, out
	if err := capture.Start(); err != nil {
		t.Fatal(err)
	}
	poll(t, 10*time.Second, "tcpdump listening", func() (bool, string) { return strings.Contains(out.String(), "listening on"), out.String() })
	for _, dst := range []netlab.Workload{w4, w5} {
		if !lab.Ping(ctx, f.l, w1.Name, dst.Addr, 3) {
			t.Errorf("w1 cannot ping %s", dst.Name)
		}
	}
	if err := echoOnce(f.l, w1.Name, netip.AddrPortFrom(w4.Addr, 5003)); err != nil {
		t.Errorf("tcp w1 -> w4: %v", err)
	}
	// Stop the capture once it has seen the traffic.
	poll(t, 10*time.Second, "capture sees the tunnel", func() (bool, string) {
		return strings.Count(out.String(), ".51820") >= 6, out.String()
	})
	capture.Process.Kill()
	capture.Wait()
	lines := 0
	for _, line := range strings.Split(out.String(), "\n") {
		if !strings.Contains(line, " IP ") {
			continue
		}
		lines++
		if !strings.Contains(line, "UDP") || !strings.Contains(line, ".51820") {
			t.Errorf("WAN carries something other than WireGuard: %s", line)
		}
		if strings.Contains(line, "10.244.") {
			t.Errorf("WAN shows a workload address: %s", line)
		}
	}
	t.Logf("%d packets on the WAN during the test, all UDP to or from port 51820", lines)
}

// TestWireGuardKeyRotation: rotating a host's key during a TCP stream keeps
// the stream alive and every byte arrives.
func TestWireGuardKeyRotation(t *testing.T) {
	f := newFabric(t)
	w1, w4 := f.workloads["h1"], f.workloads["h4"]
	before := status(t, f.c, "h4").WireGuard
	ln := listenIn(t, f.l, w4.Name, netip.AddrPortFrom(w4.Addr, 5004))
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
	if err := f.l.Do(w1.Name, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", netip.AddrPortFrom(w4.Addr, 5004).String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 16<<10)
		for {
			select {
			case <-stop:
				return
			default:
			}
			conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
			n, err := conn.Write(buf)
			sent.Add(int64(n))
			if err != nil {
				t.Errorf("stream broke after %d bytes: %v", sent.Load(), err)
				return
			}
		}
	}()
	poll(t, 10*time.Second, "stream flowing", func() (bool, string) { return sent.Load() > 1<<20, fmt.Sprint(sent.Load()) })
	if out, code := weft(t, "keys", "rotate", "--run-dir", f.c.RunDir("h4")); code != 0 {
		t.Fatalf("weft keys rotate: exit %d: %s", code, out)
	}
	after := status(t, f.c, "h4").WireGuard
	if after == before {
		t.Fatalf("public key unchanged: %s", after)
	}
	// The stream keeps moving after the rotation.
	mark := sent.Load()
	poll(t, 20*time.Second, "stream flowing after the rotation", func() (bool, string) {
		return sent.Load() > mark+4<<20, fmt.Sprint(sent.Load() - mark)
	})
	close(stop)
	wg.Wait()
	conn.Close()
	if n := <-received; n != sent.Load() {
		t.Errorf("sent %d bytes, received %d", sent.Load(), n)
	}
	t.Logf("stream of %d bytes survived the key rotation (%d after it)", sent.Load(), sent.Load()-mark)
}

// TestWireGuardBehindNAT: the host behind the NAT gateway, to which nothing
// but the gossip port is forwarded, is reached from the other region over
// the tunnel it keeps open, by ICMP and TCP.
func TestWireGuardBehindNAT(t *testing.T) {
	f := newFabric(t)
	w3, w5 := f.workloads["h3"], f.workloads["h5"]
	if !lab.Ping(context.Background(), f.l, w3.Name, w5.Addr, 3) {
		t.Fatal("w3 (region 1) cannot reach w5 behind the NAT")
	}
	ln := listenIn(t, f.l, w5.Name, netip.AddrPortFrom(w5.Addr, 5005))
	go serveEcho(ln)
	if err := echoOnce(f.l, w3.Name, netip.AddrPortFrom(w5.Addr, 5005)); err != nil {
		t.Errorf("tcp w3 -> w5: %v", err)
	}
}

func workloadOf(name, host string, addr netip.Addr) netlab.Workload {
	return netlab.Workload{Name: name, Host: host, Addr: addr}
}

// TestWireGuardAlways: with encryption always, even the pair on one L2
// segment is encrypted: the segment carries WireGuard, not the workload packet.
func TestWireGuardAlways(t *testing.T) {
	c := newCluster(t, twoSegments(2, 0), map[string]any{"encryption": "always"})
	hosts := c.Lab().Hosts()
	startAll(t, c, hosts, []string{c.Lab().HostAddr("a1").String()})
	waitConverged(t, c, hosts, 60*time.Second)
	ctx := context.Background()
	var ws []string
	for i, h := range hosts {
		w := fmt.Sprintf("x%d", i+1)
		addr := status(t, c, h).Subnet.Addr().Next().Next()
		if err := c.Lab().AddWorkload(ctx, workloadOf(w, h, addr)); err != nil {
			t.Fatal(err)
		}
		ws = append(ws, addr.String())
	}
	poll(t, 60*time.Second, "data planes ready", func() (bool, string) { return c.DataPlaneReady(ctx, hosts) })
	paths, err := c.PathMatrix(ctx, hosts)
	if err != nil {
		t.Fatal(err)
	}
	if got := paths.Cells["a1"]["a2"]; got != "wireguard" {
		t.Errorf("a1 -> a2 path %q, want wireguard", got)
	}
	got := captureWhile(t, c.Lab(), "a2", "udp port 51820 or icmp", func() {
		lab.Ping(ctx, c.Lab(), "x1", netip.MustParseAddr(ws[1]), 3)
	})
	if !strings.Contains(got, ".51820") || strings.Contains(got, ws[0]+" > "+ws[1]) {
		t.Errorf("same-segment pair not encrypted; capture on a2:\n%s", got)
	}
}
