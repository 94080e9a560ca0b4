package aws_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/weft-net/weft/cloud"
	"github.com/weft-net/weft/cloud/aws"
	"github.com/weft-net/weft/cloud/aws/ec2emu"
)

// The test VPC: two subnets, each with its own managed (tagged) route table,
// and an unmanaged main table.
const (
	testKey     = "AKIDWEFTTEST"
	testSecret  = "weft-test-secret"
	testCluster = "test"
	testVPC     = "vpc-1"
)

var testVPCCIDR = netip.MustParsePrefix("10.0.0.0/16")

// subnets of the test VPC; host i lives in subnets[(i-1)%2].
var subnets = []struct{ id, cidr, table string }{
	{"subnet-a", "10.0.1.0/24", "rtb-a"},
	{"subnet-b", "10.0.2.0/24", "rtb-b"},
}

// lab is an emulated VPC with weft hosts, each with its own IMDS and
// Provider, all talking to one emulated EC2 API through the real SDK.
type lab struct {
	t     testing.TB
	emu   *ec2emu.Emulator
	api   *httptest.Server
	hosts []*host
}

type host struct {
	n    int // 1-based
	node string
	inst ec2emu.Instance
	imds *httptest.Server
	prov *aws.Provider
}

// labOptions shape a lab; zero values give working defaults.
type labOptions struct {
	hosts       int
	routeLimit  int
	clusterCIDR netip.Prefix
	// configure, if set, changes each host's Provider config.
	configure func(*aws.Config)
	// instance, if set, changes each host's instance before it is added.
	instance func(*ec2emu.Instance)
}

func newLab(t testing.TB, o labOptions) *lab {
	t.Helper()
	// Keep the SDK away from the developer's ~/.aws and AWS_* variables.
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CA_BUNDLE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_EC2_METADATA_SERVICE_ENDPOINT"} {
		t.Setenv(k, "")
	}
	l := &lab{t: t, emu: ec2emu.New(ec2emu.Config{
		Credentials: map[string]string{testKey: testSecret},
		RouteLimit:  o.routeLimit,
	})}
	l.api = httptest.NewServer(l.emu)
	t.Cleanup(l.api.Close)
	local := ec2emu.Route{Dst: testVPCCIDR, Gateway: "local", Origin: "CreateRouteTable"}
	l.emu.AddRouteTable(ec2emu.RouteTable{ID: "rtb-main", VPC: testVPC, Main: true, Routes: []ec2emu.Route{local}})
	for _, s := range subnets {
		l.emu.AddRouteTable(ec2emu.RouteTable{ID: s.table, VPC: testVPC, Subnets: []string{s.id},
			Tags: map[string]string{aws.TagCluster: testCluster}, Routes: []ec2emu.Route{local}})
	}
	for i := 1; i <= o.hosts; i++ {
		l.addHost(i, o)
	}
	return l
}

func (l *lab) addHost(n int, o labOptions) *host {
	s := subnets[(n-1)%len(subnets)]
	in := ec2emu.Instance{
		ID: fmt.Sprintf("i-%04d", n), VPC: testVPC, Subnet: s.id, SubnetCIDR: netip.MustParsePrefix(s.cidr),
		Zone:      "us-east-1a",
		PrivateIP: nthAddr(netip.MustParsePrefix(s.cidr).Addr(), 3+(n+1)/2),
		ENI:       fmt.Sprintf("eni-%04d", n), MAC: fmt.Sprintf("02:00:00:00:%02x:%02x", n/256, n%256),
		Tags: map[string]string{aws.TagCluster: testCluster, "Name": fmt.Sprintf("n%d", n)},
	}
	if o.instance != nil {
		o.instance(&in)
	}
	l.emu.AddInstance(in)
	h := &host{n: n, node: fmt.Sprintf("n%d", n), inst: in, imds: httptest.NewServer(l.emu.IMDS(in.ID))}
	l.t.Cleanup(h.imds.Close)
	c := aws.Config{
		ClusterName:  testCluster,
		Region:       l.emu.Region(),
		Endpoint:     l.api.URL,
		IMDSEndpoint: h.imds.URL,
		Credentials:  credentials.NewStaticCredentialsProvider(testKey, testSecret, ""),
		ClusterCIDR:  o.clusterCIDR,
		RouteLimit:   o.routeLimit,
		MaxBackoff:   time.Millisecond, // retries back off, briefly
		Logger:       testLogger(l.t),
	}
	if o.configure != nil {
		o.configure(&c)
	}
	p, err := aws.New(context.Background(), c)
	if err != nil {
		l.t.Fatalf("new provider for %s: %v", in.ID, err)
	}
	h.prov = p
	l.hosts = append(l.hosts, h)
	return h
}

