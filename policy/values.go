package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/weft-net/weft/policy/selector"
)

// rawDecoder is implemented by field types that decode and validate
// themselves from the generic JSON tree (string, json.Number, bool, nil,
// []any, map[string]any). The error it returns names only the problem: the
// decoder adds the file, document, field path and value.
type rawDecoder interface {
	decodeRaw(raw any) error
}

// errWrongType is wrapped by every "wrong type" decode error.
var errWrongType = errors.New("wrong type")

func wrongType(want string, raw any) error {
	return fmt.Errorf("%w: want %s, got %s", errWrongType, want, rawKind(raw))
}

// rawKind names the JSON type of a raw value.
func rawKind(raw any) string {
	switch raw.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "boolean"
	case []any:
		return "list"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", raw)
}

// Action is what a rule does with the packets it matches.
type Action string

// Rule actions, as Calico spells them.
const (
	ActionAllow Action = "Allow" // accept; evaluation ends
	ActionDeny  Action = "Deny"  // drop; evaluation ends
	ActionLog   Action = "Log"   // log and go on with the next rule; never decides
	ActionPass  Action = "Pass"  // skip the rest of the tier; go on with the next tier
)

func (a *Action) decodeRaw(raw any) error {
	s, ok := raw.(string)
	if !ok {
		return wrongType("string", raw)
	}
	switch Action(s) {
	case ActionAllow, ActionDeny, ActionLog, ActionPass:
		*a = Action(s)
		return nil
	}
	return errors.New("invalid action: want Allow, Deny, Log or Pass")
}

// PolicyType is a direction a policy applies to.
type PolicyType string

// Policy types.
const (
	PolicyTypeIngress PolicyType = "Ingress"
	PolicyTypeEgress  PolicyType = "Egress"
)

func (t *PolicyType) decodeRaw(raw any) error {
	s, ok := raw.(string)
	if !ok {
		return wrongType("string", raw)
	}
	switch PolicyType(s) {
	case PolicyTypeIngress, PolicyTypeEgress:
		*t = PolicyType(s)
		return nil
	}
	return errors.New("invalid policy type: want Ingress or Egress")
}

// IP protocol numbers that Calico knows by name.
const (
	ProtoICMP    = 1
	ProtoTCP     = 6
	ProtoUDP     = 17
	ProtoICMPv6  = 58
	ProtoSCTP    = 132
	ProtoUDPLite = 136
)

// protocolNames are Calico's protocol names, canonical spelling first.
var protocolNames = [...]struct {
	name string
	num  uint8
}{
	{"TCP", ProtoTCP}, {"UDP", ProtoUDP}, {"ICMP", ProtoICMP},
	{"ICMPv6", ProtoICMPv6}, {"SCTP", ProtoSCTP}, {"UDPLite", ProtoUDPLite},
}

// Protocol is a rule's protocol: one of Calico's names (TCP, UDP, ICMP,
// ICMPv6, SCTP, UDPLite; any case on input) or a number 1-255.
type Protocol struct {
	// Name is the canonical name when the protocol was given by name.
	Name string
	// Num is the IP protocol number.
	Num uint8
}

// ParseProtocol parses a protocol name (any case) or number 1-255.
func ParseProtocol(s string) (Protocol, error) {
	if n, err := strconv.ParseUint(s, 10, 16); err == nil {
		if n < 1 || n > 255 {
			return Protocol{}, errors.New("invalid protocol number: want 1-255")
		}
		return Protocol{Num: uint8(n)}, nil
	}
	for _, p := range protocolNames {
		if strings.EqualFold(s, p.name) {
			return Protocol{Name: p.name, Num: p.num}, nil
		}
	}
	return Protocol{}, errors.New("invalid protocol: want TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or 1-255")
}

// String returns the name if the protocol was given by name, else the number.
func (p Protocol) String() string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(int(p.Num))
}

// SupportsPorts reports whether rules with this protocol may match ports
// (TCP, UDP, SCTP, UDPLite).
func (p Protocol) SupportsPorts() bool {
	return protoHasPorts(p.Num)
}

func protoHasPorts(n uint8) bool {
	return n == ProtoTCP || n == ProtoUDP || n == ProtoSCTP || n == ProtoUDPLite
}

