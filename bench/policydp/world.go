package main

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/weft-net/weft/policy"
	"github.com/weft-net/weft/policy/nft"
)

// The generated world: endpoints labelled app (200 values), tier (4) and
// env (3) in 20 namespaces, all attached to the measured host, and
// policies that select them by those labels, allow ports from other apps,
// a few nets, some egress; then the two real workloads of the benchmark,
// the policies that let the client reach the server, and a default deny.
var (
	tiers = []string{"web", "api", "db", "cache"}
	envs  = []string{"prod", "staging", "dev"}
)

const (
	apps       = 200
	namespaces = 20
	// Ports the benchmark's server listens on: connections and iperf3.
	connPort  = 8080
	iperfPort = 5201
	// deniedPort is a port no policy allows from the client to the server.
	deniedPort = 9099
)

// The two real workloads (netlab routed veths on the measured host) and
// their addresses, outside the generated endpoints' 198.19.0.0/18.
var (
	clientAddr = netip.MustParseAddr("198.19.100.1")
	serverAddr = netip.MustParseAddr("198.19.100.2")
)

// endpointAddr returns the address of generated endpoint i (i < 16,384).
func endpointAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
}

// world is a generated policy world.
type world struct {
	endpoints, policies int
	// relabel and remove, when >= 0, change generated endpoint relabel's
	// app label, or leave endpoint remove out (and its interface).
	relabel, remove int
	// narrow makes the whole-tier policies select the db and cache tiers,
	// so that no generated policy selects the client or the server: their
	// packets then pass only the benchmark's policies and the default deny.
	narrow bool
}

// yaml renders the world's resources.
func (w world) yaml() string {
	var b strings.Builder
	doc := func(format string, args ...any) {
		b.WriteString("---\n")
		fmt.Fprintf(&b, format, args...)
	}
	for i := range namespaces {
		doc("apiVersion: v1\nkind: Namespace\nmetadata: {name: ns%d, labels: {team: t%d}}\n", i, i%5)
	}
	for i := range w.endpoints {
		if i == w.remove {
			continue
		}
		app := i % apps
		if i == w.relabel {
			app = (app + 7) % apps
		}
		doc("apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\n"+
			"metadata: {name: wl%d, namespace: ns%d, labels: {app: app%d, tier: %s, env: %s}}\n"+
			"spec: {node: bench, interfaceName: e%d, ipNetworks: [%s/32]}\n",
			i, i%namespaces, app, tiers[(i/apps)%len(tiers)], envs[i%len(envs)], i, endpointAddr(i))
	}
	doc("apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\n"+
		"metadata: {name: client, namespace: ns0, labels: {app: bench-client, tier: web, env: prod}}\n"+
		"spec: {node: bench, interfaceName: wlcli, ipNetworks: [%s/32]}\n", clientAddr)
	doc("apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\n"+
		"metadata: {name: server, namespace: ns0, labels: {app: bench-server, tier: api, env: prod}}\n"+
		"spec: {node: bench, interfaceName: wlsrv, ipNetworks: [%s/32]}\n", serverAddr)
	// The benchmark's own policies, then the generated ones up to
	// w.policies in all, the last being the default deny.
	doc("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: bench-server}\n"+
		"spec:\n  order: 500\n  selector: app == 'bench-server'\n  ingress:\n"+
		"  - {action: Allow, protocol: TCP, source: {selector: app == 'bench-client'}, destination: {ports: [%d, %d]}}\n",
		connPort, iperfPort)
	doc("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: bench-client}\n" +
		"spec:\n  order: 500\n  selector: app == 'bench-client'\n  types: [Egress]\n  egress:\n" +
		"  - {action: Allow, protocol: TCP, destination: {selector: app == 'bench-server'}}\n")
	for p := range max(0, w.policies-3) {
		doc("%s", generatedPolicy(p, w.narrow))
	}
	doc("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: default-deny}\n" +
		"spec: {order: 2000, selector: all(), types: [Ingress, Egress]}\n")
	return b.String()
}

