package ec2emu_test

import (
	stdcmp "cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/google/go-cmp/cmp"

	"github.com/weft-net/weft/cloud/aws/ec2emu"
)

const (
	key    = "AKIDEMU"
	secret = "emu-secret"
)

// newEmu serves an emulator with one VPC: instances i-1 (running) and i-2,
// a main table rtb-main with the local route, and rtb-a (tagged, subnet-a).
func newEmu(t *testing.T, limit int) (*ec2emu.Emulator, *httptest.Server) {
	t.Helper()
	e := ec2emu.New(ec2emu.Config{Credentials: map[string]string{key: secret}, RouteLimit: limit})
	for i := 1; i <= 2; i++ {
		e.AddInstance(ec2emu.Instance{
			ID: fmt.Sprintf("i-%d", i), VPC: "vpc-1", Subnet: "subnet-a", SubnetCIDR: netip.MustParsePrefix("10.0.1.0/24"),
			Zone: "us-east-1a", PrivateIP: netip.MustParseAddr(fmt.Sprintf("10.0.1.%d", 10+i)),
			ENI: fmt.Sprintf("eni-%d", i), MAC: fmt.Sprintf("02:00:00:00:00:%02x", i),
			Tags: map[string]string{"weft:cluster": "c"},
		})
	}
	local := ec2emu.Route{Dst: netip.MustParsePrefix("10.0.0.0/16"), Gateway: "local", Origin: "CreateRouteTable"}
	e.AddRouteTable(ec2emu.RouteTable{ID: "rtb-main", VPC: "vpc-1", Main: true, Routes: []ec2emu.Route{local}})
	e.AddRouteTable(ec2emu.RouteTable{ID: "rtb-a", VPC: "vpc-1", Subnets: []string{"subnet-a"},
		Tags: map[string]string{"weft:cluster": "c"}, Routes: []ec2emu.Route{local}})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return e, srv
}

// client is the real SDK client, without retries, signing with k/s for
// region.
func client(srv *httptest.Server, k, s, region string) *ec2.Client {
	return ec2.New(ec2.Options{
		Region:       region,
		BaseEndpoint: sdk.String(srv.URL),
		Credentials:  credentials.NewStaticCredentialsProvider(k, s, ""),
		Retryer:      retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = 1 }),
	})
}

func code(err error) string {
	var ae interface{ ErrorCode() string }
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	if err != nil {
		return "not an API error: " + err.Error()
	}
	return ""
}

func createRoute(dst, instance string) *ec2.CreateRouteInput {
	return &ec2.CreateRouteInput{RouteTableId: sdk.String("rtb-a"), DestinationCidrBlock: sdk.String(dst), InstanceId: sdk.String(instance)}
}

