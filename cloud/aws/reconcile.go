package aws

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/weft-net/weft/cloud"
)

// maxFilterValues is how many values EC2 accepts in one filter.
const maxFilterValues = 200

// ReconcileRoutes makes the managed route tables hold this host's wanted
// routes and reports on all of want (see cloud.Provider). At steady state a
// call makes two describe calls (DescribeRouteTables, DescribeInstances;
// more only past 100 tables or 1000 tagged instances, by pagination) and no
// writes, whatever the number of peers; a change adds one write per managed
// table for this host's own routes, and on the sweeper one delete per stale
// route. Throttled calls are retried with backoff by the SDK's retryer.
func (p *Provider) ReconcileRoutes(ctx context.Context, want []cloud.Route) (cloud.Report, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ctx, calls := withCallCounter(ctx)
	rep, err := p.reconcileLocked(ctx, want)
	rep.Calls = int(calls.Load())
	p.logChangesLocked(rep, err)
	return rep, err
}

func (p *Provider) reconcileLocked(ctx context.Context, want []cloud.Route) (cloud.Report, error) {
	if err := cloud.ValidateRoutes(want); err != nil {
		return cloud.AllFellBack(cloud.Instance{}, want, cloud.ReasonError, err.Error()), fmt.Errorf("reconcile cloud routes: %w", err)
	}
	self, err := p.instance(ctx)
	if err != nil {
		return cloud.AllFellBack(self, want, cloud.ReasonError, err.Error()), err
	}
	v, err := p.read(ctx, self)
	if err != nil {
		return cloud.AllFellBack(self, want, cloud.ReasonError, err.Error()), err
	}
	var errs []error
	me, ok := v.instances[self.ID]
	if !ok || !me.weft {
		err := fmt.Errorf("reconcile cloud routes: instance %s has no tag %s=%s, so other hosts would not know its routes as weft's",
			self.ID, TagCluster, p.cfg.ClusterName)
		return cloud.AllFellBack(self, want, cloud.ReasonError, err.Error()), err
	}
	if me.srcDstCheck {
		errs = append(errs, p.disableSourceDestCheck(ctx, self.ID))
	}
	pl := planActions(v, want)
	failed, full, removed, err := p.apply(ctx, v, pl)
	errs = append(errs, err)
	rep := report(v, want, failed, full)
	rep.Removed = removed
	rep.Sweeper = pl.sweeper
	rep.Sort()
	return rep, errors.Join(errs...)
}

// read makes the describe calls of one resync.
func (p *Provider) read(ctx context.Context, self cloud.Instance) (*view, error) {
	v := &view{self: self, instances: map[string]instance{}, orphans: map[string]bool{},
		limit: p.cfg.RouteLimit, clusterCIDR: p.cfg.ClusterCIDR}
	tables := ec2.NewDescribeRouteTablesPaginator(p.ec2, &ec2.DescribeRouteTablesInput{
		Filters:    []ec2types.Filter{{Name: sdk.String("vpc-id"), Values: []string{self.VPC}}},
		MaxResults: sdk.Int32(100),
	})
	for tables.HasMorePages() {
		out, err := tables.NextPage(ctx)
		if err != nil {
			return nil, apiError(err, "describe route tables of %s", self.VPC)
		}
		for _, t := range out.RouteTables {
			v.tables = append(v.tables, p.tableOf(t))
		}
	}
	slices.SortFunc(v.tables, func(a, b table) int { return cmp.Compare(a.id, b.id) })

	err := p.describeInstances(ctx, v, ec2types.Filter{
		Name: sdk.String("tag:" + TagCluster), Values: []string{p.cfg.ClusterName},
	}, "describe instances tagged %s=%s", TagCluster, p.cfg.ClusterName)
	if err != nil {
		return nil, err
	}
	return v, p.findOrphans(ctx, v)
}

// findOrphans looks up, when ClusterCIDR is set, the untagged targets of
// blackhole routes into it: one more DescribeInstances, only while such
// routes exist. Targets EC2 does not list at all are orphans.
func (p *Provider) findOrphans(ctx context.Context, v *view) error {
	if !v.clusterCIDR.IsValid() {
		return nil
	}
	var ids []string
	for _, t := range v.tables {
		for _, r := range t.routes {
			_, known := v.instances[r.instance]
			if t.managed && r.blackhole && r.instance != "" && !known && !slices.Contains(ids, r.instance) &&
				v.clusterCIDR.Bits() <= r.dst.Bits() && v.clusterCIDR.Contains(r.dst.Addr()) {
				ids = append(ids, r.instance)
			}
		}
	}
	if len(ids) == 0 {
		return nil
	}
	ids = ids[:min(len(ids), maxFilterValues)]
	err := p.describeInstances(ctx, v, ec2types.Filter{Name: sdk.String("instance-id"), Values: ids},
		"describe instances %v", ids)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if _, ok := v.instances[id]; !ok {
			v.orphans[id] = true
		}
	}
	return nil
}

