package gossip

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// cpuMark is the CPU time used so far by this process and by the whole
// machine (from /proc/stat), to tell how busy other processes kept the
// shared machine during a benchmark (as bench/convergence does).
type cpuMark struct {
	wall          time.Time
	ours, machine time.Duration
}

func markCPU() cpuMark {
	m := cpuMark{wall: time.Now()}
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) == nil {
		m.ours = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
		for i, v := range f {
			if i == 0 || i == 4 || i == 5 {
				continue // the label, idle, iowait
			}
			if i > 8 {
				break // guest time is counted in user already
			}
			n, _ := strconv.ParseInt(v, 10, 64)
			m.machine += time.Duration(n) * 10 * time.Millisecond // USER_HZ is 100 on Linux
		}
	}
	return m
}

// foreignCores returns how many cores other processes kept busy, on average, between a and b.
func foreignCores(a, b cpuMark) float64 {
	wall := b.wall.Sub(a.wall)
	if wall <= 0 {
		return 0
	}
	return max(0, float64((b.machine-a.machine)-(b.ours-a.ours))/float64(wall))
}

// BenchmarkStorePropagation measures, in a cluster of 20 in-process
// Memberships on loopback with the default timers (GossipInterval 200 ms,
// encryption on), the time from a Put on a random node until all 20 hold
// the entry; for a baseline, the same for a node record update
// (SetRecord), memberlist's own metadata path, in the same cluster and run.
// It reports the mean as ns/op and the p50 and p99 in ms.
//
//	go test -run '^$' -bench BenchmarkStorePropagation -benchtime 50x ./gossip
func BenchmarkStorePropagation(b *testing.B) {
	const n = 20
	ms := startStoreCluster(b, n, nil)
	// go test -count repeats each sub-benchmark on this one cluster: keys
	// and records must not repeat, or a no-op write would measure nothing.
	var seq int
	everywhere := func(cond func(*Membership) bool) time.Duration {
		start := time.Now()
		deadline := start.Add(60 * time.Second)
		for {
			if !slices.ContainsFunc(ms, func(m *Membership) bool { return !cond(m) }) {
				return time.Since(start)
			}
			if time.Now().After(deadline) {
				b.Fatal("not everywhere after 60 s")
			}
			time.Sleep(time.Millisecond)
		}
	}
	report := func(b *testing.B, ds []time.Duration, start cpuMark) {
		b.ReportMetric(foreignCores(start, markCPU()), "foreign-cores")
		slices.Sort(ds)
		b.Logf("slowest: %v", ds[max(0, len(ds)-5):])
		b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(ds[(len(ds)*99)/100].Microseconds())/1000, "p99-ms")
	}
	put := func(size int) func(b *testing.B) {
		return func(b *testing.B) {
			var ds []time.Duration
			cpu := markCPU()
			for b.Loop() {
				seq++
				src := ms[rand.N(n)]
				key := fmt.Sprintf("GlobalNetworkPolicy//bench-%d", seq)
				value := bytes.Repeat([]byte{'v'}, size)
				start := time.Now()
				if _, err := src.Put(StorePolicy, key, value); err != nil {
					b.Fatal(err)
				}
				everywhere(func(m *Membership) bool { _, ok := m.Get(StorePolicy, key); return ok })
				ds = append(ds, time.Since(start))
			}
			report(b, ds, cpu)
		}
	}
	b.Run("store-put-200B", put(200))
	b.Run("store-put-20KiB", put(20<<10))
	b.Run("record-update-baseline", func(b *testing.B) {
		var ds []time.Duration
		cpu := markCPU()
		for b.Loop() {
			seq++
			src := ms[rand.N(n)]
			rec := testRecord("c1", fmt.Sprintf("10.%d.%d.0/24", 100+seq/250, seq%250))
			start := time.Now()
			if err := src.SetRecord(rec, 0); err != nil {
				b.Fatal(err)
			}
			name := src.cfg.NodeName
			everywhere(func(m *Membership) bool { mem, ok := member(m, name); return m == src || ok && mem.Record.Equal(rec) })
			ds = append(ds, time.Since(start))
		}
		report(b, ds, cpu)
	})
}