// TestErrors drives each error path through the SDK, which must parse
// EC2's error XML into the right code.
func TestErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		limit    int
		setup    func(*ec2emu.Emulator)
		key, sec string
		region   string
		call     func(*ec2.Client) error
		wantCode string
	}{
		{name: "create", call: func(c *ec2.Client) error {
			_, err := c.CreateRoute(ctx, createRoute("10.244.1.0/24", "i-1"))
			return err
		}},
		{name: "create twice", call: func(c *ec2.Client) error {
			_, _ = c.CreateRoute(ctx, createRoute("10.244.1.0/24", "i-1"))
			_, err := c.CreateRoute(ctx, createRoute("10.244.1.0/24", "i-2"))
			return err
		}, wantCode: "RouteAlreadyExists"},
		{name: "table full", limit: 1, call: func(c *ec2.Client) error {
			_, _ = c.CreateRoute(ctx, createRoute("10.244.1.0/24", "i-1"))
			_, err := c.CreateRoute(ctx, createRoute("10.244.2.0/24", "i-2"))
			return err
		}, wantCode: "RouteLimitExceeded"},
		{name: "replace missing", call: func(c *ec2.Client) error {
			_, err := c.ReplaceRoute(ctx, &ec2.ReplaceRouteInput{RouteTableId: sdk.String("rtb-a"),
				DestinationCidrBlock: sdk.String("10.244.1.0/24"), NetworkInterfaceId: sdk.String("eni-1")})
			return err
		}, wantCode: "InvalidRoute.NotFound"},
		{name: "delete missing", call: func(c *ec2.Client) error {
			_, err := c.DeleteRoute(ctx, &ec2.DeleteRouteInput{RouteTableId: sdk.String("rtb-a"), DestinationCidrBlock: sdk.String("10.244.1.0/24")})
			return err
		}, wantCode: "InvalidRoute.NotFound"},
		{name: "delete local", call: func(c *ec2.Client) error {
			_, err := c.DeleteRoute(ctx, &ec2.DeleteRouteInput{RouteTableId: sdk.String("rtb-a"), DestinationCidrBlock: sdk.String("10.0.0.0/16")})
			return err
		}, wantCode: "InvalidParameterValue"},
		{name: "unknown table", call: func(c *ec2.Client) error {
			_, err := c.DeleteRoute(ctx, &ec2.DeleteRouteInput{RouteTableId: sdk.String("rtb-x"), DestinationCidrBlock: sdk.String("10.244.1.0/24")})
			return err
		}, wantCode: "InvalidRouteTableID.NotFound"},
		{name: "unknown instance", call: func(c *ec2.Client) error {
			_, err := c.CreateRoute(ctx, createRoute("10.244.1.0/24", "i-9"))
			return err
		}, wantCode: "InvalidInstanceID.NotFound"},
		{name: "unknown filter", call: func(c *ec2.Client) error {
			_, err := c.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{Filters: []types.Filter{{Name: sdk.String("colour"), Values: []string{"red"}}}})
			return err
		}, wantCode: "InvalidParameterValue"},
		{name: "throttled", setup: func(e *ec2emu.Emulator) { e.Throttle("", 1) }, call: func(c *ec2.Client) error {
			_, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
			return err
		}, wantCode: "RequestLimitExceeded"},
		{name: "unknown access key", key: "AKIDX", call: func(c *ec2.Client) error {
			_, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
			return err
		}, wantCode: "AuthFailure"},
		{name: "wrong secret", sec: "x", call: func(c *ec2.Client) error {
			_, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
			return err
		}, wantCode: "SignatureDoesNotMatch"},
		{name: "wrong region", region: "eu-west-1", call: func(c *ec2.Client) error {
			_, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
			return err
		}, wantCode: "AuthFailure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, srv := newEmu(t, tt.limit)
			if tt.setup != nil {
				tt.setup(e)
			}
			c := client(srv, stdcmp.Or(tt.key, key), stdcmp.Or(tt.sec, secret), stdcmp.Or(tt.region, ec2emu.DefaultRegion))
			if got := code(tt.call(c)); got != tt.wantCode {
				t.Errorf("error code %q, want %q", got, tt.wantCode)
			}
		})
	}
}

