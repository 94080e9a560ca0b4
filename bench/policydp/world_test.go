package main

import (
	"fmt"
	"testing"

	"github.com/weft-net/weft/policy"
	"github.com/weft-net/weft/policy/nft"
)

// TestWorld checks that the generated world decodes and compiles, that the
// client reaches the server on the benchmark's ports and not on another,
// and that a relabel and a removal change the ruleset.
func TestWorld(t *testing.T) {
	w := world{endpoints: 300, policies: 100, relabel: -1, remove: -1}
	set, err := w.set()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		port uint16
		want bool
	}{{connPort, true}, {iperfPort, true}, {deniedPort, false}} {
		f := policy.Flow{Src: clientAddr, Dst: serverAddr, Protocol: policy.ProtoTCP, SrcPort: 40000, DstPort: tt.port}
		if got := policy.Evaluate(set, f, policy.Options{}).Allowed(); got != tt.want {
			t.Errorf("client to server port %d: allowed %v, want %v", tt.port, got, tt.want)
		}
	}
	base, err := w.compile()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []world{{endpoints: 300, policies: 100, relabel: 5, remove: -1}, {endpoints: 300, policies: 100, relabel: -1, remove: 5}} {
		rs, err := v.compile()
		if err != nil {
			t.Fatal(err)
		}
		if rs.Version == base.Version {
			t.Errorf("%+v: same ruleset as the base world", v)
		}
	}
}

// BenchmarkCompile compiles the generated world (decoded once).
func BenchmarkCompile(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("endpoints=%d/policies=1000", n), func(b *testing.B) {
			w := world{endpoints: n, policies: 1000, relabel: -1, remove: -1}
			set, err := w.set()
			if err != nil {
				b.Fatal(err)
			}
			host := w.host()
			b.ResetTimer()
			for b.Loop() {
				if _, err := nft.Compile(set, host, policy.Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
