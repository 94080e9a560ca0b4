package policystore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/weft-net/weft/policy"
)

// Kinds are the kinds a policy entry may hold, in the order `weft policy
// get` lists them. A WorkloadEndpoint is not one: workloads are endpoint
// entries, written by their own host (`weft endpoint add`).
var Kinds = []string{
	policy.KindTier,
	policy.KindGlobalNetworkPolicy,
	policy.KindNetworkPolicy,
	policy.KindGlobalNetworkSet,
	policy.KindNetworkSet,
	policy.KindHostEndpoint,
	policy.KindNamespace,
	policy.KindServiceAccount,
}

// aliases are the short names ParseRef accepts, lower case.
var aliases = map[string]string{
	"gnp": policy.KindGlobalNetworkPolicy, "np": policy.KindNetworkPolicy, "netpol": policy.KindNetworkPolicy,
	"gns": policy.KindGlobalNetworkSet, "netset": policy.KindNetworkSet, "hep": policy.KindHostEndpoint,
	"sa": policy.KindServiceAccount,
}

// Namespaced reports whether objects of kind live in a namespace.
func Namespaced(kind string) bool {
	switch kind {
	case policy.KindNetworkPolicy, policy.KindNetworkSet, policy.KindServiceAccount:
		return true
	}
	return false
}

// Ref names one policy object, or (with Name empty) all objects of a kind.
type Ref struct {
	Kind      string
	Namespace string // "" for cluster-wide kinds
	Name      string
}

// Key returns the store key of the object r names: "<Kind>/<namespace>/<name>".
func (r Ref) Key() string { return r.Kind + "/" + r.Namespace + "/" + r.Name }

// String returns r as ParseRef reads it: "Kind/name" or "Kind/namespace/name".
func (r Ref) String() string {
	switch {
	case r.Name == "":
		return r.Kind
	case r.Namespace == "":
		return r.Kind + "/" + r.Name
	}
	return r.Kind + "/" + r.Namespace + "/" + r.Name
}

// RefOf returns the reference of a decoded resource.
func RefOf(res policy.Resource) Ref {
	md := res.Meta()
	return Ref{Kind: res.Type().Kind, Namespace: md.Namespace, Name: md.Name}
}

// Key returns the store key of a decoded resource.
func Key(res policy.Resource) string { return RefOf(res).Key() }

// ParseRef reads "KIND", "KIND/NAME" or "KIND/NAMESPACE/NAME" as `weft
// policy get|delete` take them. KIND is one of Kinds in any case, or an
// alias (gnp, np, netpol, gns, netset, hep, sa); a namespaced kind without
// a namespace is in "default"; a cluster-wide kind takes none. With
// allowKind false, a bare KIND is an error.
func ParseRef(s string, allowKind bool) (Ref, error) {
	parts := strings.Split(s, "/")
	kind, ok := canonicalKind(parts[0])
	if !ok {
		return Ref{}, fmt.Errorf("%q: unknown kind %q: want one of %s", s, parts[0], strings.Join(Kinds, ", "))
	}
	r := Ref{Kind: kind}
	switch len(parts) {
	case 1:
		if !allowKind {
			return Ref{}, fmt.Errorf("%q: want KIND/NAME or KIND/NAMESPACE/NAME", s)
		}
		return r, nil
	case 2:
		r.Name = parts[1]
		if Namespaced(kind) {
			r.Namespace = "default"
		}
	case 3:
		if !Namespaced(kind) {
			return Ref{}, fmt.Errorf("%q: %s is cluster-wide: want %s/NAME", s, kind, kind)
		}
		r.Namespace, r.Name = parts[1], parts[2]
		if r.Namespace == "" {
			return Ref{}, fmt.Errorf("%q: empty namespace", s)
		}
	default:
		return Ref{}, fmt.Errorf("%q: want KIND/NAME or KIND/NAMESPACE/NAME", s)
	}
	if r.Name == "" {
		return Ref{}, fmt.Errorf("%q: empty name", s)
	}
	if len(r.Name) > 253 || len(r.Namespace) > 63 || strings.ContainsAny(s, " \t\n\r\x00") {
		return Ref{}, fmt.Errorf("%q: not a valid name", s)
	}
	return r, nil
}

