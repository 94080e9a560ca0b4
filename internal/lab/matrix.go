package lab

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/weft-net/weft/internal/netlab"
)

// Matrix is a square table of results between hosts (paths) or workloads
// (pings): Cells[from][to].
type Matrix struct {
	Names []string                     `json:"names"`
	Cells map[string]map[string]string `json:"cells"`
}

func newMatrix(names []string) Matrix {
	m := Matrix{Names: names, Cells: map[string]map[string]string{}}
	for _, n := range names {
		m.Cells[n] = map[string]string{}
	}
	return m
}

// Render writes m as a table: rows are "from", columns "to".
func (m Matrix) Render(w io.Writer, corner string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, corner)
	for _, n := range m.Names {
		fmt.Fprint(tw, "\t", n)
	}
	fmt.Fprintln(tw)
	for _, from := range m.Names {
		fmt.Fprint(tw, from)
		for _, to := range m.Names {
			v := m.Cells[from][to]
			if from == to {
				v = "-"
			}
			fmt.Fprint(tw, "\t", v)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// PathMatrix asks every host's agent for the path it chose to every other.
func (c *Cluster) PathMatrix(ctx context.Context, hosts []string) (Matrix, error) {
	m := newMatrix(hosts)
	for _, h := range hosts {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		rs, err := c.Client(h).Routes(qctx)
		cancel()
		if err != nil {
			return m, fmt.Errorf("routes of %s: %w", h, err)
		}
		for _, r := range rs.Routes {
			v := r.Path
			if !r.InKernel {
				v += " (not in kernel)"
			}
			m.Cells[h][r.Peer] = v
		}
	}
	return m, nil
}

// DataPlaneReady reports whether every host has a path other than none to
// every other host, and the kernel holds it; when not, it says why.
func (c *Cluster) DataPlaneReady(ctx context.Context, hosts []string) (bool, string) {
	for _, h := range hosts {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		rs, err := c.Client(h).Routes(qctx)
		cancel()
		if err != nil {
			return false, fmt.Sprintf("%s: %v", h, err)
		}
		seen := 0
		for _, r := range rs.Routes {
			if r.Path == "none" || r.Path == "" {
				return false, fmt.Sprintf("%s has no path to %s: %s", h, r.Peer, r.Reason)
			}
			if !r.InKernel {
				return false, fmt.Sprintf("%s: route to %s not in the kernel yet: %s", h, r.Peer, strings.Join(r.Mismatch, "; "))
			}
			seen++
		}
		if seen != len(hosts)-1 {
			return false, fmt.Sprintf("%s plans %d of %d peers", h, seen, len(hosts)-1)
		}
		if rs.LastError != "" {
			return false, fmt.Sprintf("%s: %s", h, rs.LastError)
		}
	}
	return true, ""
}

// Ping pings to from inside the namespace of node (a host or workload),
// up to tries times, two seconds each; it reports success.
func Ping(ctx context.Context, l *netlab.Lab, node string, to netip.Addr, tries int) bool {
	for range tries {
		cmd := l.Command(ctx, node, "ping", "-c1", "-W2", "-n", "-q", to.String())
		if cmd.Run() == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
	}
	return false
}

// PingMatrix pings between every pair of workloads, concurrently, and
// returns "ok" or "FAIL" per pair and how many failed.
func PingMatrix(ctx context.Context, l *netlab.Lab, ws []netlab.Workload) (Matrix, int) {
	names := make([]string, len(ws))
	for i, w := range ws {
		names[i] = w.Name
	}
	m := newMatrix(names)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	failed := 0
	for _, src := range ws {
		for _, dst := range ws {
			if src.Name == dst.Name {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				res := "ok"
				if !Ping(ctx, l, src.Name, dst.Addr, 3) {
					res = "FAIL"
				}
				mu.Lock()
				m.Cells[src.Name][dst.Name] = res
				if res != "ok" {
					failed++
				}
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	return m, failed
}
