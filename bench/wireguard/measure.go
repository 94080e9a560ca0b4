package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// iperfPort is the port of every iperf3 server; each runs alone in its namespace.
const iperfPort = "5201"

// path is one way to measure: iperf3 from src to `to`, served inside dst.
type path struct {
	name     string
	src, dst string // namespace names
	to       netip.Addr
	pids     func() ([]int, error) // processes doing the path's WireGuard work; nil: none
}

// Sample is one iperf3 run.
type Sample struct {
	Path    string `json:"path"`
	Streams int    `json:"streams"`
	Run     int    `json:"run"`
	// Gbps is what the receiver got, in Gbit/s (10^9 bit/s); Bytes how much.
	Gbps        float64 `json:"gbps"`
	Bytes       float64 `json:"bytes"`
	Retransmits int     `json:"retransmits"`
	// CPU is the utime+stime the path's WireGuard processes used during the
	// run, in seconds; CPUPerGB that over Bytes/1e9.
	CPU      float64 `json:"cpuSeconds,omitempty"`
	CPUPerGB float64 `json:"cpuSecondsPerGB,omitempty"`
	// Foreign is how many cores other processes used meanwhile; ARPFull
	// is set when the shared ARP table overflowed meanwhile; Noisy when
	// either was the case (Foreign over -quiet).
	Foreign float64 `json:"foreignCores"`
	ARPFull bool    `json:"arpTableFull,omitempty"`
	Noisy   bool    `json:"noisy,omitempty"`
	Err     string  `json:"err,omitempty"`
}

// iperf runs one iperf3 measurement of p: a one-off server in p.dst, the
// client in p.src. It never leaves a process behind.
func iperf(ctx context.Context, p path, streams int, d time.Duration) Sample {
	s := Sample{Path: p.name, Streams: streams}
	fail := func(err error) Sample {
		s.Err = err.Error()
		return s
	}
	srv := nsCommand(ctx, p.dst, "iperf3", "-s", "-1", "-p", iperfPort)
	var srvOut bytes.Buffer
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := srv.Start(); err != nil {
		return fail(fmt.Errorf("start iperf3 server in %s: %w", p.dst, err))
	}
	done := make(chan struct{})
	go func() {
		_ = srv.Wait()
		close(done)
	}()
	defer func() {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = srv.Process.Kill()
			<-done
		}
	}()
	if err := waitListening(ctx, p.dst, done); err != nil {
		return fail(err)
	}
	var pids []int
	var cpu0 time.Duration
	if p.pids != nil {
		var err error
		if pids, err = p.pids(); err != nil {
			return fail(err)
		}
		if cpu0, err = pidCPU(pids); err != nil {
			return fail(err)
		}
	}
	secs := strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second)))
	out, runErr := nsCommand(ctx, p.src, "iperf3", "-c", p.to.String(), "-p", iperfPort, "-t", secs, "-P", strconv.Itoa(streams), "-J").Output()
	r, err := parseIperf(out)
	if err != nil {
		return fail(errors.Join(fmt.Errorf("iperf3 %s -> %s: %w", p.src, p.to, err), runErr))
	}
	s.Gbps, s.Bytes = r.End.SumReceived.BitsPerSecond/1e9, r.End.SumReceived.Bytes
	s.Retransmits = r.End.SumSent.Retransmits
	if pids != nil {
		cpu1, err := pidCPU(pids)
		if err != nil {
			return fail(err)
		}
		s.CPU = (cpu1 - cpu0).Seconds()
		s.CPUPerGB = s.CPU / (s.Bytes / 1e9)
	}
	return s
}

// waitListening polls until the iperf3 server in ns listens, the server
// exits (done closes), 5 s pass or ctx is done. It does not connect: that
// would use up the one-off server.
func waitListening(ctx context.Context, ns string, done <-chan struct{}) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _ := nsCommand(ctx, ns, "ss", "-Hltn", "sport", "=", ":"+iperfPort).Output()
		if len(bytes.TrimSpace(out)) > 0 {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("iperf3 server in %s exited before listening", ns)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("iperf3 server in %s not listening on %s after 5s", ns, iperfPort)
		}
	}
}

