package nft

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/weft-net/weft/policy"
)

// diffWorld is the fixed part of the differential test: one host, its
// workloads (routed veths) and an external address.
type diffWorld struct {
	hostNode  string     // the host's node name and lab node
	hostAddr  netip.Addr // the host's own address
	extNode   string
	extAddr   netip.Addr
	workloads []diffWorkload
}

type diffWorkload struct {
	node  string // lab workload name
	iface string // host side of its veth
	addr  netip.Addr
}

// Vocabulary of the random cases. Every node listens on every port of
// probePorts, TCP and UDP. Source ports are drawn from 20000-59999, so the
// source port ranges below either match every probe or none, and a retry
// from another source port is the same flow to the policies.
var (
	probePorts   = []uint16{22, 53, 80, 443, 8080}
	selectors    = []string{"all()", "app == 'web'", "app == 'db'", "app != 'api'", "env == 'prod'", "has(env)", "!has(app)", "app in {'web', 'api'}", "app == 'web' && env == 'prod'", "app == 'db' || env == 'dev'", "role == 'host'", "net == 'ext'", "net == 'lab'"}
	nsSelectors  = []string{"team == 'a'", "team == 'b'", "all()", "global()", "has(team)"}
	destPorts    = []any{22, 53, 80, 443, 8080, "80:443", "1:100", "http", "dns"}
	sourcePorts  = []any{"1024:65535", "1:1023"}
	icmpFields   = []map[string]any{{"type": 8}, {"type": 0}, {"type": 8, "code": 0}, {"type": 8, "code": 1}, {"type": 3}}
	ruleActions  = []string{"Allow", "Allow", "Allow", "Deny", "Deny", "Pass", "Pass", "Log"}
	protocols    = []string{"TCP", "UDP", "ICMP"}
	appValues    = []string{"web", "db", "api"}
	envValues    = []string{"prod", "dev"}
	namespaces   = []string{"ns1", "ns2"}
	accounts     = []string{"sa1", "sa2"}
	diffPolicies = 4 // at most, per case
	flowsPerCase = 20
)

// diffCase is one random case: the resources, options and flows.
type diffCase struct {
	yaml string           // every resource, as a multi-document YAML file
	docs []map[string]any // the resources yaml holds
	// removed are workload endpoints mutate took out, to put back later.
	removed []map[string]any
	hep     bool // the host has a host endpoint
	opts    policy.Options
	flows   []policy.Flow
}

type caseGen struct {
	r *rand.Rand
	w diffWorld
}

func (g *caseGen) pick(list []string) string { return list[g.r.IntN(len(list))] }
func (g *caseGen) chance(p float64) bool     { return g.r.Float64() < p }

// nets returns the networks a rule may name: the workloads, the host, the
// external address, the workload network and the lab range.
func (g *caseGen) nets() []string {
	out := []string{g.w.hostAddr.String() + "/32", g.w.extAddr.String() + "/32", "198.19.200.0/24", "198.18.0.0/15"}
	for _, w := range g.w.workloads {
		out = append(out, w.addr.String()+"/32")
	}
	return out
}

