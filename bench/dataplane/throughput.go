package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/weft-net/weft/internal/lab"
	"github.com/weft-net/weft/internal/netlab"
)

// The measured paths, in the order the tables show them.
const (
	pathRaw        = "raw veth"
	pathHost       = "host h1 -> h2"
	pathHostRouted = "host h1 -> h3"
	pathHandDirect = "hand direct"
	pathHandVXLAN  = "hand VXLAN"
	pathHandNFT    = "hand direct + nft"
	pathDirect     = "weft direct"
	pathVXLAN      = "weft VXLAN"
)

var pathOrder = []string{pathRaw, pathHost, pathHostRouted, pathHandDirect, pathHandVXLAN, pathHandNFT, pathDirect, pathVXLAN}

// pathKeys names the paths for -paths.
var pathKeys = map[string]string{
	"raw": pathRaw, "host": pathHost, "host-routed": pathHostRouted, "hand": pathHandDirect,
	"hand-vxlan": pathHandVXLAN, "hand-nft": pathHandNFT, "direct": pathDirect, "vxlan": pathVXLAN,
}

// pathDesc says what each path is.
var pathDesc = map[string]string{
	pathRaw:        "two fresh namespaces joined by one veth: no bridge, no routing, no weft",
	pathHost:       "lab underlay, same segment: h1 -> bridge -> h2, no weft",
	pathHostRouted: "lab underlay across the router: h1 -> bridge -> rt1 -> bridge -> h3 (the VXLAN path's underlay), no weft",
	pathHandDirect: "a second lab without agents: workload wa on h1 -> wb on h2, routes made by hand, no nftables",
	pathHandVXLAN:  "the same second lab: wa on h1 -> wc on h3 through a point-to-point kernel VXLAN device made by hand (iproute2 defaults), no nftables",
	pathHandNFT:    "a third lab, as the second, with weft's nftables ruleset (copied from weft's h1) loaded on h1 and h2: its masquerade rule never matches these addresses, but the nat hook turns on connection tracking for every forwarded packet",
	pathDirect:     "weft's direct path: workload w1 on h1 -> w2 on h2, as the agents programmed it",
	pathVXLAN:      "weft's VXLAN path: workload w1 on h1 -> w3 on h3, as the agents programmed it",
}

// baselineOf is, for each path, the path that is the same minus one thing:
// weft (weft's paths), encapsulation (hand VXLAN), a router hop, or the
// workloads' forwarding hops.
var baselineOf = map[string]string{
	pathHost:       pathRaw,
	pathHostRouted: pathHost,
	pathHandDirect: pathHost,
	pathHandVXLAN:  pathHostRouted,
	pathHandNFT:    pathHandDirect,
	pathDirect:     pathHandDirect,
	pathVXLAN:      pathHandVXLAN,
}

// iperfPort is the port of every iperf3 server; each runs alone in its namespace.
const iperfPort = "5201"

// Sample is one iperf3 run.
type Sample struct {
	Path    string `json:"path"`
	Streams int    `json:"streams"`
	Run     int    `json:"run"`
	// Gbps is what the receiver got, in Gbit/s (10^9 bit/s).
	Gbps        float64 `json:"gbps"`
	Retransmits int     `json:"retransmits"`
	// CPUSender and CPUReceiver are iperf3's own totals, in percent of one core.
	CPUSender   float64 `json:"cpuSenderPct"`
	CPUReceiver float64 `json:"cpuReceiverPct"`
	// Foreign is how many cores other processes used meanwhile; Noisy is
	// set when that was over -quiet.
	Foreign float64 `json:"foreignCores"`
	Noisy   bool    `json:"noisy,omitempty"`
	Err     string  `json:"err,omitempty"`
}

// path is one way through the lab: iperf3 runs from src to to, inside dst.
type path struct {
	name     string
	src, dst string // namespace names
	to       netip.Addr
	via      string // namespace whose `ip route get` shows the path taken
}

// Note is a fact about the setup worth printing with the numbers.
type Note struct {
	What string `json:"what"`
	Text string `json:"text"`
}

