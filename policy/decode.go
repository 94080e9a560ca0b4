package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// Object is one decoded resource and where it came from.
type Object struct {
	Origin   Origin
	Resource Resource
}

// Origin is where an object was read: a file, the document in it, and the
// item when the document is a List.
type Origin struct {
	File string
	// Document counts the file's non-empty YAML documents from 1.
	Document int
	// Item is the index in the List's items, or -1.
	Item int
}

// String returns "file: document N".
func (o Origin) String() string {
	return o.File + ": document " + strconv.Itoa(o.Document)
}

// FieldError is a problem with one object in a resource file: a field that is
// unknown, of the wrong type, or holds a bad value, or a reference that does
// not resolve.
type FieldError struct {
	Origin Origin
	// Kind and Name identify the object ("" when the document has none).
	Kind, Name string
	// Path is the field, e.g. "spec.ingress[0].destination.ports[1]"; "" for
	// the document as a whole.
	Path string
	// Value is the offending value as JSON ("" when there is none).
	Value string
	// Err says what is wrong.
	Err error
}

// Error returns e.g. `policies.yaml: document 3 (GlobalNetworkPolicy
// default-deny): spec.ingress[0].destination.ports[1]: "http-": invalid port name`.
func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.Origin.String())
	if e.Kind != "" || e.Name != "" {
		b.WriteString(" (")
		b.WriteString(strings.TrimSpace(e.Kind + " " + e.Name))
		b.WriteString(")")
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	if e.Value != "" {
		b.WriteString(e.Value)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the underlying problem.
func (e *FieldError) Unwrap() error { return e.Err }

// Decode reads the YAML (or JSON) documents in data, naming them after file in
// errors. Every document must be a resource kind weft reads, or a List of
// them; empty documents are skipped. Decoding is strict: an unknown field, a
// wrong type or a bad value is a *FieldError, and Decode returns all of them
// joined (in document order; within a document, by field name) and no
// objects. Namespaced objects without a namespace are put in "default", and
// an empty list decodes as an absent one. Decode is deterministic and safe
// for concurrent use.
func Decode(file string, data []byte) ([]Object, error) {
	var objs []Object
	var errs []error
	n := 0
	for _, doc := range splitDocuments(data) {
		raw, err := yamlTree(doc)
		if err != nil {
			n++
			errs = append(errs, &FieldError{Origin: Origin{File: file, Document: n, Item: -1}, Err: err})
			continue
		}
		if raw == nil {
			continue
		}
		n++
		o, derrs := decodeDocument(Origin{File: file, Document: n, Item: -1}, raw)
		objs = append(objs, o...)
		errs = append(errs, derrs...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return objs, nil
}

// splitDocuments cuts a YAML stream at its "---" and "..." marker lines.
func splitDocuments(data []byte) [][]byte {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var docs [][]byte
	var cur []byte
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i+1], data[i+1:]
		} else {
			data = nil
		}
		t := bytes.TrimRight(line, " \t\r\n")
		switch {
		case bytes.Equal(t, []byte("---")), bytes.Equal(t, []byte("...")):
			docs = append(docs, cur)
			cur = nil
		case bytes.HasPrefix(line, []byte("--- ")), bytes.HasPrefix(line, []byte("---\t")):
			// "--- {inline: document}": the rest of the line starts the next one.
			docs = append(docs, cur)
			cur = append([]byte(nil), line[4:]...)
		default:
			cur = append(cur, line...)
		}
	}
	return append(docs, cur)
}

// yamlTree parses one document into the generic JSON tree (nil when empty).
func yamlTree(doc []byte) (raw any, err error) {
	defer func() {
		// The YAML library panics on some malformed input; a bad file is
		// an error, not a crash.
		if r := recover(); r != nil {
			raw, err = nil, fmt.Errorf("yaml: %v", r)
		}
	}()
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, err
	}
	d := json.NewDecoder(bytes.NewReader(j))
	d.UseNumber()
	if err := d.Decode(&raw); err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	return raw, nil
}

