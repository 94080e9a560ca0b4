package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"

	"github.com/weft-net/weft/policy"
	"github.com/weft-net/weft/policy/nft"
)

// compilePart times the decoding and compiling of the world of n
// endpoints, prints a table row (with the header before the first size),
// and returns the ruleset.
func compilePart(ctx context.Context, o options, n int) (nft.Ruleset, error) {
	w := world{endpoints: n, policies: o.policies, relabel: -1, remove: -1}
	start := time.Now()
	set, err := w.set()
	if err != nil {
		return nft.Ruleset{}, err
	}
	decode := time.Since(start)
	host := w.host()
	var rs nft.Ruleset
	var times []sample
	reps := 1
	if o.parts["compile"] {
		reps = o.compileRep
	}
	for range reps {
		s, err := measure(ctx, o, func() (float64, error) {
			start := time.Now()
			var err error
			rs, err = nft.Compile(set, host, policy.Options{})
			return time.Since(start).Seconds() * 1000, err
		})
		if err != nil {
			return nft.Ruleset{}, fmt.Errorf("compile %d endpoints: %w", n, err)
		}
		times = append(times, s)
	}
	if !o.parts["compile"] {
		return rs, nil
	}
	if n == o.sizes[0] {
		fmt.Printf("## Compile (%d policies; median of %d compiles; the Set decoded once)\n\n", o.policies, reps)
		fmt.Println("| endpoints | decode + Set | Compile | chains | rules | sets | set elements | max foreign cores |")
		fmt.Println("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	}
	med, noisy, mf := summary(times, o.quiet)
	c := countsOf(&rs)
	fmt.Printf("| %d | %.0f ms | %.0f ms%s | %d | %d | %d | %d | %.2f |\n", n, decode.Seconds()*1000, med,
		noisyMark(noisy, len(times)), c.Chains, c.Rules, c.Sets, c.Elements, mf)
	if n == o.sizes[len(o.sizes)-1] {
		fmt.Println()
	}
	return rs, nil
}

// table is one configuration of r's filtering.
type table struct {
	name string
	set  func(ctx context.Context) error
}

// labParts runs connrate, iperf and update in the lab.
func labParts(ctx context.Context, o options, l *lab, rulesets map[int]nft.Ruleset, largest int) error {
	nc, err := nft.Connect(int(l.hostNS))
	if err != nil {
		return err
	}
	defer nc.CloseLasting()
	conn := &countingConn{Conn: nc}
	a := nft.New(nft.Config{Conn: conn})
	const ctOnly = "table inet bench {\n\tchain established {\n\t\ttype filter hook forward priority filter; policy accept;\n" +
		"\t\tct state established,related accept\n\t}\n}\n"
	dropBench := func(ctx context.Context) error {
		return l.nft(ctx, "table inet bench\ndelete table inet bench\n", "-f", "-")
	}
	none := table{"no table", func(ctx context.Context) error {
		if err := a.Remove(ctx); err != nil {
			return err
		}
		return dropBench(ctx)
	}}
	tables := []table{none, {"ct state established,related accept only", func(ctx context.Context) error {
		if err := a.Remove(ctx); err != nil {
			return err
		}
		return l.nft(ctx, "table inet bench\ndelete table inet bench\n"+ctOnly, "-f", "-")
	}}}
	weft := func(n int) table {
		return table{fmt.Sprintf("weft, %d endpoints", n), func(ctx context.Context) error {
			if err := dropBench(ctx); err != nil {
				return err
			}
			return a.Replace(ctx, rulesets[n])
		}}
	}
	for _, n := range o.sizes {
		tables = append(tables, weft(n))
	}
	if o.narrow {
		w := world{endpoints: largest, policies: o.policies, relabel: -1, remove: -1, narrow: true}
		narrow, err := w.compile()
		if err != nil {
			return err
		}
		tables = append(tables, table{fmt.Sprintf("weft, %d endpoints, client and server in no generated policy", largest),
			func(ctx context.Context) error {
				if err := dropBench(ctx); err != nil {
					return err
				}
				return a.Replace(ctx, narrow)
			}})
	}

	// The policy is enforced: the client reaches the server's ports, but
	// not deniedPort, which it reaches without a table.
	for _, tb := range []table{none, weft(largest)} {
		if err := tb.set(ctx); err != nil {
			return err
		}
		okConn, err := l.reaches(connPort, 2*time.Second)
		if err != nil {
			return err
		}
		okDenied, err := l.reaches(deniedPort, 500*time.Millisecond)
		if err != nil {
			return err
		}
		o.log.Info("check", "table", tb.name, "conn_port_reached", okConn, "denied_port_reached", okDenied)
		if !okConn || okDenied == (tb.name != none.name) {
			return fmt.Errorf("%s: client reaches port %d: %v, port %d: %v; the lab does not work as intended",
				tb.name, connPort, okConn, deniedPort, okDenied)
		}
	}

	if o.parts["connrate"] {
		if err := connRatePart(ctx, o, l, tables); err != nil {
			return err
		}
	}
	if o.parts["iperf"] {
		if err := iperfPart(ctx, o, l, []table{none, weft(largest)}); err != nil {
			return err
		}
	}
	if o.parts["update"] {
		if err := updatePart(ctx, o, a, conn, rulesets[largest], largest); err != nil {
			return err
		}
	}
	return nil
}

func connRatePart(ctx context.Context, o options, l *lab, tables []table) error {
	res := make([][]sample, len(tables))
	fails := make([]int64, len(tables))
	for run := range o.runs {
		for i, tb := range tables {
			if err := tb.set(ctx); err != nil {
				return err
			}
			if err := l.flushConntrack(); err != nil {
				return err
			}
			var failed int64
			s, err := measure(ctx, o, func() (float64, error) {
				r, f, err := l.connRate(ctx, o.duration, o.dialers)
				failed = f
				return r, err
			})
			if err != nil {
				return err
			}
			fails[i] += failed
			res[i] = append(res[i], s)
			o.log.Info("connrate", "run", run+1, "table", tb.name, "conns_per_s", fmt.Sprintf("%.0f", s.value),
				"failed", failed, "foreign_cores", fmt.Sprintf("%.2f", s.foreign))
		}
	}
	base, _, _ := summary(res[0], o.quiet)
	fmt.Printf("## New TCP connections per second through r (%d dialers, %v per run, %d runs interleaved; median of the quiet runs)\n\n",
		o.dialers, o.duration, o.runs)
	fmt.Println("| table on r | connections/s | vs no table | runs (conns/s, * noisy) | max foreign cores | failed dials |")
	fmt.Println("| --- | ---: | ---: | --- | ---: | ---: |")
	for i, tb := range tables {
		med, noisy, mf := summary(res[i], o.quiet)
		var runs []string
		for _, s := range res[i] {
			mark := ""
			if s.foreign >= o.quiet {
				mark = "*"
			}
			runs = append(runs, fmt.Sprintf("%.0f%s", s.value, mark))
		}
		fmt.Printf("| %s | %.0f%s | %.2fx | %s | %.2f | %d |\n", tb.name, med, noisyMark(noisy, len(res[i])), med/base,
			strings.Join(runs, ", "), mf, fails[i])
	}
	fmt.Println()
	return nil
}

func iperfPart(ctx context.Context, o options, l *lab, tables []table) error {
	if err := tables[0].set(ctx); err != nil {
		return err
	}
	if err := l.startIperf(ctx); err != nil {
		return err
	}
	res := make([][]sample, len(tables))
	for run := range o.iperfRuns {
		for i, tb := range tables {
			if err := tb.set(ctx); err != nil {
				return err
			}
			s, err := measure(ctx, o, func() (float64, error) { return l.iperf(ctx, o.iperfTime) })
			if err != nil {
				return err
			}
			res[i] = append(res[i], s)
			o.log.Info("iperf", "run", run+1, "table", tb.name, "gbit_s", fmt.Sprintf("%.2f", s.value),
				"foreign_cores", fmt.Sprintf("%.2f", s.foreign))
		}
	}
	base, _, _ := summary(res[0], o.quiet)
	fmt.Printf("## iperf3 TCP throughput, client to server through r (1 stream, %v, %d runs interleaved)\n\n", o.iperfTime, o.iperfRuns)
	fmt.Println("| table on r | Gbit/s | vs no table | runs (* noisy) | max foreign cores |")
	fmt.Println("| --- | ---: | ---: | --- | ---: |")
	for i, tb := range tables {
		med, noisy, mf := summary(res[i], o.quiet)
		var runs []string
		for _, s := range res[i] {
			mark := ""
			if s.foreign >= o.quiet {
				mark = "*"
			}
			runs = append(runs, fmt.Sprintf("%.1f%s", s.value, mark))
		}
		fmt.Printf("| %s | %.1f%s | %.2fx | %s | %.2f |\n", tb.name, med, noisyMark(noisy, len(res[i])), med/base,
			strings.Join(runs, ", "), mf)
	}
	fmt.Println()
	return nil
}

// updatePart measures Apply for single changes against the table of n
// endpoints, Replace of the whole table, and a restarted agent's first
// Apply. Variants of the world are compiled beforehand (their compile
// time is reported apart: it is not the Applier's).
func updatePart(ctx context.Context, o options, a *nft.Applier, conn *countingConn, base nft.Ruleset, n int) error {
	const picks = 5
	type variant struct{ label, removed nft.Ruleset }
	var vs []variant
	var compiles []float64
	for k := range picks {
		i := (k*n)/picks + 3
		o.log.Info("compile variants", "endpoint", i)
		start := time.Now()
		label, err := world{endpoints: n, policies: o.policies, relabel: i, remove: -1}.compile()
		if err != nil {
			return err
		}
		compiles = append(compiles, time.Since(start).Seconds()*1000)
		removed, err := world{endpoints: n, policies: o.policies, relabel: -1, remove: i}.compile()
		if err != nil {
			return err
		}
		vs = append(vs, variant{label, removed})
	}
	if err := a.Replace(ctx, base); err != nil {
		return err
	}
	kinds := []string{"label changed", "label changed back", "endpoint removed", "endpoint added"}
	lat := map[string][]float64{}
	var foreignMax float64
	per := max(1, o.changes/picks)
	replaces := conn.replaces
	for k, v := range vs {
		waitQuiet(ctx, o.quiet, o.quietWait, o.log)
		mark := markCPU()
		for range per {
			for j, rs := range []nft.Ruleset{v.label, base, v.removed, base} {
				start := time.Now()
				if err := a.Apply(ctx, rs); err != nil {
					return fmt.Errorf("apply %s: %w", kinds[j], err)
				}
				lat[kinds[j]] = append(lat[kinds[j]], time.Since(start).Seconds()*1000)
			}
		}
		f := foreign(mark, markCPU())
		foreignMax = max(foreignMax, f)
		o.log.Info("updates", "endpoint_pick", k+1, "foreign_cores", fmt.Sprintf("%.2f", f))
	}
	if conn.replaces != replaces {
		return fmt.Errorf("%d of the incremental updates replaced the whole table", conn.replaces-replaces)
	}
	var full []sample
	for range o.replaces {
		s, err := measure(ctx, o, func() (float64, error) {
			start := time.Now()
			err := a.Replace(ctx, base)
			return time.Since(start).Seconds() * 1000, err
		})
		if err != nil {
			return err
		}
		full = append(full, s)
	}
	var restart []sample
	for range o.replaces {
		s, err := measure(ctx, o, func() (float64, error) {
			fresh := nft.New(nft.Config{Conn: conn})
			start := time.Now()
			err := fresh.Apply(ctx, base)
			return time.Since(start).Seconds() * 1000, err
		})
		if err != nil {
			return err
		}
		restart = append(restart, s)
	}
	fmt.Printf("## Updates against the table of %d endpoints and %d policies (one open netlink socket)\n\n", n, o.policies)
	fmt.Printf("Each change is one Applier.Apply of a ruleset compiled beforehand (compiling the world with one\n"+
		"endpoint relabelled took %.0f ms, median of %d; it is not in the times below). %d endpoints picked,\n"+
		"%d times each; foreign cores up to %.2f during the incremental runs. None replaced the table.\n\n",
		median(compiles), len(compiles), picks, per, foreignMax)
	fmt.Println("| change | samples | p50 | p90 | p99 | max |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: |")
	for _, k := range kinds {
		xs := lat[k]
		fmt.Printf("| %s (incremental) | %d | %.2f ms | %.2f ms | %.2f ms | %.2f ms |\n", k, len(xs),
			percentile(xs, 50), percentile(xs, 90), percentile(xs, 99), percentile(xs, 100))
	}
	for _, r := range []struct {
		name string
		ss   []sample
	}{{"full atomic replace (Replace, the resync)", full}, {"restarted agent, table current (version check)", restart}} {
		var xs []float64
		noisy := 0
		for _, s := range r.ss {
			xs = append(xs, s.value)
			if s.foreign >= o.quiet {
				noisy++
			}
		}
		fmt.Printf("| %s | %d%s | %.2f ms | %.2f ms | %.2f ms | %.2f ms |\n", r.name, len(xs), noisyMark(noisy, len(xs)),
			percentile(xs, 50), percentile(xs, 90), percentile(xs, 99), percentile(xs, 100))
	}
	fmt.Println()
	return nil
}

// kernelMem returns SUnreclaim + VmallocUsed + Percpu of /proc/meminfo, in
// kB: where nftables objects (kmalloc, kvmalloc'd rule blobs, per-CPU
// counters) live.
func kernelMem() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var total int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 2 && (fs[0] == "SUnreclaim:" || fs[0] == "VmallocUsed:" || fs[0] == "Percpu:") {
			v, _ := strconv.ParseInt(fs[1], 10, 64)
			total += v
		}
	}
	return total, sc.Err()
}

