package config

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	goyaml "go.yaml.in/yaml/v2"
	"sigs.k8s.io/yaml"
)

// maxDocumentSize bounds a config document. A real one is a few kB; the cap
// keeps a wrong path (a log file, /dev/zero) from eating memory.
const maxDocumentSize = 1 << 20

// maxShownValue bounds how much of an offending value an error quotes.
const maxShownValue = 80

// FieldError is a problem with one field. Field is the YAML path
// ("clusterCIDR", "gossip.probeTimeout", "join[2]", `labels["tier"]`),
// Value the offending value as written (strings quoted, numbers bare) and
// Err what is wrong with it. Its text reads `field: value: problem`.
type FieldError struct {
	Field string
	Value string
	Err   error
}

// Error returns `field: value: problem`.
func (e *FieldError) Error() string {
	return e.Field + ": " + e.Value + ": " + e.Err.Error()
}

// Unwrap returns the underlying problem.
func (e *FieldError) Unwrap() error { return e.Err }

// Load reads the YAML file at path over Default() and validates the result.
// A missing file is not an error when explicit is false (the path is only
// the default one): Load then returns Default(), validated. Errors name the
// file, the field and the value; on error the Config is the zero value.
func Load(path string, explicit bool) (Config, error) {
	c, err := load(path, explicit)
	if err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("load config %s: %w", path, err)
	}
	return c, nil
}

// load is Load without the validation, so that flags can still fix the
// result (say, a host name that is not a valid nodeName).
func load(path string, explicit bool) (Config, error) {
	data, err := readFile(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return Default(), nil
	}
	if err != nil {
		// The *fs.PathError already names the file.
		return Config{}, fmt.Errorf("load config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return Config{}, fmt.Errorf("load config %s: %w", path, err)
	}
	return c, nil
}

// readFile reads at most maxDocumentSize+1 bytes of path, so that Parse
// can refuse an oversized file without reading all of it.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxDocumentSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}

// Parse decodes one YAML document over Default(). It does not validate
// values (see Validate) but is strict about the shape: unknown or mis-cased
// keys, duplicate keys, wrong types and extra documents are errors. A key
// with an empty (null) value keeps its default. An empty document gives
// Default(). On error the Config is the zero value and the error lists
// every problem found, each naming the field and the value. Parse does not
// keep data.
func Parse(data []byte) (Config, error) {
	if len(data) > maxDocumentSize {
		return Config{}, fmt.Errorf("config is larger than %d bytes", maxDocumentSize)
	}
	if err := checkSingleDocument(data); err != nil {
		return Config{}, err
	}
	// YAMLToJSONStrict rejects duplicate keys. It is given no target on
	// purpose: with one, sigs.k8s.io/yaml turns numbers and booleans into
	// strings where a string is expected, reformatting them on the way
	// ("1.10" becomes "1.1"); an error asking to quote is better.
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return Config{}, fmt.Errorf("parse yaml: %w", err)
	}
	c := Default()
	if err := decodeStruct(js, reflect.ValueOf(&c).Elem(), ""); err != nil {
		return Config{}, err
	}
	// An empty list or map means the same as none; keeping one form makes
	// the Config round-trip through YAML unchanged.
	if len(c.Join) == 0 {
		c.Join = nil
	}
	if len(c.Labels) == 0 {
		c.Labels = nil
	}
	return c, nil
}

// checkSingleDocument reports an error if data holds more than one YAML
// document: the decoder would silently read only the first.
func checkSingleDocument(data []byte) error {
	dec := goyaml.NewDecoder(bytes.NewReader(data))
	for n := 0; ; n++ {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("parse yaml: %w", err)
		}
		if n == 1 {
			return errors.New("parse yaml: more than one document (---); a config file holds exactly one")
		}
	}
}

