package policy

import "testing"

// dbIngress is a GlobalNetworkPolicy on prod/db's ingress with the given rules.
func dbIngress(rules string) string {
	return `
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: db}
spec:
  selector: app == "db"
  ingress:
` + rules
}

// Scenarios from Calico's documentation of policy semantics: default
// allow, default deny once selected, types, tiers, Pass, Log, ordering.
func TestEvaluateCalicoOrdering(t *testing.T) {
	tiers := `
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.blocklist}
spec:
  tier: security
  order: 100
  selector: all()
  types: [Ingress, Egress]
  egress:
  - action: Deny
    destination: {selector: blocklist == "true"}
  - action: Pass
  ingress:
  - action: Pass
`
	runScenarios(t, []scenario{{
		name: "no policy: workloads are allowed by their profile",
		flow: tcp(feIP, dbIP, 5432),
		want: outcome{Allow, profileAllow, profileAllow},
	}, {
		name:     "selected but no rule matches: denied at the end of the tier",
		policies: dbIngress("  - {action: Allow, protocol: TCP, source: {selector: app == 'backend'}}"),
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "selected and a rule allows",
		policies: dbIngress("  - {action: Allow, protocol: TCP, source: {selector: app == 'backend'}}"),
		flow:     tcp(beIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, "allow | tier default, GlobalNetworkPolicy db, ingress[0] (Allow): allow"},
	}, {
		name:     "the source's egress and the destination's ingress must both allow",
		policies: "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: fe-out}\nspec:\n  selector: app == 'frontend'\n  egress: [{action: Deny, destination: {selector: app == 'db'}}, {action: Allow}]\n---\n" + dbIngress("  - {action: Allow}"),
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Deny, "deny | tier default, GlobalNetworkPolicy fe-out, egress[0] (Deny): deny", "allow | tier default, GlobalNetworkPolicy db, ingress[0] (Allow): allow"},
	}, {
		name:     "types omitted with only egress rules: the policy is egress only",
		policies: "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: db-out}\nspec:\n  selector: app == 'db'\n  egress: [{action: Deny}]\n",
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, profileAllow},
	}, {
		name:     "types omitted with only egress rules: egress is judged",
		policies: "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: db-out}\nspec:\n  selector: app == 'db'\n  egress: [{action: Deny}]\n",
		flow:     tcp(dbIP, feIP, 8080),
		want:     outcome{Deny, "deny | tier default, GlobalNetworkPolicy db-out, egress[0] (Deny): deny", profileAllow},
	}, {
		name:     "types omitted and no rules: ingress is isolated",
		policies: "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: isolate}\nspec:\n  selector: app == 'db'\n",
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "types omitted and no rules: egress stays open",
		policies: "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: isolate}\nspec:\n  selector: app == 'db'\n",
		flow:     tcp(dbIP, feIP, 8080),
		want:     outcome{Allow, profileAllow, profileAllow},
	}, {
		name:     "types Ingress and Egress without egress rules: egress is isolated",
		policies: "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: isolate}\nspec:\n  selector: app == 'db'\n  types: [Ingress, Egress]\n  ingress: [{action: Allow}]\n",
		flow:     tcp(dbIP, feIP, 8080),
		want:     outcome{Deny, endOfDefault, profileAllow},
	}, {
		name:     "tier: a Deny in an earlier tier wins",
		policies: tiers,
		flow:     tcp(feIP, blockIP, 443),
		want:     outcome{Deny, "deny | tier security, GlobalNetworkPolicy security.blocklist, egress[0] (Deny): deny", external(blockIP, "ingress")},
	}, {
		name:     "tier: Pass goes on to the next tier; none applies, so the profile decides",
		policies: tiers,
		flow:     tcp(feIP, corpIP, 443),
		want:     outcome{Allow, passedAllow, external(corpIP, "ingress")},
	}, {
		name: "tier: Pass skips the rest of its tier",
		policies: tiers + `---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.deny-all}
spec:
  tier: security
  order: 1000
  selector: all()
  ingress: [{action: Deny}]
---
` + dbIngress("  - {action: Allow, source: {selector: app == 'frontend'}}"),
		flow: tcp(feIP, dbIP, 5432),
		want: outcome{Allow, passedAllow, "allow | tier default, GlobalNetworkPolicy db, ingress[0] (Allow): allow"},
	}, {
		name: "tier: defaultAction Pass instead of the end-of-tier deny",
		policies: `
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: platform}
spec: {order: 10, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: platform.db}
spec:
  tier: platform
  selector: app == "db"
  ingress: [{action: Allow, source: {selector: app == "backend"}}]
`,
		flow: tcp(feIP, dbIP, 5432),
		want: outcome{Allow, profileAllow, passedAllow},
	}, {
		name: "tier: end-of-tier deny in a tier that applies",
		policies: `
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: platform}
spec: {order: 10}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: platform.db}
spec:
  tier: platform
  selector: app == "db"
  ingress: [{action: Allow, source: {selector: app == "backend"}}]
`,
		flow: tcp(feIP, dbIP, 5432),
		want: outcome{Deny, profileAllow, "deny | tier platform: deny: end of tier: the tier's policies apply to the endpoint but no rule decided"},
	}, {
		name: "tiers sort by order, not by name or file order",
		policies: `
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: a}
spec: {order: 200}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: b}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: a.deny}
spec: {tier: a, selector: app == "db", ingress: [{action: Deny}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: b.allow}
spec: {tier: b, selector: app == "db", ingress: [{action: Allow}]}
`,
		flow: tcp(feIP, dbIP, 5432),
		want: outcome{Allow, profileAllow, "allow | tier b, GlobalNetworkPolicy b.allow, ingress[0] (Allow): allow"},
	}, {
		name: "policies of equal order sort by name",
		policies: `
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: bbb}
spec: {order: 10, selector: app == "db", ingress: [{action: Allow}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: aaa}
spec: {order: 10, selector: app == "db", ingress: [{action: Deny}]}
`,
		flow: tcp(feIP, dbIP, 5432),
		want: outcome{Deny, profileAllow, "deny | tier default, GlobalNetworkPolicy aaa, ingress[0] (Deny): deny"},
	}, {
		name: "a policy without order comes after those with one",
		policies: `
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: aaa}
spec: {selector: app == "db", ingress: [{action: Deny}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: zzz}
spec: {order: 5000, selector: app == "db", ingress: [{action: Allow}]}
`,
		flow: tcp(feIP, dbIP, 5432),
		want: outcome{Allow, profileAllow, "allow | tier default, GlobalNetworkPolicy zzz, ingress[0] (Allow): allow"},
	}, {
		name:     "Log does not decide",
		policies: dbIngress("  - {action: Log}\n  - {action: Deny, protocol: UDP}\n  - {action: Allow}"),
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, "allow | tier default, GlobalNetworkPolicy db, ingress[2] (Allow): allow"},
	}, {
		name:     "cluster-wide default deny for workloads",
		flow:     tcp(feIP, dbIP, 5432),
		opts:     &Options{DefaultDenyWorkloads: true},
		want:     outcome{Deny, "deny | deny: no policy applies to the endpoint; workload endpoints are denied by default (cluster-wide default deny)", "deny | deny: no policy applies to the endpoint; workload endpoints are denied by default (cluster-wide default deny)"},
		policies: "",
	}})
}

