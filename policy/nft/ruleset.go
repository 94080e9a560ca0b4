package nft

import (
	"fmt"
	"strings"
)

// Ruleset is the content of table inet weft: what Compile makes and Apply
// writes. It is plain data: sets and verdict maps in name order, then the
// chains, base chains first. String renders it as `nft list table` would
// (without counter values).
type Ruleset struct {
	// Version is written as the comment of the first rule of the first
	// chain (Compile makes that chain weft-version), "weft policy v2 <hash>"; Apply compares it with the kernel's to
	// skip a transaction that would change nothing. Compile sets it to a
	// hash of everything else.
	Version string
	Sets    []Set
	Chains  []Chain
	// digests, when Compile made the Ruleset, let diff skip unchanged sets
	// and chains; they count only while Version is the one they were made
	// for (a changed Ruleset must get a new Version, or none).
	digests *digests
}

// Set is a named set, or (Verdict) a verdict map, of table inet weft.
type Set struct {
	Name string
	// Key lists the key's fields; more than one is a concatenation.
	Key []KeyType
	// Verdict makes the set a verdict map: each element has a Verdict.
	Verdict bool
	// Interval allows ranges: elements are merged and disjoint.
	Interval bool
	Comment  string
	Elements []Element
}

// KeyType is the type of one field of a set's key.
type KeyType uint8

// Key types, as nft names them.
const (
	KeyIfname KeyType = iota + 1
	KeyIPv4
	KeyIPv6
	KeyProto
	KeyPort
	KeyICMPType
	KeyICMPCode
	KeyICMPv6Type
	KeyICMPv6Code
)

var keyNames = map[KeyType]string{
	KeyIfname: "ifname", KeyIPv4: "ipv4_addr", KeyIPv6: "ipv6_addr", KeyProto: "inet_proto",
	KeyPort: "inet_service", KeyICMPType: "icmp_type", KeyICMPCode: "icmp_code",
	KeyICMPv6Type: "icmpv6_type", KeyICMPv6Code: "icmpv6_code",
}

// keyLen is the number of bytes of a key type's value.
func keyLen(k KeyType) int {
	switch k {
	case KeyIfname, KeyIPv6:
		return 16
	case KeyIPv4:
		return 4
	case KeyPort:
		return 2
	}
	return 1
}

// Element is one element of a set: a value (From == To) or a range per key
// field, and for a verdict map its verdict.
type Element struct {
	Key     []Range
	Verdict *Verdict
	Comment string
}

// Range is a closed range of values of one key field, in network byte
// order; From == To for a single value.
type Range struct {
	From, To []byte
}

// Chain is a chain of table inet weft; Hook is nil for a regular chain.
type Chain struct {
	Name  string
	Hook  *Hook
	Rules []Rule
}

// Hook makes a chain a base chain of type filter with policy accept.
type Hook struct {
	Hook     string // "forward", "input" or "output"
	Priority int    // relative to the filter priority (0)
}

// Rule is one rule: its matches, all of which must hold, then its
// statements and verdict.
type Rule struct {
	// Family limits the rule to IPv4 (4) or IPv6 (6) packets; 0 for both.
	Family  int
	Matches []Match
	Counter bool
	// Log, when not "", logs the packet with this prefix.
	Log string
	// Mark, when not nil, changes the packet mark.
	Mark    *MarkSet
	Verdict Verdict
	Comment string
}

// Match is one condition of a rule: a *Cmp, *Lookup, *CtState or *MarkTest.
type Match interface {
	String() string
	isMatch()
}

// Field is a packet field a rule reads.
type Field uint8

// Fields a rule can read: meta data, and header fields of IPv4, IPv6 and
// the transport (ports of TCP, UDP, SCTP and UDP-Lite; ICMP type and code).
const (
	FieldL4Proto Field = iota + 1
	FieldIIFName
	FieldOIFName
	FieldSaddr4
	FieldDaddr4
	FieldSaddr6
	FieldDaddr6
	FieldSport
	FieldDport
	FieldICMPType
	FieldICMPCode
	FieldICMPv6Type
	FieldICMPv6Code
)

