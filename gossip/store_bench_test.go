package gossip

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

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
	report := func(b *testing.B, ds []time.Duration) {
		slices.Sort(ds)
		b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(ds[(len(ds)*99)/100].Microseconds())/1000, "p99-ms")
	}
	put := func(size int) func(b *testing.B) {
		return func(b *testing.B) {
			var ds []time.Duration
			for i := 0; b.Loop(); i++ {
				src := ms[rand.N(n)]
				key := fmt.Sprintf("GlobalNetworkPolicy//bench-%d-%d", size, i)
				value := bytes.Repeat([]byte{'v'}, size)
				start := time.Now()
				if _, err := src.Put(StorePolicy, key, value); err != nil {
					b.Fatal(err)
				}
				everywhere(func(m *Membership) bool { _, ok := m.Get(StorePolicy, key); return ok })
				ds = append(ds, time.Since(start))
			}
			report(b, ds)
		}
	}
	b.Run("store-put-200B", put(200))
	b.Run("store-put-20KiB", put(20<<10))
	b.Run("record-update-baseline", func(b *testing.B) {
		var ds []time.Duration
		for i := 0; b.Loop(); i++ {
			src := ms[rand.N(n)]
			rec := testRecord("c1", fmt.Sprintf("10.%d.%d.0/24", 100+i/250, i%250))
			start := time.Now()
			if err := src.SetRecord(rec, 0); err != nil {
				b.Fatal(err)
			}
			name := src.cfg.NodeName
			everywhere(func(m *Membership) bool { mem, ok := member(m, name); return m == src || ok && mem.Record.Equal(rec) })
			ds = append(ds, time.Since(start))
		}
		report(b, ds)
	})
}
