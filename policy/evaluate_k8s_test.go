package policy

import "testing"

// knp is a Kubernetes NetworkPolicy with the given spec (indented two spaces).
func knp(ns, name, spec string) string {
	return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: " + name + ", namespace: " + ns + "}\nspec:\n" + spec + "\n---\n"
}

// knpDB is a Kubernetes NetworkPolicy in prod selecting app=db, allowing ingress per rules.
func knpDB(ingress string) string {
	return knp("prod", "db", "  podSelector: {matchLabels: {app: db}}\n  policyTypes: [Ingress]\n  ingress:\n"+ingress)
}

const knpDBAllow = "allow | tier default, NetworkPolicy prod/knp.default.db, ingress[0] (Allow): allow"

// Scenarios after the Kubernetes network-policy e2e suite
// (test/e2e/network/netpol), and Kubernetes policies mixed with Calico ones.
func TestEvaluateKubernetes(t *testing.T) {
	runScenarios(t, []scenario{{
		name:     "default-deny-ingress: a pod in the namespace is isolated",
		policies: knp("prod", "deny", "  podSelector: {}\n  policyTypes: [Ingress]"),
		flow:     tcp(testerIP, dbIP, 5432),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "default-deny-ingress: pods in other namespaces are not",
		policies: knp("prod", "deny", "  podSelector: {}\n  policyTypes: [Ingress]"),
		flow:     tcp(dbIP, testerIP, 80),
		want:     outcome{Allow, profileAllow, profileAllow},
	}, {
		name:     "allow-all ingress",
		policies: knp("prod", "all", "  podSelector: {}\n  ingress: [{}]"),
		flow:     tcp(extIP, dbIP, 5432),
		want:     outcome{Allow, external(extIP, "egress"), "allow | tier default, NetworkPolicy prod/knp.default.all, ingress[0] (Allow): allow"},
	}, {
		name:     "podSelector peer: from pods of the policy's namespace",
		policies: knpDB("  - from: [{podSelector: {matchLabels: {app: backend}}}]"),
		flow:     tcp(beIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, knpDBAllow},
	}, {
		name:     "podSelector peer: not other pods",
		policies: knpDB("  - from: [{podSelector: {matchLabels: {app: backend}}}]"),
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "namespaceSelector peer with matchLabels",
		policies: knpDB("  - from: [{namespaceSelector: {matchLabels: {env: dev}}}]"),
		flow:     tcp(devFEIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, knpDBAllow},
	}, {
		name:     "namespaceSelector peer: the policy's own namespace is not implied",
		policies: knpDB("  - from: [{namespaceSelector: {matchLabels: {env: dev}}}]"),
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "namespaceSelector peer with matchExpressions",
		policies: knpDB("  - from: [{namespaceSelector: {matchExpressions: [{key: env, operator: In, values: [dev, qa]}]}}]"),
		flow:     tcp(testerIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, knpDBAllow},
	}, {
		name:     "podSelector AND namespaceSelector in one peer",
		policies: knpDB("  - from: [{namespaceSelector: {matchLabels: {env: dev}}, podSelector: {matchLabels: {app: tester}}}]"),
		flow:     tcp(devFEIP, dbIP, 5432),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "podSelector OR namespaceSelector in two peers",
		policies: knpDB("  - from: [{namespaceSelector: {matchLabels: {env: dev}}}, {podSelector: {matchLabels: {app: backend}}}]"),
		flow:     tcp(beIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, "allow | tier default, NetworkPolicy prod/knp.default.db, ingress[1] (Allow): allow"},
	}, {
		name:     "empty namespaceSelector: pods of every namespace",
		policies: knpDB("  - from: [{namespaceSelector: {}}]"),
		flow:     udp(dnsIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, knpDBAllow},
	}, {
		name:     "empty namespaceSelector: not host endpoints",
		policies: knpDB("  - from: [{namespaceSelector: {}}]"),
		flow:     tcp(host1IP, dbIP, 5432),
		want:     outcome{Deny, hostDeny, endOfDefault},
	}, {
		name:     "ports: TCP is the default protocol",
		policies: knpDB("  - ports: [{port: 5432}]"),
		flow:     udp(feIP, dbIP, 5432),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "ports: the port allowed from anywhere",
		policies: knpDB("  - ports: [{port: 5432}]"),
		flow:     tcp(extIP, dbIP, 5432),
		want:     outcome{Allow, external(extIP, "egress"), knpDBAllow},
	}, {
		name:     "named port",
		policies: knpDB("  - ports: [{port: pg}]"),
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, knpDBAllow},
	}, {
		name:     "named port: another number",
		policies: knpDB("  - ports: [{port: pg}]"),
		flow:     tcp(feIP, dbIP, 5433),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "endPort: inside the range",
		policies: knpDB("  - ports: [{port: 5000, endPort: 6000}]"),
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, knpDBAllow},
	}, {
		name:     "endPort: past it",
		policies: knpDB("  - ports: [{port: 5000, endPort: 6000}]"),
		flow:     tcp(feIP, dbIP, 6001),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "SCTP port",
		policies: knpDB("  - ports: [{protocol: SCTP, port: 5432}]"),
		flow:     sctp(feIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, knpDBAllow},
	}, {
		name:     "stacked policies are a union",
		policies: knpDB("  - from: [{podSelector: {matchLabels: {app: backend}}}]") + knp("prod", "db2", "  podSelector: {matchLabels: {app: db}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: frontend}}}]}]"),
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, "allow | tier default, NetworkPolicy prod/knp.default.db2, ingress[0] (Allow): allow"},
	}, {
		name:     "egress to pods of another namespace by podSelector and namespaceSelector",
		policies: knp("dev", "out", "  podSelector: {matchLabels: {app: tester}}\n  policyTypes: [Egress]\n  egress: [{to: [{namespaceSelector: {matchLabels: {env: prod}}, podSelector: {matchLabels: {app: db}}}]}]"),
		flow:     tcp(testerIP, dbIP, 5432),
		want:     outcome{Allow, "allow | tier default, NetworkPolicy dev/knp.default.out, egress[0] (Allow): allow", profileAllow},
	}, {
		name:     "egress to other pods is denied",
		policies: knp("dev", "out", "  podSelector: {matchLabels: {app: tester}}\n  policyTypes: [Egress]\n  egress: [{to: [{namespaceSelector: {matchLabels: {env: prod}}, podSelector: {matchLabels: {app: db}}}]}]"),
		flow:     tcp(testerIP, beIP, 9090),
		want:     outcome{Deny, endOfDefault, profileAllow},
	}, {
		name:     "egress denied on the client even if the server allows",
		policies: knp("dev", "deny-out", "  podSelector: {}\n  policyTypes: [Egress]") + knpDB("  - {}"),
		flow:     tcp(testerIP, dbIP, 5432),
		want:     outcome{Deny, endOfDefault, knpDBAllow},
	}, {
		name:     "egress to DNS in any namespace on UDP 53",
		policies: knp("dev", "dns", "  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{to: [{namespaceSelector: {}}], ports: [{protocol: UDP, port: 53}]}]"),
		flow:     udp(testerIP, dnsIP, 53),
		want:     outcome{Allow, "allow | tier default, NetworkPolicy dev/knp.default.dns, egress[0] (Allow): allow", profileAllow},
	}, {
		name:     "egress to DNS: TCP 53 was not allowed",
		policies: knp("dev", "dns", "  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{to: [{namespaceSelector: {}}], ports: [{protocol: UDP, port: 53}]}]"),
		flow:     tcp(testerIP, dnsIP, 53),
		want:     outcome{Deny, endOfDefault, profileAllow},
	}, {
		name:     "egress to a CIDR",
		policies: knp("dev", "cidr", "  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{to: [{ipBlock: {cidr: 198.51.100.0/24, except: [198.51.100.0/28]}}]}]"),
		flow:     tcp(testerIP, "198.51.100.20", 443),
		want:     outcome{Allow, "allow | tier default, NetworkPolicy dev/knp.default.cidr, egress[0] (Allow): allow", external("198.51.100.20", "ingress")},
	}, {
		name:     "egress to a CIDR: the except clause",
		policies: knp("dev", "cidr", "  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{to: [{ipBlock: {cidr: 198.51.100.0/24, except: [198.51.100.0/28]}}]}]"),
		flow:     tcp(testerIP, corpIP, 443),
		want:     outcome{Deny, endOfDefault, external(corpIP, "ingress")},
	}, {
		name:     "policyTypes Ingress and Egress with ingress rules only: egress isolated",
		policies: knp("prod", "both", "  podSelector: {matchLabels: {app: db}}\n  policyTypes: [Ingress, Egress]\n  ingress: [{}]"),
		flow:     tcp(dbIP, feIP, 8080),
		want:     outcome{Deny, endOfDefault, profileAllow},
	}, {
		name:     "only pods with orchestrator k8s are selected",
		policies: knp("prod", "deny", "  podSelector: {}\n  policyTypes: [Ingress]") + "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: vm, namespace: prod, labels: {app: db}}\nspec: {ipNetworks: [10.0.1.50/32]}\n",
		flow:     tcp(feIP, "10.0.1.50", 5432),
		want:     outcome{Allow, profileAllow, profileAllow},
	}})
}