func (p *Protocol) decodeRaw(raw any) error {
	switch v := raw.(type) {
	case string:
		q, err := ParseProtocol(v)
		*p = q
		return err
	case json.Number:
		q, err := ParseProtocol(v.String())
		if err != nil {
			return err
		}
		*p = q
		return nil
	}
	return wrongType("string or number", raw)
}

// MarshalJSON writes the name as a string, a number as a number.
func (p Protocol) MarshalJSON() ([]byte, error) {
	if p.Name != "" {
		return json.Marshal(p.Name)
	}
	return json.Marshal(p.Num)
}

// Port is a port match in a rule: one port, a range "min:max", or the name of
// a port that endpoints declare.
type Port struct {
	// Min and Max bound the range (equal for one port); both 0 for a named port.
	Min, Max uint16
	// Name is the named port, or "".
	Name string
}

// ParsePort parses "80", "1000:2000" or a named port.
func ParsePort(s string) (Port, error) {
	if lo, hi, ok := strings.Cut(s, ":"); ok {
		a, err1 := strconv.ParseUint(lo, 10, 16)
		b, err2 := strconv.ParseUint(hi, 10, 16)
		if err1 != nil || err2 != nil {
			return Port{}, errors.New("invalid port range: want min:max, each 0-65535")
		}
		if a > b {
			return Port{}, errors.New("invalid port range: min is greater than max")
		}
		return Port{Min: uint16(a), Max: uint16(b)}, nil
	}
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		if n > 65535 {
			return Port{}, errors.New("invalid port: want 0-65535")
		}
		return Port{Min: uint16(n), Max: uint16(n)}, nil
	}
	if err := validPortName(s); err != nil {
		return Port{}, err
	}
	return Port{Name: s}, nil
}

// validPortName checks a named port as Kubernetes (IANA_SVC_NAME) and Calico
// do: 1-15 lower-case letters, digits and '-', at least one letter, no '-' at
// either end and no "--".
func validPortName(s string) error {
	bad := errors.New("invalid port name: want 1-15 of a-z, 0-9 and '-', with a letter, no '-' at either end and no '--'")
	if len(s) < 1 || len(s) > 15 || s[0] == '-' || s[len(s)-1] == '-' || strings.Contains(s, "--") {
		return bad
	}
	letter := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z':
			letter = true
		case c >= '0' && c <= '9', c == '-':
		default:
			return bad
		}
	}
	if !letter {
		return bad
	}
	return nil
}

// String returns the port as Calico writes it.
func (p Port) String() string {
	switch {
	case p.Name != "":
		return p.Name
	case p.Min == p.Max:
		return strconv.Itoa(int(p.Min))
	}
	return strconv.Itoa(int(p.Min)) + ":" + strconv.Itoa(int(p.Max))
}

// contains reports whether the numeric port range holds n; false for a named port.
func (p Port) contains(n uint16) bool {
	return p.Name == "" && p.Min <= n && n <= p.Max
}

func (p *Port) decodeRaw(raw any) error {
	switch v := raw.(type) {
	case string:
		q, err := ParsePort(v)
		*p = q
		return err
	case json.Number:
		n, err := strconv.ParseUint(v.String(), 10, 16)
		if err != nil {
			return errors.New("invalid port: want 0-65535")
		}
		*p = Port{Min: uint16(n), Max: uint16(n)}
		return nil
	}
	return wrongType("number or string", raw)
}

// MarshalJSON writes a single port as a number, a range or name as a string.
func (p Port) MarshalJSON() ([]byte, error) {
	if p.Name == "" && p.Min == p.Max {
		return json.Marshal(p.Min)
	}
	return json.Marshal(p.String())
}

// CIDR is an address range in a rule or network set: "10.0.0.0/8", or an
// address alone, which means just that address (as Calico's ParseCIDROrIP).
type CIDR struct {
	netip.Prefix
}

// ParseCIDR parses a CIDR or a bare address; the host bits are kept as
// written but ignored when matching.
func ParseCIDR(s string) (CIDR, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return CIDR{}, errors.New("invalid CIDR")
		}
		return CIDR{p}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return CIDR{}, errors.New("invalid CIDR")
	}
	return CIDR{netip.PrefixFrom(a, a.BitLen())}, nil
}

