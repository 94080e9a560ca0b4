package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/weft-net/weft/fabric"
	"github.com/weft-net/weft/internal/netlab"
)

// Kinds of latency trials.
const (
	kindWeft       = "weft: new host's agent"
	kindStandalone = "standalone wireguard-go: wg set peer"
)

// weftTrial measures newcomer i (host n<i+1>, from 0) joining the running
// lab: its workload is attached first (with the static subnet its agent is
// then given), w1 pings it every 10 ms, and the clock starts as its agent
// starts. Afterwards the newcomer's agent is stopped and the base hosts are
// left as before.
func weftTrial(ctx context.Context, o options, f *weftLab, i int) (tr Trial, err error) {
	host := fmt.Sprintf("n%d", i+1)
	subnet := newcomerSubnet(i)
	w := netlab.Workload{Name: fmt.Sprintf("x%d", i+1), Host: host, Addr: subnet.Addr().Next().Next()}
	tr = Trial{Kind: kindWeft, Run: i + 1}
	if err := f.l.AddWorkload(ctx, w); err != nil {
		return tr, err
	}
	waitQuiet(ctx, o.quiet, o.quietWait, o.log)
	p, err := startPinger(ctx, f.l.NSName(f.w1.Name), w.Addr)
	if err != nil {
		return tr, err
	}
	defer p.Close()
	m0 := markCPU()
	tr.Start = time.Now()
	if err := f.c.Start(host, f.seeds, map[string]any{"subnet": subnet.String()}); err != nil {
		return tr, err
	}
	defer func() {
		// Stop the newcomer, then wait until the base hosts have dropped it.
		err = errors.Join(err, f.c.Stop(host))
		wctx, cancel := context.WithTimeout(ctx, o.waitTimeout)
		defer cancel()
		err = errors.Join(err, f.waitReady(wctx))
	}()
	routed, closeRouted, err := routedProbe(f, [2]string{"h1", host}, [2]netip.Addr{w.Addr, f.w1.Addr})
	if err != nil {
		return tr, err
	}
	defer closeRouted()
	err = watch(ctx, &tr, p, watchSpec{sock: f.sock("h1"), peer: w.Addr, otherSock: f.sock(host), otherPeer: f.w1.Addr, routed: routed})
	m1 := markCPU()
	tr.Foreign, tr.ARPFull = foreign(m0, m1), arpFull(m0, m1)
	tr.Noisy = tr.Foreign > o.quiet || tr.ARPFull
	if err != nil {
		return tr, fmt.Errorf("newcomer %s: %w\n%s", host, err, f.logTails([]string{"h1", host}))
	}
	return tr, nil
}

// routedProbe returns a func that reports whether hosts[i]'s kernel routes
// to[i] through weft's WireGuard device, for both i, through netlink handles
// bound to the two hosts' namespaces; release closes them.
func routedProbe(f *weftLab, hosts [2]string, to [2]netip.Addr) (routed func() bool, release func(), err error) {
	var hs []*netlink.Handle
	release = func() {
		for _, h := range hs {
			h.Close()
		}
	}
	for _, host := range hosts {
		ns, err := netns.GetFromPath(f.l.NetNSPath(host))
		if err != nil {
			release()
			return nil, nil, fmt.Errorf("open namespace of %s: %w", host, err)
		}
		h, err := netlink.NewHandleAt(ns)
		ns.Close()
		if err != nil {
			release()
			return nil, nil, fmt.Errorf("open netlink in %s: %w", host, err)
		}
		hs = append(hs, h)
	}
	routed = func() bool {
		for i, h := range hs {
			rs, err := h.RouteGet(net.IP(to[i].AsSlice()))
			if err != nil || len(rs) == 0 {
				return false
			}
			l, err := h.LinkByIndex(rs[0].LinkIndex)
			if err != nil || l.Attrs().Name != fabric.DefaultWireGuardDevice {
				return false
			}
		}
		return true
	}
	return routed, release, nil
}

// standaloneTrial measures a new peer on the standalone tunnel: both ends
// get fresh keys and lose their peers, end 1 is given end 0 as its peer,
// end 0 pings end 1 every 10 ms, and the clock starts as `wg set ... peer`
// starts on end 0.
func standaloneTrial(ctx context.Context, o options, t *wgTunnel, run int) (Trial, error) {
	tr := Trial{Kind: kindStandalone, Run: run}
	if err := t.rekey(ctx); err != nil {
		return tr, err
	}
	if err := t.addPeer(ctx, 1); err != nil {
		return tr, err
	}
	waitQuiet(ctx, o.quiet, o.quietWait, o.log)
	p, err := startPinger(ctx, t.ends[0].ns, t.ends[1].tunnel.Addr())
	if err != nil {
		return tr, err
	}
	defer p.Close()
	m0 := markCPU()
	tr.Start = time.Now()
	if err := t.addPeer(ctx, 0); err != nil {
		return tr, err
	}
	err = watch(ctx, &tr, p, watchSpec{sock: t.sock(0), peer: t.ends[1].tunnel.Addr(), configured: time.Now()})
	m1 := markCPU()
	tr.Foreign, tr.ARPFull = foreign(m0, m1), arpFull(m0, m1)
	tr.Noisy = tr.Foreign > o.quiet || tr.ARPFull
	return tr, err
}

// measureLatency runs o.trials trials of each kind, alternating them.
func measureLatency(ctx context.Context, o options, f *weftLab, t *wgTunnel) []Trial {
	var out []Trial
	for i := range o.trials {
		for _, kind := range []string{kindWeft, kindStandalone} {
			if ctx.Err() != nil {
				return out
			}
			var tr Trial
			var err error
			if kind == kindWeft {
				tr, err = weftTrial(ctx, o, f, i)
			} else {
				tr, err = standaloneTrial(ctx, o, t, i+1)
			}
			if err != nil {
				tr.Err = err.Error()
			}
			out = append(out, tr)
			o.log.Info("new peer", "kind", kind, "run", tr.Run, "configured_ms", fmt.Sprintf("%.1f", tr.Configured), "routed_ms", fmt.Sprintf("%.1f", tr.Routed),
				"handshake_ms", fmt.Sprintf("%.1f", tr.Handshake), "first_reply_ms", fmt.Sprintf("%.1f", tr.FirstReply),
				"foreign_cores", fmt.Sprintf("%.2f", tr.Foreign), "arp_table_full", tr.ARPFull, "err", tr.Err)
		}
	}
	return out
}