// generatedPolicy returns policy p: a NetworkPolicy (odd p) or a
// GlobalNetworkPolicy selecting one app and tier (every 50th: a whole
// tier in prod, which takes in the benchmark's server or client unless
// narrow), allowing
// TCP from the next app on 80/443 or a port of its own, every 5th also
// from nets, every 10th denying dev first, every 3rd with egress to the
// database tier and DNS.
func generatedPolicy(p int, narrow bool) string {
	var b strings.Builder
	kind, meta := "GlobalNetworkPolicy", fmt.Sprintf("{name: gen%d}", p)
	if p%2 == 1 {
		kind, meta = "NetworkPolicy", fmt.Sprintf("{name: gen%d, namespace: ns%d}", p, p%namespaces)
	}
	tier := tiers[p%len(tiers)]
	sel := fmt.Sprintf("app == 'app%d' && tier == '%s'", p%apps, tier)
	if p%50 == 0 {
		t := tiers[(p/50)%2] // web or api: the client's and the server's
		if narrow {
			t = tiers[2+(p/50)%2]
		}
		sel = fmt.Sprintf("tier == '%s' && env == 'prod'", t)
	}
	fmt.Fprintf(&b, "apiVersion: projectcalico.org/v3\nkind: %s\nmetadata: %s\nspec:\n  order: %d\n  selector: %s\n",
		kind, meta, (p%10)*10, sel)
	types := "[Ingress]"
	if p%3 == 0 {
		types = "[Ingress, Egress]"
	}
	fmt.Fprintf(&b, "  types: %s\n  ingress:\n", types)
	if p%10 == 0 {
		b.WriteString("  - {action: Deny, source: {selector: env == 'dev'}}\n")
	}
	ports := "[80, 443]"
	if p%4 == 1 {
		ports = fmt.Sprintf("[%d]", 8000+p%100)
	}
	fmt.Fprintf(&b, "  - {action: Allow, protocol: TCP, source: {selector: app == 'app%d'}, destination: {ports: %s}}\n", (p+1)%apps, ports)
	if p%5 == 0 {
		fmt.Fprintf(&b, "  - {action: Allow, protocol: TCP, source: {nets: [10.0.0.0/8, 192.168.%d.0/24]}, destination: {ports: [443]}}\n", p%256)
	}
	if p%3 == 0 {
		b.WriteString("  egress:\n  - {action: Allow, protocol: TCP, destination: {selector: tier == 'db', ports: [5432]}}\n" +
			"  - {action: Allow, protocol: UDP, destination: {nets: [10.96.0.10/32], ports: [53]}}\n")
	}
	return b.String()
}

// host returns the workloads attached to the measured host: every
// generated endpoint (by an interface that does not exist: only the map
// entries matter) and the two real workloads.
func (w world) host() nft.HostInfo {
	h := nft.HostInfo{Node: "bench"}
	for i := range w.endpoints {
		if i == w.remove {
			continue
		}
		h.Workloads = append(h.Workloads, nft.Workload{Interface: fmt.Sprintf("e%d", i), Addrs: []netip.Addr{endpointAddr(i)}})
	}
	h.Workloads = append(h.Workloads,
		nft.Workload{Interface: "wlcli", Addrs: []netip.Addr{clientAddr}},
		nft.Workload{Interface: "wlsrv", Addrs: []netip.Addr{serverAddr}})
	return h
}

// set decodes the world into a policy Set.
func (w world) set() (*policy.Set, error) {
	objs, err := policy.Decode("bench.yaml", []byte(w.yaml()))
	if err != nil {
		return nil, fmt.Errorf("decode generated world: %w", err)
	}
	set, err := policy.NewSet(objs)
	if err != nil {
		return nil, fmt.Errorf("generated world: %w", err)
	}
	return set, nil
}

// compile decodes and compiles the world.
func (w world) compile() (nft.Ruleset, error) {
	set, err := w.set()
	if err != nil {
		return nft.Ruleset{}, err
	}
	return nft.Compile(set, w.host(), policy.Options{})
}

// counts are the sizes of a ruleset.
type counts struct {
	Chains   int `json:"chains"`
	Rules    int `json:"rules"`
	Sets     int `json:"sets"`
	Elements int `json:"elements"`
}

func countsOf(rs *nft.Ruleset) counts {
	c := counts{Chains: len(rs.Chains), Sets: len(rs.Sets)}
	for _, ch := range rs.Chains {
		c.Rules += len(ch.Rules)
	}
	for _, s := range rs.Sets {
		c.Elements += len(s.Elements)
	}
	return c
}