func (p *Provider) describeInstances(ctx context.Context, v *view, f ec2types.Filter, format string, args ...any) error {
	pages := ec2.NewDescribeInstancesPaginator(p.ec2, &ec2.DescribeInstancesInput{
		Filters:    []ec2types.Filter{f},
		MaxResults: sdk.Int32(1000),
	})
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return apiError(err, format, args...)
		}
		for _, res := range out.Reservations {
			for _, in := range res.Instances {
				v.instances[sdk.ToString(in.InstanceId)] = p.instanceOf(in)
			}
		}
	}
	return nil
}

func (p *Provider) instanceOf(in ec2types.Instance) instance {
	x := instance{
		id:          sdk.ToString(in.InstanceId),
		vpc:         sdk.ToString(in.VpcId),
		srcDstCheck: sdk.ToBool(in.SourceDestCheck),
	}
	if in.State != nil {
		x.state = string(in.State.Name)
	}
	for _, ni := range in.NetworkInterfaces {
		x.enis = append(x.enis, sdk.ToString(ni.NetworkInterfaceId))
	}
	for _, t := range in.Tags {
		if sdk.ToString(t.Key) == TagCluster && sdk.ToString(t.Value) == p.cfg.ClusterName {
			x.weft = true
		}
	}
	return x
}

func (p *Provider) tableOf(t ec2types.RouteTable) table {
	x := table{id: sdk.ToString(t.RouteTableId)}
	x.managed = slices.Contains(p.cfg.RouteTableIDs, x.id)
	for _, tag := range t.Tags {
		if p.tagKey != "" && sdk.ToString(tag.Key) == p.tagKey && sdk.ToString(tag.Value) == p.tagValue {
			x.managed = true
		}
	}
	for _, a := range t.Associations {
		if sdk.ToBool(a.Main) {
			x.main = true
		}
		if a.SubnetId != nil {
			x.subnets = append(x.subnets, *a.SubnetId)
		}
	}
	for _, r := range t.Routes {
		y := route{
			instance:  sdk.ToString(r.InstanceId),
			eni:       sdk.ToString(r.NetworkInterfaceId),
			blackhole: r.State == ec2types.RouteStateBlackhole,
			gateway: cmp.Or(sdk.ToString(r.GatewayId), sdk.ToString(r.NatGatewayId), sdk.ToString(r.TransitGatewayId),
				sdk.ToString(r.VpcPeeringConnectionId), sdk.ToString(r.EgressOnlyInternetGatewayId),
				sdk.ToString(r.CarrierGatewayId), sdk.ToString(r.LocalGatewayId), sdk.ToString(r.CoreNetworkArn)),
		}
		if y.gateway == "" && y.instance == "" && y.eni == "" {
			y.gateway = "unknown"
		}
		y.counted = y.gateway != "local" && r.Origin != ec2types.RouteOriginEnableVgwRoutePropagation
		if d, err := netip.ParsePrefix(sdk.ToString(r.DestinationCidrBlock)); err == nil {
			y.dst = d
		}
		x.routes = append(x.routes, y)
	}
	return x
}

// apply makes the plan's writes, keeps v equal to what the tables now hold,
// and keeps going after a failure. It returns the own routes whose write
// failed with an error, the tables found full, the routes it removed, and
// the unexpected errors joined. Benign outcomes are not errors: a full table
// (reported as a fallback), a delete of a route already gone (another sweeper
// was first), a create that finds the route there (an earlier attempt of
// this host, or a concurrent writer: the next resync checks it).
func (p *Provider) apply(ctx context.Context, v *view, pl plan) (map[tableKey]cloud.Fallback, map[string]bool, []cloud.Removed, error) {
	failed := map[tableKey]cloud.Fallback{}
	full := map[string]bool{}
	var removed []cloud.Removed
	var errs []error
	for _, a := range pl.deletes {
		_, err := p.ec2.DeleteRoute(ctx, &ec2.DeleteRouteInput{
			RouteTableId: sdk.String(a.table), DestinationCidrBlock: sdk.String(a.route.Dst.String()),
		})
		if err != nil && errorCode(err) != "InvalidRoute.NotFound" {
			errs = append(errs, apiError(err, "delete route %s from %s", a.route.Dst, a.table))
			continue
		}
		v.setRoute(a.table, a.route.Dst, nil)
		if err == nil {
			removed = append(removed, cloud.Removed{Table: a.table, Dst: a.route.Dst, Target: cmp.Or(a.route.Instance, a.route.ENI), Why: a.why})
			p.log.Debug("route deleted", "table", a.table, "prefix", a.route.Dst, "target", cmp.Or(a.route.Instance, a.route.ENI), "why", a.why)
		}
	}
	for _, a := range pl.puts {
		err := p.put(ctx, a)
		key := tableKey{a.table, a.route.Dst}
		switch code := errorCode(err); {
		case err == nil:
			v.setRoute(a.table, a.route.Dst, &route{dst: a.route.Dst, instance: v.self.ID, eni: v.self.ENI, counted: true})
			p.log.Debug("route written", "op", a.op, "table", a.table, "prefix", a.route.Dst)
		case code == "RouteLimitExceeded":
			full[a.table] = true
		case code == "RouteAlreadyExists" || code == "InvalidRoute.NotFound":
			failed[key] = cloud.Fallback{Route: a.route, Table: a.table, Reason: cloud.ReasonMissing,
				Detail: fmt.Sprintf("%s changed while writing (%s); the next resync checks it", a.table, code)}
		default:
			err = apiError(err, "%s route %s -> %s in %s", a.op, a.route.Dst, cmp.Or(a.route.ENI, a.route.Instance), a.table)
			failed[key] = cloud.Fallback{Route: a.route, Table: a.table, Reason: cloud.ReasonError, Detail: err.Error()}
			errs = append(errs, err)
		}
	}
	return failed, full, removed, errors.Join(errs...)
}

