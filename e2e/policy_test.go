package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-net/weft/internal/api"
	"github.com/weft-net/weft/internal/lab"
	"github.com/weft-net/weft/internal/netlab"
	"github.com/weft-net/weft/policy"
)

// Ports the policy test's workloads serve on (every workload serves all).
const (
	portWeb     = 8080 // TCP
	portDB      = 5432 // TCP
	portMetrics = 9090 // TCP
	portDNS     = 5353 // UDP
)

// policyLab is 3 hosts on 2 segments (a1, a2 | b1) with 2 labelled
// workloads each, registered as endpoints, every workload serving TCP
// and UDP echo.
type policyLab struct {
	c     *lab.Cluster
	l     *netlab.Lab
	hosts []string
	ws    map[string]netlab.Workload // by name: w1, w2 on a1; w3, w4 on a2; w5, w6 on b1
	dir   string
}

func newPolicyLab(t *testing.T) *policyLab {
	t.Helper()
	c := newCluster(t, twoSegments(2, 1), map[string]any{"resyncPeriod": "5s"})
	l := c.Lab()
	p := &policyLab{c: c, l: l, hosts: l.Hosts(), ws: map[string]netlab.Workload{}, dir: t.TempDir()}
	startAll(t, c, p.hosts, []string{l.HostAddr("a1").String()})
	waitConverged(t, c, p.hosts, 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	i := 0
	for _, h := range p.hosts {
		a := status(t, c, h).Subnet.Addr().Next().Next()
		for range 2 {
			w := netlab.Workload{Name: fmt.Sprintf("w%d", i+1), Host: h, Addr: a, Labels: lab.WorkloadLabels(i)}
			if err := l.AddWorkload(ctx, w); err != nil {
				t.Fatal(err)
			}
			if err := c.RegisterWorkload(ctx, w); err != nil {
				t.Fatal(err)
			}
			p.ws[w.Name] = w
			for _, port := range []int{portWeb, portDB, portMetrics} {
				go serveEcho(listenIn(t, l, w.Name, netip.AddrPortFrom(w.Addr, uint16(port))))
			}
			serveUDPEcho(t, l, w.Name, netip.AddrPortFrom(w.Addr, portDNS))
			a = a.Next()
			i++
		}
	}
	poll(t, 60*time.Second, "data planes ready", func() (bool, string) { return c.DataPlaneReady(ctx, p.hosts) })
	// Every host knows all six endpoints.
	for _, h := range p.hosts {
		poll(t, 15*time.Second, h+" lists 6 endpoints", func() (bool, string) {
			out, code := weft(t, "endpoint", "list", "--run-dir", c.RunDir(h), "-o", "json")
			var eps []json.RawMessage
			if code != 0 || json.Unmarshal([]byte(out), &eps) != nil {
				return false, out
			}
			return len(eps) == 6, fmt.Sprintf("%d endpoints", len(eps))
		})
	}
	return p
}

// serveUDPEcho answers every datagram to at with the same bytes.
func serveUDPEcho(t *testing.T, l *netlab.Lab, node string, at netip.AddrPort) {
	t.Helper()
	var pc net.PacketConn
	err := l.Do(node, func() error {
		var err error
		pc, err = net.ListenPacket("udp", at.String())
		return err
	})
	if err != nil {
		t.Fatalf("listen udp in %s on %s: %v", node, at, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
}

// check is one flow between two workloads and whether it should pass.
type check struct {
	from, to string // workload names
	proto    string // tcp, udp or icmp
	port     int
	allow    bool
}

func (c check) String() string {
	s := fmt.Sprintf("%s -> %s %s", c.from, c.to, c.proto)
	if c.port != 0 {
		s += ":" + strconv.Itoa(c.port)
	}
	return s
}

// try sends the flow once with real packets: a TCP connection that echoes
// a line, a UDP datagram that comes back, or one ping. A flow that policy
// drops times out (1.5 s, 2 s for ping).
func (p *policyLab) try(c check) bool { return p.tryWithin(c, 1500*time.Millisecond) }

// tryWithin is try with the given timeout for TCP and UDP.
func (p *policyLab) tryWithin(c check, timeout time.Duration) bool {
	src, dst := p.ws[c.from], p.ws[c.to]
	msg := []byte("hello from " + c.from + "\n")
	switch c.proto {
	case "icmp":
		return lab.Ping(context.Background(), p.l, src.Name, dst.Addr, 1)
	case "tcp", "udp":
		err := p.l.Do(src.Name, func() error {
			conn, err := net.DialTimeout(c.proto, netip.AddrPortFrom(dst.Addr, uint16(c.port)).String(), timeout)
			if err != nil {
				return err
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(timeout))
			if _, err := conn.Write(msg); err != nil {
				return err
			}
			buf := make([]byte, len(msg))
			n, err := conn.Read(buf)
			if err != nil {
				return err
			}
			if string(buf[:n]) != string(msg) {
				return fmt.Errorf("echo %q", buf[:n])
			}
			return nil
		})
		return err == nil
	}
	panic("unknown protocol " + c.proto)
}

// run sends every check once, concurrently, and returns what passed.
func (p *policyLab) run(checks []check) []bool {
	got := make([]bool, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = p.try(c)
		}()
	}
	wg.Wait()
	return got
}

// expect polls until every check behaves as it should (every host
// enforcing the same policy), fails the test if that does not happen
// within the deadline, and returns how long it took.
func (p *policyLab) expect(t *testing.T, what string, within time.Duration, checks []check) time.Duration {
	t.Helper()
	took := poll(t, within, what, func() (bool, string) {
		got := p.run(checks)
		var wrong []string
		for i, c := range checks {
			if got[i] != c.allow {
				wrong = append(wrong, fmt.Sprintf("%s: passed=%v, want %v", c, got[i], c.allow))
			}
		}
		return len(wrong) == 0, strings.Join(wrong, "; ")
	})
	t.Logf("%s: all %d flows as expected after %s", what, len(checks), took.Round(10*time.Millisecond))
	p.traceAgrees(t, checks)
	return took
}

// traceAgrees asks the source host's agent (`weft policy trace` without
// -f) about every check and compares its verdict with what the packets did.
func (p *policyLab) traceAgrees(t *testing.T, checks []check) {
	t.Helper()
	for _, c := range checks {
		v := p.trace(t, c)
		if v.Allowed() != c.allow {
			t.Errorf("weft policy trace %s says %s, the packets said allow=%v", c, v.Verdict, c.allow)
		}
	}
}

func (p *policyLab) trace(t *testing.T, c check) policy.Verdict {
	t.Helper()
	src, dst := p.ws[c.from], p.ws[c.to]
	args := []string{"policy", "trace", "--run-dir", p.c.RunDir(src.Host), "--from", src.Addr.String(), "--to", dst.Addr.String(), "--proto", c.proto, "-o", "json"}
	if c.port != 0 {
		args = append(args, "--port", strconv.Itoa(c.port))
	}
	out, code := weft(t, args...)
	var v policy.Verdict
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil {
		t.Fatalf("weft %v: exit %d:\n%s", args, code, out)
	}
	return v
}

// apply writes doc to a file and runs `weft policy apply` on host.
func (p *policyLab) apply(t *testing.T, host, name, doc string) (string, int) {
	t.Helper()
	f := filepath.Join(p.dir, name)
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return weft(t, "policy", "apply", "-f", f, "--run-dir", p.c.RunDir(host))
}

const tieredPolicy = `# Default deny for every labelled workload, then allow web -> api on
# 8080, api -> db on 5432/TCP and 5353/UDP, ping from the frontend tier,
# and all egress.
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: default-deny}
spec: {order: 1000, selector: has(app), types: [Ingress, Egress]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: allow-egress}
spec: {order: 100, selector: has(app), types: [Egress], egress: [{action: Allow}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: allow-web-to-api}
spec:
  order: 100
  selector: app == 'api'
  types: [Ingress]
  ingress:
  - {action: Allow, protocol: TCP, source: {selector: app == 'web'}, destination: {ports: [8080]}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: allow-api-to-db}
spec:
  order: 100
  selector: app == 'db'
  types: [Ingress]
  ingress:
  - {action: Allow, protocol: TCP, source: {selector: app == 'api'}, destination: {ports: [5432]}}
  - {action: Allow, protocol: UDP, source: {selector: app == 'api'}, destination: {ports: [5353]}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: allow-ping-from-frontend}
spec:
  order: 100
  selector: has(app)
  types: [Ingress]
  ingress:
  - {action: Allow, protocol: ICMP, source: {selector: tier == 'frontend'}}
`

const securityTier = `apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
# Before any other policy: nothing from dev reaches prod; the rest passes
# on to the default tier.
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.isolate-dev}
spec:
  tier: security
  order: 10
  selector: env == 'prod'
  types: [Ingress]
  ingress:
  - {action: Deny, source: {selector: env == 'dev'}}
  - {action: Pass}
`

const kubernetesPolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-metrics, namespace: default}
spec:
  podSelector: {matchLabels: {app: api}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {tier: frontend}}}]
    ports: [{protocol: TCP, port: 9090}]
