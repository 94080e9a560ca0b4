package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weft-net/weft/fabric"
	"github.com/weft-net/weft/fabric/health"
	"github.com/weft-net/weft/internal/netlab"
)

// probeHost is one end of the test: its lab host, subnet address and prober.
type probeHost struct {
	name     string
	underlay netip.Addr
	addr     netip.Addr
	mac      net.HardwareAddr
	conn     *Conn
}

// TestConnPaths builds two hosts on one segment, each with a VXLAN device
// holding its subnet address and a direct route to the other's subnet, and
// probes a -> b over the route, direct off-path and VXLAN off-path. Then
// the switch drops plain workload packets (nftables, bridge family): the
// route and direct probes must go unanswered, the VXLAN one answered.
func TestConnPaths(t *testing.T) {
	netlab.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topo := netlab.Topology{
		Segments: []netlab.Segment{{Name: "s", Prefix: netip.MustParsePrefix("198.18.40.0/24")}},
		Hosts:    []netlab.Host{{Name: "a", Segment: "s"}, {Name: "b", Segment: "s"}},
	}
	l, err := netlab.Build(ctx, topo, netlab.Options{})
	if err != nil {
		t.Fatalf("build lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})
	key := health.ProbeKey([]byte("k"), "test")
	hosts := map[string]*probeHost{
		"a": {name: "a", underlay: l.HostAddr("a"), addr: netip.MustParseAddr("10.244.1.0"), mac: fabric.VTEPMAC("a")},
		"b": {name: "b", underlay: l.HostAddr("b"), addr: netip.MustParseAddr("10.244.2.0"), mac: fabric.VTEPMAC("b")},
	}
	peerOf := func(name string) (Peer, bool) {
		h, ok := hosts[name]
		if !ok {
			return Peer{}, false
		}
		return Peer{Name: name, Addr: h.addr, Underlay: h.underlay, VTEPMAC: h.mac}, true
	}
	for _, h := range hosts {
		other := hosts["b"]
		if h.name == "b" {
			other = hosts["a"]
		}
		eth := l.Interface(h.name, "s")
		err := l.Do(h.name, func() error {
			under, err := netlink.LinkByName(eth)
			if err != nil {
				return err
			}
			vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "weft.vxlan", HardwareAddr: h.mac, MTU: 1450},
				VxlanId: 1, Port: 4789, Learning: false, SrcAddr: h.underlay.AsSlice(), VtepDevIndex: under.Attrs().Index}
			if err := netlink.LinkAdd(vx); err != nil {
				return fmt.Errorf("add vxlan: %w", err)
			}
			if err := netlink.AddrAdd(vx, &netlink.Addr{IPNet: &net.IPNet{IP: h.addr.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
				return fmt.Errorf("add address: %w", err)
			}
			if err := netlink.LinkSetUp(vx); err != nil {
				return err
			}
			_, dst, _ := net.ParseCIDR(netip.PrefixFrom(other.addr, 24).String())
			if err := netlink.RouteAdd(&netlink.Route{Dst: dst, Gw: other.underlay.AsSlice(), LinkIndex: under.Attrs().Index}); err != nil {
				return fmt.Errorf("add route: %w", err)
			}
			h.conn, err = Listen(Config{Port: health.DefaultPort, Key: key, Peer: peerOf,
				InNS: func(fn func() error) error { return l.Do(h.name, fn) }})
			return err
		})
		if err != nil {
			t.Fatalf("set up %s: %v", h.name, err)
		}
		h.conn.SetLocal(Local{Name: h.name, Addr: h.addr, UnderlayDev: eth, VTEPMAC: h.mac, VNI: 1, VXLANPort: 4789})
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- h.conn.Run(runCtx) }()
		t.Cleanup(func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("run %s: %v", h.name, err)
			}
		})
	}
	a := hosts["a"]
	// Fill the neighbour tables the direct path needs, as gossip does.
	if out, err := l.Command(ctx, "a", "ping", "-c", "1", "-W", "2", hosts["b"].underlay.String()).CombinedOutput(); err != nil {
		t.Fatalf("ping b: %v\n%s", err, out)
	}
	seq := uint64(0)
	// probe sends one probe and reports whether its answer came within 2 s
	// (retrying while the prober is not ready, which is no answer).
	probe := func(tg health.Target) bool {
		t.Helper()
		seq++
		deadline := time.Now().Add(2 * time.Second)
		for {
			err := a.conn.Send(tg, seq, time.Now(), 0)
			if err == nil {
				break
			}
			if !errors.Is(err, ErrNotReady) || time.Now().After(deadline) {
				t.Fatalf("send %s: %v", tg, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		timeout := time.After(2 * time.Second)
		for {
			select {
			case r := <-a.conn.Replies():
				if r.Probe.Seq == seq && r.Probe.Node == "b" && r.Probe.Path == tg.Path {
					return true
				}
			case <-timeout:
				return false
			}
		}
	}
	targets := []health.Target{
		{Peer: "b", Path: fabric.PathDirect, Route: true},
		{Peer: "b", Path: fabric.PathDirect},
		{Peer: "b", Path: fabric.PathVXLAN},
	}
	for _, tg := range targets {
		if !probe(tg) {
			t.Errorf("%s: no answer on a working network", tg)
		}
	}
	// A self-test packet, off-route over VXLAN and direct: the peer echoes
	// its pattern byte for byte.
	for _, tg := range []health.Target{{Peer: "b", Path: fabric.PathVXLAN}, {Peer: "b", Path: fabric.PathDirect, Route: true}} {
		seq++
		payload := []byte{0xff, 0xff, 0, 0, 0xff, 0x01, 0x80}
		if err := a.conn.SendTest(tg, seq, time.Now(), payload); err != nil {
			t.Fatalf("self-test %s: %v", tg, err)
		}
		timeout := time.After(2 * time.Second)
	wait:
		for {
			select {
			case r := <-a.conn.Replies():
				if r.Probe.Seq != seq {
					continue
				}
				if r.Probe.Type != health.ProbeEcho || string(r.Probe.Payload) != string(payload) {
					t.Errorf("self-test %s: answer %+v, want an echo of %x", tg, r.Probe, payload)
				}
				break wait
			case <-timeout:
				t.Errorf("self-test %s: no echo on a working network", tg)
				break wait
			}
		}
	}
	// The switch drops plain workload packets; VXLAN still crosses.
	sw := l.NSName("sw")
	rules := "table bridge weftprobetest {\n chain dropplain {\n  type filter hook forward priority 0;\n  ip daddr 10.244.0.0/16 drop\n }\n}\n"
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", sw, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in the switch: %v\n%s", err, out)
	}
	want := map[string]bool{"b/direct/route": false, "b/direct/off-path": false, "b/vxlan/off-path": true}
	for _, tg := range targets {
		if got := probe(tg); got != want[tg.String()] {
			t.Errorf("%s with plain packets dropped: answered %v, want %v", tg, got, want[tg.String()])
		}
	}
}
