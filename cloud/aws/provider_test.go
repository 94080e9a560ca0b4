package aws_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/weft-net/weft/cloud"
	"github.com/weft-net/weft/cloud/aws"
	"github.com/weft-net/weft/cloud/aws/ec2emu"
)

// errorCode is the API error code in err, as the SDK carries it.
func errorCode(err error) string {
	var ae interface{ ErrorCode() string }
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// TestReconcileThrottled throttles calls: the SDK's retryer backs off and
// tries again, and the resync succeeds, until throttling outlasts the
// attempts; then the error says so and everything stays on the overlay.
func TestReconcileThrottled(t *testing.T) {
	tests := []struct {
		name        string
		throttle    map[string]int
		wantCode    string // of the error; "" for none
		wantCalls   map[string]int
		wantReport  []string
		wantRepCall int
	}{{
		name:        "describe throttled twice",
		throttle:    map[string]int{"DescribeRouteTables": 2},
		wantCalls:   map[string]int{"DescribeRouteTables": 3, "DescribeInstances": 1, "ModifyInstanceAttribute": 1, "CreateRoute": 2},
		wantReport:  []string{"programmed 10.244.1.0/24 n1"},
		wantRepCall: 7,
	}, {
		name:        "create throttled once",
		throttle:    map[string]int{"CreateRoute": 1},
		wantCalls:   map[string]int{"DescribeRouteTables": 1, "DescribeInstances": 1, "ModifyInstanceAttribute": 1, "CreateRoute": 3},
		wantReport:  []string{"programmed 10.244.1.0/24 n1"},
		wantRepCall: 6,
	}, {
		name:        "throttled past the attempts",
		throttle:    map[string]int{"DescribeRouteTables": 10},
		wantCode:    "RequestLimitExceeded",
		wantCalls:   map[string]int{"DescribeRouteTables": 3},
		wantReport:  []string{"fellback 10.244.1.0/24 n1 error"},
		wantRepCall: 3,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t, labOptions{hosts: 1, configure: func(c *aws.Config) { c.MaxAttempts = 3 }})
			h := l.hosts[0]
			if _, err := h.prov.Discover(context.Background()); err != nil {
				t.Fatal(err)
			}
			for action, n := range tt.throttle {
				l.emu.Throttle(action, n)
			}
			rep, err := h.prov.ReconcileRoutes(context.Background(), want(h))
			if got := errorCode(err); got != tt.wantCode {
				t.Errorf("error code %q, want %q (error: %v)", got, tt.wantCode, err)
			}
			calls := l.emu.Calls()
			delete(calls, "IMDS GET")
			delete(calls, "IMDS PUT")
			if diff := cmp.Diff(tt.wantCalls, calls); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantReport, summary(rep)); diff != "" {
				t.Errorf("report (-want +got):\n%s", diff)
			}
			if rep.Calls != tt.wantRepCall {
				t.Errorf("report counts %d calls, want %d", rep.Calls, tt.wantRepCall)
			}
		})
	}
}

// TestReconcileWrongCredentials: refused credentials give an error that
// wraps cloud.ErrAuth and names EC2's code, are not retried, change nothing,
// and leave every route on the overlay; discovery (IMDS) still works.
func TestReconcileWrongCredentials(t *testing.T) {
	tests := []struct {
		name     string
		key      string
		secret   string
		wantCode string
	}{
		{name: "unknown access key", key: "AKIDNOBODY", secret: testSecret, wantCode: "AuthFailure"},
		{name: "wrong secret", key: testKey, secret: "not-the-secret", wantCode: "SignatureDoesNotMatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t, labOptions{hosts: 2, configure: func(c *aws.Config) {
				c.Credentials = credentials.NewStaticCredentialsProvider(tt.key, tt.secret, "")
			}})
			h := l.hosts[0]
			if _, err := h.prov.Discover(context.Background()); err != nil {
				t.Fatalf("discover: %v", err)
			}
			rep, err := h.prov.ReconcileRoutes(context.Background(), want(l.hosts...))
			t.Logf("error: %v", err)
			if !errors.Is(err, cloud.ErrAuth) || errorCode(err) != tt.wantCode {
				t.Errorf("error %v: want one wrapping cloud.ErrAuth with code %s", err, tt.wantCode)
			}
			wantRep := []string{"fellback 10.244.1.0/24 n1 error", "fellback 10.244.2.0/24 n2 error"}
			if diff := cmp.Diff(wantRep, summary(rep)); diff != "" {
				t.Errorf("report (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string(nil), l.tables()); diff != "" {
				t.Errorf("tables (-want +got):\n%s", diff)
			}
			if got := l.emu.Calls()["DescribeRouteTables"]; got != 1 {
				t.Errorf("DescribeRouteTables called %d times, want 1 (no retries)", got)
			}
		})
	}
}

