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
	// GoMod is the wireguard-go version weft's go.mod requires; WeftDep and
	// Standalone are the versions built into the weft binary and into the
	// standalone wireguard-go binary (from `go version -m`).
	GoMod      string `json:"wireguardGoMod"`
	WeftDep    string `json:"wireguardInWeft"`
	Standalone string `json:"wireguardStandalone"`
	WgTools    string `json:"wgTools"`
	Command    string `json:"command"`
}

// wgModule is wireguard-go's module path.
const wgModule = "golang.zx2c4.com/wireguard"

// machine reads the conditions of this run.
func machine(ctx context.Context, weftBin, wgBin string) Machine {
	m := Machine{
		Date:    time.Now().UTC().Format(time.RFC3339),
		CPUs:    runtime.NumCPU(),
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
	first := func(name string, args ...string) string {
		out, err := exec.CommandContext(ctx, name, args...).Output()
		if err != nil {
			return "unknown (" + err.Error() + ")"
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return line
	}
	m.Go = first("go", "version")
	m.Iperf3 = first("iperf3", "--version")
	m.WgTools = first("wg", "--version")
	m.GoMod = first("go", "list", "-m", wgModule)
	m.WeftDep = buildDep(ctx, weftBin, "dep")
	m.Standalone = buildDep(ctx, wgBin, "mod")
	return m
}

// buildDep returns the version of wireguard-go that `go version -m bin`
// lists on a line of the given kind ("mod": the main module, "dep").
func buildDep(ctx context.Context, bin, kind string) string {
	out, err := exec.CommandContext(ctx, "go", "version", "-m", bin).Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == kind && f[1] == wgModule {
			return f[2]
		}
	}
	return "not found"
}

// commandLine renders args as the command that ran them.
func commandLine(args []string) string {
	if len(args) == 0 {
		return ""
	}
	name := args[0]
	if strings.Contains(name, "/go-build") {
		name = "go run ./bench/wireguard"
	}
	return strings.Join(append([]string{name}, args[1:]...), " ")
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

// userHZ is the unit of /proc/stat and /proc/<pid>/stat (USER_HZ, 100 on
// every Linux architecture Go supports).
const userHZ = 100

// procStat is the parsed part of one /proc/<pid>/stat.
type procStat struct {
	comm string
	ppid int
	cpu  time.Duration // utime + stime
}

// parseStat decodes /proc/<pid>/stat: pid (comm) state ppid ... utime stime.
// comm may hold spaces and parentheses, so it ends at the last ')'.
func parseStat(b []byte) (procStat, error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("parse /proc stat %q: no (comm)", b)
	}
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("parse /proc stat %q: %d fields after comm, want at least 13", b, len(f))
	}
	ppid, err1 := strconv.Atoi(f[1])
	ut, err2 := strconv.ParseInt(f[11], 10, 64)
	st, err3 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return procStat{}, fmt.Errorf("parse /proc stat %q: ppid, utime or stime not a number", b)
	}
	return procStat{comm: string(b[open+1 : end]), ppid: ppid, cpu: time.Duration(ut+st) * time.Second / userHZ}, nil
}

// pidCPU returns the utime+stime of the processes pids, summed.
func pidCPU(pids []int) (time.Duration, error) {
	var total time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, fmt.Errorf("read cpu time of pid %d: %w", pid, err)
		}
		s, err := parseStat(b)
		if err != nil {
			return 0, err
		}
		total += s.cpu
	}
	return total, nil
}

// cpuMark is the CPU time used so far by this benchmark (itself, its
// children and the ksoftirqd threads that forward its packets) and by the
// whole machine, and when it was read.
type cpuMark struct {
	wall          time.Time
	ours, machine time.Duration
	arpFulls      int64
}

func markCPU() cpuMark {
	m := cpuMark{ours: ourCPU(), machine: machineCPU(), arpFulls: arpTableFulls()}
	m.wall = time.Now()
	return m
}

// foreign returns how many cores other processes kept busy between a and
// b: this machine is shared, and their load skews every number.
func foreign(a, b cpuMark) float64 {
	wall := b.wall.Sub(a.wall)
	if wall <= 0 {
		return 0
	}
	return max(0, float64((b.machine-a.machine)-(b.ours-a.ours))/float64(wall))
}

// arpFull reports whether the shared ARP table overflowed between a and b.
func arpFull(a, b cpuMark) bool { return a.arpFulls >= 0 && b.arpFulls > a.arpFulls }

// ourCPU sums this process, its running children (iperf3, ping, the agents
// and wireguard-go processes: `ip netns exec` execs them in place) and
// ksoftirqd. Failed reads count as 0.
func ourCPU() time.Duration {
	var self unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &self)
	total := time.Duration(self.Utime.Nano() + self.Stime.Nano())
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return total
	}
	me := os.Getpid()
	for _, e := range entries {
		if e.Name()[0] < '1' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		if s, err := parseStat(b); err == nil && (s.ppid == me || strings.HasPrefix(s.comm, "ksoftirqd/")) {
			total += s.cpu
		}
	}
	return total
}

// machineCPU is the busy time of all CPUs from /proc/stat: user, nice,
// system and steal. Not irq and softirq: with IRQ time accounting the
// kernel charges the packet work of this benchmark's own transfers there,
// not to its processes, and counting it would make every fast kernel path
// look "noisy".
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
		if i == 3 || i == 4 || i == 5 || i == 6 || i >= 8 { // idle, iowait, irq, softirq; guest time is already in user
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * time.Second / userHZ
}

// arpTableFulls sums the table_fulls column of /proc/net/stat/arp_cache
// (one hex line per CPU). The ARP table is one for all network namespaces
// (gc_thresh3, 1024 entries by default): another lab with many hosts fills
// it, and then new neighbours fail, first packets are dropped and
// handshakes wait for WireGuard's 5 s retry. -1 if unreadable.
func arpTableFulls() int64 {
	b, err := os.ReadFile("/proc/net/stat/arp_cache")
	if err != nil {
		return -1
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 2 {
		return -1
	}
	col := slices.Index(strings.Fields(lines[0]), "table_fulls")
	if col < 0 {
		return -1
	}
	var total int64
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if col >= len(f) {
			return -1
		}
		n, err := strconv.ParseInt(f[col], 16, 64)
		if err != nil {
			return -1
		}
		total += n
	}
	return total
}

// waitQuiet waits until other processes use fewer than threshold cores over
// a 2 s window, until maxWait has passed, or until ctx is done.
func waitQuiet(ctx context.Context, threshold float64, maxWait time.Duration, log *slog.Logger) {
	deadline := time.Now().Add(maxWait)
	for {
		a := markCPU()
		if sleep(ctx, 2*time.Second) != nil {
			return
		}
		b := markCPU()
		load := foreign(a, b)
		if load < threshold && !arpFull(a, b) {
			return
		}
		if time.Now().After(deadline) {
			log.Warn("machine still busy, measuring anyway", "foreign_cores", fmt.Sprintf("%.2f", load))
			return
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
