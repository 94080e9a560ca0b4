// Command wireguard measures weft's WireGuard path on this machine (weft
// issue #5, "Measured, not asserted"), in one run:
//
//   - throughput: iperf3 TCP, 1 and 4 streams, over weft's WireGuard path
//     (workload w1 on h1 -> w4 on h4, across the regions of netlab's default
//     topology, with the user-space wireguard-go embedded in the agent),
//     over a standalone wireguard-go of the same module version configured
//     with wg(8) between two namespaces joined by a veth, over that same
//     standalone wireguard-go between h1 and h4 of the lab (the underlay of
//     weft's path), over the lab underlay h1 -> h4 without WireGuard, and
//     over a raw veth; interleaved, as medians and ratios;
//   - CPU seconds per GB moved: utime+stime of the two agents (weft) or the
//     two wireguard-go processes (standalone) during each transfer;
//   - new-peer latency: from starting a new host's agent (weft) or from
//     `wg set ... peer` (standalone) until both devices hold the peer, the
//     handshake completes and the first echo reply of a `ping -i 0.01`
//     arrives.
//
// Before each measurement it waits for a quiet machine: other processes
// using fewer than -quiet cores and no overflow of the ARP table, which all
// namespaces share; a measurement during which either failed is marked
// noisy and measured again. It prints the conditions and Markdown tables on
// stdout (or JSON), every sample on stderr. Nothing is asserted. It needs root, iperf3, wg(8), the
// weft binary (-weft) and the standalone wireguard-go binary (-wireguard).
// It only sends packets inside namespaces it made, all named <prefix>-*
// with a fresh prefix "wb...." printed on stderr, and removes them when it
// ends, fails or is interrupted (SIGINT, SIGTERM).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the settings of one run.
type options struct {
	runs, trials, retries int
	duration              time.Duration
	streams               []int
	quiet                 float64
	quietWait             time.Duration
	waitTimeout           time.Duration
	weft, wireguard       string
	log                   *slog.Logger
}

// Output is everything one run measured.
type Output struct {
	Machine    Machine       `json:"machine"`
	Notes      []Note        `json:"notes"`
	Samples    []Sample      `json:"samples"`
	Throughput []TputSummary `json:"throughput"`
	Trials     []Trial       `json:"trials"`
	Latency    []LatSummary  `json:"latency"`
	Errors     []string      `json:"errors,omitempty"`
}