// runThroughput builds the default lab with an agent on every host and
// workloads w1..w3 on h1..h3; a hand-routed copy of it without weft, and
// another with weft's nftables ruleset; and a raw veth pair. It checks that
// weft chose direct for h1-h2 and VXLAN for h1-h3, then measures each path
// of o.paths o.runs times per stream count, the paths' order rotating from
// run to run. It returns every sample (with the ones that failed) and notes
// on how the kernel routes each path. Everything it made is gone when it
// returns.
func runThroughput(ctx context.Context, o options) (samples []Sample, notes []Note, err error) {
	f, err := newTestbed(ctx, netlab.DefaultTopology(), lab.DefaultRegions(), o)
	defer func() { err = errors.Join(err, f.Close()) }()
	if err != nil {
		return nil, nil, err
	}
	hosts := f.l.Hosts()
	if err := f.start(hosts, []netip.Addr{f.l.HostAddr("h1"), f.l.HostAddr("h4")}); err != nil {
		return nil, nil, err
	}
	o.log.Info("wait for the lab to converge", "hosts", len(hosts))
	if err := f.waitReady(ctx, hosts, o.waitTimeout); err != nil {
		return nil, nil, err
	}
	ws := map[string]netlab.Workload{}
	for i, h := range []string{"h1", "h2", "h3"} {
		s, err := f.subnet(ctx, h)
		if err != nil {
			return nil, nil, err
		}
		w := netlab.Workload{Name: fmt.Sprintf("w%d", i+1), Host: h, Addr: s.Addr().Next().Next()}
		if err := f.l.AddWorkload(ctx, w); err != nil {
			return nil, nil, err
		}
		ws[w.Name] = w
	}
	m, err := f.c.PathMatrix(ctx, []string{"h1", "h2", "h3"})
	if err != nil {
		return nil, nil, err
	}
	want := map[[2]string]string{{"h1", "h2"}: "direct", {"h2", "h1"}: "direct", {"h1", "h3"}: "vxlan", {"h3", "h1"}: "vxlan"}
	for pair, w := range want {
		if got := m.Cells[pair[0]][pair[1]]; got != w {
			return nil, nil, fmt.Errorf("weft's path %s -> %s is %q, want %q", pair[0], pair[1], got, w)
		}
	}
	h1 := f.l.NSName("h1")
	ruleset, err := nsCommand(ctx, h1, "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		return nil, nil, fmt.Errorf("nft list ruleset in %s: %w: %s", h1, err, ruleset)
	}
	notes = append(notes, Note{What: "nftables on weft's h1 (the hand lab has none)", Text: oneLine(string(ruleset))})

	raw, err := newRawVeth(ctx, f.l.Prefix())
	defer func() { err = errors.Join(err, raw.Close()) }()
	if err != nil {
		return nil, nil, err
	}
	hand, err := newHandLab(ctx, o, "")
	defer func() { err = errors.Join(err, hand.Close()) }()
	if err != nil {
		return nil, nil, err
	}
	handNFT, err := newHandLab(ctx, o, string(ruleset))
	defer func() { err = errors.Join(err, handNFT.Close()) }()
	if err != nil {
		return nil, nil, err
	}

	hh1 := hand.l.NSName("h1")
	all := []path{
		{name: pathRaw, src: raw.a, dst: raw.b, to: raw.addrB, via: raw.a},
		{name: pathHost, src: h1, dst: f.l.NSName("h2"), to: f.l.HostAddr("h2"), via: h1},
		{name: pathHostRouted, src: h1, dst: f.l.NSName("h3"), to: f.l.HostAddr("h3"), via: h1},
		{name: pathHandDirect, src: hand.l.NSName("wa"), dst: hand.l.NSName("wb"), to: hand.wb.Addr, via: hh1},
		{name: pathHandVXLAN, src: hand.l.NSName("wa"), dst: hand.l.NSName("wc"), to: hand.wc.Addr, via: hh1},
		{name: pathHandNFT, src: handNFT.l.NSName("wa"), dst: handNFT.l.NSName("wb"), to: handNFT.wb.Addr, via: handNFT.l.NSName("h1")},
		{name: pathDirect, src: f.l.NSName("w1"), dst: f.l.NSName("w2"), to: ws["w2"].Addr, via: h1},
		{name: pathVXLAN, src: f.l.NSName("w1"), dst: f.l.NSName("w3"), to: ws["w3"].Addr, via: h1},
	}
	var paths []path
	for _, p := range all {
		if o.paths == nil || o.paths[p.name] {
			paths = append(paths, p)
		}
	}
	for _, p := range paths {
		// A ping first: neighbours resolved, and a broken path fails here, not in iperf3.
		if err := ping(ctx, p.src, p.to, 10, o.log); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", p.name, err)
		}
		out, err := nsCommand(ctx, p.via, "ip", "route", "get", p.to.String()).CombinedOutput()
		if err != nil {
			return nil, nil, fmt.Errorf("ip route get %s in %s: %w: %s", p.to, p.via, err, out)
		}
		notes = append(notes, Note{What: p.name + ": ip route get " + p.to.String(), Text: oneLine(string(out))})
	}
	for _, c := range []struct{ what, ns, dev string }{{"weft's VXLAN device on h1", h1, "weft.vxlan"}, {"hand VXLAN device on h1", hh1, "vx0"}} {
		out, err := ip(ctx, "-d", "-n", c.ns, "link", "show", c.dev)
		if err != nil {
			return nil, nil, err
		}
		notes = append(notes, Note{What: c.what, Text: oneLine(out)})
	}

	for r := 1; r <= o.runs; r++ {
		for _, n := range o.streams {
			for i := range paths {
				p := paths[(i+r-1)%len(paths)]
				for try := 0; try <= o.retries && ctx.Err() == nil; try++ {
					waitQuiet(ctx, o.quiet, o.quietWait, o.log)
					m0 := markCPU()
					s := iperf(ctx, p, n, o.duration)
					s.Foreign = foreign(m0, markCPU())
					s.Noisy, s.Run = s.Foreign > o.quiet, r
					samples = append(samples, s)
					o.log.Info("iperf3", "path", s.Path, "streams", n, "run", r, "gbps", fmt.Sprintf("%.2f", s.Gbps),
						"retransmits", s.Retransmits, "foreign_cores", fmt.Sprintf("%.2f", s.Foreign), "noisy", s.Noisy, "err", s.Err)
					if !s.Noisy {
						break
					}
				}
			}
		}
	}
	return samples, notes, ctx.Err()
}

