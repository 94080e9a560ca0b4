package netlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
)

// pollTimeout bounds every wait for the kernel; generous for a busy 2-core VM.
const pollTimeout = 20 * time.Second

// testPrefix returns a run prefix unique to this test run. It does not start
// with "wl", so a concurrent Sweep("wl") elsewhere cannot touch it.
func testPrefix(t *testing.T) string {
	t.Helper()
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random prefix: %v", err)
	}
	return "nlt" + hex.EncodeToString(b[:])
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// leftovers lists the names in /run/netns that start with prefix.
func leftovers(t *testing.T, prefix string) []string {
	t.Helper()
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("list %s: %v", netnsDir, err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names
}

// rootState is what the root namespace must not gain from a lab: routes, IPv4
// addresses and links. The test goroutine's thread is in the root namespace:
// the package only switches threads it locks and restores or discards.
func rootState(t *testing.T) string {
	t.Helper()
	var out []string
	for _, args := range [][]string{{"-4", "route", "show", "table", "all"}, {"-4", "-o", "addr", "show"}} {
		b, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, b)
		}
		out = append(out, string(b))
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatalf("list root links: %v", err)
	}
	for _, k := range links {
		out = append(out, "link "+k.Attrs().Name+"\n")
	}
	return strings.Join(out, "")
}

// ping reports whether one ping from node to host got an answer.
func ping(ctx context.Context, l *Lab, from, to string) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return l.Command(ctx, from, "ping", "-c1", "-W1", "-n", l.HostAddr(to).String()).Run() == nil
}

// waitPing polls ping until its result is want or the deadline passes.
func waitPing(t *testing.T, l *Lab, from, to string, want bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), pollTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if ping(ctx, l, from, to) == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("ping %s -> %s (%s): still %v after %v, want %v", from, to, l.HostAddr(to), !want, pollTimeout, want)
		case <-tick.C:
		}
	}
}

func run(t *testing.T, l *Lab, node string, name string, args ...string) string {
	t.Helper()
	b, err := l.Command(t.Context(), node, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %s %s: %v: %s", node, name, strings.Join(args, " "), err, b)
	}
	return string(b)
}