// Note is a fact about the setup worth printing with the numbers.
type Note struct {
	What string `json:"what"`
	Text string `json:"text"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "wireguard bench:", err)
		os.Exit(1)
	}
}

func run() (err error) {
	var (
		runs      = flag.Int("runs", 3, "iperf3 runs per path and stream count")
		duration  = flag.Duration("t", 10*time.Second, "length of one iperf3 run")
		streams   = flag.String("streams", "1,4", "comma-separated iperf3 stream counts (-P)")
		trials    = flag.Int("trials", 3, "new-peer latency trials of each kind")
		quiet     = flag.Float64("quiet", 0.3, "wait until other processes use fewer cores than this before each measurement; one during which they used more is noisy")
		quietWait = flag.Duration("quiet-wait", 2*time.Minute, "longest wait for a quiet machine")
		retries   = flag.Int("retries", 2, "re-measure a noisy iperf3 run up to this many times")
		waitT     = flag.Duration("wait-timeout", 120*time.Second, "give up waiting for the lab to converge after this")
		weft      = flag.String("weft", "/tmp/weft-bench-wg", "weft binary (go build -o /tmp/weft-bench-wg ./cmd/weft)")
		wgBin     = flag.String("wireguard", "/tmp/wgbin/wireguard", "standalone wireguard-go binary (GOBIN=/tmp/wgbin go install golang.zx2c4.com/wireguard@<go.mod version>)")
		jsonOut   = flag.Bool("json", false, "print everything as JSON instead of Markdown")
		save      = flag.String("save", "", "also write the JSON to this file")
	)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	o := options{runs: *runs, trials: *trials, retries: *retries, duration: *duration, quiet: *quiet,
		quietWait: *quietWait, waitTimeout: *waitT, weft: *weft, wireguard: *wgBin, log: log}
	for f := range strings.SplitSeq(*streams, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("-streams %q: %q is not a whole number of at least 1", *streams, f)
		}
		o.streams = append(o.streams, n)
	}
	switch {
	case o.runs < 1 || o.trials < 0 || o.retries < 0:
		return fmt.Errorf("-runs %d, -trials %d, -retries %d: want runs >= 1, trials and retries >= 0", o.runs, o.trials, o.retries)
	case o.duration < time.Second:
		return fmt.Errorf("-t %s: want at least 1s", o.duration)
	case os.Geteuid() != 0:
		return errors.New("needs root: it makes network namespaces, veths and TUN devices")
	}
	for _, bin := range []string{o.weft, o.wireguard} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("binary %s: %w (see -help for how to build it)", bin, err)
		}
	}
	// SIGINT and SIGTERM cancel ctx: every wait returns, every deferred
	// Close runs, and the namespaces and processes go with them.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	out := Output{Machine: machine(ctx, o.weft, o.wireguard)}
	log.Info("machine", "conditions", fmt.Sprintf("%+v", out.Machine))
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("generate prefix: %w", err)
	}
	prefix := "wb" + hex.EncodeToString(b[:])
	log.Info("namespaces", "prefix", prefix)

	paths, notes, tun, closeAll, err := setup(ctx, o, prefix)
	defer func() { err = errors.Join(err, closeAll()) }()
	if err != nil {
		return err
	}
	out.Notes = notes
	out.Samples = measureAll(ctx, o, paths)
	out.Throughput = summarizeThroughput(out.Samples)
	out.Trials = measureLatency(ctx, o, tun.lab, tun.veth)
	out.Latency = summarizeLatency(out.Trials)
	if err := ctx.Err(); err != nil {
		out.Errors = append(out.Errors, "interrupted: "+err.Error())
	}
	js, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if *save != "" {
		if err := os.WriteFile(*save, append(js, '\n'), 0o644); err != nil {
			return fmt.Errorf("save results: %w", err)
		}
	}
	if *jsonOut {
		_, err = os.Stdout.Write(append(js, '\n'))
		return err
	}
	printMarkdown(os.Stdout, out, o)
	return ctx.Err()
}

// testbeds are what setup made for the latency trials.
type testbeds struct {
	lab  *weftLab
	veth *wgTunnel
}

// Addresses, all inside namespaces this benchmark makes.
var (
	rawAddrs    = [2]netip.Prefix{netip.MustParsePrefix("198.19.254.1/30"), netip.MustParsePrefix("198.19.254.2/30")}
	sUnderAddrs = [2]netip.Prefix{netip.MustParsePrefix("198.19.253.1/30"), netip.MustParsePrefix("198.19.253.2/30")}
	sTunAddrs   = [2]netip.Prefix{netip.MustParsePrefix("198.19.252.1/30"), netip.MustParsePrefix("198.19.252.2/30")}
	labTunAddrs = [2]netip.Prefix{netip.MustParsePrefix("198.19.251.1/30"), netip.MustParsePrefix("198.19.251.2/30")}
)

// setup builds everything: the raw veth, the standalone tunnel over a veth,
// the weft lab, and the standalone tunnel between the lab's h1 and h4. The
// returned close func undoes all of it and must be called, also after an
// error.
func setup(ctx context.Context, o options, prefix string) ([]path, []Note, testbeds, func() error, error) {
	var closers []func() error
	closeAll := func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		return errors.Join(errs...)
	}
	var tb testbeds
	fail := func(err error) ([]path, []Note, testbeds, func() error, error) {
		return nil, nil, tb, closeAll, err
	}
	raw, err := newNSPair(ctx, prefix+"-ra", prefix+"-rb", rawAddrs)
	closers = append(closers, raw.Close)
	if err != nil {
		return fail(err)
	}
	sv, err := newNSPair(ctx, prefix+"-sa", prefix+"-sb", sUnderAddrs)
	closers = append(closers, sv.Close)
	if err != nil {
		return fail(err)
	}
	tb.veth, err = startTunnel(ctx, o.wireguard, [2]*wgEnd{
		{ns: sv.a, dev: prefix + "a", under: sUnderAddrs[0].Addr(), port: 51901, tunnel: sTunAddrs[0]},
		{ns: sv.b, dev: prefix + "b", under: sUnderAddrs[1].Addr(), port: 51902, tunnel: sTunAddrs[1]},
	})
	closers = append(closers, tb.veth.Close)
	if err != nil {
		return fail(err)
	}
	tb.lab, err = newWeftLab(ctx, o, prefix, o.trials)
	closers = append(closers, tb.lab.Close)
	if err != nil {
		return fail(err)
	}
	l := tb.lab.l
	h1, h4 := l.NSName("h1"), l.NSName("h4")
	inLab, err := startTunnel(ctx, o.wireguard, [2]*wgEnd{
		{ns: h1, dev: prefix + "c", under: l.HostAddr("h1"), port: 51901, tunnel: labTunAddrs[0]},
		{ns: h4, dev: prefix + "d", under: l.HostAddr("h4"), port: 51902, tunnel: labTunAddrs[1]},
	})
	// Before the lab's Close: the processes keep h1 and h4 alive.
	closers = append(closers, inLab.Close)
	if err != nil {
		return fail(err)
	}
	fixed := func(t *wgTunnel) func() ([]int, error) { return func() ([]int, error) { return t.pids(), nil } }
	paths := []path{
		{name: pathRaw, src: raw.a, dst: raw.b, to: rawAddrs[1].Addr()},
		{name: pathWGVeth, src: sv.a, dst: sv.b, to: sTunAddrs[1].Addr(), pids: fixed(tb.veth)},
		{name: pathUnder, src: h1, dst: h4, to: l.HostAddr("h4")},
		{name: pathWGLab, src: h1, dst: h4, to: labTunAddrs[1].Addr(), pids: fixed(inLab)},
		{name: pathWeft, src: l.NSName(tb.lab.w1.Name), dst: l.NSName(tb.lab.w4.Name), to: tb.lab.w4.Addr,
			pids: func() ([]int, error) { return tb.lab.agentPids("h1", "h4") }},
	}
	var notes []Note
	for _, p := range paths {
		// A ping first: a broken path fails here, not in iperf3.
		if err := ping(ctx, p.src, p.to, 10, o.log); err != nil {
			return fail(fmt.Errorf("%s: %w", p.name, err))
		}
	}
	for _, h := range []string{"h1", "h4"} {
		s, err := tb.lab.status(ctx, h)
		if err != nil {
			return fail(err)
		}
		notes = append(notes, Note{What: "weft status of " + h + ", WireGuard", Text: s})
	}
	for _, c := range []struct{ what, ns, cmd string }{
		{"ip route get " + tb.lab.w4.Addr.String() + " on h1", h1, "ip route get " + tb.lab.w4.Addr.String()},
		{"weft's device on h1", h1, "ip -d link show weft.wg"},
		{"ethtool -k weft.wg on h1", h1, "ethtool -k weft.wg"},
		{"ethtool -k " + prefix + "a (standalone)", sv.a, "ethtool -k " + prefix + "a"},
		{"standalone device", sv.a, "ip -d link show " + prefix + "a"},
	} {
		f := strings.Fields(c.cmd)
		b, err := nsCommand(ctx, c.ns, f[0], f[1:]...).CombinedOutput()
		if err != nil {
			return fail(fmt.Errorf("%s in %s: %w: %s", c.cmd, c.ns, err, b))
		}
		text := strings.Join(strings.Fields(string(b)), " ")
		if f[0] == "ethtool" {
			text = offloads(string(b))
		}
		notes = append(notes, Note{What: c.what, Text: text})
	}
	return paths, notes, tb, closeAll, nil
}

// ping pings to from inside ns, one packet a second, until one answers or
// tries have failed; a path that needs more than one is logged.
func ping(ctx context.Context, ns string, to netip.Addr, tries int, log *slog.Logger) error {
	start := time.Now()
	var out []byte
	var err error
	for i := range tries {
		out, err = nsCommand(ctx, ns, "ping", "-c1", "-W1", "-n", "-q", to.String()).CombinedOutput()
		if err == nil && i > 0 {
			log.Warn("path answered only after several pings", "from", ns, "to", to, "pings", i+1, "after", time.Since(start))
		}
		if err == nil || ctx.Err() != nil {
			return err
		}
	}
	return fmt.Errorf("ping %s in %s: %d tries: %w\n%s", to, ns, tries, err, out)
}

// offloads picks the offload lines that matter for a TUN out of `ethtool -k`.
func offloads(s string) string {
	var out []string
	for line := range strings.SplitSeq(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		switch k {
		case "tx-checksumming", "tcp-segmentation-offload", "tx-udp-segmentation", "generic-segmentation-offload", "generic-receive-offload":
			if ok {
				out = append(out, k+" "+strings.TrimSpace(v))
			}
		}
	}
	return strings.Join(out, ", ")
}
