package agent

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/weft-net/weft/fabric"
	"github.com/weft-net/weft/gossip"
	"github.com/weft-net/weft/internal/api"
)

// backend answers the local API on the agent's state.
type backend Agent

var _ api.Backend = (*backend)(nil)

func (b *backend) agent() *Agent { return (*Agent)(b) }

// Status implements api.Backend.
func (b *backend) Status() api.Status {
	a := b.agent()
	members := a.ml.Members()
	s := api.Status{
		Node:        a.cfg.NodeName,
		Cluster:     a.cfg.ClusterName,
		Version:     a.version,
		StartedAt:   a.started,
		Encrypted:   a.key != nil,
		Gossip:      a.ml.LocalAddr(),
		Underlay:    a.underlay.Interface,
		Advertise:   a.advert,
		Location:    a.location,
		ClusterCIDR: a.pool.CIDR,
		Problems:    []string{},
	}
	for _, m := range members {
		switch m.State {
		case gossip.StateAlive:
			s.MembersAlive++
		case gossip.StateDead:
			s.MembersDead++
		}
	}
	a.mu.Lock()
	s.Subnet = a.claim.Subnet
	s.SubnetState = a.subState
	keys := make([]string, 0, len(a.problems))
	for k := range a.problems {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s.Problems = append(s.Problems, fmt.Sprintf("%s: %s", k, a.problems[k]))
	}
	a.mu.Unlock()
	if a.dp != nil {
		wg := a.dp.WireGuard()
		s.WireGuard = "off"
		if wg.Mode != "" {
			s.WireGuard = fmt.Sprintf("%s, port %d, public key %s", wg.Mode, a.cfg.WireGuard.Port, base64.StdEncoding.EncodeToString(wg.PublicKey))
			if wg.Offload {
				s.WireGuard += ", TUN offloads on"
			}
		}
		s.IPIP = a.dp.IPIPMode()
		st := a.dp.Status()
		s.DataPlane = fmt.Sprintf("%d passes", st.Passes)
		if !st.LastPass.IsZero() {
			s.DataPlane += ", last " + st.LastPass.Format(time.RFC3339) + " (" + st.Reason + ")"
		}
		if st.LastError != "" {
			s.Problems = append(s.Problems, "dataplane: "+st.LastError)
		}
	} else {
		s.DataPlane = "off"
	}
	a.policyStatus(&s)
	s.SelfTests = a.selfTests()
	s.Problems = append(s.Problems, a.healthProblems()...)
	if s.MembersDead > 0 {
		s.Problems = append(s.Problems, fmt.Sprintf("members: %d dead", s.MembersDead))
	}
	s.Health = "ok"
	if len(s.Problems) > 0 {
		s.Health = "degraded"
	}
	return s
}

// Peers implements api.Backend: every member, itself included, with the
// reason its subnet claim is not honoured where it is not.
func (b *backend) Peers() []api.Peer {
	a := b.agent()
	members := a.ml.Members()
	var claims []fabric.Claim
	for _, m := range members {
		if len(m.Record.Subnets) > 0 {
			claims = append(claims, fabric.Claim{Node: m.Name, Subnet: m.Record.Subnets[0], ClaimedAt: m.Record.ClaimedAt, Static: m.Record.Static})
		}
	}
	owners, _ := fabric.Owners(a.pool, claims)
	paths := map[string]string{}
	if a.dp != nil {
		if plan, ok := a.dp.Plan(); ok {
			for _, pp := range plan.Peers {
				paths[pp.Name] = string(pp.Path)
			}
		}
	}
	snap := a.healthSnapshot()
	out := make([]api.Peer, 0, len(members))
	for _, m := range members {
		p := api.Peer{
			Name:     m.Name,
			Local:    m.Local,
			Underlay: slices.Clone(m.Record.Underlay),
			Public:   m.Record.Public,
			Location: m.Record.Location,
			State:    m.State,
			Since:    m.Since,
			Path:     paths[m.Name],
		}
		if len(m.Record.Subnets) > 0 {
			p.Subnet = m.Record.Subnets[0]
			switch w, ok := owners[p.Subnet]; {
			case !ok:
				p.Conflict = fmt.Sprintf("subnet %s is outside the cluster pool %s", p.Subnet, a.pool.CIDR)
			case w.Node != m.Name:
				p.Conflict = fmt.Sprintf("subnet %s belongs to %s (claimed earlier); %s must move", p.Subnet, w.Node, m.Name)
			}
		}
		a.peerHealth(&p, snap)
		out = append(out, p)
	}
	return out
}

// Routes implements api.Backend: the plan per peer, checked against the kernel.
func (b *backend) Routes(ctx context.Context) (api.Routes, error) {
	a := b.agent()
	var out api.Routes
	if a.dp == nil {
		return out, errors.New("this agent runs without a data plane")
	}
	st := a.dp.Status()
	out.LastPass, out.LastError, out.Passes = st.LastPass, st.LastError, st.Passes
	plan, ok := a.dp.Plan()
	if !ok {
		return out, nil
	}
	chk, err := a.dp.Check(ctx, plan)
	if err != nil {
		return out, fmt.Errorf("check data plane: %w", err)
	}
	out.Routes = []api.Route{}
	for _, pp := range plan.Peers {
		mis := chk.Peers[pp.Name]
		out.Routes = append(out.Routes, api.Route{
			Peer: pp.Name, Path: string(pp.Path), Reason: pp.Reason, Subnets: pp.Subnets,
			Dev: pp.Dev, Via: pp.Via, Remote: pp.Remote, MTU: pp.MTU,
			InKernel: len(mis) == 0, Mismatch: mis,
		})
	}
	out.Extra = chk.Extra
	return out, nil
}

// Cloud implements api.Backend.
func (b *backend) Cloud() api.Cloud { return b.agent().cloudStatus() }

// RotateKeys implements api.Backend: it hands the request to the agent's loop.
func (b *backend) RotateKeys(ctx context.Context) error {
	return b.agent().ask(ctx, b.agent().rotate)
}

// Leave implements api.Backend: it hands the request to the agent's loop and
// waits for the outcome.
func (b *backend) Leave(ctx context.Context) error {
	return b.agent().ask(ctx, b.agent().leave)
}

// ask sends a request to the agent's loop on ch and waits for its outcome.
func (a *Agent) ask(ctx context.Context, ch chan chan error) error {
	reply := make(chan error, 1)
	select {
	case ch <- reply:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