// TestDescribe checks what the SDK parses from the describe calls: filters,
// pagination, route states after stop and termination, and instances.
func TestDescribe(t *testing.T) {
	ctx := context.Background()
	e, srv := newEmu(t, 0)
	c := client(srv, key, secret, ec2emu.DefaultRegion)
	for i := 3; i <= 12; i++ {
		e.AddInstance(ec2emu.Instance{ID: fmt.Sprintf("i-%02d", i), VPC: "vpc-1", Subnet: "subnet-a", ENI: fmt.Sprintf("eni-%d", i)})
	}
	if _, err := c.CreateRoute(ctx, createRoute("10.244.1.0/24", "i-1")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: sdk.String("rtb-a"),
		DestinationCidrBlock: sdk.String("10.244.2.0/24"), NetworkInterfaceId: sdk.String("eni-2")}); err != nil {
		t.Fatal(err)
	}
	e.Stop("i-1")
	e.Terminate("i-2")

	out, err := c.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{Filters: []types.Filter{
		{Name: sdk.String("vpc-id"), Values: []string{"vpc-1"}},
		{Name: sdk.String("tag:weft:cluster"), Values: []string{"c"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rt := range out.RouteTables {
		for _, a := range rt.Associations {
			got = append(got, fmt.Sprintf("%s assoc %s main=%v", *rt.RouteTableId, sdk.ToString(a.SubnetId), sdk.ToBool(a.Main)))
		}
		for _, r := range rt.Routes {
			got = append(got, fmt.Sprintf("%s %s gw=%s inst=%s eni=%s %s %s", *rt.RouteTableId, sdk.ToString(r.DestinationCidrBlock),
				sdk.ToString(r.GatewayId), sdk.ToString(r.InstanceId), sdk.ToString(r.NetworkInterfaceId), r.State, r.Origin))
		}
	}
	want := []string{
		"rtb-a assoc subnet-a main=false",
		"rtb-a 10.0.0.0/16 gw=local inst= eni= active CreateRouteTable",
		"rtb-a 10.244.1.0/24 gw= inst=i-1 eni=eni-1 blackhole CreateRoute",
		"rtb-a 10.244.2.0/24 gw= inst=i-2 eni=eni-2 blackhole CreateRoute",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("route tables (-want +got):\n%s", diff)
	}

	var ids []string
	pages := ec2.NewDescribeInstancesPaginator(c, &ec2.DescribeInstancesInput{MaxResults: sdk.Int32(5)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Reservations {
			for _, in := range r.Instances {
				ids = append(ids, fmt.Sprintf("%s %s vpc=%s", *in.InstanceId, in.State.Name, sdk.ToString(in.VpcId)))
			}
		}
	}
	if got := e.Calls()["DescribeInstances"]; got != 3 {
		t.Errorf("12 instances in pages of 5 took %d calls, want 3", got)
	}
	if len(ids) != 12 || !slices.Contains(ids, "i-2 terminated vpc=") || !slices.Contains(ids, "i-1 stopped vpc=vpc-1") {
		t.Errorf("instances %v: want 12, with i-1 stopped and i-2 terminated without its VPC", ids)
	}
}

// TestIMDS checks IMDSv2: a token from PUT is needed for every read, and
// only works for its own instance.
func TestIMDS(t *testing.T) {
	e, _ := newEmu(t, 0)
	one := httptest.NewServer(e.IMDS("i-1"))
	t.Cleanup(one.Close)
	two := httptest.NewServer(e.IMDS("i-2"))
	t.Cleanup(two.Close)
	do := func(srv *httptest.Server, method, path string, hdr map[string]string) (int, string) {
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	_, tok := do(one, http.MethodPut, "/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "60"})
	tests := []struct {
		name     string
		srv      *httptest.Server
		method   string
		path     string
		hdr      map[string]string
		wantCode int
		wantBody string
	}{
		{"token without ttl", one, http.MethodPut, "/latest/api/token", nil, 400, ""},
		{"token through a proxy", one, http.MethodPut, "/latest/api/token",
			map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "1.2.3.4"}, 403, ""},
		{"imdsv1 refused", one, http.MethodGet, "/latest/meta-data/instance-id", nil, 401, ""},
		{"another instance's token", two, http.MethodGet, "/latest/meta-data/instance-id",
			map[string]string{"X-aws-ec2-metadata-token": tok}, 401, ""},
		{"instance id", one, http.MethodGet, "/latest/meta-data/instance-id", map[string]string{"X-aws-ec2-metadata-token": tok}, 200, "i-1"},
		{"subnet cidr", one, http.MethodGet, "/latest/meta-data/network/interfaces/macs/02:00:00:00:00:01/subnet-ipv4-cidr-block",
			map[string]string{"X-aws-ec2-metadata-token": tok}, 200, "10.0.1.0/24"},
		{"no role", one, http.MethodGet, "/latest/meta-data/iam/security-credentials/", map[string]string{"X-aws-ec2-metadata-token": tok}, 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotCode, gotBody := do(tt.srv, tt.method, tt.path, tt.hdr)
			if gotCode != tt.wantCode || (tt.wantBody != "" && gotBody != tt.wantBody) {
				t.Errorf("got %d %q, want %d %q", gotCode, gotBody, tt.wantCode, tt.wantBody)
			}
		})
	}
}
