package ipip_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/weft-net/weft/encap/ipip"
)

// TestThroughput measures, with iperf3 between the two workloads, the
// user-space IP-in-IP path and, in the same run, the ceiling of a
// user-space data plane on this machine: a plain TUN<->UDP forwarder with
// batching and TUN/UDP offloads (wireguard-go's tun and conn packages, no
// crypto). It asserts nothing; it logs Gbit/s, the ratio, and the CPU the
// forwarders (this process) used per GB moved.
func TestThroughput(t *testing.T) {
	requireRoot(t)
	if os.Getenv("WEFT_IPIP_BENCH") == "" {
		t.Skip("set WEFT_IPIP_BENCH=1 to measure with iperf3 (about a minute; WEFT_IPIP_BENCH_SECONDS per run, default 5)")
	}
	secs := 5
	fmt.Sscan(os.Getenv("WEFT_IPIP_BENCH_SECONDS"), &secs)
	a, b := newLab(t)
	if os.Getenv("WEFT_IPIP_BENCH_GRO") != "" {
		// As a NIC would: GRO on the underlay, polled by a kernel thread
		// of its own, so that bursts from the peer merge.
		for _, x := range []*host{a, b} {
			run(t, "ip", "netns", "exec", x.ns, "ethtool", "-K", "ul", "gro", "on")
			run(t, "ip", "netns", "exec", x.ns, "sh", "-c", "echo 1 > /sys/class/net/ul/threaded")
		}
	}
	stop := iperfServer(t, b.wl)
	defer stop()

	type result struct{ gbps, cpuPerGB float64 }
	results := map[string]map[int][]result{}
	const ipipPath, ceilingPath = "user-space ipip", "user-space TUN<->UDP ceiling"
	measure := func(path string) {
		for _, streams := range []int{1, 4} {
			gbps, cpuPerGB := iperf(t, a.wl, b.workload().String(), streams, secs)
			if results[path] == nil {
				results[path] = map[int][]result{}
			}
			results[path][streams] = append(results[path][streams], result{gbps, cpuPerGB})
			t.Logf("%-28s %d stream(s): %5.2f Gbit/s, forwarders %.2f CPU-s/GB", path, streams, gbps, cpuPerGB)
			if path == ipipPath {
				for _, x := range []*host{a, b} {
					s := x.d.Stats()
					t.Logf("host %d: %.1f packets per TUN read, %.1f per recvmmsg; %+v", x.n,
						float64(s.TxPackets)/float64(max(s.TxReads, 1)), float64(s.RxPackets)/float64(max(s.RxReads, 1)), s)
				}
			}
		}
	}
	for range 2 {
		measure(ipipPath)
		// Swap the lab over to the ceiling forwarder, and back.
		for _, x := range []*host{a, b} {
			x.apply(ipip.Want{})
		}
		closeCeiling := startCeiling(t, a, b)
		measure(ceilingPath)
		closeCeiling()
		for _, x := range []*host{a, b} {
			peer := map[*host]*host{a: b, b: a}[x]
			x.apply(x.want(peer))
			run(t, "ip", "-n", x.ns, "route", "replace", peer.subnet().String(),
				"via", peer.underlay().String(), "dev", ipip.DefaultDevice, "onlink")
		}
	}
	for _, streams := range []int{1, 4} {
		best := func(path string) result {
			var r result
			for _, s := range results[path][streams] {
				if s.gbps > r.gbps {
					r = s
				}
			}
			return r
		}
		ip, ce := best(ipipPath), best(ceilingPath)
		t.Logf("%d stream(s), best of runs: ipip %.2f Gbit/s (%.2f CPU-s/GB), ceiling %.2f Gbit/s (%.2f CPU-s/GB): ratio %.2f",
			streams, ip.gbps, ip.cpuPerGB, ce.gbps, ce.cpuPerGB, ip.gbps/ce.gbps)
	}
}

// iperfServer runs iperf3 -s in ns until the returned function is called.
func iperfServer(t *testing.T, ns string) func() {
	t.Helper()
	var out lockedBuffer
	cmd := exec.Command("ip", "netns", "exec", ns, "iperf3", "-s", "--forceflush")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start iperf3 -s: %v", err)
	}
	eventually(t, 10*time.Second, func() error {
		if !strings.Contains(out.String(), "listening") {
			return fmt.Errorf("iperf3 -s not listening: %q", out.String())
		}
		return nil
	})
	return func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
}

