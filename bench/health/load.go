package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/weft-net/weft/bench/internal/cpuload"
	"github.com/weft-net/weft/fabric"
	"github.com/weft-net/weft/fabric/health"
)

// errTimeout says a wait ran out of time.
var errTimeout = errors.New("timed out")

// wait waits for done, ctx or timeout; with done nil, timeout is no error.
func wait(ctx context.Context, done <-chan struct{}, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		if done == nil {
			return nil
		}
		return fmt.Errorf("%w after %s", errTimeout, timeout)
	}
}

// LoadResult is one load run: n simulated peers for a while.
type LoadResult struct {
	Peers      int     `json:"peers"`
	Targets    int     `json:"targets"`
	Interval   string  `json:"interval"`
	SentPerSec float64 `json:"sentPerSecond"`
	// Answered is the share of probes answered in time.
	Answered float64 `json:"answered"`
	Cores    float64 `json:"cores"`
	Foreign  float64 `json:"foreignCores"`
	Quiet    bool    `json:"quiet"`
}

// runLoad runs the agent's health loop (the same tracker, scheduler, probe
// codec and 50 ms tick as internal/agent) against n simulated peers for
// dur: every peer is on the direct path with the overlay as its fallback,
// so each has two targets (the worst case: a same-segment peer). Probes
// are real UDP datagrams over loopback, answered by a responder in the
// same process: since every host also answers as many probes as it sends,
// the process does one host's whole share of work.
func runLoad(ctx context.Context, n int, dur time.Duration) (LoadResult, error) {
	cfg := health.DefaultConfig()
	key := health.ProbeKey([]byte("bench key"), "bench")
	res := LoadResult{Peers: n}
	resp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return res, err
	}
	defer resp.Close()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return res, err
	}
	defer conn.Close()
	// The responder: decode, check, answer, as probe.Conn does; requests
	// carry the simulated peer's name, so the answer comes "from" it.
	go func() {
		buf := make([]byte, 2048)
		for {
			m, from, err := resp.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			p, err := health.DecodeProbe(buf[:m], key)
			if err != nil || p.Type != health.ProbeRequest {
				continue
			}
			out, _ := health.AppendProbe(nil, health.Probe{Type: health.ProbeReply, Path: p.Path, Node: p.Node, Seq: p.Seq, Sent: p.Sent}, key)
			resp.WriteToUDPAddrPort(out, from)
		}
	}()
	type reply struct {
		p  health.Probe
		at time.Time
	}
	replies := make(chan reply, 4096)
	go func() {
		buf := make([]byte, 2048)
		for {
			m, _, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				close(replies)
				return
			}
			if p, err := health.DecodeProbe(buf[:m], key); err == nil {
				replies <- reply{p, time.Now()}
			}
		}
	}()
	to := netip.MustParseAddrPort(resp.LocalAddr().String())

	tr := health.NewTracker(cfg, 0)
	sc := health.NewScheduler(cfg, rand.New(rand.NewPCG(1, 2)))
	plans := make([]fabric.PeerPlan, n)
	for i := range plans {
		plans[i] = fabric.PeerPlan{Name: fmt.Sprintf("p%04d", i), Path: fabric.PathDirect,
			Candidates: []fabric.PathKind{fabric.PathDirect, fabric.PathVXLAN, fabric.PathWireGuard}}
	}
	tr.SetPlan(plans, time.Now())
	res.Targets = len(tr.Targets())
	res.Interval = sc.Interval(res.Targets).String()

	// Warm up one interval (first probes are spread over it), then measure.
	warm := sc.Interval(res.Targets)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var a cpuload.Mark
	measuring := false
	sent, answered := 0, 0
	for {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case r := <-replies:
			tr.Reply(r.p.Seq, r.p.Node, r.p.Path, r.at)
			if measuring {
				answered++
			}
		case now := <-tick.C:
			if !measuring && now.Sub(start) >= warm {
				measuring, start, a = true, now, cpuload.Now()
				sent, answered = 0, 0
			}
			if measuring && now.Sub(start) >= dur {
				b := cpuload.Now()
				el := b.Wall.Sub(a.Wall).Seconds()
				res.SentPerSec = float64(sent) / el
				if sent > 0 {
					res.Answered = float64(answered) / float64(sent)
				}
				res.Cores, res.Foreign = cpuload.Cores(a, b), cpuload.Foreign(a, b)
				return res, nil
			}
			tr.Expire(now)
			for _, tg := range sc.Due(now, tr.Targets()) {
				seq := tr.Sent(tg, now)
				out, err := health.AppendProbe(nil, health.Probe{Type: health.ProbeRequest, Path: tg.Path, Node: tg.Peer, Seq: seq, Sent: now}, key)
				if err != nil {
					return res, err
				}
				if _, err := conn.WriteToUDPAddrPort(out, to); err != nil {
					return res, err
				}
				sent++
			}
		}
	}
}
