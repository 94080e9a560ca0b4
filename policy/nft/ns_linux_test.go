package nft

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"
)

// requireRoot skips when not root; as root every refusal is a failure.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root: creates network namespaces and nftables tables (euid is %d)", os.Geteuid())
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatalf("nft not found (install the Debian package nftables): %v", err)
	}
}

// randomHex returns 2n random hex digits.
func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random name: %v", err)
	}
	return hex.EncodeToString(b)
}

// newNS creates a uniquely named network namespace, removed in t.Cleanup,
// and returns its name and a handle to it.
func newNS(t testing.TB, role string) (string, netns.NsHandle) {
	t.Helper()
	name := "weftnft-" + role + "-" + randomHex(t, 4)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() { h.Close() })
	return name, h
}

// nsConn returns an nftables connection bound to namespace h.
func nsConn(t testing.TB, h netns.NsHandle) *nftables.Conn {
	t.Helper()
	c, err := Connect(int(h))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.CloseLasting(); err != nil {
			t.Errorf("close nftables connection: %v", err)
		}
	})
	return c
}

// inNS runs `args...` in namespace ns, with stdin, and returns its
// combined output.
func inNS(ns, stdin string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", strings.Join(args, " "), ns, err, out)
	}
	return string(out), nil
}

func mustInNS(t testing.TB, ns, stdin string, args ...string) string {
	t.Helper()
	out, err := inNS(ns, stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// countingConn counts the transactions that send something, and the
// table replaces (DelTable calls) among them.
type countingConn struct {
	*nftables.Conn
	queued, flushes, replaces int
}

func (c *countingConn) AddChain(ch *nftables.Chain) *nftables.Chain {
	c.queued++
	return c.Conn.AddChain(ch)
}

func (c *countingConn) FlushChain(ch *nftables.Chain) {
	c.queued++
	c.Conn.FlushChain(ch)
}

func (c *countingConn) SetAddElements(s *nftables.Set, vals []nftables.SetElement) error {
	c.queued++
	return c.Conn.SetAddElements(s, vals)
}

func (c *countingConn) SetDeleteElements(s *nftables.Set, vals []nftables.SetElement) error {
	c.queued++
	return c.Conn.SetDeleteElements(s, vals)
}

func (c *countingConn) AddTable(t *nftables.Table) *nftables.Table {
	c.queued++
	return c.Conn.AddTable(t)
}

func (c *countingConn) DelTable(t *nftables.Table) {
	c.queued++
	c.replaces++
	c.Conn.DelTable(t)
}

func (c *countingConn) Flush() error {
	if c.queued > 0 {
		c.flushes++
	}
	c.queued = 0
	return c.Conn.Flush()
}