// Kubernetes policies among Calico ones: tiers first, then order in the
// default tier (Kubernetes policies sit at 1000).
func TestEvaluateKubernetesMixed(t *testing.T) {
	allowFE := knpDB("  - from: [{podSelector: {matchLabels: {app: frontend}}}]")
	gnp := func(tier string, order, action string) string {
		return "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: " + tier + ".fe-db}\nspec:\n  tier: " + tier +
			"\n  order: " + order + "\n  selector: app == 'db'\n  ingress: [{action: " + action + ", source: {selector: app == 'frontend'}}]\n---\n"
	}
	securityTier := "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n---\n"
	runScenarios(t, []scenario{{
		name:     "a Calico Deny in an earlier tier overrides the Kubernetes allow",
		policies: securityTier + gnp("security", "1", "Deny") + allowFE,
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Deny, profileAllow, "deny | tier security, GlobalNetworkPolicy security.fe-db, ingress[0] (Deny): deny"},
	}, {
		name:     "a Calico Pass in an earlier tier defers to the Kubernetes policy",
		policies: securityTier + gnp("security", "1", "Pass") + allowFE,
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, knpDBAllow},
	}, {
		name:     "a Calico Deny at order 500 comes before the Kubernetes policy at 1000",
		policies: gnp("default", "500", "Deny") + allowFE,
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Deny, profileAllow, "deny | tier default, GlobalNetworkPolicy default.fe-db, ingress[0] (Deny): deny"},
	}, {
		name:     "a Calico Deny at order 2000 comes after it",
		policies: gnp("default", "2000", "Deny") + allowFE,
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, knpDBAllow},
	}, {
		name:     "the Kubernetes policy isolates; a later Calico allow still counts in the same tier",
		policies: gnp("default", "2000", "Allow") + knp("prod", "db", "  podSelector: {matchLabels: {app: db}}\n  policyTypes: [Ingress]"),
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, "allow | tier default, GlobalNetworkPolicy default.fe-db, ingress[0] (Allow): allow"},
	}})
}