// decodeStruct decodes the JSON object raw into the struct dst, field by
// field, matching keys to JSON tag names exactly. path is the YAML path of
// dst ("" at the top).
func decodeStruct(raw json.RawMessage, dst reflect.Value, path string) error {
	if isNull(raw) {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		if path == "" {
			return fmt.Errorf("top level: %s: want a mapping of settings", show(raw))
		}
		return &FieldError{Field: path, Value: show(raw), Err: errors.New("want a mapping")}
	}
	t := dst.Type()
	fields := make(map[string]int, t.NumField())
	names := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		fields[name] = i
		names = append(names, name)
	}
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(m)) {
		i, ok := fields[k]
		if !ok {
			errs = append(errs, unknownField(joinPath(path, cut(k)), k, names))
			continue
		}
		if isNull(m[k]) {
			continue // keeps its default
		}
		if err := decodeValue(m[k], dst.Field(i), joinPath(path, k)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// decodeValue decodes raw into dst, which must be settable.
func decodeValue(raw json.RawMessage, dst reflect.Value, path string) error {
	t := dst.Type()
	want := func() error {
		return &FieldError{Field: path, Value: show(raw), Err: errors.New("want " + describe(t))}
	}
	if reflect.PointerTo(t).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return want()
		}
		v := reflect.New(t)
		if err := v.Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			return &FieldError{Field: path, Value: show(raw), Err: err}
		}
		dst.Set(v.Elem())
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		return decodeStruct(raw, dst, path)
	case reflect.Map:
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil || m == nil {
			return want()
		}
		out := reflect.MakeMapWithSize(t, len(m))
		var errs []error
		for _, k := range slices.Sorted(maps.Keys(m)) {
			elem := reflect.New(t.Elem()).Elem()
			if err := decodeValue(m[k], elem, path+"["+strconv.Quote(cut(k))+"]"); err != nil {
				errs = append(errs, err)
				continue
			}
			out.SetMapIndex(reflect.ValueOf(k), elem)
		}
		dst.Set(out)
		return errors.Join(errs...)
	case reflect.Slice:
		var l []json.RawMessage
		if err := json.Unmarshal(raw, &l); err != nil || l == nil {
			return want()
		}
		out := reflect.MakeSlice(t, len(l), len(l))
		var errs []error
		for i, r := range l {
			if err := decodeValue(r, out.Index(i), path+"["+strconv.Itoa(i)+"]"); err != nil {
				errs = append(errs, err)
			}
		}
		dst.Set(out)
		return errors.Join(errs...)
	default:
		// Scalars. null inside a list or map lands here and is refused by
		// the check below: json.Unmarshal would quietly accept it.
		if isNull(raw) {
			return want()
		}
		v := reflect.New(t)
		if err := json.Unmarshal(raw, v.Interface()); err != nil {
			return want()
		}
		dst.Set(v.Elem())
		return nil
	}
}

// describe says, for an error, what a value of type t looks like in YAML.
func describe(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[Duration]():
		return `a duration such as "500ms" or "15s"`
	case reflect.TypeFor[netip.Addr]():
		return `an IP address such as "192.0.2.1"`
	case reflect.TypeFor[netip.Prefix]():
		return `a CIDR prefix such as "10.244.0.0/16"`
	}
	switch t.Kind() {
	case reflect.String:
		return "a string (quote values that look like numbers or true/false)"
	case reflect.Int:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		return "a list"
	case reflect.Map:
		return "a mapping of strings to strings"
	case reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

// unknownField builds the error for key k, which matches none of names.
func unknownField(path, k string, names []string) error {
	for _, n := range names {
		if strings.EqualFold(n, k) {
			return fmt.Errorf("%s: unknown field (did you mean %q? names are case-sensitive)", path, n)
		}
	}
	return fmt.Errorf("%s: unknown field (known here: %s)", path, strings.Join(names, ", "))
}

func joinPath(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func isNull(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// show renders raw JSON for an error, cut to maxShownValue bytes.
func show(raw json.RawMessage) string {
	return cut(string(bytes.TrimSpace(raw)))
}

// cut shortens s to at most maxShownValue bytes (on a rune boundary) plus
// "...", so that a huge value does not swamp an error message.
func cut(s string) string {
	if len(s) <= maxShownValue {
		return s
	}
	n := maxShownValue
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
