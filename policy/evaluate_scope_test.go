package policy

import "testing"

// prodDB is a Calico NetworkPolicy in prod on db's ingress with the given rules.
func prodDB(rules string) string {
	return `
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  selector: app == "db"
  ingress:
` + rules
}

const (
	prodDBAllow = "allow | tier default, NetworkPolicy prod/db, ingress[0] (Allow): allow"
	gnpDBAllow  = "allow | tier default, GlobalNetworkPolicy db, ingress[0] (Allow): allow"
)

// Scenarios on what selectors reach: namespaces, namespaceSelector, global(),
// network sets, service accounts, notSelector.
func TestEvaluateCalicoScope(t *testing.T) {
	gnpNSQuirk := func(sel string) string {
		return "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: no-env}\nspec:\n  selector: " + sel +
			"\n  namespaceSelector: '!has(env)'\n  types: [Ingress]\n"
	}
	runScenarios(t, []scenario{{
		name:     "a namespaced policy selects only in its namespace (dev/frontend is not selected)",
		policies: "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: fe, namespace: prod}\nspec:\n  selector: app == 'frontend'\n  ingress: [{action: Deny}]\n",
		flow:     tcp(testerIP, devFEIP, 80),
		want:     outcome{Allow, profileAllow, profileAllow},
	}, {
		name:     "a namespaced policy selects in its namespace",
		policies: "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: fe, namespace: prod}\nspec:\n  selector: app == 'frontend'\n  ingress: [{action: Deny}]\n",
		flow:     tcp(testerIP, feIP, 8080),
		want:     outcome{Deny, profileAllow, "deny | tier default, NetworkPolicy prod/fe, ingress[0] (Deny): deny"},
	}, {
		name:     "a namespaced policy's rule selector stays in its namespace: prod/frontend matches",
		policies: prodDB("  - {action: Allow, source: {selector: app == 'frontend'}}"),
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, prodDBAllow},
	}, {
		name:     "a namespaced policy's rule selector stays in its namespace: dev/frontend does not",
		policies: prodDB("  - {action: Allow, source: {selector: app == 'frontend'}}"),
		flow:     tcp(devFEIP, dbIP, 5432),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "namespaceSelector widens the rule to other namespaces",
		policies: prodDB("  - {action: Allow, source: {namespaceSelector: env == 'dev', selector: app == 'frontend'}}"),
		flow:     tcp(devFEIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, prodDBAllow},
	}, {
		name:     "namespaceSelector replaces the policy's namespace",
		policies: prodDB("  - {action: Allow, source: {namespaceSelector: env == 'dev', selector: app == 'frontend'}}"),
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "namespaceSelector by name (projectcalico.org/name)",
		policies: prodDB("  - {action: Allow, source: {namespaceSelector: projectcalico.org/name == 'kube-system'}}"),
		flow:     udp(dnsIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, prodDBAllow},
	}, {
		name:     "namespaceSelector all(): every namespace",
		policies: prodDB("  - {action: Allow, source: {namespaceSelector: all()}}"),
		flow:     tcp(testerIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, prodDBAllow},
	}, {
		name:     "namespaceSelector all(): not host endpoints",
		policies: prodDB("  - {action: Allow, source: {namespaceSelector: all()}}"),
		flow:     tcp(host1IP, dbIP, 5432),
		want:     outcome{Deny, hostDeny, endOfDefault},
	}, {
		name:     "namespaceSelector all(): not global network sets",
		policies: prodDB("  - {action: Allow, source: {namespaceSelector: all()}}"),
		flow:     tcp(corpIP, dbIP, 5432),
		want:     outcome{Deny, external(corpIP, "egress"), endOfDefault},
	}, {
		name:     "global(): a namespaced policy reaches a GlobalNetworkSet",
		policies: prodDB("  - {action: Allow, source: {namespaceSelector: global(), selector: net == 'corp'}}"),
		flow:     tcp(corpIP, dbIP, 5432),
		want:     outcome{Allow, external(corpIP, "egress"), prodDBAllow},
	}, {
		name:     "global(): but no workload",
		policies: prodDB("  - {action: Allow, source: {namespaceSelector: global(), selector: all()}}"),
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "without global(), a namespaced policy cannot match a GlobalNetworkSet",
		policies: prodDB("  - {action: Allow, source: {selector: net == 'corp'}}"),
		flow:     tcp(corpIP, dbIP, 5432),
		want:     outcome{Deny, external(corpIP, "egress"), endOfDefault},
	}, {
		name:     "a namespaced policy matches a NetworkSet of its namespace",
		policies: prodDB("  - {action: Allow, source: {selector: partner == 'true'}}"),
		flow:     tcp(partnerIP, dbIP, 5432),
		want:     outcome{Allow, external(partnerIP, "egress"), prodDBAllow},
	}, {
		name:     "GlobalNetworkSet: a global policy's selector matches the addresses in its nets",
		policies: dbIngress("  - {action: Allow, source: {selector: net == 'corp'}}"),
		flow:     tcp(corpIP, dbIP, 5432),
		want:     outcome{Allow, external(corpIP, "egress"), gnpDBAllow},
	}, {
		name:     "GlobalNetworkSet: an address outside every set does not match",
		policies: dbIngress("  - {action: Allow, source: {selector: net == 'corp'}}"),
		flow:     tcp(extIP, dbIP, 5432),
		want:     outcome{Deny, external(extIP, "egress"), endOfDefault},
	}, {
		name:     "selector all() in a rule matches endpoints and network sets, not other addresses",
		policies: dbIngress("  - {action: Allow, source: {selector: all()}}"),
		flow:     tcp(extIP, dbIP, 5432),
		want:     outcome{Deny, external(extIP, "egress"), endOfDefault},
	}, {
		name:     "notSelector matches any address but the selected",
		policies: dbIngress("  - {action: Allow, source: {notSelector: app == 'frontend'}}"),
		flow:     tcp(extIP, dbIP, 5432),
		want:     outcome{Allow, external(extIP, "egress"), gnpDBAllow},
	}, {
		name:     "notSelector excludes the selected",
		policies: dbIngress("  - {action: Allow, source: {notSelector: app == 'frontend'}}"),
		flow:     tcp(devFEIP, dbIP, 5432),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "notSelector in a namespaced policy limits the rule to the namespace",
		policies: prodDB("  - {action: Allow, source: {notSelector: app == 'frontend'}}"),
		flow:     tcp(testerIP, dbIP, 5432),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "serviceAccounts names",
		policies: dbIngress("  - {action: Allow, source: {serviceAccounts: {names: [backend]}}}"),
		flow:     tcp(beIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, gnpDBAllow},
	}, {
		name:     "serviceAccounts names: another account",
		policies: dbIngress("  - {action: Allow, source: {serviceAccounts: {names: [backend]}}}"),
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "serviceAccounts selector reads the ServiceAccount's labels",
		policies: dbIngress("  - {action: Allow, source: {serviceAccounts: {selector: tier == 'edge'}}}"),
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Allow, profileAllow, gnpDBAllow},
	}, {
		name:     "serviceAccounts selector: an endpoint without an account does not match",
		policies: dbIngress("  - {action: Allow, source: {serviceAccounts: {selector: tier == 'edge'}}}"),
		flow:     tcp(testerIP, dbIP, 5432),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "policy serviceAccountSelector selects by the endpoint's account",
		policies: "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: data}\nspec:\n  serviceAccountSelector: tier == 'data'\n  ingress: [{action: Deny}]\n",
		flow:     tcp(feIP, dbIP, 5432),
		want:     outcome{Deny, profileAllow, "deny | tier default, GlobalNetworkPolicy data, ingress[0] (Deny): deny"},
	}, {
		name:     "policy serviceAccountSelector: other accounts are not selected",
		policies: "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: data}\nspec:\n  serviceAccountSelector: tier == 'data'\n  ingress: [{action: Deny}]\n",
		flow:     tcp(feIP, beIP, 9090),
		want:     outcome{Allow, profileAllow, profileAllow},
	}, {
		name:     "policy namespaceSelector selects the namespace's endpoints",
		policies: "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: dev}\nspec:\n  namespaceSelector: env == 'dev'\n  types: [Ingress]\n",
		flow:     tcp(feIP, testerIP, 80),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "policy namespaceSelector with selector all(): all() means namespaced endpoints only",
		policies: gnpNSQuirk("all()"),
		flow:     tcp(feIP, host2IP, 80),
		want:     outcome{Allow, profileAllow, "allow | allow: no policy applies to the host endpoint; its profile projectcalico-default-allow allows"},
	}, {
		name:     "policy namespaceSelector !has(env) with a label selector also selects host endpoints (Calico's quirk)",
		policies: gnpNSQuirk("role == 'host'"),
		flow:     tcp(feIP, host2IP, 80),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}, {
		name:     "policy namespaceSelector !has(env) selects kube-system",
		policies: gnpNSQuirk("all()"),
		flow:     udp(feIP, dnsIP, 53),
		want:     outcome{Deny, profileAllow, endOfDefault},
	}})
}