var fieldNames = map[Field]string{
	FieldL4Proto: "meta l4proto", FieldIIFName: "iifname", FieldOIFName: "oifname",
	FieldSaddr4: "ip saddr", FieldDaddr4: "ip daddr", FieldSaddr6: "ip6 saddr", FieldDaddr6: "ip6 daddr",
	FieldSport: "th sport", FieldDport: "th dport", FieldICMPType: "icmp type", FieldICMPCode: "icmp code",
	FieldICMPv6Type: "icmpv6 type", FieldICMPv6Code: "icmpv6 code",
}

// keyType returns the set key type of a field's values.
func (f Field) keyType() KeyType {
	switch f {
	case FieldL4Proto:
		return KeyProto
	case FieldIIFName, FieldOIFName:
		return KeyIfname
	case FieldSaddr4, FieldDaddr4:
		return KeyIPv4
	case FieldSaddr6, FieldDaddr6:
		return KeyIPv6
	case FieldSport, FieldDport:
		return KeyPort
	case FieldICMPType:
		return KeyICMPType
	case FieldICMPv6Type:
		return KeyICMPv6Type
	case FieldICMPv6Code:
		return KeyICMPv6Code
	}
	return KeyICMPCode
}

// family returns 4 or 6 for a field of the IPv4 or IPv6 header, else 0.
func (f Field) family() int {
	switch f {
	case FieldSaddr4, FieldDaddr4:
		return 4
	case FieldSaddr6, FieldDaddr6:
		return 6
	}
	return 0
}

// Cmp compares a field with a value, or (To not nil) with the range from
// Value to To, as nft compiles a set of one element.
type Cmp struct {
	Field Field
	Neq   bool
	Value []byte
	To    []byte
}

// Lookup looks a field, or a concatenation of fields, up in a named set
// (Set) or an anonymous one (Inline). With Vmap, the set is a verdict map
// and the lookup's verdict is the rule's.
type Lookup struct {
	Fields []Field
	Set    string
	Inline *Set
	Neq    bool
	Vmap   bool
}

// CtState matches packets whose conntrack state is one of States
// ("invalid", "established", "related", "new").
type CtState struct {
	States []string
}

// MarkTest matches packets whose mark has Bit set.
type MarkTest struct {
	Bit uint32
}

// MarkSet sets (Set) or clears Bit in the packet mark.
type MarkSet struct {
	Bit uint32
	Set bool
}

// VerdictKind is what a rule does when it matches.
type VerdictKind uint8

// Verdict kinds; VerdictNone goes on with the next rule.
const (
	VerdictNone VerdictKind = iota
	VerdictAccept
	VerdictDrop
	VerdictReturn
	VerdictJump
	VerdictGoto
)

// Verdict is a rule's or a map element's verdict; Chain for jump and goto.
type Verdict struct {
	Kind  VerdictKind
	Chain string
}

func (*Cmp) isMatch()      {}
func (*Lookup) isMatch()   {}
func (*CtState) isMatch()  {}
func (*MarkTest) isMatch() {}

// String renders the comparison as nft lists it, e.g. `th dport 80`.
func (c *Cmp) String() string {
	op := ""
	if c.Neq {
		op = "!= "
	}
	if c.To != nil {
		return fieldNames[c.Field] + " " + op + formatRange(c.Field.keyType(), Range{From: c.Value, To: c.To})
	}
	return fieldNames[c.Field] + " " + op + formatValue(c.Field.keyType(), c.Value)
}

// String renders the lookup as nft lists it, e.g. `ip saddr @sel4-…`.
func (l *Lookup) String() string {
	names := make([]string, len(l.Fields))
	for i, f := range l.Fields {
		names[i] = fieldNames[f]
	}
	var b strings.Builder
	b.WriteString(strings.Join(names, " . "))
	switch {
	case l.Vmap:
		b.WriteString(" vmap")
	case l.Neq:
		b.WriteString(" !=")
	}
	if l.Inline != nil {
		b.WriteString(" { ")
		for i, e := range l.Inline.Elements {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(formatElement(l.Inline.Key, e))
		}
		b.WriteString(" }")
	} else {
		b.WriteString(" @" + l.Set)
	}
	return b.String()
}

// String renders e.g. `ct state established,related`.
func (c *CtState) String() string { return "ct state " + strings.Join(c.States, ",") }

// String renders the test as nft lists it.
func (m *MarkTest) String() string { return fmt.Sprintf("meta mark & 0x%08x == 0x%08x", m.Bit, m.Bit) }

