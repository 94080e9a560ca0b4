// Package policy is weft's policy language: Calico v3 resources and
// Kubernetes NetworkPolicy, decoded strictly, and a reference evaluator that
// says, as Calico would, whether a flow is allowed and why.
//
// Data flow:
//
//	files --Decode/LoadObjects--> []Object --NewSet--> *Set --Evaluate(Flow)--> Verdict
//
// Decode reads multi-document YAML (or JSON) into typed resources
// (GlobalNetworkPolicy, NetworkPolicy, Tier, GlobalNetworkSet, NetworkSet,
// WorkloadEndpoint, HostEndpoint, Kubernetes NetworkPolicy, Namespace,
// ServiceAccount, and Lists of them). It is strict: an unknown field, a wrong
// type or a bad value is a *FieldError naming the file, document, object,
// field path and value. Selectors are parsed by package selector.
//
// NewSet resolves the objects as libcalico-go's update processors do for
// Felix: Kubernetes policies become Calico NetworkPolicies
// (TranslateKubernetes); namespaced policies select only in their namespace;
// namespaceSelector and serviceAccountSelector read the labels of the
// Namespace and ServiceAccount objects (plus projectcalico.org/name), with
// Calico's rewriting of all() and global(); workload endpoints get
// projectcalico.org/namespace, orchestrator and serviceaccount labels; tiers
// are sorted by order (the default tier at 1,000,000, no order last), and
// policies within a tier by order (none last), then name.
//
// Evaluate is the semantics in plain Go, pure and deterministic; its
// Verdict records every rule looked at and why it did not match. It is the
// reference that weft's data plane compiler is tested against.
//
// What the evaluator does not model: Profile resources other than the
// default-allow of workloads and of host endpoints with
// projectcalico-default-allow; host endpoint policy on forwarded traffic
// (applyOnForward) — a host endpoint side is traffic to or from the host
// itself; Felix's DefaultEndpointToHostAction for traffic from a workload to
// its own host (it is judged as the workload's egress and the host endpoint's
// ingress); Kubernetes Services in rules and application-layer (http) rules,
// which Decode rejects.
package policy
