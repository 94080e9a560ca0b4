package policy

// KubernetesNetworkPolicy is a Kubernetes networking.k8s.io/v1 NetworkPolicy.
// weft evaluates it as the Calico NetworkPolicy that Calico translates it to
// (see TranslateKubernetes).
type KubernetesNetworkPolicy struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta                  `json:"metadata"`
	Spec     KubernetesNetworkPolicySpec `json:"spec"`
	Status   *Ignored                    `json:"status,omitempty"`
}

// KubernetesNetworkPolicySpec is a Kubernetes NetworkPolicy's spec.
type KubernetesNetworkPolicySpec struct {
	PodSelector LabelSelector                    `json:"podSelector"`
	Ingress     []KubernetesNetworkPolicyIngress `json:"ingress,omitempty"`
	Egress      []KubernetesNetworkPolicyEgress  `json:"egress,omitempty"`
	PolicyTypes []PolicyType                     `json:"policyTypes,omitempty"`
}

// KubernetesNetworkPolicyIngress is one ingress rule: traffic from any of From
// (any source when empty) to any of Ports (any port when empty).
type KubernetesNetworkPolicyIngress struct {
	Ports []KubernetesNetworkPolicyPort `json:"ports,omitempty"`
	From  []KubernetesNetworkPolicyPeer `json:"from,omitempty"`
}

// KubernetesNetworkPolicyEgress is one egress rule.
type KubernetesNetworkPolicyEgress struct {
	Ports []KubernetesNetworkPolicyPort `json:"ports,omitempty"`
	To    []KubernetesNetworkPolicyPeer `json:"to,omitempty"`
}

// KubernetesNetworkPolicyPort is a port, named port or port range, with a
// protocol (TCP when omitted).
type KubernetesNetworkPolicyPort struct {
	Protocol *string      `json:"protocol,omitempty"`
	Port     *IntOrString `json:"port,omitempty"`
	EndPort  *int32       `json:"endPort,omitempty"`
}

// KubernetesNetworkPolicyPeer is pods (podSelector, namespaceSelector, or
// both) or an IP block.
type KubernetesNetworkPolicyPeer struct {
	PodSelector       *LabelSelector `json:"podSelector,omitempty"`
	NamespaceSelector *LabelSelector `json:"namespaceSelector,omitempty"`
	IPBlock           *IPBlock       `json:"ipBlock,omitempty"`
}

// IPBlock is a CIDR less some exceptions.
type IPBlock struct {
	CIDR   string   `json:"cidr"`
	Except []string `json:"except,omitempty"`
}

// LabelSelector is a Kubernetes label selector.
type LabelSelector struct {
	MatchLabels      Labels                     `json:"matchLabels,omitempty"`
	MatchExpressions []LabelSelectorRequirement `json:"matchExpressions,omitempty"`
}

// LabelSelectorRequirement is one matchExpressions term.
type LabelSelectorRequirement struct {
	Key      string   `json:"key"`
	Operator string   `json:"operator"`
	Values   []string `json:"values,omitempty"`
}

// Meta implements Resource.
func (r *KubernetesNetworkPolicy) Meta() *ObjectMeta { return &r.Metadata }

// Type implements Resource.
func (r *KubernetesNetworkPolicy) Type() TypeMeta { return r.TypeMeta }
