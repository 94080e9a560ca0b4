package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
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
	// AliveMS is the same without the lab's subnet condition: until every
	// member sees all N alive. In-process it equals ConvergeMS.
	AliveMS float64 `json:"aliveMs"`
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
	AliveMS        float64 `json:"aliveMs"`
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
		var conv, alive, first, med, all, steady []float64
		for _, r := range rs {
			if r.ok() {
				s.OK++
			}
			s.FalseDeaths += r.FalseDeaths
			s.CPUPeak = max(s.CPUPeak, r.CPUPeak)
			if r.AliveMS >= 0 {
				alive = append(alive, r.AliveMS)
			}
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
		s.AliveMS, s.CPUSteady = median(alive), median(steady)
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
	fmt.Fprintln(tw, "mode\tN\tprofile\truns ok\tnoisy\tconverge s\tall alive s\tdead: first s\tmedian s\tall s\tfalse deaths\tcpu steady\tcpu peak\t")
	for _, s := range summarize(results) {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d/%d\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%.2f\t%.2f\t\n", s.Mode, s.N, s.Profile, s.OK, s.Runs, s.Noisy,
			secs(s.ConvergeMS), secs(s.AliveMS), secs(s.DetectFirstMS), secs(s.DetectMedianMS), secs(s.DetectAllMS), s.FalseDeaths, s.CPUSteady, s.CPUPeak)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nruns (foreign: cores used by other processes; * noisy, left out of the medians):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tN\tprofile\trun\tconverge s\tall alive s\tmin view\tdead: first s\tmedian s\tall s\tdetected\tfalse deaths\tcpu conv\tsteady\tdetect\tpeak\tforeign\t error")
	for _, r := range results {
		noisy := ""
		if r.Noisy {
			noisy = "*"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\t%d\t%s\t%s\t%s\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f%s\t %s\n", r.Mode, r.N, r.Profile, r.Run,
			secs(r.ConvergeMS), secs(r.AliveMS), r.MinView, secs(r.DetectFirstMS), secs(r.DetectMedianMS), secs(r.DetectAllMS), r.Detected,
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