func TestLabDefault(t *testing.T) {
	RequireRoot(t)
	before := rootState(t)
	prefix := testPrefix(t)
	var steps []string
	l, err := Build(t.Context(), DefaultTopology(), Options{
		Prefix:   prefix,
		Logger:   testLogger(t),
		Progress: func(s string) { steps = append(steps, s) },
	})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})

	if diff := cmp.Diff(before, rootState(t)); diff != "" {
		t.Errorf("root namespace changed by Build (-before +after):\n%s", diff)
	}

	wantSteps := []string{
		"create switch namespace",
		"create segment r1a (198.18.1.0/24)",
		"create segment r1b (198.18.2.0/24)",
		"create segment wan (198.18.0.0/24)",
		"create segment r2a (198.19.1.0/24)",
		"create segment r2n (198.19.2.0/24)",
		"add router rt1",
		"add router rt2",
		"add router nat2",
		"add host h1 on r1a (198.18.1.2)",
		"add host h2 on r1a (198.18.1.3)",
		"add host h3 on r1b (198.18.2.2)",
		"add host h4 on r2a (198.19.1.3)",
		"add host h5 on r2n (198.19.2.2)",
	}
	if diff := cmp.Diff(wantSteps, steps); diff != "" {
		t.Errorf("progress steps (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"h1", "h2", "h3", "h4", "h5"}, l.Hosts()); diff != "" {
		t.Errorf("Hosts() (-want +got):\n%s", diff)
	}
	wantNS := []string{prefix + "-h1", prefix + "-h2", prefix + "-h3", prefix + "-h4", prefix + "-h5", prefix + "-nat2", prefix + "-rt1", prefix + "-rt2", prefix + "-sw"}
	if diff := cmp.Diff(wantNS, leftovers(t, prefix)); diff != "" {
		t.Errorf("namespaces in %s (-want +got):\n%s", netnsDir, diff)
	}

	t.Run("kernel state", func(t *testing.T) {
		tests := []struct {
			node string
			want string
		}{
			{"h1", "default via 198.18.1.1 dev eth0 \n198.18.1.0/24 dev eth0 proto kernel scope link src 198.18.1.2 \n"},
			{"h4", "default via 198.19.1.1 dev eth0 \n198.19.1.0/24 dev eth0 proto kernel scope link src 198.19.1.3 \n"},
			{"rt1", "198.18.0.0/24 dev eth2 proto kernel scope link src 198.18.0.1 \n" +
				"198.18.1.0/24 dev eth0 proto kernel scope link src 198.18.1.1 \n" +
				"198.18.2.0/24 dev eth1 proto kernel scope link src 198.18.2.1 \n" +
				"198.19.1.0/24 via 198.18.0.2 dev eth2 \n"},
			{"rt2", "198.18.0.0/24 dev eth0 proto kernel scope link src 198.18.0.2 \n" +
				"198.18.1.0/24 via 198.18.0.1 dev eth0 \n" +
				"198.18.2.0/24 via 198.18.0.1 dev eth0 \n" +
				"198.19.1.0/24 dev eth1 proto kernel scope link src 198.19.1.1 \n"},
		}
		for _, tt := range tests {
			t.Run(tt.node, func(t *testing.T) {
				if diff := cmp.Diff(tt.want, run(t, l, tt.node, "ip", "-4", "route", "show")); diff != "" {
					t.Errorf("ip route in %s (-want +got):\n%s", tt.node, diff)
				}
			})
		}
	})

	t.Run("forwarding", func(t *testing.T) {
		tests := []struct {
			node string
			want string
		}{
			{"rt1", "1\n"}, {"rt2", "1\n"}, {"h1", "0\n"}, {"h5", "0\n"},
		}
		for _, tt := range tests {
			t.Run(tt.node, func(t *testing.T) {
				var got []byte
				err := l.Do(tt.node, func() error {
					var err error
					got, err = os.ReadFile("/proc/sys/net/ipv4/ip_forward")
					return err
				})
				if err != nil {
					t.Fatalf("Do(%s): %v", tt.node, err)
				}
				if diff := cmp.Diff(tt.want, string(got)); diff != "" {
					t.Errorf("ip_forward in %s (-want +got):\n%s", tt.node, diff)
				}
			})
		}
	})

	t.Run("do sees node links", func(t *testing.T) {
		var got []string
		err := l.Do("rt2", func() error {
			links, err := netlink.LinkList()
			for _, k := range links {
				got = append(got, k.Attrs().Name)
			}
			return err
		})
		if err != nil {
			t.Fatalf("Do(rt2): %v", err)
		}
		slices.Sort(got)
		if diff := cmp.Diff([]string{"eth0", "eth1", "lo"}, got); diff != "" {
			t.Errorf("links in rt2 (-want +got):\n%s", diff)
		}
		sentinel := errors.New("sentinel")
		if err := l.Do("h1", func() error { return sentinel }); !errors.Is(err, sentinel) {
			t.Errorf("Do returned %v, want fn's error", err)
		}
	})

	t.Run("command sees node sys", func(t *testing.T) {
		got := run(t, l, "h3", "ls", "/sys/class/net")
		if diff := cmp.Diff("eth0\nlo\n", got); diff != "" {
			t.Errorf("/sys/class/net in h3 (-want +got):\n%s", diff)
		}
	})

	t.Run("ping", func(t *testing.T) {
		tests := []struct{ from, to string }{
			{"h1", "h2"}, // same segment
			{"h1", "h3"}, // across rt1
			{"h1", "h4"}, // across rt1, the WAN and rt2
			{"h5", "h3"},
		}
		for _, tt := range tests {
			t.Run(tt.from+"-"+tt.to, func(t *testing.T) {
				waitPing(t, l, tt.from, tt.to, true)
			})
		}
	})

	t.Run("set link", func(t *testing.T) {
		ctx := t.Context()
		if err := l.SetLink(ctx, "rt1", "wan", false); err != nil {
			t.Fatalf("SetLink down: %v", err)
		}
		waitPing(t, l, "h1", "h4", false)
		waitPing(t, l, "h1", "h3", true) // the rest of region 1 still works
		if err := l.SetLink(ctx, "rt1", "wan", true); err != nil {
			t.Fatalf("SetLink up: %v", err)
		}
		waitPing(t, l, "h1", "h4", true)
		if err := l.SetLink(ctx, "h1", "wan", false); err == nil {
			t.Errorf("SetLink(h1, wan): no error for a node not on that segment")
		}
	})

	t.Run("unknown node", func(t *testing.T) {
		if err := l.Command(t.Context(), "nope", "true").Run(); err == nil {
			t.Errorf("Command on unknown node ran")
		}
		if err := l.Do("nope", func() error { return nil }); err == nil {
			t.Errorf("Do on unknown node: no error")
		}
		if got := l.NetNSPath("nope"); got != "" {
			t.Errorf("NetNSPath(nope) = %q, want empty", got)
		}
	})

	if diff := cmp.Diff(filepath.Join(netnsDir, prefix+"-h1"), l.NetNSPath("h1")); diff != "" {
		t.Errorf("NetNSPath(h1) (-want +got):\n%s", diff)
	}

	// Close twice, concurrently: both succeed and nothing is left.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() { errs[i] = l.Close() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Errorf("concurrent Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("third Close: %v", err)
	}
	if got := leftovers(t, prefix); len(got) != 0 {
		t.Errorf("namespaces left after Close: %v", got)
	}
	if err := l.SetLink(t.Context(), "rt1", "wan", true); err == nil {
		t.Errorf("SetLink after Close: no error")
	}
	if diff := cmp.Diff(before, rootState(t)); diff != "" {
		t.Errorf("root namespace changed after Close (-before +after):\n%s", diff)
	}
}

