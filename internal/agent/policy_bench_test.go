package agent

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/weft-net/weft/internal/policystore"
	"github.com/weft-net/weft/policy/nft"
)

// benchStore fills a store with n endpoints over 50 nodes (labels app
// among 20 values, env among 2) and p policies, each selecting one app and
// allowing ingress from another on a port.
func benchStore(b *testing.B, n, p int) *memStore {
	b.Helper()
	s := newMemStore()
	for i := range n {
		node := fmt.Sprintf("h%d", i%50)
		ep := policystore.Endpoint{Name: fmt.Sprintf("w%d", i), Node: node, Interface: fmt.Sprintf("wl%d", i),
			Addrs:  []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})},
			Labels: map[string]string{"app": fmt.Sprintf("a%d", i%20), "env": []string{"prod", "dev"}[i%2]}}
		k, v, err := policystore.EncodeEndpoint(ep)
		if err != nil {
			b.Fatal(err)
		}
		s.Put(kindEndpoint, k, v)
	}
	for i := range p {
		doc := fmt.Sprintf(`{"apiVersion":"projectcalico.org/v3","kind":"GlobalNetworkPolicy","metadata":{"name":"p%d"},`+
			`"spec":{"order":%d,"selector":"app == 'a%d'","ingress":[{"action":"Allow","protocol":"TCP","source":{"selector":"app == 'a%d' && env == 'prod'"},"destination":{"ports":[%d]}}]}}`,
			i, i, i%20, (i+1)%20, 1000+i)
		s.Put(kindPolicy, fmt.Sprintf("GlobalNetworkPolicy//p%d", i), []byte(doc))
	}
	return s
}

// nopApplier accepts every ruleset.
type nopApplier struct{}

func (nopApplier) Apply(context.Context, nft.Ruleset) error       { return nil }
func (nopApplier) Replace(context.Context, nft.Ruleset) error     { return nil }
func (nopApplier) Stats(context.Context) ([]nft.RuleStats, error) { return nil, nil }

// BenchmarkPolicySync is one pass of the engine without the kernel after
// one endpoint's labels changed: decode the changed entry (the others come
// from the cache), resolve the Set, compile for node h0 (1/50 of the
// endpoints). Baselines in the same run: the same pass decoding every
// entry (a fresh cache), and nft.Compile alone on the Set already built.
func BenchmarkPolicySync(b *testing.B) {
	for _, size := range []struct{ n, p int }{{1000, 100}, {10000, 1000}} {
		s := benchStore(b, size.n, size.p)
		e := newPolicyEngine(policyEngineConfig{Store: s, Applier: nopApplier{}, Node: "h0"})
		name := fmt.Sprintf("endpoints=%d/policies=%d", size.n, size.p)
		relabel := func(i int) {
			ep := policystore.Endpoint{Name: "w7", Node: "h7", Interface: "wl7", Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, 7})},
				Labels: map[string]string{"app": fmt.Sprintf("a%d", i%20), "env": "prod"}}
			k, v, err := policystore.EncodeEndpoint(ep)
			if err != nil {
				b.Fatal(err)
			}
			s.Put(kindEndpoint, k, v)
		}
		b.Run("label-change/"+name, func(b *testing.B) {
			// Warm the cache outside the timed loop: the first pass decodes everything.
			if err := e.sync(context.Background()); err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				i++
				relabel(i)
				if err := e.sync(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("label-change-decode-all/"+name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				i++
				relabel(i)
				e.cache = policystore.Cache{}
				if err := e.sync(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
		built := e.build()
		host, _ := e.hostInfo(built.Endpoints)
		b.Run("compile-only/"+name, func(b *testing.B) {
			for b.Loop() {
				if _, err := nft.Compile(built.Set, host, e.opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
