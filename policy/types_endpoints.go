package policy

// WorkloadEndpoint is a Calico WorkloadEndpoint: a workload's interface, its
// addresses, labels, named ports and service account.
type WorkloadEndpoint struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta           `json:"metadata"`
	Spec     WorkloadEndpointSpec `json:"spec"`
}

// WorkloadEndpointSpec is a WorkloadEndpoint's spec. Only ipNetworks, ports,
// serviceAccountName, orchestrator and node affect policy.
type WorkloadEndpointSpec struct {
	Orchestrator       string         `json:"orchestrator,omitempty"`
	Workload           string         `json:"workload,omitempty"`
	Node               string         `json:"node,omitempty"`
	ContainerID        string         `json:"containerID,omitempty"`
	Pod                string         `json:"pod,omitempty"`
	Endpoint           string         `json:"endpoint,omitempty"`
	ServiceAccountName string         `json:"serviceAccountName,omitempty"`
	IPNetworks         []CIDR         `json:"ipNetworks,omitempty"`
	IPNATs             *Ignored       `json:"ipNATs,omitempty"`
	IPv4Gateway        string         `json:"ipv4Gateway,omitempty"`
	IPv6Gateway        string         `json:"ipv6Gateway,omitempty"`
	Profiles           []string       `json:"profiles,omitempty"`
	InterfaceName      string         `json:"interfaceName,omitempty"`
	MAC                string         `json:"mac,omitempty"`
	Ports              []EndpointPort `json:"ports,omitempty"`
	// AllowSpoofedSourcePrefixes and QoSControls are accepted and ignored.
	AllowSpoofedSourcePrefixes []string `json:"allowSpoofedSourcePrefixes,omitempty"`
	QoSControls                *Ignored `json:"qosControls,omitempty"`
}

// EndpointPort is a named port of a workload or host endpoint.
type EndpointPort struct {
	Name     string   `json:"name"`
	Protocol Protocol `json:"protocol"`
	Port     uint16   `json:"port"`
	HostPort uint16   `json:"hostPort,omitempty"`
	HostIP   string   `json:"hostIP,omitempty"`
}

// HostEndpoint is a Calico HostEndpoint: one or all interfaces of a host.
type HostEndpoint struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta       `json:"metadata"`
	Spec     HostEndpointSpec `json:"spec"`
}

// HostEndpointSpec is a HostEndpoint's spec.
type HostEndpointSpec struct {
	Node          string         `json:"node,omitempty"`
	InterfaceName string         `json:"interfaceName,omitempty"`
	ExpectedIPs   []string       `json:"expectedIPs,omitempty"`
	Profiles      []string       `json:"profiles,omitempty"`
	Ports         []EndpointPort `json:"ports,omitempty"`
}

// GlobalNetworkSet is a Calico GlobalNetworkSet: labelled address ranges that
// rule selectors can match.
type GlobalNetworkSet struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta     `json:"metadata"`
	Spec     NetworkSetSpec `json:"spec"`
}

// NetworkSet is a Calico (namespaced) NetworkSet.
type NetworkSet struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta     `json:"metadata"`
	Spec     NetworkSetSpec `json:"spec"`
}

// NetworkSetSpec is the spec of a GlobalNetworkSet or NetworkSet.
type NetworkSetSpec struct {
	Nets []CIDR `json:"nets,omitempty"`
}

// Namespace is a Kubernetes Namespace; its labels are what rule and policy
// namespaceSelectors match.
type Namespace struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     *Ignored   `json:"spec,omitempty"`
	Status   *Ignored   `json:"status,omitempty"`
}

// ServiceAccount is a Kubernetes ServiceAccount; its labels are what
// serviceAccountSelectors match.
type ServiceAccount struct {
	TypeMeta                     `json:",inline"`
	Metadata                     ObjectMeta `json:"metadata"`
	Secrets                      *Ignored   `json:"secrets,omitempty"`
	ImagePullSecrets             *Ignored   `json:"imagePullSecrets,omitempty"`
	AutomountServiceAccountToken *bool      `json:"automountServiceAccountToken,omitempty"`
}

// Meta implements Resource.
func (r *WorkloadEndpoint) Meta() *ObjectMeta { return &r.Metadata }

// Type implements Resource.
func (r *WorkloadEndpoint) Type() TypeMeta { return r.TypeMeta }

// Meta implements Resource.
func (r *HostEndpoint) Meta() *ObjectMeta { return &r.Metadata }

// Type implements Resource.
func (r *HostEndpoint) Type() TypeMeta { return r.TypeMeta }

// Meta implements Resource.
func (r *GlobalNetworkSet) Meta() *ObjectMeta { return &r.Metadata }

// Type implements Resource.
func (r *GlobalNetworkSet) Type() TypeMeta { return r.TypeMeta }

// Meta implements Resource.
func (r *NetworkSet) Meta() *ObjectMeta { return &r.Metadata }

// Type implements Resource.
func (r *NetworkSet) Type() TypeMeta { return r.TypeMeta }

// Meta implements Resource.
func (r *Namespace) Meta() *ObjectMeta { return &r.Metadata }

// Type implements Resource.
func (r *Namespace) Type() TypeMeta { return r.TypeMeta }

// Meta implements Resource.
func (r *ServiceAccount) Meta() *ObjectMeta { return &r.Metadata }

// Type implements Resource.
func (r *ServiceAccount) Type() TypeMeta { return r.TypeMeta }