// String renders the statement as nft lists it.
func (m *MarkSet) String() string {
	if m.Set {
		return fmt.Sprintf("meta mark set meta mark | 0x%08x", m.Bit)
	}
	return fmt.Sprintf("meta mark set meta mark & 0x%08x", ^m.Bit)
}

// String renders the verdict, e.g. `goto wl-in-…`; "" for VerdictNone.
func (v Verdict) String() string {
	switch v.Kind {
	case VerdictAccept:
		return "accept"
	case VerdictDrop:
		return "drop"
	case VerdictReturn:
		return "return"
	case VerdictJump:
		return "jump " + v.Chain
	case VerdictGoto:
		return "goto " + v.Chain
	}
	return ""
}

// String renders the rule as nft lists it.
func (r Rule) String() string {
	var parts []string
	hasAddr := false
	for _, m := range r.Matches {
		if l, ok := m.(*Lookup); ok {
			for _, f := range l.Fields {
				hasAddr = hasAddr || f.family() != 0
			}
		}
		if c, ok := m.(*Cmp); ok {
			hasAddr = hasAddr || c.Field.family() != 0
		}
	}
	if r.Family != 0 && !hasAddr {
		parts = append(parts, "meta nfproto ipv"+fmt.Sprint(r.Family))
	}
	for _, m := range r.Matches {
		parts = append(parts, m.String())
	}
	if r.Counter {
		parts = append(parts, "counter")
	}
	if r.Log != "" {
		parts = append(parts, "log prefix "+quote(r.Log))
	}
	if r.Mark != nil {
		parts = append(parts, r.Mark.String())
	}
	if v := r.Verdict.String(); v != "" {
		parts = append(parts, v)
	}
	if r.Comment != "" {
		parts = append(parts, "comment "+quote(r.Comment))
	}
	return strings.Join(parts, " ")
}

// String renders the ruleset as `nft list table inet weft` would, one set
// element per line, counters without their values.
func (rs *Ruleset) String() string {
	var b strings.Builder
	b.WriteString("table inet " + TableName + " {\n")
	first := true
	sep := func() {
		if !first {
			b.WriteString("\n")
		}
		first = false
	}
	for _, s := range rs.Sets {
		sep()
		writeSet(&b, s)
	}
	for i, c := range rs.Chains {
		sep()
		b.WriteString("\tchain " + c.Name + " {\n")
		if c.Hook != nil {
			prio := "filter"
			if c.Hook.Priority > 0 {
				prio += fmt.Sprintf(" + %d", c.Hook.Priority)
			} else if c.Hook.Priority < 0 {
				prio += fmt.Sprintf(" - %d", -c.Hook.Priority)
			}
			fmt.Fprintf(&b, "\t\ttype filter hook %s priority %s; policy accept;\n", c.Hook.Hook, prio)
		}
		for j, r := range c.Rules {
			if i == 0 && j == 0 && rs.Version != "" {
				r.Comment = rs.Version
			}
			b.WriteString("\t\t" + r.String() + "\n")
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func writeSet(b *strings.Builder, s Set) {
	kind := "set"
	if s.Verdict {
		kind = "map"
	}
	keys := make([]string, len(s.Key))
	for i, k := range s.Key {
		keys[i] = keyNames[k]
	}
	typ := strings.Join(keys, " . ")
	if s.Verdict {
		typ += " : verdict"
	}
	fmt.Fprintf(b, "\t%s %s {\n\t\ttype %s\n", kind, s.Name, typ)
	if s.Interval {
		b.WriteString("\t\tflags interval\n")
	}
	if s.Comment != "" {
		b.WriteString("\t\tcomment " + quote(s.Comment) + "\n")
	}
	if len(s.Elements) > 0 {
		b.WriteString("\t\telements = {")
		for i, e := range s.Elements {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString("\n\t\t\t" + formatElement(s.Key, e))
		}
		b.WriteString("\n\t\t}\n")
	}
	b.WriteString("\t}\n")
}

func formatElement(key []KeyType, e Element) string {
	parts := make([]string, len(e.Key))
	for i, r := range e.Key {
		parts[i] = formatRange(key[i], r)
	}
	s := strings.Join(parts, " . ")
	if e.Comment != "" {
		s += " comment " + quote(e.Comment)
	}
	if e.Verdict != nil {
		s += " : " + e.Verdict.String()
	}
	return s
}

// quote returns s in double quotes; Compile never puts a double quote or a
// backslash into a string that is rendered.
func quote(s string) string { return `"` + s + `"` }
