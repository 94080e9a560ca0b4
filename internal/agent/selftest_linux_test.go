package agent

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weft-net/weft/internal/netlab"
)

// TestSetTxChecksum turns transmit checksum offload off and on again on a
// VXLAN device in a namespace, and reads it back each time.
func TestSetTxChecksum(t *testing.T) {
	netlab.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := netlab.Build(ctx, netlab.Topology{
		Segments: []netlab.Segment{{Name: "s", Prefix: netip.MustParsePrefix("198.18.41.0/24")}},
		Hosts:    []netlab.Host{{Name: "a", Segment: "s"}},
	}, netlab.Options{})
	if err != nil {
		t.Fatalf("build lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})
	err = l.Do("a", func() error {
		if err := netlink.LinkAdd(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "weft.vxlan"}, VxlanId: 1, Port: 4789}); err != nil {
			return fmt.Errorf("add vxlan: %w", err)
		}
		if err := checkTxChecksum("weft.vxlan", true); err != nil {
			return fmt.Errorf("a new VXLAN device: %w", err)
		}
		for _, on := range []bool{false, true, false} {
			if err := setTxChecksum("weft.vxlan", on); err != nil {
				return fmt.Errorf("set %v: %w", on, err)
			}
		}
		if err := setTxChecksum("nosuchdev", false); err == nil {
			return fmt.Errorf("no error for a missing device")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