// newCase makes a random case. Decoding may still reject it (a rule
// combination Calico forbids); the caller then makes another.
func (g *caseGen) newCase() diffCase {
	c := diffCase{hep: g.chance(0.4)}
	c.opts.DefaultDenyWorkloads = g.chance(0.2)
	c.opts.FailsafeInbound = []policy.Failsafe{{Protocol: policy.ProtoTCP, Port: 22}}
	c.opts.FailsafeOutbound = []policy.Failsafe{{Protocol: policy.ProtoUDP, Port: 53}}
	var docs []map[string]any
	obj := func(apiVersion, kind string, meta, spec map[string]any) {
		d := map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": meta}
		if spec != nil {
			d["spec"] = spec
		}
		docs = append(docs, d)
	}
	obj("v1", "Namespace", map[string]any{"name": "ns1", "labels": map[string]any{"team": "a"}}, nil)
	obj("v1", "Namespace", map[string]any{"name": "ns2", "labels": map[string]any{"team": "b"}}, nil)
	for _, w := range g.w.workloads {
		labels := map[string]any{}
		if g.chance(0.8) {
			labels["app"] = g.pick(appValues)
		}
		if g.chance(0.6) {
			labels["env"] = g.pick(envValues)
		}
		spec := map[string]any{"node": g.w.hostNode, "interfaceName": w.iface, "ipNetworks": []string{w.addr.String() + "/32"}}
		if g.chance(0.6) {
			spec["orchestrator"] = "k8s" // translated Kubernetes policies select only these
		}
		if g.chance(0.4) {
			spec["serviceAccountName"] = g.pick(accounts)
		}
		var ports []map[string]any
		if g.chance(0.5) {
			ports = append(ports, map[string]any{"name": "http", "protocol": "TCP", "port": []int{80, 8080}[g.r.IntN(2)]})
		}
		if g.chance(0.3) {
			ports = append(ports, map[string]any{"name": "dns", "protocol": "UDP", "port": 53})
		}
		if ports != nil {
			spec["ports"] = ports
		}
		obj(policy.APIVersionCalico, policy.KindWorkloadEndpoint,
			map[string]any{"name": w.node, "namespace": g.pick(namespaces), "labels": labels}, spec)
	}
	if g.chance(0.7) {
		obj(policy.APIVersionCalico, policy.KindGlobalNetworkSet, map[string]any{"name": "ext", "labels": map[string]any{"net": "ext"}},
			map[string]any{"nets": []string{g.w.extAddr.String() + "/32"}})
	}
	if g.chance(0.3) {
		obj(policy.APIVersionCalico, policy.KindNetworkSet, map[string]any{"name": "lab", "namespace": g.pick(namespaces), "labels": map[string]any{"net": "lab"}},
			map[string]any{"nets": []string{"198.19.200.0/24"}})
	}
	if c.hep {
		labels := map[string]any{"role": "host"}
		if g.chance(0.3) {
			labels["app"] = g.pick(appValues)
		}
		spec := map[string]any{"node": g.w.hostNode, "expectedIPs": []string{g.w.hostAddr.String()}}
		if g.chance(0.3) {
			spec["profiles"] = []string{policy.ProfileDefaultAllow}
		}
		obj(policy.APIVersionCalico, policy.KindHostEndpoint, map[string]any{"name": "host-eth0", "labels": labels}, spec)
	}
	tiered := g.chance(0.6)
	if tiered {
		obj(policy.APIVersionCalico, policy.KindTier, map[string]any{"name": "sec"},
			map[string]any{"order": 100, "defaultAction": []string{"Deny", "Pass"}[g.r.IntN(2)]})
	}
	for i := range 1 + g.r.IntN(diffPolicies) {
		if g.chance(0.25) {
			obj(policy.APIVersionNetworking, policy.KindNetworkPolicy,
				map[string]any{"name": fmt.Sprintf("k%d", i), "namespace": g.pick(namespaces)}, g.kubernetesSpec())
			continue
		}
		kind, meta := policy.KindGlobalNetworkPolicy, map[string]any{"name": fmt.Sprintf("p%d", i)}
		spec := map[string]any{}
		if g.chance(0.35) {
			kind, meta["namespace"] = policy.KindNetworkPolicy, g.pick(namespaces)
		}
		if kind == policy.KindGlobalNetworkPolicy || g.chance(0.7) {
			spec["selector"] = g.pick(selectors)
		}
		if kind == policy.KindGlobalNetworkPolicy && c.hep && g.chance(0.15) {
			spec["selector"] = "role == 'host'"
			spec["applyOnForward"] = true
			spec[[]string{"doNotTrack", "preDNAT"}[g.r.IntN(2)]] = true
		}
		if tiered && g.chance(0.6) {
			spec["tier"] = "sec"
		}
		if g.chance(0.7) {
			spec["order"] = 1 + g.r.IntN(5)
		}
		if g.chance(0.5) {
			spec["types"] = [][]string{{"Ingress"}, {"Egress"}, {"Ingress", "Egress"}}[g.r.IntN(3)]
		}
		for _, dir := range []string{"ingress", "egress"} {
			if spec["preDNAT"] == true && dir == "egress" {
				continue
			}
			var rules []map[string]any
			for range g.r.IntN(4) {
				rules = append(rules, g.rule(kind == policy.KindGlobalNetworkPolicy))
			}
			if rules != nil {
				spec[dir] = rules
			}
		}
		obj(policy.APIVersionCalico, kind, meta, spec)
	}
	c.docs = docs
	c.yaml = renderDocs(docs)
	c.flows = g.flows(c.hep)
	return c
}

