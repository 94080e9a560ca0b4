package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/weft-net/weft/internal/api"
	"github.com/weft-net/weft/internal/lab"
	"github.com/weft-net/weft/internal/netlab"
)

// weft runs the weft binary (in the root namespace: the API is a unix
// socket, no network is involved) and returns its output and exit code.
func weft(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(weftBinary, args...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run weft %v: %v", args, err)
	}
	return string(out), code
}

// TestCLI: status and peers as tables and JSON; leave takes a node out and
// the others drop it at once; asking a stopped agent gives a clear message.
func TestCLI(t *testing.T) {
	c := newCluster(t, twoSegments(2, 1), nil)
	hosts := c.Lab().Hosts()
	seeds := []string{c.Lab().HostAddr("a1").String()}
	startAll(t, c, hosts, seeds)
	waitConverged(t, c, hosts, 60*time.Second)

	out, code := weft(t, "peers", "--run-dir", c.RunDir("a1"), "--output", "json")
	if code != 0 {
		t.Fatalf("weft peers: exit %d: %s", code, out)
	}
	var peers []api.Peer
	if err := json.Unmarshal([]byte(out), &peers); err != nil || len(peers) != 3 {
		t.Fatalf("weft peers --output json: %v, %d peers:\n%s", err, len(peers), out)
	}
	out, code = weft(t, "peers", "--run-dir", c.RunDir("a1"))
	if code != 0 || !strings.HasPrefix(out, "NAME") || !strings.Contains(out, "a1 *") || strings.Count(out, "\n") != 4 {
		t.Errorf("weft peers table (exit %d):\n%s", code, out)
	}
	out, code = weft(t, "status", "--run-dir", c.RunDir("b1"))
	flat := strings.Join(strings.Fields(out), " ")
	if code != 0 || !strings.Contains(flat, "members: 3 alive, 0 dead") || !strings.Contains(flat, "health: ok") {
		t.Errorf("weft status (exit %d):\n%s", code, out)
	}

	out, code = weft(t, "leave", "--run-dir", c.RunDir("b1"))
	if code != 0 {
		t.Fatalf("weft leave: exit %d: %s", code, out)
	}
	if err := c.Exited("b1", 10*time.Second); err != nil {
		t.Fatalf("agent after leave: %v", err)
	}
	for _, h := range []string{"a1", "a2"} {
		poll(t, 5*time.Second, h+" drops b1", func() (bool, string) {
			_, ok := peerOf(t, c, h, "b1")
			return !ok, "still listed"
		})
	}
	out, code = weft(t, "status", "--run-dir", c.RunDir("b1"))
	if code != 1 || !strings.Contains(out, "no weft agent is running") {
		t.Errorf("status without agent: exit %d: %s", code, out)
	}
	out, code = weft(t, "status", "--run-dir", c.RunDir("a1"), "--output", "yaml")
	if code != 2 || !strings.Contains(out, "--output") {
		t.Errorf("bad --output: exit %d: %s", code, out)
	}
}

// TestLabCommand: `weft lab --keep --output json` reports every pair
// reachable and leaves the lab up; `weft lab down` removes it.
func TestLabCommand(t *testing.T) {
	netlab.RequireRoot(t)
	cmd := exec.Command(weftBinary, "lab", "--keep", "--output", "json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	t.Cleanup(func() { exec.Command(weftBinary, "lab", "down").Run() })
	if err != nil {
		t.Fatalf("weft lab: %v\n%s\n%s", err, out, stderr.String())
	}
	var rep lab.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("weft lab --output json: %v\n%s", err, out)
	}
	if rep.Failed != 0 || len(rep.Workloads) != 5 || len(rep.Hosts) != 5 || !rep.Kept {
		t.Errorf("report: %d failed, %d workloads, %d hosts, kept %v", rep.Failed, len(rep.Workloads), len(rep.Hosts), rep.Kept)
	}
	for _, step := range []string{"[1] build topology", "attach one labelled workload", "registered as endpoint h1/w1", "ping between every pair"} {
		if !strings.Contains(stderr.String(), step) {
			t.Errorf("progress lacks %q:\n%s", step, stderr.String())
		}
	}
	for _, w := range rep.Workloads {
		if w.Labels["app"] == "" || w.Labels["tier"] == "" || w.Labels["env"] == "" {
			t.Errorf("workload %s has labels %v, want app, tier and env", w.Name, w.Labels)
		}
	}
	// Every host's agent lists every workload as an endpoint.
	for _, h := range rep.Hosts {
		poll(t, 10*time.Second, "weft endpoint list on "+h.Name, func() (bool, string) {
			list, code := weft(t, "endpoint", "list", "-o", "json", "--run-dir", h.RunDir)
			var eps []struct{ Node, Name string }
			if code != 0 || json.Unmarshal([]byte(list), &eps) != nil {
				return false, fmt.Sprintf("exit %d: %s", code, list)
			}
			return len(eps) == len(rep.Workloads), fmt.Sprintf("%d endpoints, want %d", len(eps), len(rep.Workloads))
		})
	}
	// The kept lab answers: a workload pings another.
	w1, w5 := rep.Workloads[0], rep.Workloads[4]
	if err := exec.Command("ip", "netns", "exec", rep.Prefix+"-"+w1.Name, "ping", "-c1", "-W2", w5.Addr.String()).Run(); err != nil {
		t.Errorf("kept lab: %s cannot ping %s: %v", w1.Name, w5.Name, err)
	}
	down, err := exec.Command(weftBinary, "lab", "down").CombinedOutput()
	if err != nil || !strings.Contains(string(down), "removed lab "+rep.Prefix) {
		t.Fatalf("weft lab down: %v\n%s", err, down)
	}
	names, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(names), rep.Prefix+"-") {
		t.Errorf("namespaces left after lab down:\n%s", names)
	}
}
