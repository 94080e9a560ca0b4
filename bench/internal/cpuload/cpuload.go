// Package cpuload measures the CPU time a benchmark (this process and its
// children) and the rest of the machine use, and waits for a quiet
// machine: the development VMs are shared, and other work skews every
// number. Shared by bench/convergence and bench/health.
package cpuload

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Mark is the CPU time used so far by this benchmark (this process and
// its children: the lab's agents) and by the whole machine, and when it was read.
type Mark struct {
	Wall    time.Time // when it was read
	ours    time.Duration
	machine time.Duration
}

func Now() Mark {
	var m Mark
	// On a saturated CPU this goroutine can be preempted between the reads,
	// which skews short windows badly: read again until the reads lie close
	// together.
	for range 10 {
		start := time.Now()
		// A failed read shows as 0 cores; both only fail on a broken /proc.
		m.ours, _ = Ours()
		m.machine, _ = Machine()
		m.Wall = time.Now()
		if m.Wall.Sub(start) < 20*time.Millisecond {
			break
		}
	}
	return m
}

// cores returns how many cores this benchmark kept busy, on average, between a and b.
func Cores(a, b Mark) float64 {
	Wall := b.Wall.Sub(a.Wall)
	if Wall <= 0 {
		return 0
	}
	return float64(b.ours-a.ours) / float64(Wall)
}

// foreign returns how many cores other processes of the machine kept busy
// between a and b: this machine is shared, and their load skews every number.
func Foreign(a, b Mark) float64 {
	Wall := b.Wall.Sub(a.Wall)
	if Wall <= 0 {
		return 0
	}
	return max(0, float64((b.machine-a.machine)-(b.ours-a.ours))/float64(Wall))
}

// Ours is user plus system time of this process, of its children that
// have exited, and of its live children (read from /proc/<pid>/stat).
func Ours() (time.Duration, error) {
	var self, children unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &self); err != nil {
		return 0, fmt.Errorf("getrusage self: %w", err)
	}
	if err := unix.Getrusage(unix.RUSAGE_CHILDREN, &children); err != nil {
		return 0, fmt.Errorf("getrusage children: %w", err)
	}
	total := time.Duration(self.Utime.Nano() + self.Stime.Nano() + children.Utime.Nano() + children.Stime.Nano())
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return total, fmt.Errorf("list /proc: %w", err)
	}
	me := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		if e.Name()[0] < '1' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ... utime stime: comm may hold spaces, so cut at the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 || f[1] != me {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+st) * time.Second / userHZ
	}
	return total, nil
}

// userHZ is the unit of /proc/stat (USER_HZ, 100 on every Linux architecture Go supports).
const userHZ = 100

// Machine is the busy time of all CPUs from /proc/stat: everything but idle and iowait.
func Machine() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read /proc/stat: %w", err)
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 8 || f[0] != "cpu" {
		return 0, fmt.Errorf("parse /proc/stat: first line %q", line)
	}
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc/stat field %d %q: %w", i+1, v, err)
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / userHZ, nil
}

// PeakSampler samples the CPU clocks about every second until stopped,
// keeping this benchmark's busiest window.
type PeakSampler struct {
	stop chan struct{}
	done sync.WaitGroup
	peak float64
}

func StartPeak() *PeakSampler {
	p := &PeakSampler{stop: make(chan struct{})}
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		last := Now()
		for {
			select {
			case <-p.stop:
				return
			case <-time.After(time.Second):
			}
			m := Now()
			// A late wake-up gives a longer window, never a shorter one:
			// tick-based clocks over short windows read as absurd peaks.
			p.peak = max(p.peak, Cores(last, m))
			last = m
		}
	}()
	return p
}

// Stop ends sampling and returns the busiest window in cores.
func (p *PeakSampler) Stop() float64 {
	close(p.stop)
	p.done.Wait()
	return p.peak
}

// WaitQuiet waits until other processes use less than threshold cores over
// a 2 s window, or until maxWait has passed (then it returns false), or ctx is done.
func WaitQuiet(ctx context.Context, threshold float64, maxWait time.Duration, log *slog.Logger) bool {
	deadline := time.Now().Add(maxWait)
	lastLog := time.Now()
	for {
		a := Now()
		select {
		case <-ctx.Done():
			return false
		case <-time.After(2 * time.Second):
		}
		load := Foreign(a, Now())
		if load < threshold {
			return true
		}
		if time.Now().After(deadline) {
			log.Warn("machine still busy, measuring anyway", "foreign_cores", fmt.Sprintf("%.2f", load))
			return false
		}
		if time.Since(lastLog) > 30*time.Second {
			log.Info("waiting for other processes to calm down", "foreign_cores", fmt.Sprintf("%.2f", load), "threshold", threshold)
			lastLog = time.Now()
		}
	}
}