func canonicalKind(s string) (string, bool) {
	l := strings.ToLower(s)
	for _, k := range Kinds {
		if strings.ToLower(k) == l {
			return k, true
		}
	}
	k, ok := aliases[l]
	return k, ok
}

// Encode returns the store key and JSON value of a decoded (and so
// validated) resource. It refuses kinds that a policy entry may not hold.
// Equal resources encode to equal bytes.
func Encode(res policy.Resource) (key string, value []byte, err error) {
	if err := checkKind(res); err != nil {
		return "", nil, err
	}
	value, err = json.Marshal(res)
	if err != nil {
		return "", nil, fmt.Errorf("encode %s: %w", RefOf(res), err)
	}
	if value, err = dropEmptyStrings(value); err != nil {
		return "", nil, fmt.Errorf("encode %s: %w", RefOf(res), err)
	}
	return Key(res), value, nil
}

// dropEmptyStrings removes the fields whose value is "" from a JSON
// document. An absent selector marshals as "" (it is a struct, which
// omitempty does not drop); the decoder reads "" as absent, so dropping
// it changes nothing but what `weft policy get -o yaml` shows. Every
// other string field of the resources is omitempty already.
func dropEmptyStrings(doc []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	var walk func(any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, e := range t {
				if s, ok := e.(string); ok && s == "" {
					delete(t, k)
					continue
				}
				walk(e)
			}
		case []any:
			for _, e := range t {
				walk(e)
			}
		}
	}
	walk(v)
	return json.Marshal(v)
}

func checkKind(res policy.Resource) error {
	kind := res.Type().Kind
	if kind == policy.KindWorkloadEndpoint {
		return fmt.Errorf("%s: a workload endpoint is registered by the host that runs it: use `weft endpoint add` there", RefOf(res))
	}
	for _, k := range Kinds {
		if k == kind {
			return nil
		}
	}
	return fmt.Errorf("%s: kind %q cannot be stored as policy", RefOf(res), kind)
}

// DecodePolicy decodes the value of the policy entry at key: one resource
// of one of Kinds whose key is key. Errors name the key; the object's
// Origin is the file "store <key>".
func DecodePolicy(key string, value []byte) (policy.Object, error) {
	objs, err := policy.Decode("store "+key, value)
	if err != nil {
		return policy.Object{}, err
	}
	if len(objs) != 1 {
		return policy.Object{}, fmt.Errorf("store %s: holds %d objects, want 1", key, len(objs))
	}
	o := objs[0]
	if err := checkKind(o.Resource); err != nil {
		return policy.Object{}, fmt.Errorf("store %s: %w", key, err)
	}
	if k := Key(o.Resource); k != key {
		return policy.Object{}, fmt.Errorf("store %s: holds %s, whose key is %s", key, RefOf(o.Resource), k)
	}
	return o, nil
}

// ErrNotJSON is wrapped by DecodePolicy's caller checks when a value is
// not a JSON object (the store holds JSON only).
var ErrNotJSON = errors.New("value is not a JSON object")

// CheckJSON reports ErrNotJSON unless value is one JSON object.
func CheckJSON(value []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(value, &m); err != nil || m == nil {
		return ErrNotJSON
	}
	return nil
}

// ParseKey reads a store key "<Kind>/<namespace>/<name>" (exactly as Key
// writes it: the kind as in Kinds, the namespace empty for cluster-wide
// kinds and set for namespaced ones).
func ParseKey(key string) (Ref, error) {
	parts := strings.SplitN(key, "/", 3)
	if len(parts) != 3 {
		return Ref{}, fmt.Errorf("%q: want KIND/NAMESPACE/NAME", key)
	}
	r := Ref{Kind: parts[0], Namespace: parts[1], Name: parts[2]}
	if !slices.Contains(Kinds, r.Kind) {
		return Ref{}, fmt.Errorf("%q: unknown kind %q", key, r.Kind)
	}
	if Namespaced(r.Kind) != (r.Namespace != "") {
		return Ref{}, fmt.Errorf("%q: %s takes %s namespace", key, r.Kind, map[bool]string{true: "a", false: "no"}[Namespaced(r.Kind)])
	}
	if r.Name == "" || strings.Contains(r.Name, "/") {
		return Ref{}, fmt.Errorf("%q: want a name without '/'", key)
	}
	return r, nil
}
