package agent

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-net/weft/fabric"
	"github.com/weft-net/weft/gossip"
	"github.com/weft-net/weft/internal/api"
	"github.com/weft-net/weft/internal/config"
)

// fakeHost is Host without a kernel: one loopback underlay.
type fakeHost struct {
	err error
}

var _ Host = fakeHost{}

func (f fakeHost) DefaultRouteInterface() (string, error) {
	if f.err != nil {
		return "", f.err
	}
	return "fake0", nil
}

func (f fakeHost) DefaultGateway() netip.Addr { return netip.Addr{} }

func (f fakeHost) Interface(name string) (Underlay, error) {
	if f.err != nil {
		return Underlay{}, f.err
	}
	return Underlay{Interface: name, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, MTU: 1500}, nil
}

// freePort returns a port that is free for TCP and UDP on loopback now.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", l.Addr().String())
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

type testCluster struct {
	t    *testing.T
	dir  string
	key  string
	runs map[string]chan error
	stop map[string]context.CancelFunc
}

func newTestCluster(t *testing.T) *testCluster {
	dir := t.TempDir()
	k, err := gossip.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "cluster.key")
	if err := gossip.WriteKeyFile(key, k, false); err != nil {
		t.Fatal(err)
	}
	tc := &testCluster{t: t, dir: dir, key: key, runs: map[string]chan error{}, stop: map[string]context.CancelFunc{}}
	t.Cleanup(func() {
		for name, cancel := range tc.stop {
			cancel()
			<-tc.runs[name]
		}
	})
	return tc
}

func (tc *testCluster) config(name string, port int, join []string) config.Config {
	c := config.Default()
	c.NodeName = name
	c.ClusterName = "test"
	c.BindAddress = netip.MustParseAddr("127.0.0.1")
	c.BindPort = port
	c.Join = join
	c.ClusterKeyFile = tc.key
	c.StateDir = filepath.Join(tc.dir, name, "state")
	c.RunDir = filepath.Join(tc.dir, name, "run")
	c.AdvertiseAddress = netip.MustParseAddr("127.0.0.1")
	return c
}