`

// TestPolicyEnforcement: in a lab of 3 hosts with 2 workloads each,
// policies applied on one host are enforced on every host, checked with
// real TCP, UDP and ICMP between workloads on different hosts: default
// allow; default deny with allow rules by selector and port; a label
// change; a tier with Pass; a Kubernetes NetworkPolicy; a malformed file
// that changes nothing. `weft policy trace` (live, without -f) agrees with
// the packets on every flow.
func TestPolicyEnforcement(t *testing.T) {
	p := newPolicyLab(t)
	// w1 web/prod, w2 api/prod on a1; w3 db/prod, w4 web/dev on a2; w5 api/dev, w6 db/dev on b1.

	p.expect(t, "default allow", 10*time.Second, []check{
		{"w1", "w5", "tcp", portWeb, true},
		{"w4", "w6", "tcp", portDB, true},
		{"w2", "w3", "udp", portDNS, true},
		{"w1", "w6", "icmp", 0, true},
	})

	start := time.Now()
	out, code := p.apply(t, "a1", "tiered.yaml", tieredPolicy)
	if code != 0 || strings.Count(out, "created") != 5 {
		t.Fatalf("weft policy apply tiered.yaml: exit %d:\n%s", code, out)
	}
	p.logApplied(t, start, 5)
	tiered := []check{
		{"w1", "w5", "tcp", portWeb, true},      // web -> api on its port (a1 -> b1)
		{"w1", "w5", "tcp", portDB, false},      // another port
		{"w1", "w5", "tcp", portMetrics, false}, // not yet (see the Kubernetes policy)
		{"w4", "w6", "tcp", portDB, false},      // web -> db (a2 -> b1)
		{"w2", "w3", "tcp", portDB, true},       // api -> db (a1 -> a2)
		{"w2", "w3", "udp", portDNS, true},      // api -> db over UDP
		{"w1", "w3", "udp", portDNS, false},     // web -> db over UDP
		{"w5", "w3", "tcp", portDB, true},       // api -> db (b1 -> a2)
		{"w1", "w6", "icmp", 0, true},           // ping from the frontend tier (a1 -> b1)
		{"w2", "w4", "icmp", 0, false},          // ping from the backend tier (a1 -> a2)
		{"w1", "w4", "tcp", portWeb, false},     // web -> web
	}
	p.expect(t, "default deny plus allow rules", 30*time.Second, tiered)
	t.Logf("policy applied on a1 enforced as expected on every host %s after the apply started", time.Since(start).Round(10*time.Millisecond))
	p.checkStatus(t)

	// Counters: b1 counted w1's connections to w5 on the allow rule.
	out, code = weft(t, "policy", "stats", "--run-dir", p.c.RunDir("b1"), "-o", "json")
	var st api.PolicyStats
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("weft policy stats: exit %d:\n%s", code, out)
	}
	found := false
	for _, r := range st.Rules {
		if r.Policy == "allow-web-to-api" && r.Rule == "ingress[0]" && r.Packets > 0 {
			found = true
		}
	}
	if !found {
		t.Errorf("policy stats on b1 show no packets on allow-web-to-api ingress[0]:\n%s", out)
	}

	// A label change on w4 (a2): web -> api. Enforcement follows on a2
	// (w4's ingress) and on b1 (w6's ingress from w4).
	start = time.Now()
	w4 := p.ws["w4"]
	out, code = weft(t, "endpoint", "add", "w4", "--iface", w4.HostVeth(), "--ip", w4.Addr.String(),
		"--labels", "app=api,tier=backend,env=dev", "--run-dir", p.c.RunDir("a2"))
	if code != 0 || !strings.Contains(out, "a2/w4") || !strings.Contains(out, "updated") {
		t.Fatalf("weft endpoint add w4 (relabel): exit %d:\n%s", code, out)
	}
	w4.Labels = map[string]string{"app": "api", "tier": "backend", "env": "dev"}
	p.ws["w4"] = w4
	// Poll with short timeouts to see when each host enforces it, then
	// check with the usual ones.
	relabelled := []check{
		{"w1", "w4", "tcp", portWeb, true}, // w4 is an api now: a2 lets w1 in
		{"w4", "w6", "tcp", portDB, true},  // and may call the db: b1 lets w4 in
	}
	var wg sync.WaitGroup
	for _, c := range relabelled {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < 10*time.Second {
				if p.tryWithin(c, 200*time.Millisecond) {
					t.Logf("label change: %s passes %s after `weft endpoint add` (on %s)", c, time.Since(start).Round(time.Millisecond), p.ws[c.to].Host)
					return
				}
			}
			t.Errorf("label change: %s still fails 10s after `weft endpoint add`", c)
		}()
	}
	wg.Wait()
	p.expect(t, "label change of w4", 15*time.Second, append(relabelled, check{"w2", "w4", "icmp", 0, false}))

	// A tier before the default one: dev may not reach prod; the rest
	// passes on to the default tier's rules.
	out, code = p.apply(t, "b1", "security.yaml", securityTier)
	if code != 0 || strings.Count(out, "created") != 2 {
		t.Fatalf("weft policy apply security.yaml: exit %d:\n%s", code, out)
	}
	p.expect(t, "tier with Pass", 30*time.Second, []check{
		{"w5", "w3", "tcp", portDB, false}, // api/dev -> db/prod: denied by the security tier
		{"w2", "w3", "tcp", portDB, true},  // api/prod -> db/prod: passed, then allowed
		{"w4", "w6", "tcp", portDB, true},  // dev -> dev: the tier selects no dev endpoint
		{"w1", "w5", "tcp", portWeb, true}, // prod -> dev
	})
	v := p.trace(t, check{"w2", "w3", "tcp", portDB, true})
	passed := false
	for _, s := range v.Ingress.Steps {
		if s.Tier == "security" && s.Result == policy.ResultPass {
			passed = true
		}
	}
	if !passed || v.Ingress.Decision().Policy != "allow-api-to-db" {
		t.Errorf("trace w2 -> w3: want a Pass in tier security, then allow-api-to-db:\n%+v", v.Ingress)
	}

	// A Kubernetes NetworkPolicy: the frontend may scrape the api's metrics.
	out, code = p.apply(t, "a2", "knp.yaml", kubernetesPolicy)
	if code != 0 || !strings.Contains(out, "NetworkPolicy/default/api-metrics") || !strings.Contains(out, "created") {
		t.Fatalf("weft policy apply knp.yaml: exit %d:\n%s", code, out)
	}
	final := []check{
		{"w1", "w5", "tcp", portMetrics, true},  // frontend -> api on 9090
		{"w2", "w5", "tcp", portMetrics, false}, // backend -> api on 9090
		{"w1", "w5", "tcp", portWeb, true},
		{"w5", "w3", "tcp", portDB, false},
		{"w1", "w3", "udp", portDNS, false},
		{"w1", "w6", "icmp", 0, true},
	}
	p.expect(t, "Kubernetes NetworkPolicy", 30*time.Second, final)

	// A malformed file: refused here, nothing sent; a policy the cluster
	// set cannot resolve: refused by the agent. Either way nothing changes.
	before, _ := weft(t, "policy", "get", "-o", "json", "--run-dir", p.c.RunDir("a1"))
	allowAll := "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: allow-all}\nspec: {order: 1, selector: all(), ingress: [{action: Allow}], egress: [{action: Allow}]}\n"
	bad := allowAll + "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: broken}\nspec: {ingress: [{action: Allow, protocol: TCP, destination: {ports: [http-]}}]}\n"
	out, code = p.apply(t, "a1", "bad.yaml", bad)
	if code != 2 || !strings.Contains(out, "bad.yaml: document 2 (GlobalNetworkPolicy broken): spec.ingress[0].destination.ports[0]: \"http-\"") {
		t.Errorf("weft policy apply bad.yaml: exit %d, want 2 and an error naming file, document, field and value:\n%s", code, out)
	}
	orphan := allowAll + "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: nope.x}\nspec: {tier: nope, selector: all()}\n"
	out, code = p.apply(t, "a1", "orphan.yaml", orphan)
	if code != 1 || !strings.Contains(out, "no such Tier") || !strings.Contains(out, "orphan.yaml: document 2") {
		t.Errorf("weft policy apply orphan.yaml: exit %d, want 1 and the agent's refusal:\n%s", code, out)
	}
	if after, _ := weft(t, "policy", "get", "-o", "json", "--run-dir", p.c.RunDir("a1")); after != before {
		t.Errorf("the store changed after refused applies:\nbefore %s\nafter %s", before, after)
	}
	p.expect(t, "rules in force after refused applies", 15*time.Second, final)

	// A tier with a policy in it cannot be deleted.
	out, code = weft(t, "policy", "delete", "tier/security", "--run-dir", p.c.RunDir("b1"))
	if code != 1 || !strings.Contains(out, "nothing deleted") {
		t.Errorf("weft policy delete tier/security: exit %d, want 1 and a refusal:\n%s", code, out)
	}
	// Deleting the tiered policies (by their file) opens what no remaining
	// policy selects; the security tier and the Kubernetes policy stay.
	out, code = weft(t, "policy", "delete", "-f", filepath.Join(p.dir, "tiered.yaml"), "--run-dir", p.c.RunDir("b1"))
	if code != 0 || strings.Count(out, "deleted") != 5 {
		t.Fatalf("weft policy delete -f tiered.yaml: exit %d:\n%s", code, out)
	}
	p.expect(t, "after deleting the tiered policies", 30*time.Second, []check{
		{"w1", "w3", "udp", portDNS, true},      // prod -> prod passes the security tier; no policy selects db now
		{"w1", "w6", "tcp", portDB, true},       // web -> db/dev: no policy selects it
		{"w5", "w3", "tcp", portDB, false},      // dev -> prod: the security tier
		{"w2", "w5", "tcp", portMetrics, false}, // the Kubernetes policy still selects w5
	})

	// A host that leaves takes its endpoints out of the store.
	if out, code := weft(t, "leave", "--run-dir", p.c.RunDir("b1")); code != 0 {
		t.Fatalf("weft leave on b1: exit %d:\n%s", code, out)
	}
	poll(t, 10*time.Second, "b1's endpoints gone on a1", func() (bool, string) {
		out, _ := weft(t, "endpoint", "list", "--run-dir", p.c.RunDir("a1"))
		return !strings.Contains(out, "\nb1 "), out
	})
}

// logApplied polls every agent's status until its ruleset in force holds
// the given number of policies, and logs when each got there (counted
// from start, before `weft policy apply` ran).
func (p *policyLab) logApplied(t *testing.T, start time.Time, policies int) {
	t.Helper()
	var wg sync.WaitGroup
	for _, h := range p.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < 10*time.Second {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				s, err := p.c.Client(h).Status(ctx)
				cancel()
				if err == nil && s.Policy != nil && s.Policy.Policies == policies && s.Policy.LastError == "" && !s.Policy.AppliedAt.Before(start) {
					t.Logf("%s: %d policies in force %s after the apply started (its clock: applied %s after)", h, policies,
						time.Since(start).Round(time.Millisecond), s.Policy.AppliedAt.Sub(start).Round(time.Millisecond))
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
			t.Errorf("%s: %d policies not in force within 10s", h, policies)
		}()
	}
	wg.Wait()
}

// checkStatus: every agent reports the same policy count, no error, and
// its own two endpoints.
func (p *policyLab) checkStatus(t *testing.T) {
	t.Helper()
	for _, h := range p.hosts {
		s := status(t, p.c, h)
		if s.Policy == nil || !s.Policy.Enabled || s.Policy.LastError != "" || s.Policy.LocalEndpoints != 2 || s.Policy.Endpoints != 6 || s.Policy.Policies != 5 {
			t.Errorf("status of %s: policy %+v", h, s.Policy)
		}
	}
}