// iperfResult is the part of `iperf3 -J` output this benchmark reads.
type iperfResult struct {
	End struct {
		SumSent struct {
			Retransmits int `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			Bytes         float64 `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// parseIperf decodes `iperf3 -J` output; iperf3's own error, or a result
// without a received rate, is an error.
func parseIperf(b []byte) (iperfResult, error) {
	var r iperfResult
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decode iperf3 json (%d bytes): %w", len(b), err)
	}
	if r.Error != "" {
		return r, fmt.Errorf("iperf3: %s", r.Error)
	}
	if r.End.SumReceived.BitsPerSecond <= 0 || r.End.SumReceived.Bytes <= 0 {
		return r, errors.New("iperf3 json: no end.sum_received bits_per_second and bytes")
	}
	return r, nil
}

// measureAll runs every path o.runs times per stream count, the paths'
// order rotating from run to run so that each sees the machine in every
// phase; a noisy sample is measured again up to o.retries times.
func measureAll(ctx context.Context, o options, paths []path) []Sample {
	var samples []Sample
	for r := 1; r <= o.runs; r++ {
		for _, n := range o.streams {
			for i := range paths {
				p := paths[(i+r-1)%len(paths)]
				for try := 0; try <= o.retries && ctx.Err() == nil; try++ {
					waitQuiet(ctx, o.quiet, o.quietWait, o.log)
					m0 := markCPU()
					s := iperf(ctx, p, n, o.duration)
					m1 := markCPU()
					s.Foreign, s.ARPFull = foreign(m0, m1), arpFull(m0, m1)
					s.Noisy, s.Run = s.Foreign > o.quiet || s.ARPFull, r
					samples = append(samples, s)
					o.log.Info("iperf3", "path", s.Path, "streams", n, "run", r, "gbps", fmt.Sprintf("%.2f", s.Gbps),
						"cpu_s_per_gb", fmt.Sprintf("%.2f", s.CPUPerGB), "retransmits", s.Retransmits,
						"foreign_cores", fmt.Sprintf("%.2f", s.Foreign), "arp_table_full", s.ARPFull, "noisy", s.Noisy, "err", s.Err)
					if !s.Noisy {
						break
					}
				}
			}
		}
	}
	return samples
}

// Trial is one new-peer latency measurement. Times are in milliseconds
// from Start (weft: the newcomer's agent starts; standalone: `wg set ...
// peer` starts on the pinging side), -1 when not seen.
type Trial struct {
	Kind  string    `json:"kind"`
	Run   int       `json:"run"`
	Start time.Time `json:"start"`
	// Configured: both devices hold the other as a peer (standalone: the
	// `wg set` returned; the other side was configured before Start).
	Configured float64 `json:"configuredMs"`
	// Routed: both hosts' kernels route the pair's workloads through the
	// WireGuard device (weft only; standalone: the same as Configured).
	Routed float64 `json:"routedMs"`
	// Handshake: the pinging side's device completed its first handshake
	// with the new peer (wireguard-go's own timestamp).
	Handshake float64 `json:"handshakeMs"`
	// FirstReply: the first echo reply reached the pinging workload
	// (`ping -D -i 0.01`).
	FirstReply float64 `json:"firstReplyMs"`
	Foreign    float64 `json:"foreignCores"`
	ARPFull    bool    `json:"arpTableFull,omitempty"`
	Noisy      bool    `json:"noisy,omitempty"`
	Err        string  `json:"err,omitempty"`
}

// ms converts t's offset from start into milliseconds; -1 for zero t.
func ms(start, t time.Time) float64 {
	if t.IsZero() {
		return -1
	}
	return float64(t.Sub(start)) / 1e6
}

// watchSpec says what watch polls.
type watchSpec struct {
	// sock is the pinging side's UAPI socket, peer the new peer's address
	// behind it.
	sock string
	peer netip.Addr
	// otherSock, if set, is the new peer's UAPI socket, otherPeer the
	// pinging side's address behind it.
	otherSock string
	otherPeer netip.Addr
	// configured, if not zero, is taken as the Configured time as is.
	configured time.Time
	// routed, if set, reports whether both kernels route the pair over
	// WireGuard; nil: Routed is Configured.
	routed func() bool
}

// watch polls what w names every 5 ms until all of it and the pinger's
// first reply are seen, or 30 s pass, and fills in tr.
func watch(ctx context.Context, tr *Trial, p *pinger, w watchSpec) error {
	deadline := time.Now().Add(30 * time.Second)
	var reply, hs, cfgSelf, cfgOther, routed time.Time
	if w.otherSock == "" {
		cfgOther = w.configured
	}
	for reply.IsZero() || hs.IsZero() || cfgSelf.IsZero() || cfgOther.IsZero() || (w.routed != nil && routed.IsZero()) {
		now := time.Now()
		if cfgSelf.IsZero() || hs.IsZero() {
			if peers, err := uapiGet(w.sock); err == nil {
				if pe, ok := peerFor(peers, w.peer); ok {
					if cfgSelf.IsZero() {
						cfgSelf = now
					}
					hs = pe.Handshake
				}
			}
		}
		if cfgOther.IsZero() {
			if peers, err := uapiGet(w.otherSock); err == nil {
				if _, ok := peerFor(peers, w.otherPeer); ok {
					cfgOther = now
				}
			}
		}
		if routed.IsZero() && w.routed != nil && w.routed() {
			routed = now
		}
		select {
		case reply = <-p.FirstReply:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			break
		}
	}
	if !w.configured.IsZero() {
		cfgSelf = w.configured
	}
	tr.Configured = ms(tr.Start, later(cfgSelf, cfgOther))
	tr.Routed = tr.Configured
	if w.routed != nil {
		tr.Routed = ms(tr.Start, routed)
	}
	tr.Handshake, tr.FirstReply = ms(tr.Start, hs), ms(tr.Start, reply)
	if reply.IsZero() {
		return fmt.Errorf("no echo reply within 30s (configured %.0f ms, routed %.0f ms, handshake %.0f ms)", tr.Configured, tr.Routed, tr.Handshake)
	}
	return nil
}

// later returns the later of a and b, or zero if either is zero.
func later(a, b time.Time) time.Time {
	if a.IsZero() || b.IsZero() {
		return time.Time{}
	}
	if a.After(b) {
		return a
	}
	return b
}
