package lab

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/weft-net/weft/internal/netlab"
	"github.com/weft-net/weft/internal/policystore"
)

// workloadLabels are the labels the lab gives its workloads, in turn: a
// three-tier application (web, api, db) in two environments, so that a
// tiered demo policy (web may call api, api may call db, dev may not
// reach prod) has something to select.
var workloadLabels = []map[string]string{
	{"app": "web", "tier": "frontend", "env": "prod"},
	{"app": "api", "tier": "backend", "env": "prod"},
	{"app": "db", "tier": "data", "env": "prod"},
	{"app": "web", "tier": "frontend", "env": "dev"},
	{"app": "api", "tier": "backend", "env": "dev"},
	{"app": "db", "tier": "data", "env": "dev"},
}

// WorkloadLabels returns the labels of the lab's i-th workload (from 0): a
// new map each call.
func WorkloadLabels(i int) map[string]string {
	return maps.Clone(workloadLabels[i%len(workloadLabels)])
}

// LabelsString renders labels as sorted KEY=VALUE pairs joined by commas.
func LabelsString(l map[string]string) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(l)) {
		out = append(out, k+"="+l[k])
	}
	return strings.Join(out, ",")
}

// RegisterWorkload registers w as an endpoint on its host's agent (as
// `weft endpoint add` does): its veth, address and labels.
func (c *Cluster) RegisterWorkload(ctx context.Context, w netlab.Workload) error {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := c.Client(w.Host).EndpointPut(qctx, policystore.Endpoint{
		Name: w.Name, Interface: w.HostVeth(), Addrs: []netip.Addr{w.Addr}, Labels: w.Labels,
	})
	if err != nil {
		return fmt.Errorf("register workload %s as an endpoint on %s: %w", w.Name, w.Host, err)
	}
	return nil
}
