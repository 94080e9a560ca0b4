package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weft-net/weft/fabric"
	"github.com/weft-net/weft/fabric/health"
)

// maxPeerSeries bounds the per-peer series: the first this many peers by
// name get them; every peer counts in the aggregates. It keeps a scrape of
// a large cluster small (each peer adds 4 series).
const maxPeerSeries = 100

// healthCounters count what the health loop does.
type healthCounters struct {
	sent, failed, answered  atomic.Uint64
	stateChanges, pathMoves atomic.Uint64
}

// healthCollector exposes path health to Prometheus, read at scrape time.
// Labels are bounded: path (5 kinds), state (3), and peer for at most
// maxPeerSeries peers.
type healthCollector struct {
	a *Agent

	paths, peers, peerUp, peerRTT, peerLoss, peerCands, dropped *prometheus.Desc
	sent, failed, answered, stateChanges, pathMoves             *prometheus.Desc
}

func newHealthCollector(a *Agent) *healthCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("weft_health_"+name, help, labels, nil)
	}
	return &healthCollector{
		a:            a,
		paths:        d("paths", "Paths to peers by kind and state (every allowed path of every peer).", "path", "state"),
		peers:        d("peers", "Peers by the path in use.", "path"),
		peerUp:       d("peer_up", "1 when the path in use to the peer answers its probes, 0 when down, -1 unknown.", "peer", "path"),
		peerRTT:      d("peer_rtt_seconds", "Round-trip time of the last answered probe over the path in use.", "peer"),
		peerLoss:     d("peer_loss_ratio", "Share of the last (up to 32) probes over the path in use left unanswered.", "peer"),
		peerCands:    d("peer_paths_down", "Allowed paths to the peer that are down.", "peer"),
		dropped:      d("peer_series_dropped", "Peers left out of the per-peer series (more than the limit)."),
		sent:         d("probes_sent_total", "Probes sent."),
		failed:       d("probes_failed_total", "Probes that could not be sent (counted as missed)."),
		answered:     d("probes_answered_total", "Answers received to this host's probes."),
		stateChanges: d("state_changes_total", "Changes of state of a path to a peer."),
		pathMoves:    d("path_changes_total", "Moves of a peer to another path."),
	}
}

// Describe implements prometheus.Collector.
func (c *healthCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.paths, c.peers, c.peerUp, c.peerRTT, c.peerLoss, c.peerCands, c.dropped,
		c.sent, c.failed, c.answered, c.stateChanges, c.pathMoves} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. It is safe for concurrent use.
func (c *healthCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.a.health
	h.mu.Lock()
	snap := h.tr.Snapshot() // by name
	h.mu.Unlock()
	paths := map[[2]string]int{}
	for _, k := range []fabric.PathKind{fabric.PathDirect, fabric.PathNative, fabric.PathVXLAN, fabric.PathIPIP, fabric.PathWireGuard} {
		for _, s := range []health.State{health.StateUp, health.StateDown, health.StateUnknown} {
			paths[[2]string{string(k), string(s)}] = 0
		}
	}
	onPath := map[string]int{}
	for i, s := range snap {
		onPath[string(s.Path)]++
		down := 0
		for _, p := range s.Paths {
			paths[[2]string{string(p.Path), string(p.State)}]++
			if p.State == health.StateDown {
				down++
			}
		}
		if i >= maxPeerSeries || s.Path == fabric.PathNone {
			continue
		}
		up := -1.0
		switch s.State {
		case health.StateUp:
			up = 1
		case health.StateDown:
			up = 0
		}
		ch <- prometheus.MustNewConstMetric(c.peerUp, prometheus.GaugeValue, up, s.Peer, string(s.Path))
		ch <- prometheus.MustNewConstMetric(c.peerRTT, prometheus.GaugeValue, s.RTT.Seconds(), s.Peer)
		ch <- prometheus.MustNewConstMetric(c.peerLoss, prometheus.GaugeValue, s.Loss, s.Peer)
		ch <- prometheus.MustNewConstMetric(c.peerCands, prometheus.GaugeValue, float64(down), s.Peer)
	}
	for k, n := range paths {
		ch <- prometheus.MustNewConstMetric(c.paths, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
	for p, n := range onPath {
		ch <- prometheus.MustNewConstMetric(c.peers, prometheus.GaugeValue, float64(n), p)
	}
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.GaugeValue, float64(max(0, len(snap)-maxPeerSeries)))
	n := &h.count
	ch <- prometheus.MustNewConstMetric(c.sent, prometheus.CounterValue, float64(n.sent.Load()))
	ch <- prometheus.MustNewConstMetric(c.failed, prometheus.CounterValue, float64(n.failed.Load()))
	ch <- prometheus.MustNewConstMetric(c.answered, prometheus.CounterValue, float64(n.answered.Load()))
	ch <- prometheus.MustNewConstMetric(c.stateChanges, prometheus.CounterValue, float64(n.stateChanges.Load()))
	ch <- prometheus.MustNewConstMetric(c.pathMoves, prometheus.CounterValue, float64(n.pathMoves.Load()))
}

// metricsHandler returns the HTTP handler of /metrics: weft's own registry
// (no global one), with path health when it is on, and the Go runtime's
// and process collectors.
func (a *Agent) metricsHandler() (http.Handler, error) {
	reg := prometheus.NewRegistry()
	cs := []prometheus.Collector{prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{})}
	if a.health != nil {
		cs = append(cs, newHealthCollector(a))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux, nil
}

// serveMetrics serves /metrics on addr until ctx is done. It returns once
// the listener is open (or failed to open).
func (a *Agent) serveMetrics(ctx context.Context, addr string) error {
	h, err := a.metricsHandler()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics.listen %q: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	context.AfterFunc(ctx, func() { srv.Close() })
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics listener stopped", "err", err)
		}
	}()
	a.log.Info("metrics served", "addr", ln.Addr().String())
	return nil
}
