package agent

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"time"

	"github.com/weft-net/weft/cloud"
	"github.com/weft-net/weft/cloud/aws"
	"github.com/weft-net/weft/internal/api"
)

// cloudState is what the agent knows of its cloud: the provider, the
// instance it found, and the last reconcile of the VPC's route tables.
// Guarded by Agent.mu.
type cloudState struct {
	provider cloud.Provider
	instance cloud.Instance
	report   *cloud.Report
	lastErr  string
	last     time.Time
	// native holds the peer subnets the VPC's route table carries.
	native map[netip.Prefix]bool
	kick   chan struct{}
}

// startCloud opens the configured cloud adapter and discovers this host.
// Failures are problems in status, not fatal: the node runs on the overlay.
func (a *Agent) startCloud(ctx context.Context) {
	if a.cfg.Cloud != aws.Name {
		return
	}
	a.cloud.kick = make(chan struct{}, 1)
	p, err := aws.New(ctx, aws.Config{
		ClusterName:   a.cfg.ClusterName,
		Region:        a.cfg.AWS.Region,
		Endpoint:      a.cfg.AWS.Endpoint,
		IMDSEndpoint:  a.cfg.AWS.IMDSEndpoint,
		RouteTableIDs: a.cfg.AWS.RouteTableIDs,
		RouteTableTag: a.cfg.AWS.RouteTableTag,
		ClusterCIDR:   a.pool.CIDR,
		Logger:        a.log,
	})
	if err != nil {
		a.log.Error("cloud adapter unavailable, staying on the overlay", "cloud", a.cfg.Cloud, "err", err)
		a.setProblem("cloud", err.Error())
		return
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	inst, err := p.Discover(dctx)
	if err != nil {
		a.log.Error("cloud discovery failed, staying on the overlay", "err", err)
		a.setProblem("cloud", fmt.Sprintf("discover this instance: %v", err))
		return
	}
	a.mu.Lock()
	a.cloud.provider, a.cloud.instance = p, inst
	// The cloud fills the location the config left empty.
	if a.location.Cloud == "" {
		a.location.Cloud = inst.Cloud
	}
	if a.location.Region == "" {
		a.location.Region = inst.Region
	}
	if a.location.Zone == "" {
		a.location.Zone = inst.Zone
	}
	a.location.Instance = inst.ID
	a.mu.Unlock()
	a.log.Info("cloud instance discovered", "cloud", inst.Cloud, "instance", inst.ID, "vpc", inst.VPC, "subnet", inst.Subnet, "region", inst.Region, "zone", inst.Zone)
	if err := p.DisableSourceDestCheck(dctx); err != nil {
		a.log.Error("disable source/destination check", "err", err)
		a.setProblem("cloud", fmt.Sprintf("disable source/destination check: %v", err))
	}
}

// kickCloud asks the cloud loop for a reconcile; it never blocks.
func (a *Agent) kickCloud() {
	if a.cloud.kick == nil {
		return
	}
	select {
	case a.cloud.kick <- struct{}{}:
	default:
	}
}

// runCloud keeps the VPC's route tables holding this host's route and reads
// the peers' back, on every change and every resync period, until ctx ends.
// When the set of peer subnets the cloud carries changes, it replans.
func (a *Agent) runCloud(ctx context.Context) {
	if a.cloud.provider == nil {
		return
	}
	tick := time.NewTicker(a.cfg.ResyncPeriod.Duration)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.cloud.kick:
		case <-tick.C:
		}
		want, ok := a.cloudWant()
		if !ok {
			continue
		}
		rep, err := a.cloud.provider.ReconcileRoutes(ctx, want)
		native := map[netip.Prefix]bool{}
		self := a.cfg.NodeName
		for _, r := range rep.Programmed {
			if r.Node != self {
				native[r.Dst] = true
			}
		}
		a.mu.Lock()
		changed := !maps.Equal(native, a.cloud.native)
		a.cloud.native, a.cloud.report, a.cloud.last = native, &rep, a.now()
		a.cloud.lastErr = ""
		if err != nil {
			a.cloud.lastErr = err.Error()
		}
		a.mu.Unlock()
		if err != nil {
			a.log.Error("cloud route reconcile failed; affected peers stay on the overlay", "err", err)
			a.setProblem("cloud", err.Error())
		} else {
			a.setProblem("cloud", "")
		}
		if changed {
			a.log.Info("cloud routes changed", "native_peers", len(native), "fell_back", len(rep.FellBack))
			a.replan()
		}
	}
}

// cloudWant lists every route weft wants in the VPC: this host's subnet to
// its instance, and each live peer's subnet to the instance it gossips.
// It is not ready until the node has a subnet and knows the cluster: the
// provider deletes this host's routes that are not wanted.
func (a *Agent) cloudWant() ([]cloud.Route, bool) {
	a.mu.Lock()
	ready, claim, inst := a.ready, a.claim, a.cloud.instance
	a.mu.Unlock()
	if !ready || !claim.Subnet.IsValid() || inst.ID == "" {
		return nil, false
	}
	want := []cloud.Route{{Dst: claim.Subnet, Node: a.cfg.NodeName, Instance: inst.ID}}
	for _, p := range a.planPeers(a.ml.Members()) {
		id := p.CloudInstance
		if id == "" || p.Location.Cloud != inst.Cloud {
			continue
		}
		for _, s := range p.Subnets {
			want = append(want, cloud.Route{Dst: s, Node: p.Name, Instance: id})
		}
	}
	return want, true
}

// cloudStatus is the answer of GET /v1/cloud.
func (a *Agent) cloudStatus() api.Cloud {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := api.Cloud{Provider: a.cfg.Cloud, LastError: a.cloud.lastErr, LastReconcile: a.cloud.last, Problem: a.problems["cloud"]}
	if a.cloud.provider != nil {
		inst := a.cloud.instance
		c.Instance = &inst
	}
	if a.cloud.report != nil {
		r := *a.cloud.report
		c.Report = &r
	}
	return c
}

// nativeLocked returns the peer subnets the cloud carries; the caller holds a.mu.
func (a *Agent) nativeLocked() map[netip.Prefix]bool { return a.cloud.native }
