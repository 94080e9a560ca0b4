package policy

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Addresses in testdata/world.yaml.
const (
	feIP      = "10.0.1.1"     // prod/frontend
	beIP      = "10.0.1.2"     // prod/backend
	dbIP      = "10.0.1.3"     // prod/db
	devFEIP   = "10.0.2.1"     // dev/frontend
	testerIP  = "10.0.2.2"     // dev/tester
	dnsIP     = "10.0.3.10"    // kube-system/coredns
	host1IP   = "198.18.0.11"  // HostEndpoint node1-eth0
	host2IP   = "198.18.0.12"  // HostEndpoint node2-eth0 (default-allow profile)
	blockIP   = "203.0.113.7"  // in GlobalNetworkSet blocklist
	corpIP    = "198.51.100.5" // in GlobalNetworkSet corp
	partnerIP = "192.0.2.130"  // in NetworkSet prod/partners
	extIP     = "192.0.2.10"   // nothing
)

// Decisions that many scenarios share.
const (
	profileAllow = "allow | allow: no policy applies to the endpoint; workload endpoints are allowed by default (profile)"
	passedAllow  = "allow | allow: the last tier that applies passed; workload endpoints are allowed by default (profile)"
	endOfDefault = "deny | tier default: deny: end of tier: the tier's policies apply to the endpoint but no rule decided"
	hostDeny     = "deny | deny: no policy applies to the host endpoint; host endpoints are denied by default"
)

// external is the decision on the side of an address that is no endpoint.
func external(addr, dir string) string {
	return "allow | allow: " + addr + " is no endpoint: no " + dir + " policy applies"
}

// outcome is a verdict reduced to what a scenario checks: the verdict and,
// per side, the action and the step that decided it.
type outcome struct {
	Verdict, Egress, Ingress string
}

func outcomeOf(v Verdict) outcome {
	return outcome{
		Verdict: v.Verdict,
		Egress:  v.Egress.Action + " | " + v.Egress.Decision().String(),
		Ingress: v.Ingress.Action + " | " + v.Ingress.Decision().String(),
	}
}

// scenario is one flow against the world plus some policies.
type scenario struct {
	name     string
	policies string // YAML documents added to testdata/world.yaml
	flow     Flow
	opts     *Options // nil: DefaultOptions(DefaultGossipPort, DefaultWireGuardPort)
	want     outcome
}

func runScenarios(t *testing.T, cases []scenario) {
	t.Helper()
	world, err := os.ReadFile("testdata/world.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := Decode("testdata/world.yaml", world)
			if err != nil {
				t.Fatalf("decode world: %v", err)
			}
			more, err := Decode("policies.yaml", []byte(tc.policies))
			if err != nil {
				t.Fatalf("decode policies: %v", err)
			}
			set, err := NewSet(append(objs, more...))
			if err != nil {
				t.Fatalf("NewSet: %v", err)
			}
			opts := DefaultOptions(DefaultGossipPort, DefaultWireGuardPort)
			if tc.opts != nil {
				opts = *tc.opts
			}
			v := Evaluate(set, tc.flow, opts)
			if diff := cmp.Diff(tc.want, outcomeOf(v)); diff != "" {
				var b strings.Builder
				_ = v.WriteText(&b)
				t.Errorf("outcome (-want +got):\n%s\ntrace:\n%s", diff, b.String())
			}
		})
	}
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func tcp(src, dst string, port uint16) Flow {
	return Flow{Src: addr(src), Dst: addr(dst), Protocol: ProtoTCP, SrcPort: 40000, DstPort: port}
}

func udp(src, dst string, port uint16) Flow {
	return Flow{Src: addr(src), Dst: addr(dst), Protocol: ProtoUDP, SrcPort: 40000, DstPort: port}
}

func sctp(src, dst string, port uint16) Flow {
	return Flow{Src: addr(src), Dst: addr(dst), Protocol: ProtoSCTP, SrcPort: 40000, DstPort: port}
}

func icmp(src, dst string, typ, code uint8) Flow {
	p := uint8(ProtoICMP)
	if addr(src).Is6() {
		p = ProtoICMPv6
	}
	return Flow{Src: addr(src), Dst: addr(dst), Protocol: p, ICMPType: &typ, ICMPCode: &code}
}
