package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/weft-net/weft/internal/api"
)

// TestPrintStatusSelfTests: `weft status` shows one line per tunnel type's
// last self-test: result, when, why, peers, what was found and done.
func TestPrintStatusSelfTests(t *testing.T) {
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	s := api.Status{Node: "h1", Health: "degraded", SelfTests: []api.SelfTest{
		{Tunnel: "vxlan", At: at, Why: "start", Peers: []string{"h2", "h3"}, Result: "local-fault",
			Found: "h2: through this node's device 0/20 intact", Did: "tx checksum offload off on weft.vxlan, cured", Cured: true},
		{Tunnel: "wireguard", At: at, Why: "path change", Peers: []string{"h4"}, Result: "healthy", Found: "h4: through this node's device 20/20 intact"},
	}}
	var b bytes.Buffer
	if err := printStatus(&b, s); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"self-test vxlan:      local-fault at 2026-11-25T12:00:00Z (start, peers h2,h3): h2: through this node's device 0/20 intact; did: tx checksum offload off on weft.vxlan, cured\n",
		"self-test wireguard:  healthy at 2026-11-25T12:00:00Z (path change, peers h4): h4: through this node's device 20/20 intact\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("no line %q in:\n%s", want, b.String())
		}
	}
}