func smallTopology() Topology {
	return Topology{
		Segments: []Segment{{Name: "s", Prefix: netip.MustParsePrefix("198.18.200.0/24")}},
		Routers:  []Router{{Name: "r", Segments: []string{"s"}}},
		Hosts:    []Host{{Name: "h1", Segment: "s"}, {Name: "h2", Segment: "s"}},
	}
}

func TestBuildFailureTearsDown(t *testing.T) {
	RequireRoot(t)
	t.Run("cancelled", func(t *testing.T) {
		prefix := testPrefix(t)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		progress := func(step string) {
			if step == "add host h1 on s (198.18.200.2)" {
				cancel()
			}
		}
		l, err := Build(ctx, smallTopology(), Options{Prefix: prefix, Logger: testLogger(t), Progress: progress})
		if l != nil {
			t.Cleanup(func() { l.Close() })
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Build: got %v, want context.Canceled", err)
		}
		if diff := cmp.Diff("build lab "+prefix+": add host h2 on s (198.18.200.3): context canceled", err.Error()); diff != "" {
			t.Errorf("Build error (-want +got):\n%s", diff)
		}
		if got := leftovers(t, prefix); len(got) != 0 {
			t.Errorf("namespaces left after failed Build: %v", got)
		}
	})

	t.Run("name taken", func(t *testing.T) {
		prefix := testPrefix(t)
		// Someone else's namespace: the failed build must leave it alone.
		taken := prefix + "-h2"
		if out, err := exec.Command("ip", "netns", "add", taken).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", taken, err, out)
		}
		t.Cleanup(func() { removeNamedNS(taken) })
		l, err := Build(t.Context(), smallTopology(), Options{Prefix: prefix, Logger: testLogger(t)})
		if l != nil {
			t.Cleanup(func() { l.Close() })
		}
		if !errors.Is(err, os.ErrExist) {
			t.Fatalf("Build: got %v, want an error wrapping os.ErrExist", err)
		}
		if !strings.Contains(err.Error(), "add host h2 on s (198.18.200.3): create netns "+taken) {
			t.Errorf("Build error %q does not name the step and namespace", err)
		}
		if diff := cmp.Diff([]string{taken}, leftovers(t, prefix)); diff != "" {
			t.Errorf("namespaces after failed Build (-want +got):\n%s", diff)
		}
	})

	t.Run("bad prefix", func(t *testing.T) {
		_, err := Build(t.Context(), smallTopology(), Options{Prefix: "a/b"})
		want := `options.prefix "a/b": character '/' not allowed (use letters, digits, '-', '_')`
		if err == nil || err.Error() != want {
			t.Errorf("Build error = %v, want %s", err, want)
		}
	})
}

func TestSweep(t *testing.T) {
	RequireRoot(t)
	prefix := testPrefix(t)
	other := testPrefix(t)
	for _, name := range []string{prefix + "-a", prefix + "-b", other + "-keep"} {
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", name, err, out)
		}
		t.Cleanup(func() { removeNamedNS(name) })
	}
	// A plain file, as a create killed before its bind mount leaves.
	stale := filepath.Join(netnsDir, prefix+"-stale")
	if err := os.WriteFile(stale, nil, 0o444); err != nil {
		t.Fatalf("write %s: %v", stale, err)
	}
	t.Cleanup(func() { os.Remove(stale) })

	// A lab whose run was "killed": never closed, only swept.
	l, err := Build(t.Context(), smallTopology(), Options{Prefix: prefix + "-lab", Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Cleanup(func() { l.Close() })

	if err := Sweep(prefix); err != nil {
		t.Fatalf("Sweep(%s): %v", prefix, err)
	}
	if got := leftovers(t, prefix); len(got) != 0 {
		t.Errorf("namespaces left after Sweep: %v", got)
	}
	if diff := cmp.Diff([]string{other + "-keep"}, leftovers(t, other)); diff != "" {
		t.Errorf("Sweep touched another prefix (-want +got):\n%s", diff)
	}
	if err := Sweep(prefix); err != nil {
		t.Errorf("second Sweep: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close after Sweep: %v", err)
	}
	if err := Sweep(""); err == nil {
		t.Errorf("Sweep(\"\"): no error")
	}
}

func TestDoPanics(t *testing.T) {
	RequireRoot(t)
	l, err := Build(t.Context(), smallTopology(), Options{Prefix: testPrefix(t), Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	got := func() (p any) {
		defer func() { p = recover() }()
		l.Do("h1", func() error { panic("boom") })
		return nil
	}()
	if diff := cmp.Diff(any("boom"), got); diff != "" {
		t.Errorf("panic in Do (-want +got):\n%s", diff)
	}
	// The lab still works after the discarded thread.
	waitPing(t, l, "h1", "h2", true)
}