// TestDiscover reads the instance through IMDSv2, with the region from
// config or, when empty, from IMDS, and with static or instance role
// credentials; then a reconcile works with them.
func TestDiscover(t *testing.T) {
	tests := []struct {
		name      string
		configure func(*aws.Config)
		instance  func(*ec2emu.Instance)
	}{
		{name: "static credentials and region"},
		{
			name:      "instance role and region from imds",
			configure: func(c *aws.Config) { c.Credentials, c.Region = nil, "" },
			instance:  func(in *ec2emu.Instance) { in.RoleKey = testKey },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t, labOptions{hosts: 1, configure: tt.configure, instance: tt.instance})
			h := l.hosts[0]
			got, err := h.prov.Discover(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			wantInst := cloud.Instance{
				Cloud: "aws", ID: "i-0001", VPC: testVPC, Subnet: "subnet-a",
				SubnetCIDR: netip.MustParsePrefix("10.0.1.0/24"), Region: "us-east-1", Zone: "us-east-1a",
				ENI: "eni-0001", PrivateIP: netip.MustParseAddr("10.0.1.4"),
			}
			if diff := cmp.Diff(wantInst, got, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); diff != "" {
				t.Errorf("instance (-want +got):\n%s", diff)
			}
			rep, err := h.prov.ReconcileRoutes(context.Background(), want(h))
			if err != nil {
				t.Fatalf("reconcile: %v", err)
			}
			if diff := cmp.Diff([]string{"programmed 10.244.1.0/24 n1"}, summary(rep)); diff != "" {
				t.Errorf("report (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSourceDestCheck: DisableSourceDestCheck turns the check off, and a
// reconcile turns it off again when something turned it back on (drift),
// with no call when it is already off.
func TestSourceDestCheck(t *testing.T) {
	l := newLab(t, labOptions{hosts: 1})
	h := l.hosts[0]
	ctx := context.Background()
	check := func() bool { in, _ := l.emu.Instance(h.inst.ID); return in.SourceDestCheck }
	if err := h.prov.DisableSourceDestCheck(ctx); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name      string
		turnOn    bool
		wantCalls int // ModifyInstanceAttribute calls of a reconcile
	}{
		{name: "already off", wantCalls: 0},
		{name: "turned back on", turnOn: true, wantCalls: 1},
		{name: "off again", wantCalls: 0},
	}
	for _, s := range steps {
		if s.turnOn {
			l.emu.SetSourceDestCheck(h.inst.ID, true)
		}
		l.emu.ResetCalls()
		if _, err := h.prov.ReconcileRoutes(ctx, want(h)); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := l.emu.Calls()["ModifyInstanceAttribute"]; got != s.wantCalls || check() {
			t.Errorf("%s: %d ModifyInstanceAttribute calls (want %d), check on: %v", s.name, got, s.wantCalls, check())
		}
	}
}

// TestReconcileUntaggedSelf: a host whose instance lacks the cluster tag
// writes nothing (other hosts could not tell its routes from foreign ones)
// and says why.
func TestReconcileUntaggedSelf(t *testing.T) {
	l := newLab(t, labOptions{hosts: 1, instance: func(in *ec2emu.Instance) { delete(in.Tags, aws.TagCluster) }})
	rep, err := l.hosts[0].prov.ReconcileRoutes(context.Background(), want(l.hosts[0]))
	if err == nil || !strings.Contains(err.Error(), aws.TagCluster) {
		t.Errorf("error %v: want one naming the tag %s", err, aws.TagCluster)
	}
	if diff := cmp.Diff([]string{"fellback 10.244.1.0/24 n1 error"}, summary(rep)); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	if got := writes(l.emu.Calls()); len(got) != 0 {
		t.Errorf("writes %v, want none", got)
	}
}

// TestNewInvalid: bad configs fail before any call, naming the field.
func TestNewInvalid(t *testing.T) {
	ok := aws.Config{ClusterName: "c", Region: "us-east-1"}
	tests := []struct {
		name      string
		change    func(*aws.Config)
		wantField string
	}{
		{"no cluster name", func(c *aws.Config) { c.ClusterName = "" }, "clusterName"},
		{"tag without value", func(c *aws.Config) { c.RouteTableTag = "weft" }, "routeTableTag"},
		{"negative limit", func(c *aws.Config) { c.RouteLimit = -1 }, "routeLimit"},
		{"not a table id", func(c *aws.Config) { c.RouteTableIDs = []string{"subnet-1"} }, "routeTableIDs"},
		{"cluster cidr host bits", func(c *aws.Config) { c.ClusterCIDR = netip.MustParsePrefix("10.244.1.1/16") }, "clusterCIDR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.change(&c)
			_, err := aws.New(context.Background(), c)
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantField) {
				t.Errorf("error %v: want one starting with %q", err, tt.wantField)
			}
		})
	}
}
