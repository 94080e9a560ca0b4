package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/weft-net/weft/internal/lab"
	"github.com/weft-net/weft/internal/netlab"
)

// TestIPIPOverlay: the lab with overlay ipip (the user-space tunnel here):
// every workload reaches every other; cross-subnet pairs use IP-in-IP, seen
// on the wire as protocol 4 between underlay addresses; a DF packet above
// the tunnel MTU gets "message too long" back; TCP crosses the tunnel.
func TestIPIPOverlay(t *testing.T) {
	f := newFabricWith(t, map[string]any{"overlay": "ipip"})
	ctx := context.Background()
	paths, err := f.c.PathMatrix(ctx, f.hosts)
	if err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]string{{"h1", "h3"}, {"h3", "h1"}, {"h2", "h3"}} {
		if got := paths.Cells[pair[0]][pair[1]]; got != "ipip" {
			t.Errorf("path %s -> %s = %q, want ipip", pair[0], pair[1], got)
		}
	}
	if s := status(t, f.c, "h1"); s.IPIP != "userspace" && s.IPIP != "kernel" {
		t.Errorf("status ip-in-ip %q", s.IPIP)
	}
	var ws []netlab.Workload
	for _, h := range f.hosts {
		ws = append(ws, f.workloads[h])
	}
	if m, failed := lab.PingMatrix(ctx, f.l, ws); failed > 0 {
		var sb strings.Builder
		m.Render(&sb, "from\\to")
		t.Errorf("%d pings failed:\n%s", failed, sb.String())
	}
	w1, w3 := f.workloads["h1"], f.workloads["h3"]
	// ip[29] is the inner packet's protocol (after a 20-byte outer header):
	// ICMP, so that path-health probes (UDP) in the tunnel do not count.
	got := captureWhile(t, f.l, "h3", fmt.Sprintf("ip proto 4 and src host %s and dst host %s and ip[29] = 1", f.l.HostAddr("h1"), f.l.HostAddr("h3")), func() {
		lab.Ping(ctx, f.l, w1.Name, w3.Addr, 3)
	})
	if !strings.Contains(got, f.l.HostAddr("h1").String()+" > "+f.l.HostAddr("h3").String()) || !strings.Contains(got, w1.Addr.String()) {
		t.Errorf("capture on h3 shows no IP-in-IP packet carrying w1's packet:\n%s", got)
	}
	// 1480 is the tunnel MTU: 1453 bytes of ICMP data make a 1481-byte packet.
	out, _ := f.l.Command(ctx, w1.Name, "ping", "-c1", "-W2", "-M", "do", "-s", "1453", w3.Addr.String()).CombinedOutput()
	if !strings.Contains(string(out), "mtu = 1480") && !strings.Contains(strings.ToLower(string(out)), "message too long") {
		t.Errorf("oversized DF ping did not get frag-needed back:\n%s", out)
	}
	ln := listenIn(t, f.l, w3.Name, netip.AddrPortFrom(w3.Addr, 5006))
	go serveEcho(ln)
	if err := echoOnce(f.l, w1.Name, netip.AddrPortFrom(w3.Addr, 5006)); err != nil {
		t.Errorf("tcp w1 -> w3 over ipip: %v", err)
	}
}
