package main

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-net/weft/gossip"
	"github.com/weft-net/weft/internal/api"
)

func TestPrintPeersHealth(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	a := netip.MustParseAddr
	peers := []api.Peer{
		{Name: "h1", Local: true, Underlay: []netip.Addr{a("198.18.1.2")}, Location: gossip.Location{Cloud: "lab", Region: "r1"},
			Subnet: netip.MustParsePrefix("10.244.1.0/24"), State: gossip.StateAlive, Since: now.Add(-time.Hour)},
		{Name: "h2", Underlay: []netip.Addr{a("198.18.1.3")}, Location: gossip.Location{Cloud: "lab", Region: "r1"},
			Subnet: netip.MustParsePrefix("10.244.2.0/24"), State: gossip.StateAlive, Since: now.Add(-time.Hour), Path: "vxlan", MTU: 1450,
			Health: &api.PeerHealth{State: "up", RTTMillis: 0.42, Loss: 0.0625, PathSince: now.Add(-90 * time.Second),
				LastChange: &api.PathChange{At: now.Add(-90 * time.Second), From: "direct", To: "vxlan", Reason: "fallback: direct down"}}},
		{Name: "h3", Underlay: []netip.Addr{a("198.18.2.2")}, Location: gossip.Location{Cloud: "lab", Region: "r1"},
			Subnet: netip.MustParsePrefix("10.244.3.0/24"), State: gossip.StateAlive, Since: now.Add(-time.Minute), Path: "vxlan"},
	}
	var b bytes.Buffer
	if err := printPeers(&b, peers, now); err != nil {
		t.Fatal(err)
	}
	want := `NAME  UNDERLAY    LOCATION  SUBNET         STATE  SINCE  PATH   HEALTH  RTT     LOSS  MTU   ON PATH  LAST CHANGE
h1 *  198.18.1.2  lab/r1    10.244.1.0/24  alive  1h     local  -       -       -     -     -        -
h2    198.18.1.3  lab/r1    10.244.2.0/24  alive  1h     vxlan  up      0.42ms  6%    1450  1m       1m ago direct->vxlan (fallback: direct down)
h3    198.18.2.2  lab/r1    10.244.3.0/24  alive  1m     vxlan  -       -       -     -     -        -
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
}
