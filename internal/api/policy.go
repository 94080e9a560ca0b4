package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/weft-net/weft/internal/policystore"
	"github.com/weft-net/weft/policy"
)

// Errors a PolicyBackend wraps so that the API answers with the right
// status: ErrInvalid (400) for a request that would break the policy set
// or names something invalid, ErrNotFound (404), ErrPolicyOff (409) when
// the agent runs without policy.
var (
	ErrInvalid   = errors.New("invalid")
	ErrNotFound  = errors.New("not found")
	ErrPolicyOff = errors.New("policy is disabled on this agent (policy.enabled: false)")
)

// PolicyBackend answers the policy and endpoint part of the API. Its
// methods are called concurrently; those that write validate everything
// first and change nothing on error.
type PolicyBackend interface {
	// PolicyList returns the policy entries of the store, sorted by key.
	PolicyList(ctx context.Context) ([]PolicyEntry, error)
	// PolicyApply validates the objects together with the store's and, if
	// the whole resulting set is valid, writes those that differ.
	PolicyApply(ctx context.Context, req PolicyApplyRequest) ([]PolicyResult, error)
	// PolicyDelete validates the set without the given keys and, if it is
	// valid, deletes them; a key not in the store is reported as such.
	PolicyDelete(ctx context.Context, req PolicyDeleteRequest) ([]PolicyResult, error)
	// PolicyStats reads the per-rule counters of this host's ruleset.
	PolicyStats(ctx context.Context) (PolicyStats, error)
	// PolicyTrace evaluates a flow against the live policy set.
	PolicyTrace(ctx context.Context, f policy.Flow) (policy.Verdict, error)
	// EndpointList returns every host's endpoints, sorted by node and name.
	EndpointList(ctx context.Context) ([]policystore.Endpoint, error)
	// EndpointPut registers (or updates) an endpoint of this host.
	EndpointPut(ctx context.Context, e policystore.Endpoint) (PolicyResult, error)
	// EndpointDelete removes an endpoint of this host.
	EndpointDelete(ctx context.Context, name string) (PolicyResult, error)
}

// PolicyStatus is the policy engine's state in GET /v1/status.
type PolicyStatus struct {
	// Enabled is policy.enabled; the rest is empty when it is false.
	Enabled bool `json:"enabled"`
	// Revision is the store revision the applied ruleset was built from.
	Revision uint64 `json:"revision"`
	// Version names the applied ruleset (a hash of its text).
	Version   string    `json:"version,omitempty"`
	AppliedAt time.Time `json:"appliedAt,omitzero"`
	// Syncs counts builds of the ruleset (changes and resyncs).
	Syncs int `json:"syncs"`
	// Policies and Endpoints count the store's objects in force;
	// LocalEndpoints those of this host.
	Policies       int `json:"policies"`
	Endpoints      int `json:"endpoints"`
	LocalEndpoints int `json:"localEndpoints"`
	// Chains and Sets count the nftables ruleset.
	Chains    int    `json:"chains"`
	Sets      int    `json:"sets"`
	LastError string `json:"lastError,omitempty"`
	// Problems lists store entries left out and why.
	Problems []string `json:"problems,omitempty"`
}

