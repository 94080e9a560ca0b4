package policystore

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/weft-net/weft/policy"
)

// Entry is a live store entry as Build reads it.
type Entry struct {
	Key   string
	Value []byte
}

// Built is the policy Set resolved from the store's entries, with what it
// was made of and what had to be left out.
type Built struct {
	// Set holds every policy object and endpoint that decoded and resolved.
	Set *policy.Set
	// Policies are the decoded policy objects in the Set, by key.
	Policies map[string]policy.Object
	// Endpoints are the decoded endpoints in the Set, in key order.
	Endpoints []Endpoint
	// Problems says, for each entry left out, why (sorted).
	Problems []string
}

// maxResolveRounds bounds how often Build drops objects that the Set
// refuses and tries again.
const maxResolveRounds = 8

// Build decodes the policy and endpoint entries and resolves them into one
// policy Set. It never fails as a whole: an entry that does not decode is
// left out, and so is an object the Set refuses (a policy in a tier that
// no longer exists, a second object of one name); Problems says which and
// why. Build is pure; the slices are only read.
func Build(policies, endpoints []Entry) Built {
	return new(Cache).Build(policies, endpoints)
}

// Cache remembers decoded entries between Builds, so that a Build after
// one change decodes one entry, not the whole store (decoding is most of
// the cost of a Build: see BenchmarkPolicySync in internal/agent). The
// zero Cache is ready; its methods are safe for concurrent use.
type Cache struct {
	mu        sync.Mutex
	policies  map[string]cachedPolicy
	endpoints map[string]cachedEndpoint
}

type cachedPolicy struct {
	value []byte
	obj   policy.Object
	err   error
}

type cachedEndpoint struct {
	value []byte
	ep    Endpoint
	err   error
}

// Build is the package's Build, decoding only the entries whose value
// differs from the one decoded last time under the same key. Entries no
// longer given are forgotten. Decoded objects are shared between the
// Sets of successive Builds, which only read them.
func (c *Cache) Build(policies, endpoints []Entry) Built {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := Built{Policies: map[string]policy.Object{}}
	var objs []policy.Object
	pols := make(map[string]cachedPolicy, len(policies))
	for _, e := range policies {
		cp, ok := c.policies[e.Key]
		if !ok || !bytes.Equal(cp.value, e.Value) {
			cp.obj, cp.err = DecodePolicy(e.Key, e.Value)
			cp.value = e.Value
		}
		pols[e.Key] = cp
		if cp.err != nil {
			b.Problems = append(b.Problems, fmt.Sprintf("policy %s: %v", e.Key, oneLine(cp.err)))
			continue
		}
		objs = append(objs, cp.obj)
		b.Policies[e.Key] = cp.obj
	}
	eps := make(map[string]cachedEndpoint, len(endpoints))
	for _, e := range endpoints {
		ce, ok := c.endpoints[e.Key]
		if !ok || !bytes.Equal(ce.value, e.Value) {
			ce.ep, ce.err = DecodeEndpoint(e.Key, e.Value)
			ce.value = e.Value
		}
		eps[e.Key] = ce
		if ce.err != nil {
			b.Problems = append(b.Problems, oneLine(ce.err))
			continue
		}
		b.Endpoints = append(b.Endpoints, ce.ep)
		objs = append(objs, ce.ep.Object())
	}
	c.policies, c.endpoints = pols, eps
	slices.SortFunc(b.Endpoints, func(x, y Endpoint) int { return strings.Compare(x.Key(), y.Key()) })
	for round := 0; ; round++ {
		set, err := policy.NewSet(objs)
		if err == nil {
			b.Set = set
			break
		}
		bad := map[string]bool{}
		for _, fe := range fieldErrors(err) {
			bad[fe.Origin.File] = true
			b.Problems = append(b.Problems, oneLine(fe))
		}
		if len(bad) == 0 || round == maxResolveRounds {
			// Nothing to blame: keep the endpoints alone, which always
			// resolve (their names are unique by key).
			b.Problems = append(b.Problems, fmt.Sprintf("policy set: %v; enforcing without any policy", oneLine(err)))
			objs = slices.DeleteFunc(objs, func(o policy.Object) bool { return o.Resource.Type().Kind != policy.KindWorkloadEndpoint })
			clear(b.Policies)
			set, err := policy.NewSet(objs)
			if err != nil {
				set, _ = policy.NewSet(nil)
				b.Endpoints = nil
			}
			b.Set = set
			break
		}
		objs = slices.DeleteFunc(objs, func(o policy.Object) bool { return bad[o.Origin.File] })
		for k, o := range b.Policies {
			if bad[o.Origin.File] {
				delete(b.Policies, k)
			}
		}
		b.Endpoints = slices.DeleteFunc(b.Endpoints, func(e Endpoint) bool { return bad["store "+e.Key()] })
	}
	slices.Sort(b.Problems)
	b.Problems = slices.Compact(b.Problems)
	return b
}

// fieldErrors returns the *policy.FieldErrors in err, which may be joined.
func fieldErrors(err error) []*policy.FieldError {
	var out []*policy.FieldError
	var walk func(error)
	walk = func(err error) {
		var fe *policy.FieldError
		if errors.As(err, &fe) && fe == err {
			out = append(out, fe)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		if errors.As(err, &fe) {
			out = append(out, fe)
		}
	}
	walk(err)
	return out
}

// oneLine joins the lines of a (joined) error with "; ".
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