// Scenarios on what a rule matches: nets, ports, protocols, ICMP, IP version.
func TestEvaluateCalicoRuleMatch(t *testing.T) {
	egressV6 := `
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: fe-out}
spec:
  selector: app == "frontend"
  egress:
  - {action: Deny, ipVersion: 4}
  - {action: Allow, protocol: ICMPv6, icmp: {type: 128}}
`
	runScenarios(t, []scenario{{
		name:     "notNets: allowed from outside the range",
		policies: dbIngress("  - {action: Allow, source: {notNets: [10.0.2.0/24]}}"),
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, "allow | tier default, GlobalNetworkPolicy db, ingress[0] (Allow): allow"},
	}, {
		name:     "notNets: not from inside it",
		policies: dbIngress("  - {action: Allow, source: {notNets: [10.0.2.0/24]}}"),
		flow:     tcp(testerIP, dbIP, 5432),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "nets: a bare address is a /32",
		policies: dbIngress("  - {action: Allow, source: {nets: [10.0.1.1]}}"),
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, "allow | tier default, GlobalNetworkPolicy db, ingress[0] (Allow): allow"},
	}, {
		name:     "notPorts: a port outside the list and range",
		policies: dbIngress("  - {action: Allow, protocol: TCP, destination: {notPorts: [22, '1000:2000']}}"),
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, "allow | tier default, GlobalNetworkPolicy db, ingress[0] (Allow): allow"},
	}, {
		name:     "notPorts: a port inside the range",
		policies: dbIngress("  - {action: Allow, protocol: TCP, destination: {notPorts: [22, '1000:2000']}}"),
		flow:     tcp(feIP, dbIP, 1500),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "source ports",
		policies: dbIngress("  - {action: Allow, protocol: TCP, source: {ports: ['32768:60999']}}"),
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, "allow | tier default, GlobalNetworkPolicy db, ingress[0] (Allow): allow"},
	}, {
		name:     "protocol by number",
		policies: dbIngress("  - {action: Allow, protocol: 17}"),
		flow:     udp(feIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, "allow | tier default, GlobalNetworkPolicy db, ingress[0] (Allow): allow"},
	}, {
		name:     "notProtocol",
		policies: dbIngress("  - {action: Allow, notProtocol: UDP}"),
		flow:     udp(feIP, dbIP, 5432),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "named port: resolved on the destination endpoint",
		policies: "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: be}\nspec:\n  selector: app == 'backend'\n  ingress: [{action: Allow, protocol: TCP, destination: {ports: [http]}}]\n",
		flow:     tcp(feIP, beIP, 9090),
		want:     outcome{Allow, profileAllow, "allow | tier default, GlobalNetworkPolicy be, ingress[0] (Allow): allow"},
	}, {
		name:     "named port: another endpoint's number does not count",
		policies: "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: be}\nspec:\n  selector: app == 'backend'\n  ingress: [{action: Allow, protocol: TCP, destination: {ports: [http]}}]\n",
		flow:     tcp(feIP, beIP, 8080),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "named port without protocol: the port's own protocol must match (UDP)",
		policies: "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: dns}\nspec:\n  selector: k8s-app == 'kube-dns'\n  ingress: [{action: Allow, destination: {ports: [dns]}}]\n",
		flow:     udp(beIP, dnsIP, 53),
		want:     outcome{Allow, profileAllow, "allow | tier default, GlobalNetworkPolicy dns, ingress[0] (Allow): allow"},
	}, {
		name:     "named port without protocol: TCP 53 is dns-tcp, not dns",
		policies: "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: dns}\nspec:\n  selector: k8s-app == 'kube-dns'\n  ingress: [{action: Allow, destination: {ports: [dns]}}]\n",
		flow:     tcp(beIP, dnsIP, 53),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "ICMP type: echo request allowed",
		policies: dbIngress("  - {action: Allow, protocol: ICMP, icmp: {type: 8}}"),
		flow:     icmp(feIP, dbIP, 8, 0),
		want:     outcome{Allow, profileAllow, "allow | tier default, GlobalNetworkPolicy db, ingress[0] (Allow): allow"},
	}, {
		name:     "ICMP type: echo reply is not",
		policies: dbIngress("  - {action: Allow, protocol: ICMP, icmp: {type: 8}}"),
		flow:     icmp(feIP, dbIP, 0, 0),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "ICMP type and code",
		policies: dbIngress("  - {action: Allow, protocol: ICMP, icmp: {type: 3, code: 4}}"),
		flow:     icmp(feIP, dbIP, 3, 1),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "notICMP: everything but echo request",
		policies: dbIngress("  - {action: Allow, protocol: ICMP, notICMP: {type: 8, code: 0}}"),
		flow:     icmp(feIP, dbIP, 8, 0),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "notICMP: another type passes",
		policies: dbIngress("  - {action: Allow, protocol: ICMP, notICMP: {type: 8, code: 0}}"),
		flow:     icmp(feIP, dbIP, 3, 3),
		want:     outcome{Allow, profileAllow, "allow | tier default, GlobalNetworkPolicy db, ingress[0] (Allow): allow"},
	}, {
		name:     "ipVersion and ICMPv6 on an IPv6 flow",
		policies: egressV6,
		flow:     icmp("fd00::1:1", "fd00::99", 128, 0),
		want:     outcome{Allow, "allow | tier default, GlobalNetworkPolicy fe-out, egress[1] (Allow): allow", external("fd00::99", "ingress")},
	}, {
		name:     "ipVersion 4 rule on an IPv4 flow",
		policies: egressV6,
		flow:     icmp(feIP, extIP, 8, 0),
		want:     outcome{Deny, "deny | tier default, GlobalNetworkPolicy fe-out, egress[0] (Deny): deny", external(extIP, "ingress")},
	}})
}
