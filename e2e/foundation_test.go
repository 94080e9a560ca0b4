package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-net/weft/fabric"
	"github.com/weft-net/weft/gossip"
	"github.com/weft-net/weft/internal/api"
	"github.com/weft-net/weft/internal/lab"
)

// peerOf returns host's view of name.
func peerOf(t *testing.T, c *lab.Cluster, host, name string) (api.Peer, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	peers, err := c.Client(host).Peers(ctx)
	if err != nil {
		return api.Peer{}, false
	}
	for _, p := range peers {
		if p.Name == name {
			return p, true
		}
	}
	return api.Peer{}, false
}

func status(t *testing.T, c *lab.Cluster, host string) api.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.Client(host).Status(ctx)
	if err != nil {
		t.Fatalf("status of %s: %v", host, err)
	}
	return s
}

// TestConvergeTwoSegments: 5 agents on 2 segments joined by a router find
// each other, with distinct subnets inside the cluster CIDR, and each writes
// a flannel-compatible subnet.env.
func TestConvergeTwoSegments(t *testing.T) {
	c := newCluster(t, twoSegments(3, 2), nil)
	hosts := c.Lab().Hosts()
	seeds := []string{c.Lab().HostAddr("a1").String(), c.Lab().HostAddr("b1").String()}
	startAll(t, c, hosts, seeds)
	waitConverged(t, c, hosts, 60*time.Second)

	pool := fabric.Pool{CIDR: netip.MustParsePrefix("10.244.0.0/16"), Bits: 24}
	for _, h := range hosts {
		s := status(t, c, h)
		if s.MembersAlive != len(hosts) || !pool.Contains(s.Subnet) || !s.Encrypted {
			t.Errorf("%s: status %+v: want %d alive, a subnet of %s, encrypted", h, s, len(hosts), pool.CIDR)
		}
		data, err := os.ReadFile(filepath.Join(c.RunDir(h), "subnet.env"))
		if err != nil {
			t.Fatalf("%s: %v", h, err)
		}
		env, err := fabric.ParseSubnetEnv(data)
		if err != nil {
			t.Fatalf("%s: subnet.env: %v\n%s", h, err, data)
		}
		if env.Network != pool.CIDR || env.Subnet.Masked() != s.Subnet {
			t.Errorf("%s: subnet.env %+v, want network %s subnet %s", h, env, pool.CIDR, s.Subnet)
		}
	}
	// Every host sees the others' underlay addresses as the lab assigned them.
	for _, p := range c.Views(context.Background(), []string{"a1"})[0].Peers {
		if want := c.Lab().HostAddr(p.Name); len(p.Underlay) == 0 || p.Underlay[0] != want {
			t.Errorf("a1 sees %s at %v, want %s", p.Name, p.Underlay, want)
		}
	}
}

// TestWrongKeyRefused: an agent with another cluster key, and one with no
// encryption at all, cannot join; the members log the refusal.
func TestWrongKeyRefused(t *testing.T) {
	c := newCluster(t, twoSegments(2, 2), nil)
	seeds := []string{c.Lab().HostAddr("a1").String()}
	good := []string{"a1", "a2", "b1"}
	startAll(t, c, good, seeds)
	waitConverged(t, c, good, 60*time.Second)

	other := filepath.Join(t.TempDir(), "other.key")
	k, err := gossip.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := gossip.WriteKeyFile(other, k, false); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		extra map[string]any
	}{
		{"wrong key", map[string]any{"clusterKeyFile": other}},
		{"no encryption", map[string]any{"insecure": true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.Start("b2", seeds, tc.extra); err != nil {
				t.Fatal(err)
			}
			defer c.Kill("b2")
			// The seed logs the refused attempt.
			before := strings.Count(c.Log("a1"), "gossip message refused")
			poll(t, 30*time.Second, "a1 logs the refused join", func() (bool, string) {
				n := strings.Count(c.Log("a1"), "gossip message refused")
				return n > before, fmt.Sprintf("%d refusals logged", n)
			})
			// The intruder sees only itself, and nobody sees it.
			poll(t, 10*time.Second, "intruder status", func() (bool, string) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				s, err := c.Client("b2").Status(ctx)
				return err == nil && s.MembersAlive == 1, fmt.Sprintf("%+v %v", s, err)
			})
			for _, h := range good {
				if _, ok := peerOf(t, c, h, "b2"); ok {
					t.Errorf("%s lists b2, which has the wrong key", h)
				}
			}
		})
	}
}

