package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/weft-net/weft/internal/netlab"
)

// State is what a kept lab leaves in <StateDir>/<prefix>/lab.json for `weft lab down`.
type State struct {
	Prefix string         `json:"prefix"`
	Dir    string         `json:"dir"`
	Pids   map[string]int `json:"pids"`
}

const stateFile = "lab.json"

func writeState(dir string, s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode lab state: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, stateFile), b, 0o600); err != nil {
		return fmt.Errorf("write lab state: %w", err)
	}
	return nil
}

// Down removes every lab that `weft lab --keep` left running: it stops their
// agents, removes their namespaces and their directories.
func Down(w io.Writer) error {
	entries, err := os.ReadDir(StateDir)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintln(w, "no lab is running")
		return nil
	}
	if err != nil {
		return fmt.Errorf("list labs in %s: %w", StateDir, err)
	}
	var errs []error
	n := 0
	for _, e := range entries {
		dir := filepath.Join(StateDir, e.Name())
		b, err := os.ReadFile(filepath.Join(dir, stateFile))
		if err != nil {
			continue // a lab still being built, or not ours
		}
		var s State
		if err := json.Unmarshal(b, &s); err != nil || s.Prefix == "" || s.Prefix != e.Name() {
			errs = append(errs, fmt.Errorf("lab state %s: malformed", filepath.Join(dir, stateFile)))
			continue
		}
		for host, pid := range s.Pids {
			if err := stopPid(pid); err != nil {
				errs = append(errs, fmt.Errorf("stop agent of %s (pid %d): %w", host, pid, err))
			}
		}
		if err := netlab.Sweep(s.Prefix + "-"); err != nil {
			errs = append(errs, err)
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", dir, err))
		}
		fmt.Fprintf(w, "removed lab %s (%d agents)\n", s.Prefix, len(s.Pids))
		n++
	}
	if n == 0 && len(errs) == 0 {
		fmt.Fprintln(w, "no lab is running")
	}
	return errors.Join(errs...)
}

// stopPid sends SIGTERM, waits up to 5 s, then SIGKILL. A process that is
// gone already is fine. The pid is checked to be a weft agent first, so a
// reused pid is never killed.
func stopPid(pid int) error {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil // gone
	}
	if !isAgentCmdline(cmdline) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return nil
	}
	for range 50 {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}

func isAgentCmdline(b []byte) bool {
	args := splitNul(b)
	for i, a := range args {
		if a == "agent" && i > 0 && filepath.Base(args[0]) != "" {
			return true
		}
	}
	return false
}

func splitNul(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == 0 {
			out = append(out, string(b[start:i]))
			start = i + 1
		}
	}
	return out
}
