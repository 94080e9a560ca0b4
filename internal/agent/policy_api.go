package agent

import (
	"context"
	"log/slog"

	"github.com/weft-net/weft/internal/api"
	"github.com/weft-net/weft/internal/config"
	"github.com/weft-net/weft/internal/policystore"
	"github.com/weft-net/weft/policy"
	"github.com/weft-net/weft/policy/nft"
)

var _ api.PolicyBackend = (*backend)(nil)

// policy returns the agent's policy engine, or an error when it has none
// (the agent is still starting).
func (b *backend) policy() (*policyEngine, error) {
	if pe := b.agent().pe; pe != nil {
		return pe, nil
	}
	return nil, api.ErrPolicyOff
}

// PolicyList implements api.PolicyBackend.
func (b *backend) PolicyList(ctx context.Context) ([]api.PolicyEntry, error) {
	pe, err := b.policy()
	if err != nil {
		return nil, err
	}
	return pe.PolicyList(ctx)
}

// PolicyApply implements api.PolicyBackend.
func (b *backend) PolicyApply(ctx context.Context, req api.PolicyApplyRequest) ([]api.PolicyResult, error) {
	pe, err := b.policy()
	if err != nil {
		return nil, err
	}
	return pe.PolicyApply(ctx, req)
}

// PolicyDelete implements api.PolicyBackend.
func (b *backend) PolicyDelete(ctx context.Context, req api.PolicyDeleteRequest) ([]api.PolicyResult, error) {
	pe, err := b.policy()
	if err != nil {
		return nil, err
	}
	return pe.PolicyDelete(ctx, req)
}

// PolicyStats implements api.PolicyBackend.
func (b *backend) PolicyStats(ctx context.Context) (api.PolicyStats, error) {
	pe, err := b.policy()
	if err != nil {
		return api.PolicyStats{}, err
	}
	return pe.PolicyStats(ctx)
}

// PolicyTrace implements api.PolicyBackend.
func (b *backend) PolicyTrace(ctx context.Context, f policy.Flow) (policy.Verdict, error) {
	pe, err := b.policy()
	if err != nil {
		return policy.Verdict{}, err
	}
	return pe.PolicyTrace(ctx, f)
}

// EndpointList implements api.PolicyBackend.
func (b *backend) EndpointList(ctx context.Context) ([]policystore.Endpoint, error) {
	pe, err := b.policy()
	if err != nil {
		return nil, err
	}
	return pe.EndpointList(ctx)
}

// EndpointPut implements api.PolicyBackend.
func (b *backend) EndpointPut(ctx context.Context, e policystore.Endpoint) (api.PolicyResult, error) {
	pe, err := b.policy()
	if err != nil {
		return api.PolicyResult{}, err
	}
	return pe.EndpointPut(ctx, e)
}

// EndpointDelete implements api.PolicyBackend.
func (b *backend) EndpointDelete(ctx context.Context, name string) (api.PolicyResult, error) {
	pe, err := b.policy()
	if err != nil {
		return api.PolicyResult{}, err
	}
	return pe.EndpointDelete(ctx, name)
}

// policyStatus adds the policy engine's state and problems to s.
func (a *Agent) policyStatus(s *api.Status) {
	if a.pe == nil {
		return
	}
	ps := a.pe.Status()
	s.Policy = &ps
	if ps.LastError != "" {
		s.Problems = append(s.Problems, "policy: "+ps.LastError)
	}
	for _, p := range ps.Problems {
		s.Problems = append(s.Problems, "policy: "+p)
	}
}

// NewKernelPolicy returns the applier of this host's policy ruleset: one
// long-lived nftables connection (one netlink socket, no `nft` process) in
// the agent's network namespace. With policy.enabled false it removes
// table inet weft, if an earlier run left one, and returns nil.
func NewKernelPolicy(cfg config.Config, log *slog.Logger) (PolicyApplier, error) {
	conn, err := nft.Connect(-1)
	if err != nil {
		return nil, err
	}
	a := nft.New(nft.Config{Conn: conn, Logger: log})
	if !cfg.Policy.Enabled {
		defer conn.CloseLasting()
		if err := a.Remove(context.Background()); err != nil {
			return nil, err
		}
		return nil, nil
	}
	return a, nil
}

// removePolicyTable deletes table inet weft (for `weft cleanup`).
func removePolicyTable(ctx context.Context, log *slog.Logger) error {
	conn, err := nft.Connect(-1)
	if err != nil {
		return err
	}
	defer conn.CloseLasting()
	return nft.New(nft.Config{Conn: conn, Logger: log}).Remove(ctx)
}
