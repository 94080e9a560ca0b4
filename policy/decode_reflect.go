package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
)

// decoder fills typed resources from the generic JSON tree, strictly, and
// collects one *FieldError per bad field with its full path.
type decoder struct {
	origin     Origin
	kind, name string
	errs       []error
}

// subError lets a rawDecoder point below its own field (a label key, say).
type subError struct {
	path  string // appended to the field's path
	value any    // the offending value
	err   error
}

func (e *subError) Error() string { return e.err.Error() }
func (e *subError) Unwrap() error { return e.err }

// fieldErr returns an error from a rawDecoder that names a sub-path (may be
// "", or "[key]", or ".field") and the offending value.
func fieldErr(path string, value any, err error) error {
	return &subError{path: path, value: value, err: err}
}

func valueOf(res Resource) reflect.Value { return reflect.ValueOf(res).Elem() }

func (d *decoder) fail(path string, raw any, err error) {
	var se *subError
	if errors.As(err, &se) {
		path, raw, err = path+se.path, se.value, se.err
	}
	value := ""
	switch raw.(type) {
	case map[string]any, []any, nil:
	default:
		value = quoteRaw(raw)
	}
	d.errs = append(d.errs, &FieldError{
		Origin: d.origin, Kind: d.kind, Name: d.name,
		Path: path, Value: value, Err: err,
	})
}

var rawDecoderType = reflect.TypeFor[rawDecoder]()

// value decodes raw into v (addressable) at path.
func (d *decoder) value(path string, raw any, v reflect.Value) {
	if v.CanAddr() && v.Addr().Type().Implements(rawDecoderType) {
		if err := v.Addr().Interface().(rawDecoder).decodeRaw(raw); err != nil {
			d.fail(path, raw, err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if raw == nil {
			v.SetZero()
			return
		}
		p := reflect.New(v.Type().Elem())
		d.value(path, raw, p.Elem())
		v.Set(p)
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			if raw != nil {
				d.fail(path, raw, wrongType("object", raw))
			}
			return
		}
		d.object(path, m, v)
	case reflect.Slice:
		if raw == nil {
			v.SetZero()
			return
		}
		l, ok := raw.([]any)
		if !ok {
			d.fail(path, raw, wrongType("list", raw))
			return
		}
		if len(l) == 0 {
			// [] means what an absent list means; keep one form.
			v.SetZero()
			return
		}
		s := reflect.MakeSlice(v.Type(), len(l), len(l))
		for i, e := range l {
			d.value(path+"["+strconv.Itoa(i)+"]", e, s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		d.stringMap(path, raw, v)
	case reflect.String:
		s, ok := raw.(string)
		if !ok {
			d.fail(path, raw, wrongType("string", raw))
			return
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			d.fail(path, raw, wrongType("boolean", raw))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64:
		n, err := integer(raw, v.Type().Bits(), true)
		if err != nil {
			d.fail(path, raw, err)
			return
		}
		v.SetInt(n)
	case reflect.Uint8, reflect.Uint16:
		n, err := integer(raw, v.Type().Bits(), false)
		if err != nil {
			d.fail(path, raw, err)
			return
		}
		v.SetUint(uint64(n))
	case reflect.Float64:
		num, ok := raw.(json.Number)
		if !ok {
			d.fail(path, raw, wrongType("number", raw))
			return
		}
		f, err := num.Float64()
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			d.fail(path, raw, errors.New("invalid number"))
			return
		}
		v.SetFloat(f)
	default:
		d.fail(path, raw, fmt.Errorf("field of type %s cannot be decoded", v.Type()))
	}
}

// integer reads a JSON integer that fits in bits (signed or not).
func integer(raw any, bits int, signed bool) (int64, error) {
	num, ok := raw.(json.Number)
	if !ok {
		return 0, wrongType("integer", raw)
	}
	if signed {
		n, err := strconv.ParseInt(num.String(), 10, bits)
		if err != nil {
			return 0, fmt.Errorf("invalid integer: want %d to %d", int64(-1)<<(bits-1), int64(1)<<(bits-1)-1)
		}
		return n, nil
	}
	n, err := strconv.ParseUint(num.String(), 10, bits)
	if err != nil {
		return 0, fmt.Errorf("invalid integer: want 0 to %d", uint64(1)<<bits-1)
	}
	return int64(n), nil
}

// stringMap decodes a map[string]string (annotations and the like).
func (d *decoder) stringMap(path string, raw any, v reflect.Value) {
	if raw == nil {
		v.SetZero()
		return
	}
	m, ok := raw.(map[string]any)
	if !ok {
		d.fail(path, raw, wrongType("object", raw))
		return
	}
	if v.Type().Key().Kind() != reflect.String || v.Type().Elem().Kind() != reflect.String {
		d.fail(path, raw, fmt.Errorf("field of type %s cannot be decoded", v.Type()))
		return
	}
	out := reflect.MakeMapWithSize(v.Type(), len(m))
	for _, k := range sortedKeys(m) {
		s, ok := m[k].(string)
		if !ok {
			d.fail(path+"["+strconv.Quote(k)+"]", m[k], wrongType("string", m[k]))
			continue
		}
		out.SetMapIndex(reflect.ValueOf(k).Convert(v.Type().Key()), reflect.ValueOf(s).Convert(v.Type().Elem()))
	}
	v.Set(out)
}

// object decodes a JSON object into struct v, rejecting unknown fields.
func (d *decoder) object(path string, m map[string]any, v reflect.Value) {
	fields := map[string]reflect.Value{}
	collectFields(v, fields)
	for _, k := range sortedKeys(m) {
		p := k
		if path != "" {
			p = path + "." + k
		}
		f, ok := fields[k]
		if !ok {
			d.fail(p, nil, errors.New("unknown field"))
			continue
		}
		d.value(p, m[k], f)
	}
}

// collectFields maps JSON names to the fields of struct v, flattening
// embedded structs as encoding/json does.
func collectFields(v reflect.Value, out map[string]reflect.Value) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if sf.Anonymous && name == "" && sf.Type.Kind() == reflect.Struct {
			collectFields(v.Field(i), out)
			continue
		}
		if name == "" {
			name = sf.Name
		}
		out[name] = v.Field(i)
	}
}
