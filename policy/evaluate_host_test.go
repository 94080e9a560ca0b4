package policy

import "testing"

// hostPolicy is a GlobalNetworkPolicy on host endpoints with extra spec lines.
func hostPolicy(name, spec string) string {
	return "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: " + name + "}\nspec:\n  selector: role == 'host'\n" + spec + "\n---\n"
}

// Scenarios on host endpoints: default deny, failsafe ports, the default-allow
// profile, untracked and pre-DNAT policy, host to local workload.
func TestEvaluateHostEndpoints(t *testing.T) {
	noWeftPorts := DefaultOptions(0, 0)
	allowWeb := hostPolicy("web", "  ingress: [{action: Allow, protocol: TCP, destination: {ports: [80]}}]")
	runScenarios(t, []scenario{{
		name: "no policy: a host endpoint is denied",
		flow: tcp(extIP, host1IP, 80),
		want: outcome{Deny, external(extIP, "egress"), hostDeny},
	}, {
		name: "no policy: egress from the host is denied too",
		flow: tcp(host1IP, extIP, 443),
		want: outcome{Deny, hostDeny, external(extIP, "ingress")},
	}, {
		name: "failsafe inbound: SSH",
		flow: tcp(extIP, host1IP, 22),
		want: outcome{Allow, external(extIP, "egress"), "allow | failsafe: allow: tcp:22 is a failsafe inbound port of host endpoints"},
	}, {
		name: "failsafe outbound: DNS",
		flow: udp(host1IP, extIP, 53),
		want: outcome{Allow, "allow | failsafe: allow: udp:53 is a failsafe outbound port of host endpoints", external(extIP, "ingress")},
	}, {
		name: "failsafe: weft's gossip port",
		flow: udp(extIP, host1IP, DefaultGossipPort),
		want: outcome{Allow, external(extIP, "egress"), "allow | failsafe: allow: udp:7946 is a failsafe inbound port of host endpoints"},
	}, {
		name: "failsafe: weft's WireGuard port",
		flow: udp(extIP, host1IP, DefaultWireGuardPort),
		want: outcome{Allow, external(extIP, "egress"), "allow | failsafe: allow: udp:51820 is a failsafe inbound port of host endpoints"},
	}, {
		name: "failsafe: weft's ports are a parameter",
		flow: udp(extIP, host1IP, DefaultGossipPort),
		opts: &noWeftPorts,
		want: outcome{Deny, external(extIP, "egress"), hostDeny},
	}, {
		name: "failsafe: none in the zero Options",
		flow: tcp(extIP, host1IP, 22),
		opts: &Options{},
		want: outcome{Deny, external(extIP, "egress"), hostDeny},
	}, {
		name: "the projectcalico-default-allow profile",
		flow: tcp(extIP, host2IP, 80),
		want: outcome{Allow, external(extIP, "egress"), "allow | allow: no policy applies to the host endpoint; its profile projectcalico-default-allow allows"},
	}, {
		name:     "a policy allows a port",
		policies: allowWeb,
		flow:     tcp(extIP, host1IP, 80),
		want:     outcome{Allow, external(extIP, "egress"), "allow | tier default, GlobalNetworkPolicy web, ingress[0] (Allow): allow"},
	}, {
		name:     "a selected host endpoint gets the end-of-tier deny, even with default-allow",
		policies: allowWeb,
		flow:     tcp(extIP, host2IP, 8080),
		want:     outcome{Deny, external(extIP, "egress"), endOfDefault},
	}, {
		name:     "failsafe comes before any policy",
		policies: hostPolicy("untracked-deny", "  doNotTrack: true\n  applyOnForward: true\n  ingress: [{action: Deny}]"),
		flow:     tcp(extIP, host1IP, 22),
		want:     outcome{Allow, external(extIP, "egress"), "allow | failsafe: allow: tcp:22 is a failsafe inbound port of host endpoints"},
	}, {
		name:     "pre-DNAT deny is final",
		policies: allowWeb + hostPolicy("block", "  preDNAT: true\n  applyOnForward: true\n  ingress: [{action: Deny, source: {nets: [203.0.113.0/24]}}]"),
		flow:     tcp(blockIP, host1IP, 80),
		want:     outcome{Deny, external(blockIP, "egress"), "deny | preDNAT, tier default, GlobalNetworkPolicy block, ingress[0] (Deny): deny"},
	}, {
		name:     "pre-DNAT without a decision falls through to normal policy",
		policies: allowWeb + hostPolicy("block", "  preDNAT: true\n  applyOnForward: true\n  ingress: [{action: Deny, source: {nets: [203.0.113.0/24]}}]"),
		flow:     tcp(extIP, host1IP, 80),
		want:     outcome{Allow, external(extIP, "egress"), "allow | tier default, GlobalNetworkPolicy web, ingress[0] (Allow): allow"},
	}, {
		name:     "an untracked allow skips normal policy",
		policies: hostPolicy("fast", "  doNotTrack: true\n  applyOnForward: true\n  ingress: [{action: Allow, protocol: UDP, destination: {ports: [4789]}}]"),
		flow:     udp(extIP, host1IP, 4789),
		want:     outcome{Allow, external(extIP, "egress"), "allow | untracked, tier default, GlobalNetworkPolicy fast, ingress[0] (Allow): allow"},
	}, {
		name:     "untracked and pre-DNAT policies do not apply to workloads",
		policies: "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: raw}\nspec:\n  selector: all()\n  doNotTrack: true\n  applyOnForward: true\n  ingress: [{action: Deny}]\n",
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, profileAllow},
	}, {
		name:     "a namespaced policy never selects a host endpoint",
		policies: "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: all, namespace: prod}\nspec:\n  selector: all()\n  ingress: [{action: Deny}]\n",
		flow:     tcp(extIP, host2IP, 80),
		want:     outcome{Allow, external(extIP, "egress"), "allow | allow: no policy applies to the host endpoint; its profile projectcalico-default-allow allows"},
	}, {
		name:     "host to a workload on the same node is always allowed",
		policies: "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: fe}\nspec:\n  selector: app == 'frontend'\n  ingress: [{action: Deny}]\n",
		flow:     tcp(host1IP, feIP, 8080),
		want:     outcome{Allow, "allow | allow: traffic from a host to a workload on the same node (node1) is always allowed", "allow | allow: traffic from a host to a workload on the same node (node1) is always allowed"},
	}, {
		name:     "host to a workload on another node is not",
		policies: "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: fe}\nspec:\n  selector: app == 'frontend'\n  ingress: [{action: Deny}]\n",
		flow:     tcp(host2IP, feIP, 8080),
		want:     outcome{Deny, "allow | allow: no policy applies to the host endpoint; its profile projectcalico-default-allow allows", "deny | tier default, GlobalNetworkPolicy fe, ingress[0] (Deny): deny"},
	}})
}
