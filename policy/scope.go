package policy

import (
	"fmt"
	"strings"

	"github.com/weft-net/weft/policy/selector"
)

// Labels that Calico sets on the objects policies select.
const (
	// LabelNamespace holds a workload endpoint's or network set's namespace.
	LabelNamespace = "projectcalico.org/namespace"
	// LabelOrchestrator holds a workload endpoint's spec.orchestrator;
	// translated Kubernetes policies select only "k8s" endpoints.
	LabelOrchestrator = "projectcalico.org/orchestrator"
	// LabelServiceAccount holds a workload endpoint's service account name.
	LabelServiceAccount = "projectcalico.org/serviceaccount"
	// LabelName is how a namespaceSelector or serviceAccountSelector matches
	// a namespace or service account by name.
	LabelName = "projectcalico.org/name"

	// Prefixes under which an endpoint inherits its namespace's and its
	// service account's labels (Calico's kns./ksa. profiles).
	namespaceLabelPrefix      = "pcns."
	serviceAccountLabelPrefix = "pcsa."
)

// Keys that only weft's rewritten selectors use: they are valid in a selector
// but not as a label, so no object carries them for real. Calico rewrites
// all() in some namespace and service-account selectors to "has a namespace"
// or "has a service account"; these keys say that in a view.
const (
	keyNamespaced     = "_weft/namespaced"
	keyServiceAccount = "_weft/serviceaccount"
)

// view says which labels of an object a selector term reads.
type view uint8

const (
	viewLabels         view = iota // the object's own labels, as Felix merges them
	viewNamespace                  // its namespace's labels (what a namespaceSelector sees)
	viewServiceAccount             // its service account's labels
)

// term is one selector read against one view of an object.
type term struct {
	view view
	sel  selector.Selector
}

// match is a conjunction: the object is in namespace (when set) and every
// term holds. A nil *match matches every object.
type match struct {
	namespace string
	terms     []term
	// text describes the match for a trace.
	text string
}

// matches reports whether o satisfies m.
func (m *match) matches(o *object) bool {
	if m == nil {
		return true
	}
	if m.namespace != "" && o.namespace != m.namespace {
		return false
	}
	for _, t := range m.terms {
		var ok bool
		switch t.view {
		case viewLabels:
			ok = t.sel.Evaluate(o.labels)
		case viewNamespace:
			ok = t.sel.EvaluateLabels(namespaceView{o})
		case viewServiceAccount:
			ok = t.sel.EvaluateLabels(serviceAccountView{o})
		}
		if !ok {
			return false
		}
	}
	return true
}

func (m *match) String() string {
	if m == nil {
		return "any"
	}
	return m.text
}

// namespaceView shows a namespaceSelector an object's namespace labels, plus
// projectcalico.org/name, as Calico's kns.<namespace> profile gives them.
type namespaceView struct{ o *object }

// Get implements selector.Labels.
func (v namespaceView) Get(k string) (string, bool) {
	switch k {
	case keyNamespaced:
		return "", v.o.namespace != ""
	case keyServiceAccount:
		return "", v.o.serviceAccount != ""
	case LabelName:
		if v.o.namespace != "" {
			return v.o.namespace, true
		}
	}
	val, ok := v.o.nsLabels[k]
	return val, ok
}

// serviceAccountView shows a serviceAccountSelector an object's service
// account labels, plus projectcalico.org/name.
type serviceAccountView struct{ o *object }

// Get implements selector.Labels.
func (v serviceAccountView) Get(k string) (string, bool) {
	switch k {
	case keyNamespaced:
		return "", v.o.namespace != ""
	case keyServiceAccount:
		return "", v.o.serviceAccount != ""
	case LabelName:
		if v.o.serviceAccount != "" {
			return v.o.serviceAccount, true
		}
	}
	val, ok := v.o.saLabels[k]
	return val, ok
}

// rewriteAll replaces all() in a selector's canonical text, as Calico's
// strings.Replace does on the v1 selector it builds.
func rewriteAll(s selector.Selector, with string) (selector.Selector, error) {
	text := s.String()
	if !strings.Contains(text, "all()") {
		return s, nil
	}
	r, err := selector.Parse(strings.ReplaceAll(text, "all()", with))
	if err != nil {
		return nil, fmt.Errorf("rewrite all() in %q: %w", text, err)
	}
	return r, nil
}

