package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/weft-net/weft/internal/policystore"
	"github.com/weft-net/weft/policy"
)

// fakeBackend answers Status and the policy routes; the rest is unused.
type fakeBackend struct {
	applied PolicyApplyRequest
}

var _ PolicyBackend = (*fakeBackend)(nil)

func (f *fakeBackend) Status() Status                         { return Status{Node: "n1"} }
func (f *fakeBackend) Peers() []Peer                          { return nil }
func (f *fakeBackend) Routes(context.Context) (Routes, error) { return Routes{}, nil }
func (f *fakeBackend) Cloud() Cloud                           { return Cloud{} }
func (f *fakeBackend) RotateKeys(context.Context) error       { return nil }
func (f *fakeBackend) Leave(context.Context) error            { return nil }

func (f *fakeBackend) PolicyList(context.Context) ([]PolicyEntry, error) {
	return []PolicyEntry{{Key: "Tier//t", Kind: "Tier", Name: "t", Object: []byte(`{"kind":"Tier"}`)}}, nil
}

func (f *fakeBackend) PolicyApply(_ context.Context, req PolicyApplyRequest) ([]PolicyResult, error) {
	f.applied = req
	if len(req.Objects) > 1 {
		return nil, fmt.Errorf("%w: two is too many", ErrInvalid)
	}
	return []PolicyResult{{Ref: "Tier/t", Result: ResultCreated}}, nil
}

func (f *fakeBackend) PolicyDelete(context.Context, PolicyDeleteRequest) ([]PolicyResult, error) {
	return nil, errors.New("disk on fire")
}

func (f *fakeBackend) PolicyStats(context.Context) (PolicyStats, error) {
	return PolicyStats{}, ErrPolicyOff
}

func (f *fakeBackend) PolicyTrace(_ context.Context, fl policy.Flow) (policy.Verdict, error) {
	return policy.Verdict{Verdict: policy.Allow, Flow: fl}, nil
}

func (f *fakeBackend) EndpointList(context.Context) ([]policystore.Endpoint, error) {
	return []policystore.Endpoint{{Name: "w1", Node: "n1"}}, nil
}

func (f *fakeBackend) EndpointPut(_ context.Context, e policystore.Endpoint) (PolicyResult, error) {
	return PolicyResult{Ref: "n1/" + e.Name, Result: ResultUpdated}, nil
}

func (f *fakeBackend) EndpointDelete(_ context.Context, name string) (PolicyResult, error) {
	return PolicyResult{}, fmt.Errorf("endpoint %q: %w", name, ErrNotFound)
}

// The policy routes carry requests and answers, and map the backend's
// errors to statuses whose text reaches the client.
func TestPolicyRoutes(t *testing.T) {
	dir := t.TempDir()
	fb := &fakeBackend{}
	srv, err := Listen(dir, fb, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	defer srv.Close()
	c := NewClient(dir)
	ctx := context.Background()

	res, err := c.PolicyApply(ctx, PolicyApplyRequest{Objects: []PolicyObject{{File: "a.yaml", Document: 2, Object: []byte(`{"kind":"Tier"}`)}}})
	if err != nil || len(res) != 1 || res[0].Result != ResultCreated || fb.applied.Objects[0].File != "a.yaml" || fb.applied.Objects[0].Document != 2 {
		t.Errorf("apply: %+v %v (backend got %+v)", res, err, fb.applied)
	}
	_, err = c.PolicyApply(ctx, PolicyApplyRequest{Objects: make([]PolicyObject, 2)})
	if err == nil || !strings.Contains(err.Error(), "agent says: invalid: two is too many") {
		t.Errorf("refused apply: %v", err)
	}
	if _, err := c.PolicyDelete(ctx, PolicyDeleteRequest{Keys: []string{"x"}}); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("delete: %v", err)
	}
	if _, err := c.PolicyStats(ctx); err == nil || !strings.Contains(err.Error(), "policy is disabled") {
		t.Errorf("stats: %v", err)
	}
	if _, err := c.EndpointDelete(ctx, "w/9"); err == nil || !strings.Contains(err.Error(), `endpoint "w/9": not found`) {
		t.Errorf("endpoint delete: %v", err)
	}
	if r, err := c.EndpointPut(ctx, policystore.Endpoint{Name: "w2"}); err != nil || r.Ref != "n1/w2" {
		t.Errorf("endpoint put: %+v %v", r, err)
	}
	l, err := c.PolicyList(ctx)
	var obj bytes.Buffer
	if err != nil || len(l) != 1 || json.Compact(&obj, l[0].Object) != nil || obj.String() != `{"kind":"Tier"}` {
		t.Errorf("list: %+v %v", l, err)
	}
	if v, err := c.PolicyTrace(ctx, policy.Flow{Protocol: 6, DstPort: 80}); err != nil || !v.Allowed() || v.Flow.DstPort != 80 {
		t.Errorf("trace: %+v %v", v, err)
	}
}
