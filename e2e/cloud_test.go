package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-net/weft/cloud"
	"github.com/weft-net/weft/cloud/aws/ec2emu"
	"github.com/weft-net/weft/internal/api"
	"github.com/weft-net/weft/internal/lab"
	"github.com/weft-net/weft/internal/netlab"
)

// vpcLab is the default lab with region r1 as one AWS VPC: an EC2 emulator
// served from the router rt1 (which plays the VPC router and follows the
// emulator's route table), and an IMDS inside each of h1, h2, h3.
type vpcLab struct {
	*fabricLab
	emu *ec2emu.Emulator
}

func newVPCLab(t *testing.T, routeLimit int) *vpcLab {
	t.Helper()
	netlab.RequireRoot(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDWEFTLAB")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "lab-secret")
	if v, ok := os.LookupEnv("AWS_CA_BUNDLE"); ok {
		os.Unsetenv("AWS_CA_BUNDLE")
		t.Cleanup(func() { os.Setenv("AWS_CA_BUNDLE", v) })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := netlab.Build(ctx, netlab.DefaultTopology(), netlab.Options{})
	if err != nil {
		t.Fatalf("build lab: %v", err)
	}
	t.Cleanup(func() { l.Close() })

	v := &vpcLab{}
	var follow sync.Mutex
	installed := map[netip.Prefix]bool{}
	v.emu = ec2emu.New(ec2emu.Config{
		Region:      "us-east-1",
		Credentials: map[string]string{"AKIDWEFTLAB": "lab-secret"},
		RouteLimit:  routeLimit,
		OnChange: func() {
			// rt1 is the VPC router: it forwards by the route table.
			follow.Lock()
			defer follow.Unlock()
			rt, _ := v.emu.RouteTable("rtb-1")
			want := map[netip.Prefix]netip.Addr{}
			for _, r := range rt.Routes {
				if in, ok := v.emu.Instance(r.Instance); ok && r.Instance != "" {
					want[r.Dst] = in.PrivateIP
				}
			}
			for dst, ip := range want {
				l.Command(context.Background(), "rt1", "ip", "route", "replace", dst.String(), "via", ip.String()).Run()
				installed[dst] = true
			}
			for dst := range installed {
				if _, ok := want[dst]; !ok {
					l.Command(context.Background(), "rt1", "ip", "route", "del", dst.String()).Run()
					delete(installed, dst)
				}
			}
		},
	})
	subnets := map[string]string{"r1a": "subnet-a", "r1b": "subnet-b"}
	vpcHosts := []string{"h1", "h2", "h3"}
	for i, h := range vpcHosts {
		seg := l.Plan().Segments
		_ = seg
		n, _ := l.Plan().Node(h)
		iface := n.Ifaces[0]
		v.emu.AddInstance(ec2emu.Instance{
			ID: fmt.Sprintf("i-000000000000000%d", i+1), VPC: "vpc-1", Subnet: subnets[iface.Segment],
			SubnetCIDR: iface.Addr.Masked(), Zone: "us-east-1a", PrivateIP: l.HostAddr(h),
			ENI: fmt.Sprintf("eni-000000000000000%d", i+1), MAC: fmt.Sprintf("02:00:00:00:00:0%d", i+1),
			Tags: map[string]string{"weft:cluster": lab.ClusterName},
		})
	}
	v.emu.AddRouteTable(ec2emu.RouteTable{ID: "rtb-1", VPC: "vpc-1", Main: true, Subnets: []string{"subnet-a", "subnet-b"},
		Tags: map[string]string{"weft:cluster": lab.ClusterName}})

	// The EC2 API on the VPC router, the metadata service inside each host.
	api := netip.AddrPortFrom(l.Addr("rt1", "r1a"), 8080)
	serveIn(t, l, "rt1", api.String(), v.emu)
	for i, h := range vpcHosts {
		serveIn(t, l, h, "127.0.0.1:1338", v.emu.IMDS(fmt.Sprintf("i-000000000000000%d", i+1)))
	}

	c, err := lab.NewCluster(l, lab.ClusterOptions{Binary: weftBinary, Dir: t.TempDir(), Regions: lab.DefaultRegions(),
		Config: map[string]any{"resyncPeriod": "5s"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			for _, h := range l.Hosts() {
				t.Logf("--- log of %s ---\n%s", h, lastLines(c.Log(h), 30))
			}
		}
	})
	f := &fabricLab{c: c, l: l, hosts: l.Hosts(), workloads: map[string]netlab.Workload{}}
	seeds := []string{l.HostAddr("h1").String(), l.HostAddr("h4").String()}
	for _, h := range f.hosts {
		var extra map[string]any
		if h == "h1" || h == "h2" || h == "h3" {
			extra = map[string]any{
				"location": map[string]any{}, // filled by discovery
				"cloud":    "aws",
				"aws":      map[string]any{"region": "us-east-1", "endpoint": "http://" + api.String(), "imdsEndpoint": "http://127.0.0.1:1338"},
			}
		}
		if err := c.Start(h, seeds, extra); err != nil {
			t.Fatal(err)
		}
	}
	waitConverged(t, c, f.hosts, 60*time.Second)
	for i, h := range f.hosts {
		w := netlab.Workload{Name: fmt.Sprintf("w%d", i+1), Host: h, Addr: status(t, c, h).Subnet.Addr().Next().Next()}
		if err := l.AddWorkload(ctx, w); err != nil {
			t.Fatal(err)
		}
		f.workloads[h] = w
	}
	v.fabricLab = f
	return v
}

// serveIn serves h on addr from a listener made inside node's namespace.
func serveIn(t *testing.T, l *netlab.Lab, node, addr string, h http.Handler) {
	t.Helper()
	var ln net.Listener
	if err := l.Do(node, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, node, err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

func cloudOf(t *testing.T, c *lab.Cluster, host string) api.Cloud {
	t.Helper()
	out, code := weft(t, "cloud", "status", "--run-dir", c.RunDir(host), "--output", "json")
	if code != 0 {
		t.Fatalf("weft cloud status on %s: exit %d: %s", host, code, out)
	}
	var cl api.Cloud
	if err := json.Unmarshal([]byte(out), &cl); err != nil {
		t.Fatalf("weft cloud status: %v\n%s", err, out)
	}
	return cl
}

// TestCloudNativeRouting: hosts of one VPC on different subnets reach each
// other without encapsulation once the route table carries their subnets:
// a capture on the destination's underlay shows the plain workload packet.
func TestCloudNativeRouting(t *testing.T) {
	v := newVPCLab(t, 50)
	ctx := context.Background()
	poll(t, 60*time.Second, "h1 and h3 route natively", func() (bool, string) {
		m, err := v.c.PathMatrix(ctx, v.hosts)
		if err != nil {
			return false, err.Error()
		}
		return m.Cells["h1"]["h3"] == "native" && m.Cells["h3"]["h1"] == "native" && m.Cells["h2"]["h3"] == "native",
			fmt.Sprintf("h1->h3 %s, h3->h1 %s, h2->h3 %s", m.Cells["h1"]["h3"], m.Cells["h3"]["h1"], m.Cells["h2"]["h3"])
	})
	cl := cloudOf(t, v.c, "h1")
	if cl.Instance == nil || cl.Instance.ID != "i-0000000000000001" || cl.Report == nil || len(cl.Report.Programmed) != 3 {
		t.Errorf("cloud status of h1: %+v", cl)
	}
	if in, _ := v.emu.Instance("i-0000000000000003"); in.SourceDestCheck {
		t.Error("h3's source/destination check is still on")
	}
	w1, w3 := v.workloads["h1"], v.workloads["h3"]
	got := captureWhile(t, v.l, "h3", fmt.Sprintf("icmp and src host %s and dst host %s", w1.Addr, w3.Addr), func() {
		lab.Ping(ctx, v.l, w1.Name, w3.Addr, 3)
	})
	if !strings.Contains(got, w1.Addr.String()+" > "+w3.Addr.String()) {
		t.Errorf("native path: capture on h3 did not show the plain workload packet:\n%s", got)
	}
	var ws []netlab.Workload
	for _, h := range v.hosts {
		ws = append(ws, v.workloads[h])
	}
	poll(t, 60*time.Second, "data planes ready", func() (bool, string) { return v.c.DataPlaneReady(ctx, v.hosts) })
	if m, failed := lab.PingMatrix(ctx, v.l, ws); failed > 0 {
		var sb strings.Builder
		m.Render(&sb, "from\\to")
		t.Errorf("%d pings failed:\n%s", failed, sb.String())
	}
}

// TestCloudTableFull: with room for two routes, the host whose route did not
// fit says so in `weft cloud status`, its cross-subnet peers reach it over
// VXLAN, and every workload still reaches every other.
func TestCloudTableFull(t *testing.T) {
	v := newVPCLab(t, 2)
	ctx := context.Background()
	var left string
	poll(t, 60*time.Second, "a host's route falls back for a full table", func() (bool, string) {
		for _, h := range []string{"h1", "h2", "h3"} {
			cl := cloudOf(t, v.c, h)
			if cl.Report == nil {
				return false, h + ": no reconcile yet"
			}
			for _, fb := range cl.Report.FellBack {
				if fb.Node == h && fb.Reason == cloud.ReasonTableFull {
					left = h
					return true, ""
				}
			}
		}
		return false, "no table-full fallback yet"
	})
	t.Logf("%s's route did not fit", left)
	var ws []netlab.Workload
	for _, h := range v.hosts {
		ws = append(ws, v.workloads[h])
	}
	poll(t, 30*time.Second, "every pair reachable", func() (bool, string) {
		m, failed := lab.PingMatrix(ctx, v.l, ws)
		var sb strings.Builder
		m.Render(&sb, "from\\to")
		return failed == 0, sb.String()
	})
	paths, err := v.c.PathMatrix(ctx, v.hosts)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"h1", "h2", "h3"} {
		if h == left || sameSegment(v.l, h, left) {
			continue
		}
		if got := paths.Cells[h][left]; got != "vxlan" {
			t.Errorf("%s -> %s (route not in the table) = %q, want vxlan", h, left, got)
		}
	}
}

func sameSegment(l *netlab.Lab, a, b string) bool {
	na, _ := l.Plan().Node(a)
	nb, _ := l.Plan().Node(b)
	return na.Ifaces[0].Segment == nb.Ifaces[0].Segment
}
