package netlab

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestNATRouter: a host behind a NAT router reaches the outside, seen as the
// router's address; the outside cannot open anything to it.
func TestNATRouter(t *testing.T) {
	RequireRoot(t)
	topo := Topology{
		Segments: []Segment{
			{Name: "out", Prefix: netip.MustParsePrefix("198.18.50.0/24")},
			{Name: "in", Prefix: netip.MustParsePrefix("198.18.51.0/24")},
		},
		Routers: []Router{{Name: "gw", Segments: []string{"out", "in"}, NAT: []string{"in"}}},
		Hosts:   []Host{{Name: "a", Segment: "out"}, {Name: "b", Segment: "in"}},
	}
	l, err := Build(t.Context(), topo, Options{Prefix: testPrefix(t), Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !ping(ctx, l, "b", "a") {
		t.Fatal("b (inside) cannot reach a (outside)")
	}
	// a sees b's traffic from the router's outside address.
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	defer ccancel()
	capture := l.Command(cctx, "a", "tcpdump", "-n", "-l", "-i", "eth0", "-c", "1", "icmp[icmptype] == icmp-echo")
	var out lockedBuffer
	capture.Stdout, capture.Stderr = &out, &out
	if err := capture.Start(); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(out.String(), "listening on") {
		if cctx.Err() != nil {
			t.Fatalf("tcpdump did not start: %s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ping(ctx, l, "b", "a")
	capture.Wait()
	if want := l.Addr("gw", "out").String() + " > " + l.HostAddr("a").String(); !strings.Contains(out.String(), want) {
		t.Errorf("capture on a: %q, want %q", out.String(), want)
	}
	if ping(ctx, l, "a", "b") {
		t.Error("a (outside) reached b behind the NAT")
	}
}

// lockedBuffer is a byte buffer safe for a writer and concurrent readers.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