func testLogger(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return nil
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// route is host h's wanted route: its workload subnet 10.244.<n>.0/24 via
// its ENI.
func (h *host) route() cloud.Route {
	return cloud.Route{Dst: workload(h.n), Node: h.node, Instance: h.inst.ID, ENI: h.inst.ENI}
}

// workload is host n's workload subnet: 10.244.n.0/24 for n < 256, then on
// into 10.245.0.0/16 and up.
func workload(n int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(244 + n/256), byte(n % 256), 0}), 24)
}

func nthAddr(a netip.Addr, n int) netip.Addr {
	for range n {
		a = a.Next()
	}
	return a
}

// want is every listed host's route, as the planner of each host would pass
// it: all nodes of the VPC.
func want(hosts ...*host) []cloud.Route {
	var out []cloud.Route
	for _, h := range hosts {
		out = append(out, h.route())
	}
	return out
}

// live returns the hosts whose instances still run.
func (l *lab) live() []*host {
	var out []*host
	for _, h := range l.hosts {
		if in, ok := l.emu.Instance(h.inst.ID); ok && in.State == ec2emu.StateRunning {
			out = append(out, h)
		}
	}
	return out
}

// round makes every live host reconcile once, in order, with the routes of
// all live hosts, and returns their reports by node.
func (l *lab) round() map[string]cloud.Report {
	l.t.Helper()
	live := l.live()
	w := want(live...)
	reps := map[string]cloud.Report{}
	for _, h := range live {
		rep, err := h.prov.ReconcileRoutes(context.Background(), w)
		if err != nil {
			l.t.Fatalf("%s: reconcile: %v", h.node, err)
		}
		reps[h.node] = rep
	}
	return reps
}

// tables renders the managed tables as sorted "table dst target state"
// lines, the VPC's local route left out.
func (l *lab) tables() []string {
	var out []string
	for _, s := range subnets {
		rt, ok := l.emu.RouteTable(s.table)
		if !ok {
			l.t.Fatalf("no table %s", s.table)
		}
		for _, r := range rt.Routes {
			if r.Gateway == "local" {
				continue
			}
			target := r.Gateway
			if target == "" {
				target = r.Instance + "/" + r.ENI
			}
			out = append(out, fmt.Sprintf("%s %s %s %s", s.table, r.Dst, target, r.State))
		}
	}
	return out
}

// summary renders a report as sorted lines: "programmed <dst> <node>",
// "fellback <dst> <node> <reason> <table>", "removed <table> <dst> <target>".
func summary(rep cloud.Report) []string {
	var out []string
	for _, r := range rep.Programmed {
		out = append(out, fmt.Sprintf("programmed %s %s", r.Dst, r.Node))
	}
	for _, f := range rep.FellBack {
		out = append(out, strings.TrimSpace(fmt.Sprintf("fellback %s %s %s %s", f.Dst, f.Node, f.Reason, f.Table)))
	}
	for _, r := range rep.Removed {
		out = append(out, fmt.Sprintf("removed %s %s %s", r.Table, r.Dst, r.Target))
	}
	slices.Sort(out)
	return out
}

// writes returns the write calls among calls.
func writes(calls map[string]int) map[string]int {
	out := map[string]int{}
	for _, a := range []string{"CreateRoute", "ReplaceRoute", "DeleteRoute", "ModifyInstanceAttribute"} {
		if calls[a] > 0 {
			out[a] = calls[a]
		}
	}
	return out
}

// weftRoutes returns the lines for hosts' routes in both managed tables.
func weftRoutes(hosts ...*host) []string {
	var out []string
	for _, s := range subnets {
		for _, h := range hosts {
			out = append(out, fmt.Sprintf("%s %s %s/%s active", s.table, workload(h.n), h.inst.ID, h.inst.ENI))
		}
	}
	return out
}