// memoryPart loads the table of n endpoints into a fresh namespace and
// back out, o.memRuns times, and reports the kernel memory it took.
func memoryPart(ctx context.Context, o options, rs nft.Ruleset, n int) error {
	name := fmt.Sprintf("pdmem-%d", os.Getpid())
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add %s: %w: %s", name, err, out)
	}
	defer exec.Command("ip", "netns", "del", name).Run()
	h, err := netns.GetFromName(name)
	if err != nil {
		return err
	}
	defer h.Close()
	conn, err := nft.Connect(int(h))
	if err != nil {
		return err
	}
	defer conn.CloseLasting()
	a := nft.New(nft.Config{Conn: conn})
	var deltas []sample
	for range o.memRuns {
		s, err := measure(ctx, o, func() (float64, error) {
			before, err := kernelMem()
			if err != nil {
				return 0, err
			}
			if err := a.Replace(ctx, rs); err != nil {
				return 0, err
			}
			time.Sleep(time.Second) // RCU frees what the transaction replaced
			after, err := kernelMem()
			if err != nil {
				return 0, err
			}
			if err := a.Remove(ctx); err != nil {
				return 0, err
			}
			time.Sleep(2 * time.Second)
			return float64(after - before), nil
		})
		if err != nil {
			return err
		}
		deltas = append(deltas, s)
		o.log.Info("memory", "kB", s.value, "foreign_cores", fmt.Sprintf("%.2f", s.foreign))
	}
	med, noisy, mf := summary(deltas, o.quiet)
	var runs []string
	for _, s := range deltas {
		runs = append(runs, fmt.Sprintf("%.0f", s.value))
	}
	c := countsOf(&rs)
	fmt.Printf("## Kernel memory of the table (%d endpoints, %d policies)\n\n", n, o.policies)
	fmt.Println("SUnreclaim + VmallocUsed + Percpu of /proc/meminfo before and 1 s after loading the table into an")
	fmt.Println("empty namespace; the machine's other processes move these too (median of the runs).")
	fmt.Println()
	fmt.Println("| table | kernel memory | per endpoint | runs (kB) | max foreign cores |")
	fmt.Println("| --- | ---: | ---: | --- | ---: |")
	fmt.Printf("| %d chains, %d rules, %d sets, %d elements | %.1f MB%s | %.2f kB | %s | %.2f |\n\n", c.Chains, c.Rules, c.Sets, c.Elements,
		med/1024, noisyMark(noisy, len(deltas)), med/float64(n), strings.Join(runs, ", "), mf)
	return nil
}

// countingConn counts the table replaces (DelTable) sent through it.
type countingConn struct {
	*nftables.Conn
	replaces int
}

func (c *countingConn) DelTable(t *nftables.Table) {
	c.replaces++
	c.Conn.DelTable(t)
}