func (tc *testCluster) start(c config.Config) {
	tc.t.Helper()
	a, err := New(Options{Config: c, Host: fakeHost{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tc.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	tc.runs[c.NodeName], tc.stop[c.NodeName] = done, cancel
}

func (tc *testCluster) client(name string) *api.Client {
	return api.NewClient(filepath.Join(tc.dir, name, "run"))
}

func (tc *testCluster) wait(what string, cond func() bool) {
	tc.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tc.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (tc *testCluster) status(name string) (api.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return tc.client(name).Status(ctx)
}

func (tc *testCluster) peers(name string) []api.Peer {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	p, _ := tc.client(name).Peers(ctx)
	return p
}

func TestConvergeLeaveRestart(t *testing.T) {
	tc := newTestCluster(t)
	pa := freePort(t)
	seed := []string{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(pa)).String()}
	tc.start(tc.config("a", pa, nil))
	tc.start(tc.config("b", freePort(t), seed))
	cport := freePort(t)
	tc.start(tc.config("c", cport, seed))

	tc.wait("3 members with distinct subnets at a", func() bool {
		ps := tc.peers("a")
		seen := map[netip.Prefix]bool{}
		for _, p := range ps {
			if !p.Subnet.IsValid() || seen[p.Subnet] || p.State != gossip.StateAlive {
				return false
			}
			seen[p.Subnet] = true
		}
		return len(ps) == 3
	})
	sc, err := tc.status("c")
	if err != nil {
		t.Fatal(err)
	}
	if sc.SubnetState != "claimed" || sc.Health != "ok" || !sc.Encrypted {
		t.Errorf("c: %+v", sc)
	}
	env, err := os.ReadFile(filepath.Join(tc.dir, "c", "run", SubnetEnvName))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(env), "FLANNEL_SUBNET="+sc.Subnet.Addr().Next().String()) {
		t.Errorf("subnet.env of c:\n%s\nwant the gateway of %s", env, sc.Subnet)
	}
	if st, err := os.Stat(filepath.Join(tc.dir, "c", "run", api.SocketName)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("socket: %v, mode %v; want 0600", err, st.Mode().Perm())
	}

	// A restart (cancel, run again on the same dirs) keeps the subnet.
	tc.stop["b"]()
	if err := <-tc.runs["b"]; err != nil {
		t.Fatal(err)
	}
	delete(tc.stop, "b")
	sb := tc.config("b", freePort(t), seed)
	st, ok, err := fabric.LoadState(sb.StateDir)
	if err != nil || !ok {
		t.Fatalf("b's state: %v %v", ok, err)
	}
	tc.start(sb)
	tc.wait("b back with its subnet", func() bool {
		s, err := tc.status("b")
		return err == nil && s.Subnet == st.Subnet && s.MembersAlive == 3
	})

	// Leave: c stops, peers drop it at once, its subnet is released.
	if err := tc.client("c").Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-tc.runs["c"]:
		if err != nil {
			t.Fatalf("c after leave: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("c still running after leave")
	}
	delete(tc.stop, "c")
	tc.wait("a drops c", func() bool {
		for _, p := range tc.peers("a") {
			if p.Name == "c" {
				return false
			}
		}
		return true
	})
	if _, ok, _ := fabric.LoadState(filepath.Join(tc.dir, "c", "state")); ok {
		t.Error("c's state file survived leave")
	}
	if _, err := tc.status("c"); !errors.Is(err, api.ErrNoAgent) {
		t.Errorf("status of a stopped agent: %v, want ErrNoAgent", err)
	}
}

func TestExhaustedAndStatic(t *testing.T) {
	tc := newTestCluster(t)
	pa := freePort(t)
	seed := []string{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(pa)).String()}
	small := func(c config.Config) config.Config {
		c.ClusterCIDR = netip.MustParsePrefix("10.244.0.0/23") // two /24s
		return c
	}
	a := small(tc.config("a", pa, nil))
	a.Subnet = netip.MustParsePrefix("10.244.1.0/24")
	tc.start(a)
	tc.start(small(tc.config("b", freePort(t), seed)))
	tc.start(small(tc.config("c", freePort(t), seed)))

	tc.wait("one of b and c exhausted, the other on 10.244.0.0/24", func() bool {
		sb, errb := tc.status("b")
		sc, errc := tc.status("c")
		if errb != nil || errc != nil {
			return false
		}
		ex, ok := sc, sb
		if sb.SubnetState == "exhausted" {
			ex, ok = sb, sc
		}
		return ex.SubnetState == "exhausted" && ex.Health == "degraded" && len(ex.Problems) > 0 &&
			ok.Subnet == netip.MustParsePrefix("10.244.0.0/24")
	})
	sa, err := tc.status("a")
	if err != nil {
		t.Fatal(err)
	}
	if sa.SubnetState != "static" || sa.Subnet != a.Subnet {
		t.Errorf("a: %s %s, want static %s", sa.SubnetState, sa.Subnet, a.Subnet)
	}
}

func TestNewRefusesBadSetup(t *testing.T) {
	tc := newTestCluster(t)
	c := tc.config("a", 7946, nil)
	c.ClusterKeyFile = filepath.Join(tc.dir, "missing.key")
	if _, err := New(Options{Config: c, Host: fakeHost{}}); err == nil || !strings.Contains(err.Error(), "clusterKeyFile") {
		t.Errorf("missing key: %v", err)
	}
	c = tc.config("a", 7946, nil)
	c.UnderlayInterface = ""
	if _, err := New(Options{Config: c, Host: fakeHost{err: errors.New("no default route")}}); err == nil || !strings.Contains(err.Error(), "underlay") {
		t.Errorf("no underlay: %v", err)
	}
}