// ping pings to from inside ns, one packet a second, until one answers or
// tries have failed.
func ping(ctx context.Context, ns string, to netip.Addr, tries int, log *slog.Logger) error {
	var out []byte
	var err error
	for i := range tries {
		out, err = nsCommand(ctx, ns, "ping", "-c1", "-W1", "-n", "-q", to.String()).CombinedOutput()
		if err == nil && i > 0 {
			log.Warn("path answered only after several pings", "from", ns, "to", to, "pings", i+1)
		}
		if err == nil || ctx.Err() != nil {
			return err
		}
	}
	return fmt.Errorf("ping %s in %s: %d tries: %w\n%s", to, ns, tries, err, out)
}

// oneLine squeezes every run of white space in s to one space.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// iperf runs one iperf3 measurement of p with streams parallel streams for
// d: a one-off server in p.dst, the client in p.src. It never leaves a
// process behind.
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
		// A one-off server exits after its client; one whose client never
		// came is killed.
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
	secs := strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second)))
	cli := nsCommand(ctx, p.src, "iperf3", "-c", p.to.String(), "-p", iperfPort, "-t", secs, "-P", strconv.Itoa(streams), "-J")
	out, runErr := cli.Output()
	r, err := parseIperf(out)
	if err != nil {
		return fail(errors.Join(fmt.Errorf("iperf3 %s -> %s: %w", p.src, p.to, err), runErr))
	}
	s.Gbps = r.End.SumReceived.BitsPerSecond / 1e9
	s.Retransmits = r.End.SumSent.Retransmits
	s.CPUSender, s.CPUReceiver = r.End.CPU.HostTotal, r.End.CPU.RemoteTotal
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
			BitsPerSecond float64 `json:"bits_per_second"`
			Retransmits   int     `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
		CPU struct {
			HostTotal   float64 `json:"host_total"`
			RemoteTotal float64 `json:"remote_total"`
		} `json:"cpu_utilization_percent"`
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
	if r.End.SumReceived.BitsPerSecond <= 0 {
		return r, errors.New("iperf3 json: no end.sum_received.bits_per_second")
	}
	return r, nil
}
