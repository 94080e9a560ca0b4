package cloudtest_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-net/weft/cloud"
	"github.com/weft-net/weft/cloud/cloudtest"
)

// TestVPC: hosts converge, a full table leaves the last host on the
// overlay, a failure makes everything fall back, termination frees room.
func TestVPC(t *testing.T) {
	ctx := context.Background()
	vpc := cloudtest.NewVPC(2)
	var hosts []cloud.Provider
	var want []cloud.Route
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("i-%d", i)
		hosts = append(hosts, vpc.Host(cloud.Instance{ID: id}))
		want = append(want, cloud.Route{Dst: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 24), Node: fmt.Sprintf("n%d", i), Instance: id})
	}
	summary := func(rep cloud.Report) []string {
		var out []string
		for _, r := range rep.Programmed {
			out = append(out, r.Node+" programmed")
		}
		for _, f := range rep.FellBack {
			out = append(out, f.Node+" "+string(f.Reason))
		}
		return out
	}
	round := func() cloud.Report {
		var last cloud.Report
		for _, h := range hosts {
			rep, err := h.ReconcileRoutes(ctx, want)
			if err != nil {
				return rep
			}
			last = rep
		}
		return last
	}
	steps := []struct {
		name   string
		change func()
		want   []string
	}{
		{"full", func() {}, []string{"n1 programmed", "n2 programmed", "n3 table-full"}},
		{"failing", func() { vpc.Fail(errors.New("outage")) }, []string{"n1 error", "n2 error", "n3 error"}},
		{"terminated", func() {
			vpc.Fail(nil)
			vpc.Terminate("i-1")
			hosts, want = hosts[1:], want[1:]
		}, []string{"n2 programmed", "n3 programmed"}},
	}
	for _, s := range steps {
		s.change()
		if diff := cmp.Diff(s.want, summary(round())); diff != "" {
			t.Errorf("%s (-want +got):\n%s", s.name, diff)
		}
	}
}
