package ipip_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	"github.com/weft-net/weft/encap/ipip"
)

// lockedBuffer is a bytes.Buffer safe for one writer and one reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestDetectReal(t *testing.T) {
	requireRoot(t)
	nsh := newNamespace(t, fmt.Sprintf("wipip-detect-%d", time.Now().UnixNano()%1e6))
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	defer h.Close()
	mode, err := ipip.Detect(ipip.NewNetlinkKernel(h))
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	t.Logf("this kernel: %s", mode)
	if _, err := h.LinkByName(ipip.ProbeDevice); err == nil {
		t.Errorf("probe device %s left behind", ipip.ProbeDevice)
	}
}

// TestUserspace runs the user-space path between two namespaces: each
// driver opens its TUN and raw socket inside its namespace, and workloads
// behind each host reach each other through it.
func TestUserspace(t *testing.T) {
	requireRoot(t)
	a, b := newLab(t)

	t.Run("converged", func(t *testing.T) {
		for _, x := range []*host{a, b} {
			peer := map[*host]*host{a: b, b: a}[x]
			lines, err := x.d.Check(context.Background(), x.want(peer))
			if err != nil {
				t.Fatalf("Check on host %d: %v", x.n, err)
			}
			if diff := cmp.Diff([]string(nil), lines); diff != "" {
				t.Errorf("Check on host %d after Apply (-want +got):\n%s", x.n, diff)
			}
			if got := x.d.Mode(); got != ipip.ModeUserspace {
				t.Errorf("Mode() = %s, want %s", got, ipip.ModeUserspace)
			}
		}
	})

	t.Run("ping", func(t *testing.T) {
		for _, c := range []struct{ ns, to string }{
			{a.wl, b.workload().String()}, // workload to workload, forwarded by both hosts
			{b.wl, a.workload().String()},
			{a.ns, b.workload().String()}, // host to workload, from the TUN's address
		} {
			eventually(t, 10*time.Second, func() error {
				out, err := ping(c.ns, "-c", "1", "-W", "1", c.to)
				if err != nil {
					return fmt.Errorf("ping %s from %s: %v: %s", c.to, c.ns, err, out)
				}
				return nil
			})
		}
		if s := a.d.Stats(); s.TxPackets == 0 || s.RxPackets == 0 {
			t.Errorf("host 1 stats %+v: want packets both ways", s)
		}
	})

	t.Run("tcp", func(t *testing.T) {
		// 8 MB, workload to workload, with the MSS the tunnel MTU gives.
		var ln net.Listener
		inNamespace(t, b.wlh, func() (err error) {
			ln, err = net.Listen("tcp4", b.workload().String()+":5001")
			return err
		})
		defer ln.Close()
		got := make(chan [32]byte, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				got <- [32]byte{}
				return
			}
			defer c.Close()
			h := sha256.New()
			io.Copy(h, c)
			got <- [32]byte(h.Sum(nil))
		}()
		var conn net.Conn
		inNamespace(t, a.wlh, func() (err error) {
			conn, err = net.DialTimeout("tcp4", b.workload().String()+":5001", 10*time.Second)
			return err
		})
		data := bytes.Repeat([]byte("weft ipip tcp "), 8<<20/14)
		if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(data); err != nil {
			t.Fatalf("write: %v", err)
		}
		conn.Close()
		select {
		case sum := <-got:
			if sum != sha256.Sum256(data) {
				t.Errorf("received data differs from sent (sha256)")
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no end of transfer within 30s")
		}
	})

	t.Run("too big: kernel answers from the TUN MTU", func(t *testing.T) {
		// 1480 bytes of payload: 1508 in all, over the tunnel MTU 1480.
		out, err := ping(a.wl, "-c", "1", "-W", "2", "-M", "do", "-s", "1480", b.workload().String())
		if err == nil || !strings.Contains(out, "mtu = 1480") && !strings.Contains(out, "message too long") {
			t.Errorf("ping -M do -s 1480: err %v, output %q: want frag needed (mtu = 1480) or message too long", err, out)
		}
		out, err = ping(a.wl, "-c", "1", "-W", "2", "-M", "do", "-s", fmt.Sprint(tunnelMTU-28), b.workload().String())
		if err != nil {
			t.Errorf("ping -M do at the tunnel MTU: %v: %s", err, out)
		}
	})

	t.Run("too big: driver answers when the TUN MTU drifted", func(t *testing.T) {
		// Someone raised the TUN's MTU: the kernel now hands the driver
		// packets the tunnel cannot carry, and the driver itself must
		// answer frag-needed, through strict rp_filter.
		run(t, "ip", "-n", a.ns, "link", "set", ipip.DefaultDevice, "mtu", "1500")
		before := a.d.Stats().FragNeeded
		// To B's gateway address, which the workload has no path MTU
		// cached for (it has for B's workload, from the test before).
		out, err := ping(a.wl, "-c", "1", "-W", "2", "-M", "do", "-s", "1472", "10.244.2.1")
		if err == nil || !strings.Contains(out, "mtu = 1480") {
			t.Errorf("ping -M do -s 1472 with the TUN at 1500: err %v, output %q: want frag needed (mtu = 1480)", err, out)
		}
		if got := a.d.Stats().FragNeeded; got <= before {
			t.Errorf("Stats().FragNeeded = %d, want more than %d", got, before)
		}
		lines, err := a.d.Check(context.Background(), a.want(b))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"device weft.ipip mtu 1500, want 1480"}, lines); diff != "" {
			t.Errorf("Check after drift (-want +got):\n%s", diff)
		}
		a.apply(a.want(b))
		if lines, _ := a.d.Check(context.Background(), a.want(b)); len(lines) != 0 {
			t.Errorf("Check after repair: %q", lines)
		}
	})

	t.Run("restart keeps the device and its routes", func(t *testing.T) {
		if err := a.d.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		// Persistent TUN: the route through it is still there.
		if out := run(t, "ip", "-n", a.ns, "route", "show", b.subnet().String()); !strings.Contains(out, ipip.DefaultDevice) {
			t.Fatalf("route to %s after Close: %q", b.subnet(), out)
		}
		a.d = a.newDriver()
		a.apply(a.want(b))
		eventually(t, 10*time.Second, func() error {
			out, err := ping(a.wl, "-c", "1", "-W", "1", b.workload().String())
			if err != nil {
				return fmt.Errorf("ping after restart: %v: %s", err, out)
			}
			return nil
		})
	})

	t.Run("no device removes it", func(t *testing.T) {
		a.apply(ipip.Want{})
		if out := run(t, "ip", "-n", a.ns, "-o", "link", "show"); strings.Contains(out, ipip.DefaultDevice) {
			t.Errorf("links after Apply(no device):\n%s", out)
		}
		if lines, err := a.d.Check(context.Background(), ipip.Want{}); err != nil || len(lines) != 0 {
			t.Errorf("Check(no device) = %q, %v; want nothing", lines, err)
		}
	})
}