// renderDocs returns resources as a multi-document YAML file.
func renderDocs(docs []map[string]any) string {
	var b strings.Builder
	for _, d := range docs {
		y, _ := yaml.Marshal(d)
		b.WriteString("---\n")
		b.Write(y)
	}
	return b.String()
}

// mutate returns c after one to three random changes of the kind an
// agent sees between two applies: a workload endpoint's labels change, an
// endpoint goes or comes back, a policy's rules in one direction change, a
// network set comes or goes. The options, and whether the host has a host
// endpoint, stay. c is not changed.
func (g *caseGen) mutate(c diffCase) diffCase {
	out := diffCase{hep: c.hep, opts: c.opts, removed: slices.Clone(c.removed)}
	for _, d := range c.docs {
		out.docs = append(out.docs, cloneDoc(d))
	}
	kindIdx := func(kinds ...string) []int {
		var idx []int
		for i, d := range out.docs {
			if slices.Contains(kinds, d["kind"].(string)) {
				idx = append(idx, i)
			}
		}
		return idx
	}
	for range 1 + g.r.IntN(3) {
		switch g.r.IntN(6) {
		case 0, 1: // labels of a workload endpoint
			if eps := kindIdx(policy.KindWorkloadEndpoint); len(eps) > 0 {
				meta := out.docs[eps[g.r.IntN(len(eps))]]["metadata"].(map[string]any)
				labels := map[string]any{}
				if g.chance(0.8) {
					labels["app"] = g.pick(appValues)
				}
				if g.chance(0.6) {
					labels["env"] = g.pick(envValues)
				}
				meta["labels"] = labels
			}
		case 2: // an endpoint goes
			if eps := kindIdx(policy.KindWorkloadEndpoint); len(eps) > 0 {
				i := eps[g.r.IntN(len(eps))]
				out.removed = append(out.removed, out.docs[i])
				out.docs = slices.Delete(out.docs, i, i+1)
			}
		case 3: // an endpoint comes back
			if n := len(out.removed); n > 0 {
				i := g.r.IntN(n)
				out.docs = append(out.docs, out.removed[i])
				out.removed = slices.Delete(out.removed, i, i+1)
			}
		case 4: // the rules of a Calico policy in one direction
			if ps := kindIdx(policy.KindGlobalNetworkPolicy, policy.KindNetworkPolicy); len(ps) > 0 {
				d := out.docs[ps[g.r.IntN(len(ps))]]
				spec, ok := d["spec"].(map[string]any)
				if !ok || d["apiVersion"] != policy.APIVersionCalico || spec["preDNAT"] == true {
					continue
				}
				dir := []string{"ingress", "egress"}[g.r.IntN(2)]
				var rules []map[string]any
				for range g.r.IntN(4) {
					rules = append(rules, g.rule(d["kind"] == policy.KindGlobalNetworkPolicy))
				}
				delete(spec, dir)
				if rules != nil {
					spec[dir] = rules
				}
			}
		default: // the external network set
			if sets := kindIdx(policy.KindGlobalNetworkSet); len(sets) > 0 {
				out.docs = slices.Delete(out.docs, sets[0], sets[0]+1)
			} else {
				out.docs = append(out.docs, map[string]any{"apiVersion": policy.APIVersionCalico, "kind": policy.KindGlobalNetworkSet,
					"metadata": map[string]any{"name": "ext", "labels": map[string]any{"net": "ext"}},
					"spec":     map[string]any{"nets": []string{g.w.extAddr.String() + "/32"}}})
			}
		}
	}
	out.yaml = renderDocs(out.docs)
	out.flows = g.flows(out.hep)
	return out
}

// cloneDoc copies a resource deeply enough for mutate: its metadata and
// spec maps (rule lists are replaced, never changed in place).
func cloneDoc(d map[string]any) map[string]any {
	out := maps.Clone(d)
	for _, k := range []string{"metadata", "spec"} {
		if m, ok := d[k].(map[string]any); ok {
			out[k] = maps.Clone(m)
		}
	}
	return out
}

