package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Machine describes where and how the numbers were measured.
type Machine struct {
	Date     string `json:"date"`
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpuModel"`
	Kernel   string `json:"kernel"`
	Go       string `json:"go"`
	Iperf3   string `json:"iperf3"`
	Nft      string `json:"nft"`
	Command  string `json:"command"`
}

// machine reads the conditions of this run: date (UTC), CPUs, CPU model,
// kernel release, Go and iperf3 versions, and the command line.
func machine() Machine {
	m := Machine{
		Date:    time.Now().UTC().Format(time.RFC3339),
		CPUs:    runtime.NumCPU(),
		Go:      runtime.Version(),
		Command: commandLine(os.Args),
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if out, err := exec.Command("iperf3", "--version").Output(); err == nil {
		m.Iperf3, _, _ = strings.Cut(string(out), "\n")
	}
	if out, err := exec.Command("nft", "--version").Output(); err == nil {
		m.Nft = strings.TrimSpace(string(out))
	}
	return m
}

// commandLine renders args as the command that ran them: `go run` builds
// into a temp dir, so its binary is shown as `go run ./bench/policydp`.
func commandLine(args []string) string {
	if len(args) == 0 {
		return ""
	}
	name := args[0]
	if strings.Contains(name, "/go-build") {
		name = "go run ./bench/policydp"
	}
	return strings.Join(append([]string{name}, args[1:]...), " ")
}

func (m Machine) String() string {
	return fmt.Sprintf("%s: %d CPUs, %s, kernel %s, %s, %s, %s", m.Date, m.CPUs, m.CPUModel, m.Kernel, m.Go, m.Iperf3, m.Nft)
}

// median returns the median of xs, or -1 for none. xs is not changed.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return -1
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// cpuMark is the CPU time used so far by this benchmark and by the whole
// machine, and when it was read.
type cpuMark struct {
	wall    time.Time
	ours    time.Duration
	machine time.Duration
}

// markCPU reads the clocks. "Ours" is this process, its children (iperf3,
// the lab's agents: `ip netns exec` execs them in place, so they are direct
// children) and the kernel's ksoftirqd threads, which forward the packets
// this benchmark sends. A failed read counts as 0. (Copied from
// bench/dataplane: each benchmark is its own main package.)
func markCPU() cpuMark {
	var m cpuMark
	// A preempted reader skews short windows: read again until the reads
	// lie close together.
	for range 10 {
		start := time.Now()
		m.ours = ourCPU()
		m.machine = machineCPU()
		m.wall = time.Now()
		if m.wall.Sub(start) < 20*time.Millisecond {
			break
		}
	}
	return m
}

// foreign returns how many cores other processes kept busy between a and b:
// this machine is shared, and their load skews every number.
func foreign(a, b cpuMark) float64 {
	wall := b.wall.Sub(a.wall)
	if wall <= 0 {
		return 0
	}
	return max(0, float64((b.machine-a.machine)-(b.ours-a.ours))/float64(wall))
}

// userHZ is the unit of /proc/stat and /proc/<pid>/stat (USER_HZ, 100 on
// every Linux architecture Go supports).
const userHZ = 100

func ourCPU() time.Duration {
	var self, children unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &self)
	_ = unix.Getrusage(unix.RUSAGE_CHILDREN, &children)
	total := time.Duration(self.Utime.Nano() + self.Stime.Nano() + children.Utime.Nano() + children.Stime.Nano())
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return total
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
		// pid (comm) state ppid ... utime stime: comm may hold spaces.
		open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || end < open {
			continue
		}
		comm := string(b[open+1 : end])
		f := strings.Fields(string(b[end+1:]))
		if len(f) < 13 || f[1] != me && !strings.HasPrefix(comm, "ksoftirqd/") {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+st) * time.Second / userHZ
	}
	return total
}

// machineCPU is the busy time of all CPUs from /proc/stat: all but idle and iowait.
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * time.Second / userHZ
}

// waitQuiet waits until other processes use fewer than threshold cores over
// a 2 s window, until maxWait has passed, or until ctx is done. It returns
// the load of the last window.
func waitQuiet(ctx context.Context, threshold float64, maxWait time.Duration, log *slog.Logger) float64 {
	deadline := time.Now().Add(maxWait)
	lastLog := time.Now()
	for {
		a := markCPU()
		if sleep(ctx, 2*time.Second) != nil {
			return 0
		}
		load := foreign(a, markCPU())
		if load < threshold {
			return load
		}
		if time.Now().After(deadline) {
			log.Warn("machine still busy, measuring anyway", "foreign_cores", fmt.Sprintf("%.2f", load))
			return load
		}
		if time.Since(lastLog) > 30*time.Second {
			log.Info("waiting for other processes to calm down", "foreign_cores", fmt.Sprintf("%.2f", load), "threshold", threshold)
			lastLog = time.Now()
		}
	}
}

// sleep waits for d or until ctx is done, and then returns ctx's error.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
