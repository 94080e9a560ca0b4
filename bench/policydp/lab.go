package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/weft-net/weft/internal/netlab"
)

// lab is the measured host "r", a routing namespace, with two workloads on
// routed veths (netlab's, as weft attaches them): the client "cli" and the
// server "srv". A second host "x" on r's segment is r's default gateway,
// which proxy ARP needs to answer the workloads; no traffic goes there.
type lab struct {
	l       *netlab.Lab
	hostNS  netns.NsHandle
	ct      *netlink.Handle
	servers []net.Listener
	iperfd  *exec.Cmd
}

// newLab builds the lab; the caller must Close it, also after an error.
func newLab(ctx context.Context) (*lab, error) {
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return &lab{}, err
	}
	prefix := "pd" + hex.EncodeToString(b[:])
	topo := netlab.Topology{
		Segments: []netlab.Segment{{Name: "seg", Prefix: netip.MustParsePrefix("198.18.91.0/24")}},
		Hosts:    []netlab.Host{{Name: "r", Segment: "seg"}, {Name: "x", Segment: "seg"}},
	}
	l := &lab{}
	var err error
	if l.l, err = netlab.Build(ctx, topo, netlab.Options{Prefix: prefix}); err != nil {
		return l, err
	}
	for _, w := range []netlab.Workload{{Name: "cli", Host: "r", Addr: clientAddr}, {Name: "srv", Host: "r", Addr: serverAddr}} {
		if err := l.l.AddWorkload(ctx, w); err != nil {
			return l, err
		}
	}
	err = l.l.Do("r", func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644); err != nil {
			return err
		}
		for _, ifc := range []string{"wlcli", "wlsrv"} {
			if err := os.WriteFile("/proc/sys/net/ipv4/neigh/"+ifc+"/proxy_delay", []byte("0\n"), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return l, fmt.Errorf("configure r: %w", err)
	}
	// Many short connections from one address: all ephemeral ports.
	if err := l.l.Do("cli", func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte("1024 65535\n"), 0o644)
	}); err != nil {
		return l, fmt.Errorf("configure cli: %w", err)
	}
	if l.hostNS, err = netns.GetFromPath(l.l.NetNSPath("r")); err != nil {
		return l, err
	}
	if l.ct, err = netlink.NewHandleAt(l.hostNS); err != nil {
		return l, err
	}
	if err := l.ct.RouteAdd(&netlink.Route{Gw: l.l.HostAddr("x").AsSlice()}); err != nil {
		return l, fmt.Errorf("default route on r: %w", err)
	}
	// Servers: accept and close at once.
	for _, port := range []int{connPort} {
		var ln net.Listener
		err := l.l.Do("srv", func() error {
			var err error
			ln, err = net.Listen("tcp4", netip.AddrPortFrom(serverAddr, uint16(port)).String())
			return err
		})
		if err != nil {
			return l, fmt.Errorf("listen on srv: %w", err)
		}
		l.servers = append(l.servers, ln)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	return l, nil
}

// Close stops the servers and removes the namespaces.
func (l *lab) Close() error {
	var errs []error
	for _, s := range l.servers {
		s.Close()
	}
	if l.iperfd != nil && l.iperfd.Process != nil {
		_ = l.iperfd.Process.Kill()
		_ = l.iperfd.Wait()
	}
	if l.ct != nil {
		l.ct.Close()
	}
	if l.hostNS.IsOpen() {
		l.hostNS.Close()
	}
	if l.l != nil {
		errs = append(errs, l.l.Close())
	}
	return errors.Join(errs...)
}

// flushConntrack empties r's conntrack table between measurements.
func (l *lab) flushConntrack() error {
	if err := l.ct.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
		return fmt.Errorf("flush conntrack on r: %w", err)
	}
	return nil
}

// nft runs nft with stdin in r.
func (l *lab) nft(ctx context.Context, stdin string, args ...string) error {
	cmd := l.l.Command(ctx, "r", "nft", args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft %s in r: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// connRate opens as many TCP connections from the client to the server's
// connPort as it can for d, from par dialers at once, each connection
// opened (three-way handshake through r), then closed with a reset (no
// TIME_WAIT, so the ports last). It returns connections per second, and
// the number of dials that failed.
func (l *lab) connRate(ctx context.Context, d time.Duration, par int) (float64, int64, error) {
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, par)
	start := time.Now()
	deadline := start.Add(d)
	for range par {
		wg.Go(func() {
			err := l.l.Do("cli", func() error {
				dialer := net.Dialer{Timeout: time.Second}
				addr := netip.AddrPortFrom(serverAddr, connPort).String()
				for time.Now().Before(deadline) && ctx.Err() == nil {
					c, err := dialer.Dial("tcp4", addr)
					if err != nil {
						failed.Add(1)
						continue
					}
					_ = c.(*net.TCPConn).SetLinger(0)
					c.Close()
					ok.Add(1)
				}
				return nil
			})
			if err != nil {
				errc <- err
			}
		})
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return 0, 0, err
	}
	return float64(ok.Load()) / time.Since(start).Seconds(), failed.Load(), ctx.Err()
}

// reaches reports whether the client connects to the server's port within
// timeout (a refused connection counts as reached: the packets passed).
func (l *lab) reaches(port int, timeout time.Duration) (bool, error) {
	var reached bool
	err := l.l.Do("cli", func() error {
		c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(serverAddr, uint16(port)).String(), timeout)
		switch {
		case err == nil:
			c.Close()
			reached = true
		case errors.Is(err, syscall.ECONNREFUSED):
			reached = true
		}
		return nil
	})
	return reached, err
}

// startIperf starts an iperf3 server in srv.
func (l *lab) startIperf(ctx context.Context) error {
	l.iperfd = l.l.Command(ctx, "srv", "iperf3", "-s", "-B", serverAddr.String(), "-p", strconv.Itoa(iperfPort))
	if err := l.iperfd.Start(); err != nil {
		return fmt.Errorf("start iperf3 server: %w", err)
	}
	// Wait until it listens (the policy allows the port).
	for range 50 {
		if ok, _ := l.reaches(iperfPort, 200*time.Millisecond); ok {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("iperf3 server does not answer")
}

// iperf runs one iperf3 TCP test of d with one stream from the client and
// returns the receiver's Gbit/s.
func (l *lab) iperf(ctx context.Context, d time.Duration) (float64, error) {
	out, err := l.l.Command(ctx, "cli", "iperf3", "-c", serverAddr.String(), "-p", strconv.Itoa(iperfPort),
		"-t", strconv.Itoa(int(d.Seconds())), "-J").Output()
	if err != nil {
		return 0, fmt.Errorf("iperf3 client: %w: %s", err, out)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, fmt.Errorf("iperf3 output: %w", err)
	}
	return r.End.SumReceived.BitsPerSecond / 1e9, nil
}
