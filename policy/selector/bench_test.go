package selector

import (
	"fmt"
	"testing"
)

// benchSelector is a realistic policy selector: a namespace, an app set, a
// label that must be absent and one that must differ.
const benchSelector = `projectcalico.org/namespace == "prod" && app in {"web", "api", "gateway"} && ` +
	`!has(quarantine) && tier != "db" && (env starts with "prod" || canary == "true")`

// benchLabels is a 20-label workload endpoint that the selector matches.
func benchLabels() map[string]string {
	l := map[string]string{
		"projectcalico.org/namespace":      "prod",
		"projectcalico.org/orchestrator":   "k8s",
		"projectcalico.org/serviceaccount": "web",
		"app":                              "web",
		"tier":                             "frontend",
		"env":                              "production",
		"version":                          "v1.4.2",
		"pod-template-hash":                "7d9f8c6b5d",
		"app.kubernetes.io/name":           "web",
		"app.kubernetes.io/instance":       "web-prod",
		"app.kubernetes.io/component":      "server",
		"app.kubernetes.io/part-of":        "shop",
		"app.kubernetes.io/managed-by":     "helm",
	}
	for i := len(l); i < 20; i++ {
		l[fmt.Sprintf("example.com/extra-%d", i)] = "x"
	}
	return l
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(benchSelector); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEvaluate(b *testing.B) {
	sel := MustParse(benchSelector)
	l := benchLabels()
	if len(l) != 20 || !sel.Evaluate(l) {
		b.Fatalf("want a matching 20-label endpoint, have %d labels", len(l))
	}
	b.ReportAllocs()
	for b.Loop() {
		sel.Evaluate(l)
	}
}

// BenchmarkEvaluateMiss is the common case in a large cluster: the first
// term already fails.
func BenchmarkEvaluateMiss(b *testing.B) {
	sel := MustParse(benchSelector)
	l := benchLabels()
	l["projectcalico.org/namespace"] = "dev"
	b.ReportAllocs()
	for b.Loop() {
		sel.Evaluate(l)
	}
}
