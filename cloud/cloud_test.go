package cloud_test

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/weft-net/weft/cloud"
)

func TestValidateRoutes(t *testing.T) {
	r := func(dst string, inst string) cloud.Route {
		return cloud.Route{Dst: netip.MustParsePrefix(dst), Node: "n1", Instance: inst}
	}
	tests := []struct {
		name    string
		want    []cloud.Route
		wantErr string
	}{
		{name: "none"},
		{name: "fine", want: []cloud.Route{r("10.244.1.0/24", "i-1"), r("10.244.2.0/24", "i-2")}},
		{name: "eni only", want: []cloud.Route{{Dst: netip.MustParsePrefix("10.244.1.0/24"), ENI: "eni-1"}}},
		{name: "zero dst", want: []cloud.Route{{Node: "n1", Instance: "i-1"}},
			wantErr: `route 0 (node "n1"): dst "invalid Prefix": not an IPv4 prefix`},
		{name: "ipv6", want: []cloud.Route{r("fd00::/64", "i-1")},
			wantErr: `route 0 (node "n1"): dst "fd00::/64": not an IPv4 prefix`},
		{name: "host bits", want: []cloud.Route{r("10.244.1.1/24", "i-1")},
			wantErr: `route 0 (node "n1"): dst 10.244.1.1/24: host bits set`},
		{name: "twice", want: []cloud.Route{r("10.244.1.0/24", "i-1"), r("10.244.1.0/24", "i-2")},
			wantErr: `route 1 (node "n1"): dst 10.244.1.0/24: wanted twice`},
		{name: "no target", want: []cloud.Route{r("10.244.1.0/24", "")},
			wantErr: `route 0 (node "n1"): dst 10.244.1.0/24: neither instance nor eni set`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if err := cloud.ValidateRoutes(tt.want); err != nil {
				got = err.Error()
			}
			if got != tt.wantErr {
				t.Errorf("error %q, want %q", got, tt.wantErr)
			}
		})
	}
}

func TestReportHelpers(t *testing.T) {
	p := netip.MustParsePrefix
	want := []cloud.Route{{Dst: p("10.244.2.0/24"), Node: "n2", Instance: "i-2"}, {Dst: p("10.244.1.0/24"), Node: "n1", Instance: "i-1"}}
	rep := cloud.AllFellBack(cloud.Instance{ID: "i-1"}, want, cloud.ReasonError, "boom")
	wantRep := cloud.Report{Instance: cloud.Instance{ID: "i-1"}, FellBack: []cloud.Fallback{
		{Route: want[1], Reason: cloud.ReasonError, Detail: "boom"},
		{Route: want[0], Reason: cloud.ReasonError, Detail: "boom"},
	}}
	if diff := cmp.Diff(wantRep, rep, cmpopts.EquateComparable(netip.Prefix{}, netip.Addr{}), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("AllFellBack (-want +got):\n%s", diff)
	}
	rep = cloud.Report{Programmed: want[:1]}
	if !rep.IsProgrammed(p("10.244.2.0/24")) || rep.IsProgrammed(p("10.244.1.0/24")) {
		t.Errorf("IsProgrammed: want only 10.244.2.0/24 in %v", rep.Programmed)
	}
}
