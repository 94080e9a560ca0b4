package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
)

// Result is one run: one cluster of N members with one set of timings,
// converged from cold, left alone for the settle time, then one member crashed.
// Durations are in milliseconds; -1 means "did not happen within its timeout".
type Result struct {
	Mode    string `json:"mode"`
	Profile string `json:"profile"`
	N       int    `json:"n"`
	Run     int    `json:"run"`

	// ConvergeMS is the time from the first join (inproc) or the first agent
	// start (lab) until every member sees all N alive.
	ConvergeMS float64 `json:"convergeMs"`
	// MinView is the smallest number of live members any member saw when the
	// convergence wait gave up; N when it converged.
	MinView int `json:"minView"`

	// DetectFirstMS, DetectMedianMS and DetectAllMS are the times from the
	// crash until the first, the median and the last survivor declared the
	// crashed member dead.
	DetectFirstMS  float64 `json:"detectFirstMs"`
	DetectMedianMS float64 `json:"detectMedianMs"`
	DetectAllMS    float64 `json:"detectAllMs"`
	// Detected is how many of the N-1 survivors declared it dead in time.
	Detected int `json:"detected"`

	// FalseDeaths counts (observer, member) pairs where a live member was
	// declared dead, over the whole run.
	FalseDeaths int `json:"falseDeaths"`

	// CPU in cores (1.0 = one core busy) averaged over each phase, and the
	// busiest one-second window of the run: this process and its children
	// (the lab's agents), from getrusage and /proc/<pid>/stat.
	CPUConverge float64 `json:"cpuConverge"`
	CPUSteady   float64 `json:"cpuSteady"`
	CPUDetect   float64 `json:"cpuDetect"`
	CPUPeak     float64 `json:"cpuPeak"`
	// CPUForeign is how many cores other processes of this shared machine
	// used during the run, on average; Noisy is set when that was over -quiet.
	CPUForeign float64 `json:"cpuForeign"`
	Noisy      bool    `json:"noisy,omitempty"`

	Err string `json:"err,omitempty"`
}

// ok reports whether the run converged and every survivor saw the crash.
func (r Result) ok() bool { return r.Err == "" && r.ConvergeMS >= 0 && r.Detected == r.N-1 }

// Summary is the medians over the runs of one (mode, N, profile).
type Summary struct {
	Mode    string `json:"mode"`
	Profile string `json:"profile"`
	N       int    `json:"n"`
	Runs    int    `json:"runs"`
	OK      int    `json:"ok"`
	// Noisy runs (other processes busy) are left out of the medians, unless all were.
	Noisy          int     `json:"noisy"`
	ConvergeMS     float64 `json:"convergeMs"`
	DetectFirstMS  float64 `json:"detectFirstMs"`
	DetectMedianMS float64 `json:"detectMedianMs"`
	DetectAllMS    float64 `json:"detectAllMs"`
	FalseDeaths    int     `json:"falseDeaths"`
	CPUSteady      float64 `json:"cpuSteady"`
	CPUPeak        float64 `json:"cpuPeak"`
}