// rule makes a random rule.
func (g *caseGen) rule(global bool) map[string]any {
	r := map[string]any{"action": g.pick(ruleActions)}
	if r["action"] == "Pass" && g.chance(0.5) {
		return r // a bare Pass, so that Pass decides often enough
	}
	proto := ""
	if g.chance(0.7) {
		proto = g.pick(protocols)
		r["protocol"] = proto
	}
	if g.chance(0.1) {
		r["notProtocol"] = g.pick(protocols)
	}
	if proto == "ICMP" {
		if g.chance(0.4) {
			r["icmp"] = icmpFields[g.r.IntN(len(icmpFields))]
		}
		if g.chance(0.2) {
			r["notICMP"] = icmpFields[g.r.IntN(len(icmpFields))]
		}
	}
	if g.chance(0.1) {
		r["ipVersion"] = 4
	}
	ported := proto == "TCP" || proto == "UDP"
	nets := g.nets()
	for _, end := range []string{"source", "destination"} {
		e := map[string]any{}
		if g.chance(0.35) {
			e["selector"] = g.pick(selectors)
			if g.chance(0.25) {
				e["namespaceSelector"] = g.pick(nsSelectors)
			}
		}
		if g.chance(0.35) {
			e["notSelector"] = g.pick(selectors)
		}
		if g.chance(0.05) {
			e["serviceAccounts"] = map[string]any{"names": []string{g.pick(accounts)}}
		}
		if g.chance(0.2) {
			e["nets"] = []string{nets[g.r.IntN(len(nets))]}
		}
		if g.chance(0.1) {
			e["notNets"] = []string{nets[g.r.IntN(len(nets))]}
		}
		switch {
		case end == "destination" && ported && g.chance(0.5):
			e["ports"] = g.ports(destPorts, true)
		case end == "destination" && !ported && g.chance(0.1):
			e["ports"] = []any{[]string{"http", "dns"}[g.r.IntN(2)]} // named ports need no protocol
		case end == "source" && ported && g.chance(0.1):
			e["ports"] = []any{sourcePorts[g.r.IntN(len(sourcePorts))]}
		}
		if end == "destination" && ported && g.chance(0.15) {
			e["notPorts"] = g.ports(destPorts, false)
		}
		if !global && e["namespaceSelector"] == "global()" {
			delete(e, "namespaceSelector")
		}
		if len(e) > 0 {
			r[end] = e
		}
	}
	return r
}

// kubernetesSpec makes the spec of a random Kubernetes NetworkPolicy.
func (g *caseGen) kubernetesSpec() map[string]any {
	labels := func() map[string]any {
		m := map[string]any{}
		if g.chance(0.6) {
			m["app"] = g.pick(appValues)
		}
		if g.chance(0.3) {
			m["env"] = g.pick(envValues)
		}
		return m
	}
	spec := map[string]any{"podSelector": map[string]any{"matchLabels": labels()}}
	if g.chance(0.6) {
		spec["policyTypes"] = [][]string{{"Ingress"}, {"Egress"}, {"Ingress", "Egress"}}[g.r.IntN(3)]
	}
	for _, dir := range []string{"ingress", "egress"} {
		var rules []map[string]any
		for range g.r.IntN(3) {
			r := map[string]any{}
			var peers []map[string]any
			for range g.r.IntN(3) {
				switch g.r.IntN(3) {
				case 0:
					peers = append(peers, map[string]any{"podSelector": map[string]any{"matchLabels": labels()}})
				case 1:
					peers = append(peers, map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"team": []string{"a", "b"}[g.r.IntN(2)]}}})
				default:
					nets := g.nets()
					peers = append(peers, map[string]any{"ipBlock": map[string]any{"cidr": "198.16.0.0/12", "except": []string{nets[g.r.IntN(len(nets))]}}})
				}
			}
			if peers != nil {
				r[map[string]string{"ingress": "from", "egress": "to"}[dir]] = peers
			}
			if g.chance(0.5) {
				port := map[string]any{"protocol": []string{"TCP", "UDP"}[g.r.IntN(2)], "port": destPorts[g.r.IntN(len(destPorts))]}
				if _, ok := port["port"].(string); ok && strings.Contains(port["port"].(string), ":") {
					port["port"], port["endPort"] = 80, 443
				}
				r["ports"] = []map[string]any{port}
			}
			rules = append(rules, r)
		}
		if rules != nil {
			spec[dir] = rules
		}
	}
	return spec
}

