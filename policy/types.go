package policy

// API versions weft reads.
const (
	APIVersionCalico     = "projectcalico.org/v3"
	APIVersionNetworking = "networking.k8s.io/v1"
	APIVersionCore       = "v1"
)

// Resource kinds weft reads.
const (
	KindGlobalNetworkPolicy = "GlobalNetworkPolicy"
	KindNetworkPolicy       = "NetworkPolicy" // Calico's (projectcalico.org/v3) or Kubernetes' (networking.k8s.io/v1)
	KindTier                = "Tier"
	KindGlobalNetworkSet    = "GlobalNetworkSet"
	KindNetworkSet          = "NetworkSet"
	KindWorkloadEndpoint    = "WorkloadEndpoint"
	KindHostEndpoint        = "HostEndpoint"
	KindNamespace           = "Namespace"
	KindServiceAccount      = "ServiceAccount"
)

// Resource is one decoded object of any kind weft reads. Its concrete type is
// one of the pointer types below.
type Resource interface {
	// Meta returns the object's metadata; the caller must not modify it.
	Meta() *ObjectMeta
	// Type returns the object's apiVersion and kind.
	Type() TypeMeta
}

// TypeMeta is an object's apiVersion and kind.
type TypeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// ObjectMeta is Kubernetes object metadata. Fields that only the API server
// uses are accepted and ignored.
type ObjectMeta struct {
	Name        string            `json:"name,omitempty"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      Labels            `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`

	GenerateName               string   `json:"generateName,omitempty"`
	UID                        string   `json:"uid,omitempty"`
	ResourceVersion            string   `json:"resourceVersion,omitempty"`
	Generation                 *int64   `json:"generation,omitempty"`
	CreationTimestamp          *Ignored `json:"creationTimestamp,omitempty"`
	DeletionTimestamp          *Ignored `json:"deletionTimestamp,omitempty"`
	DeletionGracePeriodSeconds *int64   `json:"deletionGracePeriodSeconds,omitempty"`
	SelfLink                   string   `json:"selfLink,omitempty"`
	Finalizers                 []string `json:"finalizers,omitempty"`
	OwnerReferences            *Ignored `json:"ownerReferences,omitempty"`
	ManagedFields              *Ignored `json:"managedFields,omitempty"`
}

// Tier is a Calico Tier: an ordered group of policies.
type Tier struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     TierSpec   `json:"spec"`
}

// TierSpec is a Tier's spec.
type TierSpec struct {
	// Order sorts tiers, lowest first; nil sorts last.
	Order *float64 `json:"order,omitempty"`
	// DefaultAction applies when the tier's policies select an endpoint but
	// none of their rules decide: Deny (the default) or Pass.
	DefaultAction Action `json:"defaultAction,omitempty"`
}

// GlobalNetworkPolicy is a Calico GlobalNetworkPolicy.
type GlobalNetworkPolicy struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta              `json:"metadata"`
	Spec     GlobalNetworkPolicySpec `json:"spec"`
}

// GlobalNetworkPolicySpec is a GlobalNetworkPolicy's spec.
type GlobalNetworkPolicySpec struct {
	Tier                   string       `json:"tier,omitempty"`
	Order                  *float64     `json:"order,omitempty"`
	Selector               Selector     `json:"selector,omitempty"`
	NamespaceSelector      Selector     `json:"namespaceSelector,omitempty"`
	ServiceAccountSelector Selector     `json:"serviceAccountSelector,omitempty"`
	Types                  []PolicyType `json:"types,omitempty"`
	Ingress                []Rule       `json:"ingress,omitempty"`
	Egress                 []Rule       `json:"egress,omitempty"`
	DoNotTrack             bool         `json:"doNotTrack,omitempty"`
	PreDNAT                bool         `json:"preDNAT,omitempty"`
	ApplyOnForward         bool         `json:"applyOnForward,omitempty"`
	PerformanceHints       []string     `json:"performanceHints,omitempty"`
}

// NetworkPolicy is a Calico (namespaced) NetworkPolicy.
type NetworkPolicy struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta        `json:"metadata"`
	Spec     NetworkPolicySpec `json:"spec"`
}

// NetworkPolicySpec is a Calico NetworkPolicy's spec.
type NetworkPolicySpec struct {
	Tier                   string       `json:"tier,omitempty"`
	Order                  *float64     `json:"order,omitempty"`
	Selector               Selector     `json:"selector,omitempty"`
	ServiceAccountSelector Selector     `json:"serviceAccountSelector,omitempty"`
	Types                  []PolicyType `json:"types,omitempty"`
	Ingress                []Rule       `json:"ingress,omitempty"`
	Egress                 []Rule       `json:"egress,omitempty"`
	PerformanceHints       []string     `json:"performanceHints,omitempty"`
}

// Rule is one ingress or egress rule of a Calico policy.
type Rule struct {
	Action      Action        `json:"action"`
	Protocol    *Protocol     `json:"protocol,omitempty"`
	NotProtocol *Protocol     `json:"notProtocol,omitempty"`
	ICMP        *ICMPFields   `json:"icmp,omitempty"`
	NotICMP     *ICMPFields   `json:"notICMP,omitempty"`
	IPVersion   *int          `json:"ipVersion,omitempty"`
	Source      EntityRule    `json:"source,omitempty"`
	Destination EntityRule    `json:"destination,omitempty"`
	Metadata    *RuleMetadata `json:"metadata,omitempty"`
	// HTTP is application-layer policy, which weft does not enforce: a rule
	// that sets it is rejected.
	HTTP *Ignored `json:"http,omitempty"`
}

// RuleMetadata is per-rule metadata; it does not change what a rule matches.
type RuleMetadata struct {
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ICMPFields matches an ICMP type and, optionally, code.
type ICMPFields struct {
	Type *int `json:"type,omitempty"`
	Code *int `json:"code,omitempty"`
}

// EntityRule matches the source or the destination of a packet. Every field
// that is set must match.
type EntityRule struct {
	Nets              []CIDR               `json:"nets,omitempty"`
	NotNets           []CIDR               `json:"notNets,omitempty"`
	Selector          Selector             `json:"selector,omitempty"`
	NotSelector       Selector             `json:"notSelector,omitempty"`
	NamespaceSelector Selector             `json:"namespaceSelector,omitempty"`
	Ports             []Port               `json:"ports,omitempty"`
	NotPorts          []Port               `json:"notPorts,omitempty"`
	ServiceAccounts   *ServiceAccountMatch `json:"serviceAccounts,omitempty"`
	// Services matches Kubernetes Services, which weft does not know: a rule
	// that sets it is rejected.
	Services *Ignored `json:"services,omitempty"`
}

// ServiceAccountMatch matches endpoints by their service account.
type ServiceAccountMatch struct {
	Names    []string `json:"names,omitempty"`
	Selector Selector `json:"selector,omitempty"`
}

// Meta implements Resource.
func (r *Tier) Meta() *ObjectMeta { return &r.Metadata }

// Type implements Resource.
func (r *Tier) Type() TypeMeta { return r.TypeMeta }

// Meta implements Resource.
func (r *GlobalNetworkPolicy) Meta() *ObjectMeta { return &r.Metadata }

// Type implements Resource.
func (r *GlobalNetworkPolicy) Type() TypeMeta { return r.TypeMeta }

// Meta implements Resource.
func (r *NetworkPolicy) Meta() *ObjectMeta { return &r.Metadata }

// Type implements Resource.
func (r *NetworkPolicy) Type() TypeMeta { return r.TypeMeta }