// TestCrashAndRestart: kill -9 one agent; all others mark it dead within the
// configured timeout; restarted, it gets its old subnet back.
func TestCrashAndRestart(t *testing.T) {
	c := newCluster(t, twoSegments(3, 2), nil)
	hosts := c.Lab().Hosts()
	seeds := []string{c.Lab().HostAddr("a1").String(), c.Lab().HostAddr("b1").String()}
	startAll(t, c, hosts, seeds)
	waitConverged(t, c, hosts, 60*time.Second)
	old := status(t, c, "b2").Subnet

	if err := c.Kill("b2"); err != nil {
		t.Fatal(err)
	}
	others := []string{"a1", "a2", "a3", "b1"}
	// Default timers: probe 500 ms, suspicion multiplier 3: about 2-4 s here.
	took := poll(t, 20*time.Second, "all others mark b2 dead", func() (bool, string) {
		for _, h := range others {
			p, ok := peerOf(t, c, h, "b2")
			if !ok || p.State != gossip.StateDead {
				return false, fmt.Sprintf("%s sees b2 as %q", h, p.State)
			}
		}
		return true, ""
	})
	t.Logf("b2 declared dead by all %d others after %s", len(others), took.Round(10*time.Millisecond))
	for _, h := range others {
		if s := status(t, c, h); s.MembersDead != 1 || s.Health != "degraded" {
			t.Errorf("%s: status %d dead, health %s; want 1 dead, degraded", h, s.MembersDead, s.Health)
		}
	}

	if err := c.Start("b2", seeds, nil); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, c, hosts, 60*time.Second)
	if got := status(t, c, "b2").Subnet; got != old {
		t.Errorf("b2 came back with subnet %s, had %s", got, old)
	}
}

// TestConcurrentStart: 20 agents started at once end with 20 distinct subnets.
func TestConcurrentStart(t *testing.T) {
	c := newCluster(t, twoSegments(10, 10), nil)
	hosts := c.Lab().Hosts()
	seeds := []string{c.Lab().HostAddr("a1").String(), c.Lab().HostAddr("b1").String(), c.Lab().HostAddr("a5").String()}
	startAll(t, c, hosts, seeds)
	waitConverged(t, c, hosts, 120*time.Second)
}

// TestPartitionHeal: cut the router's link until both sides declare the
// other dead, start a new node on each side, heal: no duplicate subnets. The
// pool has exactly 8 subnets for the 8 nodes, so the new nodes are likely to
// claim the dead side's subnets, and every node must end with one.
func TestPartitionHeal(t *testing.T) {
	c := newCluster(t, twoSegments(4, 4), map[string]any{"clusterCIDR": "10.244.0.0/16", "subnetSize": 19})
	first := []string{"a1", "a2", "a3", "b1", "b2", "b3"}
	seeds := []string{c.Lab().HostAddr("a1").String(), c.Lab().HostAddr("b1").String()}
	startAll(t, c, first, seeds)
	waitConverged(t, c, first, 60*time.Second)

	ctx := context.Background()
	if err := c.Lab().SetLink(ctx, "rt", "sb", false); err != nil {
		t.Fatal(err)
	}
	sideA, sideB := []string{"a1", "a2", "a3"}, []string{"b1", "b2", "b3"}
	deadOnOtherSide := func(side, other []string) func() (bool, string) {
		return func() (bool, string) {
			for _, h := range side {
				for _, o := range other {
					if p, ok := peerOf(t, c, h, o); !ok || p.State != gossip.StateDead {
						return false, fmt.Sprintf("%s sees %s as %q", h, o, p.State)
					}
				}
			}
			return true, ""
		}
	}
	poll(t, 30*time.Second, "side a declares side b dead", deadOnOtherSide(sideA, sideB))
	poll(t, 30*time.Second, "side b declares side a dead", deadOnOtherSide(sideB, sideA))

	// A new node on each side, seeded only with its own side.
	if err := c.Start("a4", []string{c.Lab().HostAddr("a1").String()}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Start("b4", []string{c.Lab().HostAddr("b1").String()}, nil); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, c, append(sideA[:3:3], "a4"), 60*time.Second)
	waitConverged(t, c, append(sideB[:3:3], "b4"), 60*time.Second)
	t.Logf("during the partition: a4 holds %s, b4 holds %s", status(t, c, "a4").Subnet, status(t, c, "b4").Subnet)

	if err := c.Lab().SetLink(ctx, "rt", "sb", true); err != nil {
		t.Fatal(err)
	}
	all := c.Lab().Hosts()
	waitConverged(t, c, all, 90*time.Second)
	seen := map[netip.Prefix]string{}
	for _, h := range all {
		s := status(t, c, h).Subnet
		if o, dup := seen[s]; dup {
			t.Errorf("%s and %s both hold %s", o, h, s)
		}
		seen[s] = h
	}
}
