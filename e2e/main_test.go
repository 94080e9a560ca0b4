// Package e2e holds weft's end-to-end tests: several hosts in network
// namespaces, each running the real weft binary, real packets between them.
// They need root; without it they skip with a message.
package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-net/weft/internal/lab"
	"github.com/weft-net/weft/internal/netlab"
)

// weftBinary is the weft binary built once by TestMain (empty when not root).
var weftBinary string

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() != 0 {
			return m.Run() // every test skips through netlab.RequireRoot
		}
		dir, err := os.MkdirTemp("", "weft-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "make temp dir:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		weftBinary = filepath.Join(dir, "weft")
		out, err := exec.Command("go", "build", "-o", weftBinary, "github.com/weft-net/weft/cmd/weft").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build weft: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// twoSegments returns a topology of two L2 segments joined by router rt,
// with nA hosts a1.. on segment sa and nB hosts b1.. on segment sb.
func twoSegments(nA, nB int) netlab.Topology {
	t := netlab.Topology{
		Segments: []netlab.Segment{
			{Name: "sa", Prefix: netip.MustParsePrefix("198.18.10.0/24")},
			{Name: "sb", Prefix: netip.MustParsePrefix("198.18.20.0/24")},
		},
		Routers: []netlab.Router{{Name: "rt", Segments: []string{"sa", "sb"}}},
	}
	for i := 1; i <= nA; i++ {
		t.Hosts = append(t.Hosts, netlab.Host{Name: fmt.Sprintf("a%d", i), Segment: "sa"})
	}
	for i := 1; i <= nB; i++ {
		t.Hosts = append(t.Hosts, netlab.Host{Name: fmt.Sprintf("b%d", i), Segment: "sb"})
	}
	return t
}

// newCluster builds topo in namespaces and returns a cluster of (not yet
// started) agents; everything is removed when the test ends, and the agents'
// logs are printed if it failed.
func newCluster(t *testing.T, topo netlab.Topology, cfg map[string]any) *lab.Cluster {
	t.Helper()
	netlab.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := netlab.Build(ctx, topo, netlab.Options{})
	if err != nil {
		t.Fatalf("build lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})
	c, err := lab.NewCluster(l, lab.ClusterOptions{
		Binary:  weftBinary,
		Dir:     t.TempDir(),
		Regions: map[string]string{"sa": "r1", "sb": "r1"},
		Config:  cfg,
	})
	if err != nil {
		t.Fatalf("new cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("stop agents: %v", err)
		}
		if t.Failed() {
			for _, h := range l.Hosts() {
				t.Logf("--- log of %s ---\n%s", h, lastLines(c.Log(h), 40))
			}
		}
	})
	return c
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startAll starts an agent on each host with the given seeds.
func startAll(t *testing.T, c *lab.Cluster, hosts []string, seeds []string) {
	t.Helper()
	for _, h := range hosts {
		if err := c.Start(h, seeds, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// waitConverged waits until every host sees exactly hosts alive with distinct subnets.
func waitConverged(t *testing.T, c *lab.Cluster, hosts []string, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	start := time.Now()
	if err := c.WaitConverged(ctx, hosts, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d agents converged in %s", len(hosts), time.Since(start).Round(10*time.Millisecond))
}

// poll calls cond until it returns true or the deadline passes.
func poll(t *testing.T, within time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	why := ""
	for time.Since(start) < within {
		var ok bool
		if ok, why = cond(); ok {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %s", what, within, why)
	return 0
}