// iperf runs one iperf3 client in ns and returns what the receiver got in
// Gbit/s and the CPU seconds this process used per GB.
func iperf(t *testing.T, ns, to string, streams, secs int) (gbps, cpuPerGB float64) {
	t.Helper()
	before := cpuSeconds()
	out, err := exec.Command("ip", "netns", "exec", ns, "iperf3", "-J", "-c", to,
		"-t", fmt.Sprint(secs), "-P", fmt.Sprint(streams)).Output()
	if err != nil {
		t.Fatalf("iperf3 -c %s -P %d: %v: %s", to, streams, err, out)
	}
	used := cpuSeconds() - before
	var r struct {
		End struct {
			SumReceived struct {
				Bytes         float64 `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("iperf3 output: %v", err)
	}
	return r.End.SumReceived.BitsPerSecond / 1e9, used / (r.End.SumReceived.Bytes / 1e9)
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// udpCeilingMTU is the ceiling's TUN MTU: 1500 less IPv4 and UDP headers.
const udpCeilingMTU = 1500 - 28

// startCeiling runs the ceiling forwarder on both hosts: a TUN "weft.udp"
// per host and a UDP socket on port 51820, every packet from the TUN sent
// to the peer, every datagram written to the TUN, both in batches with
// offloads. It returns the function that stops it.
func startCeiling(t *testing.T, a, b *host) func() {
	t.Helper()
	var closers []func()
	for _, x := range []*host{a, b} {
		peer := map[*host]*host{a: b, b: a}[x]
		var (
			dev  tun.Device
			bind conn.Bind
			recv []conn.ReceiveFunc
		)
		inNamespace(t, x.nsh, func() (err error) {
			if dev, err = tun.CreateTUN("weft.udp", udpCeilingMTU); err != nil {
				return err
			}
			bind = conn.NewStdNetBind()
			recv, _, err = bind.Open(51820)
			return err
		})
		ep, err := bind.ParseEndpoint(peer.underlay().String() + ":51820")
		if err != nil {
			t.Fatal(err)
		}
		run(t, "ip", "-n", x.ns, "addr", "add", x.subnet().Addr().String()+"/32", "dev", "weft.udp")
		run(t, "ip", "-n", x.ns, "link", "set", "weft.udp", "up")
		run(t, "ip", "-n", x.ns, "route", "replace", peer.subnet().String(), "dev", "weft.udp")
		go ceilingTUNToUDP(dev, bind, ep)
		for _, fn := range recv {
			go ceilingUDPToTUN(dev, fn)
		}
		closers = append(closers, func() { bind.Close(); dev.Close() })
	}
	return func() {
		for _, c := range closers {
			c()
		}
	}
}

func ceilingTUNToUDP(dev tun.Device, bind conn.Bind, ep conn.Endpoint) {
	const offset = 16
	n := dev.BatchSize()
	bufs, sizes, pkts := make([][]byte, n), make([]int, n), make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, offset+65535)
	}
	for {
		cnt, err := dev.Read(bufs, sizes, offset)
		if err != nil && !errors.Is(err, tun.ErrTooManySegments) {
			return
		}
		for i := range cnt {
			pkts[i] = bufs[i][offset : offset+sizes[i]]
		}
		if err := bind.Send(pkts[:cnt], ep); errors.Is(err, context.Canceled) {
			return
		}
	}
}

func ceilingUDPToTUN(dev tun.Device, recv conn.ReceiveFunc) {
	const offset = 16
	n := conn.IdealBatchSize
	bufs, in, sizes, eps := make([][]byte, n), make([][]byte, n), make([]int, n), make([]conn.Endpoint, n)
	for i := range bufs {
		bufs[i] = make([]byte, offset+65535)
		in[i] = bufs[i][offset:]
	}
	out := make([][]byte, n)
	for {
		cnt, err := recv(in, sizes, eps)
		if err != nil {
			if errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		for i := range cnt {
			out[i] = bufs[i][:offset+sizes[i]]
		}
		dev.Write(out[:cnt], offset)
	}
}