// put creates or replaces one of this host's routes, to its ENI when the
// wanted route names one, else to its instance.
func (p *Provider) put(ctx context.Context, a action) error {
	var inst, eni *string
	if a.route.ENI != "" {
		eni = sdk.String(a.route.ENI)
	} else {
		inst = sdk.String(a.route.Instance)
	}
	if a.op == opCreate {
		_, err := p.ec2.CreateRoute(ctx, &ec2.CreateRouteInput{
			RouteTableId: sdk.String(a.table), DestinationCidrBlock: sdk.String(a.route.Dst.String()),
			InstanceId: inst, NetworkInterfaceId: eni,
		})
		return err
	}
	_, err := p.ec2.ReplaceRoute(ctx, &ec2.ReplaceRouteInput{
		RouteTableId: sdk.String(a.table), DestinationCidrBlock: sdk.String(a.route.Dst.String()),
		InstanceId: inst, NetworkInterfaceId: eni,
	})
	return err
}

// setRoute makes table id hold r at dst (nil: no route at dst).
func (v *view) setRoute(id string, dst netip.Prefix, r *route) {
	i := slices.IndexFunc(v.tables, func(t table) bool { return t.id == id })
	if i < 0 {
		return
	}
	t := &v.tables[i]
	t.routes = slices.DeleteFunc(t.routes, func(x route) bool { return x.dst == dst })
	if r != nil {
		t.routes = append(t.routes, *r)
	}
}

// logChangesLocked logs what changed since the last reconcile: one Info
// summary when anything did, each route's change at Debug, and at Warn each
// route that newly fell back for a reason an operator may have to act on (a
// full table, a foreign route, an unmanaged table, a stopped target). A
// failed reconcile is logged at Error, once, here.
func (p *Provider) logChangesLocked(rep cloud.Report, err error) {
	if err != nil {
		p.log.Error("reconcile cloud routes", "err", err, "fellBack", len(rep.FellBack))
	}
	now := make(map[netip.Prefix]string, len(rep.Programmed)+len(rep.FellBack))
	changed := len(rep.Removed)
	for _, r := range rep.Programmed {
		now[r.Dst] = ""
		if reason, seen := p.last[r.Dst]; !seen || reason != "" {
			changed++
			p.log.Debug("cloud route in place", "node", r.Node, "prefix", r.Dst)
		}
	}
	for _, f := range rep.FellBack {
		now[f.Dst] = string(f.Reason)
		if reason, seen := p.last[f.Dst]; seen && reason == string(f.Reason) {
			continue
		}
		changed++
		level := slog.LevelDebug
		switch f.Reason {
		case cloud.ReasonTableFull, cloud.ReasonConflict, cloud.ReasonNoTable, cloud.ReasonBlackhole:
			level = slog.LevelWarn
		}
		p.log.Log(context.Background(), level, "cloud route not in place", "node", f.Node, "prefix", f.Dst,
			"table", f.Table, "reason", f.Reason, "detail", f.Detail)
	}
	for _, r := range rep.Removed {
		p.log.Info("stale cloud route removed", "table", r.Table, "prefix", r.Dst, "target", r.Target, "why", r.Why)
	}
	if changed > 0 || len(now) != len(p.last) {
		p.log.Info("cloud routes reconciled", "programmed", len(rep.Programmed), "fellBack", len(rep.FellBack),
			"removed", len(rep.Removed), "calls", rep.Calls)
	}
	p.last = now
}