// PolicyEntry is one policy entry of the store, as GET /v1/policy lists it.
type PolicyEntry struct {
	Key       string `json:"key"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Version is the entry's store version (a hybrid logical clock).
	Version string `json:"version,omitempty"`
	// WrittenBy is the node that wrote the entry, WrittenAt when (by its clock).
	WrittenBy string    `json:"writtenBy,omitempty"`
	WrittenAt time.Time `json:"writtenAt,omitzero"`
	// Object is the resource as JSON.
	Object json.RawMessage `json:"object"`
	// Problem says why the agent does not enforce the entry, if it does not.
	Problem string `json:"problem,omitempty"`
}

// PolicyObject is one resource to apply, with where the client read it
// (so that the agent's errors name the file and document).
type PolicyObject struct {
	File     string          `json:"file"`
	Document int             `json:"document"`
	Item     int             `json:"item"`
	Object   json.RawMessage `json:"object"`
}

// PolicyApplyRequest is the body of POST /v1/policy/apply.
type PolicyApplyRequest struct {
	Objects []PolicyObject `json:"objects"`
}

// PolicyDeleteRequest is the body of POST /v1/policy/delete: store keys
// ("<Kind>/<namespace>/<name>").
type PolicyDeleteRequest struct {
	Keys []string `json:"keys"`
}

// Results of a write.
const (
	ResultCreated   = "created"
	ResultUpdated   = "updated"
	ResultUnchanged = "unchanged"
	ResultDeleted   = "deleted"
	ResultNotFound  = "not found"
)

// PolicyResult says what a write did to one object.
type PolicyResult struct {
	// Ref is the object as `weft policy get` names it, e.g.
	// "NetworkPolicy/prod/web", or the endpoint's "<node>/<name>".
	Ref    string `json:"ref"`
	Result string `json:"result"`
}

// PolicyStats is the answer of GET /v1/policy/stats.
type PolicyStats struct {
	Node string `json:"node"`
	// Version is the ruleset the counters belong to.
	Version string      `json:"version,omitempty"`
	Rules   []RuleStats `json:"rules"`
}

// RuleStats are the packet and byte counters of one policy rule on this host.
type RuleStats struct {
	Kind    string `json:"kind"`
	Policy  string `json:"policy"`
	Rule    string `json:"rule"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// registerPolicy adds the policy and endpoint routes to mux.
func registerPolicy(mux *http.ServeMux, b PolicyBackend) {
	mux.HandleFunc("GET /v1/policy", func(w http.ResponseWriter, r *http.Request) {
		v, err := b.PolicyList(r.Context())
		answer(w, v, err)
	})
	mux.HandleFunc("POST /v1/policy/apply", func(w http.ResponseWriter, r *http.Request) {
		var req PolicyApplyRequest
		if !readBody(w, r, &req) {
			return
		}
		v, err := b.PolicyApply(r.Context(), req)
		answer(w, v, err)
	})
	mux.HandleFunc("POST /v1/policy/delete", func(w http.ResponseWriter, r *http.Request) {
		var req PolicyDeleteRequest
		if !readBody(w, r, &req) {
			return
		}
		v, err := b.PolicyDelete(r.Context(), req)
		answer(w, v, err)
	})
	mux.HandleFunc("GET /v1/policy/stats", func(w http.ResponseWriter, r *http.Request) {
		v, err := b.PolicyStats(r.Context())
		answer(w, v, err)
	})
	mux.HandleFunc("POST /v1/policy/trace", func(w http.ResponseWriter, r *http.Request) {
		var f policy.Flow
		if !readBody(w, r, &f) {
			return
		}
		v, err := b.PolicyTrace(r.Context(), f)
		answer(w, v, err)
	})
	mux.HandleFunc("GET /v1/endpoints", func(w http.ResponseWriter, r *http.Request) {
		v, err := b.EndpointList(r.Context())
		answer(w, v, err)
	})
	mux.HandleFunc("PUT /v1/endpoints", func(w http.ResponseWriter, r *http.Request) {
		var e policystore.Endpoint
		if !readBody(w, r, &e) {
			return
		}
		v, err := b.EndpointPut(r.Context(), e)
		answer(w, v, err)
	})
	mux.HandleFunc("DELETE /v1/endpoints/{name}", func(w http.ResponseWriter, r *http.Request) {
		v, err := b.EndpointDelete(r.Context(), r.PathValue("name"))
		answer(w, v, err)
	})
}

// maxRequestBody bounds a request body (a directory of policies).
const maxRequestBody = 16 << 20

func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, Error{Error: fmt.Sprintf("decode request: %v", err)})
		return false
	}
	return true
}

// answer writes v, or err with the status its kind asks for.
func answer[T any](w http.ResponseWriter, v T, err error) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, v)
	case errors.Is(err, ErrInvalid):
		writeJSON(w, http.StatusBadRequest, Error{Error: err.Error()})
	case errors.Is(err, ErrNotFound):
		writeJSON(w, http.StatusNotFound, Error{Error: err.Error()})
	case errors.Is(err, ErrPolicyOff):
		writeJSON(w, http.StatusConflict, Error{Error: err.Error()})
	default:
		writeJSON(w, http.StatusInternalServerError, Error{Error: err.Error()})
	}
}

// PolicyList asks GET /v1/policy.
func (c *Client) PolicyList(ctx context.Context) ([]PolicyEntry, error) {
	var out []PolicyEntry
	err := c.send(ctx, http.MethodGet, "/v1/policy", nil, &out)
	return out, err
}

// PolicyApply asks POST /v1/policy/apply.
func (c *Client) PolicyApply(ctx context.Context, req PolicyApplyRequest) ([]PolicyResult, error) {
	var out []PolicyResult
	err := c.send(ctx, http.MethodPost, "/v1/policy/apply", req, &out)
	return out, err
}

// PolicyDelete asks POST /v1/policy/delete.
func (c *Client) PolicyDelete(ctx context.Context, req PolicyDeleteRequest) ([]PolicyResult, error) {
	var out []PolicyResult
	err := c.send(ctx, http.MethodPost, "/v1/policy/delete", req, &out)
	return out, err
}

// PolicyStats asks GET /v1/policy/stats.
func (c *Client) PolicyStats(ctx context.Context) (PolicyStats, error) {
	var out PolicyStats
	err := c.send(ctx, http.MethodGet, "/v1/policy/stats", nil, &out)
	return out, err
}

// PolicyTrace asks POST /v1/policy/trace.
func (c *Client) PolicyTrace(ctx context.Context, f policy.Flow) (policy.Verdict, error) {
	var out policy.Verdict
	err := c.send(ctx, http.MethodPost, "/v1/policy/trace", f, &out)
	return out, err
}

// EndpointList asks GET /v1/endpoints.
func (c *Client) EndpointList(ctx context.Context) ([]policystore.Endpoint, error) {
	var out []policystore.Endpoint
	err := c.send(ctx, http.MethodGet, "/v1/endpoints", nil, &out)
	return out, err
}

// EndpointPut asks PUT /v1/endpoints.
func (c *Client) EndpointPut(ctx context.Context, e policystore.Endpoint) (PolicyResult, error) {
	var out PolicyResult
	err := c.send(ctx, http.MethodPut, "/v1/endpoints", e, &out)
	return out, err
}

// EndpointDelete asks DELETE /v1/endpoints/NAME.
func (c *Client) EndpointDelete(ctx context.Context, name string) (PolicyResult, error) {
	var out PolicyResult
	err := c.send(ctx, http.MethodDelete, "/v1/endpoints/"+url.PathEscape(name), nil, &out)
	return out, err
}