// summarize groups results by (mode, N, profile) in first-seen order. Medians
// are over the quiet runs that got that far (-1 when none did); noisy runs
// count only when every run of the group was noisy.
func summarize(results []Result) []Summary {
	type key struct {
		mode, profile string
		n             int
	}
	var order []key
	groups := map[key][]Result{}
	for _, r := range results {
		k := key{r.Mode, r.Profile, r.N}
		if _, seen := groups[k]; !seen {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	out := make([]Summary, 0, len(order))
	for _, k := range order {
		rs := groups[k]
		quiet := slices.DeleteFunc(slices.Clone(rs), func(r Result) bool { return r.Noisy })
		s := Summary{Mode: k.mode, Profile: k.profile, N: k.n, Noisy: len(rs) - len(quiet)}
		if len(quiet) > 0 {
			rs = quiet
		}
		s.Runs = len(rs)
		var conv, first, med, all, steady []float64
		for _, r := range rs {
			if r.ok() {
				s.OK++
			}
			s.FalseDeaths += r.FalseDeaths
			s.CPUPeak = max(s.CPUPeak, r.CPUPeak)
			if r.ConvergeMS >= 0 {
				conv = append(conv, r.ConvergeMS)
				steady = append(steady, r.CPUSteady)
			}
			if r.Detected == r.N-1 {
				first = append(first, r.DetectFirstMS)
				med = append(med, r.DetectMedianMS)
				all = append(all, r.DetectAllMS)
			}
		}
		s.ConvergeMS, s.DetectFirstMS, s.DetectMedianMS, s.DetectAllMS = median(conv), median(first), median(med), median(all)
		s.CPUSteady = median(steady)
		out = append(out, s)
	}
	return out
}

// median returns the median of xs, or -1 for none.
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

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// secs renders milliseconds as seconds, or "-" for -1.
func secs(v float64) string {
	if v < 0 {
		return "-"
	}
	return strconv.FormatFloat(v/1000, 'f', 2, 64)
}

// printTables writes the summary and then every run.
func printTables(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tN\tprofile\truns ok\tnoisy\tconverge s\tdead: first s\tmedian s\tall s\tfalse deaths\tcpu steady\tcpu peak\t")
	for _, s := range summarize(results) {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d/%d\t%d\t%s\t%s\t%s\t%s\t%d\t%.2f\t%.2f\t\n", s.Mode, s.N, s.Profile, s.OK, s.Runs, s.Noisy,
			secs(s.ConvergeMS), secs(s.DetectFirstMS), secs(s.DetectMedianMS), secs(s.DetectAllMS), s.FalseDeaths, s.CPUSteady, s.CPUPeak)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nruns (foreign: cores used by other processes; * noisy, left out of the medians):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tN\tprofile\trun\tconverge s\tmin view\tdead: first s\tmedian s\tall s\tdetected\tfalse deaths\tcpu conv\tsteady\tdetect\tpeak\tforeign\t error")
	for _, r := range results {
		noisy := ""
		if r.Noisy {
			noisy = "*"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%d\t%s\t%s\t%s\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f%s\t %s\n", r.Mode, r.N, r.Profile, r.Run,
			secs(r.ConvergeMS), r.MinView, secs(r.DetectFirstMS), secs(r.DetectMedianMS), secs(r.DetectAllMS), r.Detected,
			r.FalseDeaths, r.CPUConverge, r.CPUSteady, r.CPUDetect, r.CPUPeak, r.CPUForeign, noisy, r.Err)
	}
	return tw.Flush()
}

// detectStats fills the detection fields from the survivors' times.
func detectStats(r *Result, times []time.Duration) {
	r.Detected = len(times)
	r.DetectFirstMS, r.DetectMedianMS, r.DetectAllMS = -1, -1, -1
	if len(times) == 0 {
		return
	}
	slices.Sort(times)
	r.DetectFirstMS = ms(times[0])
	r.DetectMedianMS = ms(times[len(times)/2])
	if len(times) == r.N-1 {
		r.DetectAllMS = ms(times[len(times)-1])
	}
}

// cpuMark is the CPU time used so far by this benchmark (this process and
// its children: the lab's agents) and by the whole machine, and when it was read.
type cpuMark struct {
	wall    time.Time
	ours    time.Duration
	machine time.Duration
}

func markCPU() cpuMark {
	var m cpuMark
	// On a saturated CPU this goroutine can be preempted between the reads,
	// which skews short windows badly: read again until the reads lie close
	// together.
	for range 10 {
		start := time.Now()
		// A failed read shows as 0 cores; both only fail on a broken /proc.
		m.ours, _ = ourCPU()
		m.machine, _ = machineCPU()
		m.wall = time.Now()
		if m.wall.Sub(start) < 20*time.Millisecond {
			break
		}
	}
	return m
}

// cores returns how many cores this benchmark kept busy, on average, between a and b.
func cores(a, b cpuMark) float64 {
	wall := b.wall.Sub(a.wall)
	if wall <= 0 {
		return 0
	}
	return float64(b.ours-a.ours) / float64(wall)
}

// foreign returns how many cores other processes of the machine kept busy
// between a and b: this machine is shared, and their load skews every number.
func foreign(a, b cpuMark) float64 {
	wall := b.wall.Sub(a.wall)
	if wall <= 0 {
		return 0
	}
	return max(0, float64((b.machine-a.machine)-(b.ours-a.ours))/float64(wall))
}

// ourCPU is user plus system time of this process, of its children that
// have exited, and of its live children (read from /proc/<pid>/stat).
func ourCPU() (time.Duration, error) {
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

// machineCPU is the busy time of all CPUs from /proc/stat: everything but idle and iowait.
func machineCPU() (time.Duration, error) {
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

// peakSampler samples the CPU clocks about every second until stopped,
// keeping this benchmark's busiest window.
type peakSampler struct {
	stop chan struct{}
	done sync.WaitGroup
	peak float64
}

func startPeak() *peakSampler {
	p := &peakSampler{stop: make(chan struct{})}
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		last := markCPU()
		for {
			select {
			case <-p.stop:
				return
			case <-time.After(time.Second):
			}
			m := markCPU()
			// A late wake-up gives a longer window, never a shorter one:
			// tick-based clocks over short windows read as absurd peaks.
			p.peak = max(p.peak, cores(last, m))
			last = m
		}
	}()
	return p
}

// Stop ends sampling and returns the busiest window in cores.
func (p *peakSampler) Stop() float64 {
	close(p.stop)
	p.done.Wait()
	return p.peak
}

// waitQuiet waits until other processes use less than threshold cores over
// a 2 s window, or until maxWait has passed (then it returns false), or ctx is done.
func waitQuiet(ctx context.Context, threshold float64, maxWait time.Duration, log *slog.Logger) bool {
	deadline := time.Now().Add(maxWait)
	lastLog := time.Now()
	for {
		a := markCPU()
		if err := wait(ctx, nil, 2*time.Second); err != nil {
			return false
		}
		load := foreign(a, markCPU())
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

// Machine describes where the numbers were measured.
type Machine struct {
	Date       string `json:"date"`
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPUModel   string `json:"cpuModel"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
}

func machine() Machine {
	m := Machine{
		Date:       time.Now().UTC().Format(time.RFC3339),
		CPUs:       runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		Go:         runtime.Version(),
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
	return m
}

func (m Machine) String() string {
	return fmt.Sprintf("%s: %d CPUs (GOMAXPROCS %d), %s, kernel %s, %s", m.Date, m.CPUs, m.GOMAXPROCS, m.CPUModel, m.Kernel, m.Go)
}