// Equal reports whether two CIDRs are written the same.
func (c CIDR) Equal(o CIDR) bool { return c.Prefix == o.Prefix }

func (c *CIDR) decodeRaw(raw any) error {
	s, ok := raw.(string)
	if !ok {
		return wrongType("string", raw)
	}
	p, err := ParseCIDR(s)
	*c = p
	return err
}

// MarshalJSON writes the CIDR as a string.
func (c CIDR) MarshalJSON() ([]byte, error) { return json.Marshal(c.Prefix.String()) }

// Selector is a Calico selector expression as written in a resource, parsed
// when decoded. The zero Selector is absent (the field was empty).
type Selector struct {
	// Text is the expression as written.
	Text string
	sel  selector.Selector
}

// ParseSelector parses a Calico selector; "" gives the absent Selector.
func ParseSelector(s string) (Selector, error) {
	if strings.TrimSpace(s) == "" {
		return Selector{Text: s}, nil
	}
	sel, err := selector.Parse(s)
	if err != nil {
		return Selector{}, err
	}
	return Selector{Text: s, sel: sel}, nil
}

// IsZero reports whether the selector is absent.
func (s Selector) IsZero() bool { return s.sel == nil }

// Parsed returns the parsed selector, or nil when absent.
func (s Selector) Parsed() selector.Selector { return s.sel }

// String returns the canonical form, or "" when absent.
func (s Selector) String() string {
	if s.sel == nil {
		return ""
	}
	return s.sel.String()
}

// Equal reports whether two selectors are written the same.
func (s Selector) Equal(o Selector) bool { return s.Text == o.Text }

func (s *Selector) decodeRaw(raw any) error {
	t, ok := raw.(string)
	if !ok {
		return wrongType("string", raw)
	}
	p, err := ParseSelector(t)
	if err != nil {
		return fmt.Errorf("invalid selector: %w", err)
	}
	*s = p
	return nil
}

// MarshalJSON writes the selector as written.
func (s Selector) MarshalJSON() ([]byte, error) { return json.Marshal(s.Text) }

// Labels are an object's labels, keys and values validated as Calico
// validates them.
type Labels map[string]string

func (l *Labels) decodeRaw(raw any) error {
	if raw == nil {
		*l = nil
		return nil
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return wrongType("object", raw)
	}
	out := make(Labels, len(m))
	for _, k := range sortedKeys(m) {
		v := m[k]
		s, ok := v.(string)
		if !ok {
			return fieldErr("["+strconv.Quote(k)+"]", v, wrongType("string", v))
		}
		if err := selector.ValidateLabelKey(k); err != nil {
			return fieldErr("", k, fmt.Errorf("invalid label key: %w", err))
		}
		if err := selector.ValidateLabelValue(s); err != nil {
			return fieldErr("["+strconv.Quote(k)+"]", s, fmt.Errorf("invalid label value: %w", err))
		}
		out[k] = s
	}
	*l = out
	return nil
}

// IntOrString is a Kubernetes port: a number or a named port.
type IntOrString struct {
	IsString bool
	Int      int32
	Str      string
}

// String returns the number or the name.
func (v IntOrString) String() string {
	if v.IsString {
		return v.Str
	}
	return strconv.Itoa(int(v.Int))
}

func (v *IntOrString) decodeRaw(raw any) error {
	switch r := raw.(type) {
	case string:
		*v = IntOrString{IsString: true, Str: r}
		return nil
	case json.Number:
		n, err := strconv.ParseInt(r.String(), 10, 32)
		if err != nil {
			return errors.New("invalid port: want an integer")
		}
		*v = IntOrString{Int: int32(n)}
		return nil
	}
	return wrongType("number or string", raw)
}

// MarshalJSON writes the number or the string.
func (v IntOrString) MarshalJSON() ([]byte, error) {
	if v.IsString {
		return json.Marshal(v.Str)
	}
	return json.Marshal(v.Int)
}

// Ignored is a known field whose content weft does not use (status,
// managedFields and the like); it accepts any value and keeps it for encoding.
type Ignored struct{ Value any }

func (i *Ignored) decodeRaw(raw any) error { i.Value = raw; return nil }

// MarshalJSON writes the value back.
func (i Ignored) MarshalJSON() ([]byte, error) { return json.Marshal(i.Value) }
