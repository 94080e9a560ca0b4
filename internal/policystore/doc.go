// Package policystore is the codec between weft's policy objects and the
// entries of the replicated store (gossip's store): the key of a policy
// object, the JSON value of a policy entry and of an endpoint entry, their
// validation, and the references (KIND/[NAMESPACE/]NAME) that `weft policy
// get|delete` take.
//
// Data flow:
//
//	policy file --policy.Decode--> policy.Object --Encode--> store entry (key, JSON)
//	store entry --DecodePolicy--> policy.Object   (Origin: "store <key>")
//	weft endpoint add --Endpoint.Validate--> store entry "<node>/<name>" --Endpoint.Object--> policy.WorkloadEndpoint
//
// Keys: a policy entry is "<Kind>/<namespace>/<name>", the namespace empty
// for cluster-wide kinds ("GlobalNetworkPolicy//deny-all"); a Kubernetes
// NetworkPolicy shares the key space of Calico's NetworkPolicy, as the
// policy Set does (a later apply of either replaces the other). An endpoint
// entry is "<node>/<name>" and only that node writes it.
//
// Everything here is pure and safe for concurrent use.
package policystore