// newResource returns an empty resource for an apiVersion and kind, or nil.
func newResource(apiVersion, kind string) Resource {
	switch apiVersion + " " + kind {
	case APIVersionCalico + " " + KindGlobalNetworkPolicy:
		return &GlobalNetworkPolicy{}
	case APIVersionCalico + " " + KindNetworkPolicy:
		return &NetworkPolicy{}
	case APIVersionCalico + " " + KindTier:
		return &Tier{}
	case APIVersionCalico + " " + KindGlobalNetworkSet:
		return &GlobalNetworkSet{}
	case APIVersionCalico + " " + KindNetworkSet:
		return &NetworkSet{}
	case APIVersionCalico + " " + KindWorkloadEndpoint:
		return &WorkloadEndpoint{}
	case APIVersionCalico + " " + KindHostEndpoint:
		return &HostEndpoint{}
	case APIVersionNetworking + " " + KindNetworkPolicy:
		return &KubernetesNetworkPolicy{}
	case APIVersionCore + " " + KindNamespace:
		return &Namespace{}
	case APIVersionCore + " " + KindServiceAccount:
		return &ServiceAccount{}
	}
	return nil
}

// decodeDocument decodes one document: a resource or a List of them.
func decodeDocument(o Origin, raw any) ([]Object, []error) {
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, []error{&FieldError{Origin: o, Value: quoteRaw(raw), Err: wrongType("object", raw)}}
	}
	apiVersion, _ := m["apiVersion"].(string)
	kind, _ := m["kind"].(string)
	if strings.HasSuffix(kind, "List") {
		return decodeList(o, m, apiVersion, kind)
	}
	obj, err := decodeObject(o, "", m)
	if err != nil {
		return nil, err
	}
	return []Object{obj}, nil
}

// decodeList decodes a List (v1 List or a typed FooList) item by item.
func decodeList(o Origin, m map[string]any, apiVersion, kind string) ([]Object, []error) {
	var errs []error
	for _, k := range sortedKeys(m) {
		switch k {
		case "apiVersion", "kind", "items", "metadata":
		default:
			errs = append(errs, &FieldError{Origin: o, Kind: kind, Path: k, Err: errors.New("unknown field")})
		}
	}
	items, ok := m["items"].([]any)
	if !ok && m["items"] != nil {
		errs = append(errs, &FieldError{Origin: o, Kind: kind, Path: "items", Err: wrongType("list", m["items"])})
	}
	var objs []Object
	for i, it := range items {
		io := o
		io.Item = i
		im, ok := it.(map[string]any)
		if !ok {
			errs = append(errs, &FieldError{Origin: o, Kind: kind, Path: fmt.Sprintf("items[%d]", i), Err: wrongType("object", it)})
			continue
		}
		// A typed list (GlobalNetworkPolicyList) may leave out its items' type.
		if _, ok := im["kind"]; !ok && kind != "List" {
			im["kind"] = strings.TrimSuffix(kind, "List")
			if _, ok := im["apiVersion"]; !ok {
				im["apiVersion"] = apiVersion
			}
		}
		obj, err := decodeObject(io, fmt.Sprintf("items[%d].", i), im)
		errs = append(errs, err...)
		if err == nil {
			objs = append(objs, obj)
		}
	}
	return objs, errs
}

// decodeObject decodes one resource; prefix goes before every field path.
func decodeObject(o Origin, prefix string, m map[string]any) (Object, []error) {
	apiVersion, _ := m["apiVersion"].(string)
	kind, _ := m["kind"].(string)
	name := ""
	if md, ok := m["metadata"].(map[string]any); ok {
		n, _ := md["name"].(string)
		ns, _ := md["namespace"].(string)
		name = n
		if ns != "" {
			name = ns + "/" + n
		}
	}
	res := newResource(apiVersion, kind)
	if res == nil {
		return Object{}, []error{&FieldError{
			Origin: o, Kind: kind, Name: name, Path: prefix + "kind",
			Value: strconv.Quote(apiVersion + " " + kind),
			Err:   errors.New("unsupported resource: want a projectcalico.org/v3 policy, tier, network set or endpoint, a networking.k8s.io/v1 NetworkPolicy, or a v1 Namespace or ServiceAccount"),
		}}
	}
	d := &decoder{origin: o, kind: kind, name: name}
	d.value(strings.TrimSuffix(prefix, "."), m, valueOf(res))
	if len(d.errs) == 0 {
		d.errs = append(d.errs, validate(o, kind, name, prefix, res)...)
	}
	if len(d.errs) > 0 {
		return Object{}, d.errs
	}
	return Object{Origin: o, Resource: res}, nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// quoteRaw renders a raw value for an error message, shortened if long.
func quoteRaw(raw any) string {
	var s string
	switch v := raw.(type) {
	case string:
		s = strconv.Quote(v)
	case json.Number:
		s = v.String()
	case bool:
		s = strconv.FormatBool(v)
	case nil:
		s = "null"
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		s = string(b)
	}
	const max = 80
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}