// globalPolicyMatch is the endpoint selection of a GlobalNetworkPolicy, as
// libcalico-go's update processor builds it: selector AND the
// namespaceSelector over namespace labels AND the serviceAccountSelector over
// service-account labels. With a namespaceSelector, all() (anywhere) becomes
// "has a namespace"; then, with a serviceAccountSelector, "has a service
// account".
func globalPolicyMatch(sel, nsSel, saSel Selector) (*match, error) {
	m := &match{}
	var texts []string
	if !sel.IsZero() {
		m.terms = append(m.terms, term{viewLabels, sel.sel})
		texts = append(texts, sel.String())
	}
	if !nsSel.IsZero() {
		m.terms = append(m.terms, term{viewNamespace, nsSel.sel})
		texts = append(texts, "namespaceSelector "+nsSel.String())
	}
	if !saSel.IsZero() {
		m.terms = append(m.terms, term{viewServiceAccount, saSel.sel})
		texts = append(texts, "serviceAccountSelector "+saSel.String())
	}
	rewrite := func(labelKey, viewKey string) error {
		for i := range m.terms {
			with := "has(" + viewKey + ")"
			if m.terms[i].view == viewLabels {
				with = "has(" + labelKey + ")"
			}
			s, err := rewriteAll(m.terms[i].sel, with)
			if err != nil {
				return err
			}
			m.terms[i].sel = s
		}
		return nil
	}
	if !nsSel.IsZero() {
		if err := rewrite(LabelNamespace, keyNamespaced); err != nil {
			return nil, err
		}
	}
	if !saSel.IsZero() {
		if err := rewrite(LabelServiceAccount, keyServiceAccount); err != nil {
			return nil, err
		}
	}
	m.text = strings.Join(texts, " && ")
	if m.text == "" {
		m.text = "all()"
	}
	return m, nil
}

// namespacedPolicyMatch is the endpoint selection of a NetworkPolicy: its
// namespace AND selector AND serviceAccountSelector (no all() rewriting).
func namespacedPolicyMatch(ns string, sel, saSel Selector) *match {
	m := &match{namespace: ns}
	texts := []string{"namespace " + ns}
	if !sel.IsZero() {
		m.terms = append(m.terms, term{viewLabels, sel.sel})
		texts = append(texts, sel.String())
	}
	if !saSel.IsZero() {
		m.terms = append(m.terms, term{viewServiceAccount, saSel.sel})
		texts = append(texts, "serviceAccountSelector "+saSel.String())
	}
	m.text = strings.Join(texts, " && ")
	return m
}

// entityMatch is the positive selector of a rule's source or destination, as
// libcalico-go's GetEntityRuleSelector builds it for a policy in namespace
// ns ("" for a global policy): serviceAccounts AND selector, scoped to the
// namespaceSelector's namespaces (all() meaning "namespaced objects", global()
// meaning "objects with no namespace"), or else to the policy's own namespace
// as soon as selector, notSelector or serviceAccounts is used. nil means the
// rule does not constrain by selector.
func entityMatch(e *EntityRule, ns string) (*match, error) {
	var sels []term
	var texts []string
	if sa := e.ServiceAccounts; sa != nil {
		if !sa.Selector.IsZero() {
			sels = append(sels, term{viewServiceAccount, sa.Selector.sel})
			texts = append(texts, "serviceAccounts.selector "+sa.Selector.String())
		}
		if len(sa.Names) > 0 {
			s, err := selector.Parse(LabelServiceAccount + " in { '" + strings.Join(sa.Names, "', '") + "' }")
			if err != nil {
				return nil, fmt.Errorf("service account names: %w", err)
			}
			sels = append(sels, term{viewLabels, s})
			texts = append(texts, "serviceAccounts.names "+strings.Join(sa.Names, ","))
		}
	}
	if !e.Selector.IsZero() {
		sels = append(sels, term{viewLabels, e.Selector.sel})
		texts = append(texts, "selector "+e.Selector.String())
	}
	m := &match{terms: sels}
	switch nsSel := e.NamespaceSelector; {
	case !nsSel.IsZero() && nsSel.String() == "global()":
		s, err := selector.Parse("!has(" + keyNamespaced + ")")
		if err != nil {
			return nil, fmt.Errorf("rewrite global(): %w", err)
		}
		m.terms = append([]term{{viewNamespace, s}}, m.terms...)
		texts = append([]string{"namespaceSelector global()"}, texts...)
	case !nsSel.IsZero():
		s, err := rewriteAll(nsSel.sel, "has("+keyNamespaced+")")
		if err != nil {
			return nil, err
		}
		m.terms = append([]term{{viewNamespace, s}}, m.terms...)
		texts = append([]string{"namespaceSelector " + nsSel.String()}, texts...)
	case ns != "" && (len(sels) > 0 || !e.NotSelector.IsZero()):
		m.namespace = ns
		texts = append([]string{"namespace " + ns}, texts...)
	case len(sels) == 0:
		return nil, nil
	}
	m.text = strings.Join(texts, " && ")
	return m, nil
}