// ports returns one or two ports from list; named ones only if named.
func (g *caseGen) ports(list []any, named bool) []any {
	var out []any
	for range 1 + g.r.IntN(2) {
		p := list[g.r.IntN(len(list))]
		if _, isName := p.(string); isName && !named && !strings.Contains(p.(string), ":") {
			continue
		}
		out = append(out, p)
	}
	if out == nil {
		out = []any{80}
	}
	return out
}

// flows makes random flows between the workloads, the host and the
// external address, each with a source port for TCP and UDP (set by the
// prober) and a destination port every node listens on.
func (g *caseGen) flows(hep bool) []policy.Flow {
	var addrsList []netip.Addr
	for _, w := range g.w.workloads {
		addrsList = append(addrsList, w.addr)
	}
	others := []netip.Addr{g.w.hostAddr, g.w.extAddr}
	var out []policy.Flow
	for len(out) < flowsPerCase {
		src := addrsList[g.r.IntN(len(addrsList))]
		dst := addrsList[g.r.IntN(len(addrsList))]
		switch g.r.IntN(4) {
		case 0:
			dst = others[g.r.IntN(2)]
		case 1:
			src = others[g.r.IntN(2)]
		}
		if hep && g.chance(0.1) {
			src, dst = others[g.r.IntN(2)], others[g.r.IntN(2)]
		}
		if src == dst {
			continue
		}
		f := policy.Flow{Src: src, Dst: dst}
		switch g.r.IntN(3) {
		case 0:
			f.Protocol = policy.ProtoTCP
		case 1:
			f.Protocol = policy.ProtoUDP
		default:
			f.Protocol = policy.ProtoICMP
			t, c := uint8(8), uint8(0)
			f.ICMPType, f.ICMPCode = &t, &c
		}
		if f.Protocol != policy.ProtoICMP {
			f.DstPort = probePorts[g.r.IntN(len(probePorts))]
			// Failsafe ports: TCP 22 to the host, UDP 53 from it.
			if hep && g.chance(0.3) && (f.Dst == g.w.hostAddr || f.Src == g.w.hostAddr) {
				f.Protocol, f.DstPort = policy.ProtoTCP, 22
				if f.Src == g.w.hostAddr {
					f.Protocol, f.DstPort = policy.ProtoUDP, 53
				}
			}
		}
		out = append(out, f)
	}
	return out
}

// host returns the HostInfo of the world.
func (w diffWorld) host() HostInfo {
	h := HostInfo{Node: w.hostNode}
	for _, wl := range w.workloads {
		h.Workloads = append(h.Workloads, Workload{Interface: wl.iface, Addrs: []netip.Addr{wl.addr}})
	}
	return h
}

// TestDiffGen checks that the random cases mostly decode and compile
// (without a kernel), so that the differential test explores policies
// rather than rejections.
func TestDiffGen(t *testing.T) {
	w := diffWorld{hostNode: "h", hostAddr: netip.MustParseAddr("198.18.77.1"), extNode: "x",
		extAddr: netip.MustParseAddr("198.18.77.2")}
	for i := 1; i <= 4; i++ {
		w.workloads = append(w.workloads, diffWorkload{node: fmt.Sprintf("w%d", i), iface: fmt.Sprintf("wlw%d", i),
			addr: netip.AddrFrom4([4]byte{198, 19, 200, byte(i)})})
	}
	g := &caseGen{r: rand.New(rand.NewPCG(1, 2)), w: w}
	const n = 200
	decoded, flows, allowed := 0, 0, 0
	for range n {
		c := g.newCase()
		objs, err := policy.Decode("case.yaml", []byte(c.yaml))
		if err != nil {
			continue
		}
		set, err := policy.NewSet(objs)
		if err != nil {
			continue
		}
		decoded++
		if _, err := Compile(set, w.host(), c.opts); err != nil {
			t.Fatalf("Compile: %v\n%s", err, c.yaml)
		}
		for _, f := range c.flows {
			flows++
			if policy.Evaluate(set, f, c.opts).Allowed() {
				allowed++
			}
		}
	}
	t.Logf("%d of %d cases decode; %d of their %d flows are allowed", decoded, n, allowed, flows)
	if allowed < flows/5 || allowed > flows*4/5 {
		t.Errorf("%d of %d flows allowed: the cases should allow and deny alike", allowed, flows)
	}
	if decoded < n*3/4 {
		t.Errorf("%d of %d random cases decode, want at least 3/4", decoded, n)
	}
}
