package nft

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/weft-net/weft/policy"
)

// maxLogPrefix is the kernel's limit on a log prefix (NF_LOG_PREFIXLEN,
// 128 bytes with the terminating NUL).
const maxLogPrefix = 127

// portVariant says which of an entity's positive ports a compiled rule
// matches: nft cannot OR a port range with a named port in one rule, so a
// rule with both becomes two rules with the same verdict.
type portVariant uint8

const (
	portsNumeric portVariant = iota // the numeric ports, if any
	portsNamed                      // the named ports only
)

func portVariants(e *policy.ProgramEntity) []portVariant {
	num, named := false, false
	for _, p := range e.Ports {
		num, named = num || p.Name == "", named || p.Name != ""
	}
	switch {
	case num && named:
		return []portVariant{portsNumeric, portsNamed}
	case named:
		return []portVariant{portsNamed}
	}
	return []portVariant{portsNumeric}
}

// addrDependent reports whether a variant of an entity matches addresses,
// which makes the rule one per IP family.
func addrDependent(e *policy.ProgramEntity, v portVariant) bool {
	return e.Nets != nil || len(e.NotNets) > 0 || e.Selector != "" || e.NotSelector != "" ||
		v == portsNamed || len(e.NotNamedPorts) > 0
}

// rule compiles rule i of p in direction dir: usually one nft rule; one per
// IP family when it matches addresses; more when ports mix numbers and
// names. A rule that can match nothing compiles to none. Every nft rule
// carries a counter and the comment "<kind> <policy> <dir>[<i>]" that Stats
// reads back.
func (c *compiler) rule(p *policy.ProgramPolicy, dir string, i int, r *policy.ProgramRule) []Rule {
	common, ok := protoMatches(r)
	if !ok {
		return nil
	}
	tmpl := Rule{Counter: true, Comment: comment(fmt.Sprintf("%s %s %s[%d]", p.Kind, p.Key, dir, i))}
	switch r.Action {
	case policy.ActionAllow:
		tmpl.Verdict = Verdict{Kind: VerdictAccept}
	case policy.ActionDeny:
		tmpl.Verdict = Verdict{Kind: VerdictDrop}
	case policy.ActionLog:
		tmpl.Log = "weft " + tmpl.Comment + " "
		if len(tmpl.Log) > maxLogPrefix {
			tmpl.Log = tmpl.Log[:maxLogPrefix]
		}
	case policy.ActionPass:
		tmpl.Mark, tmpl.Verdict = &MarkSet{Bit: passMark, Set: true}, Verdict{Kind: VerdictReturn}
	}
	fams := []int{4, 6}
	if r.IPVersion != 0 {
		fams = []int{r.IPVersion}
	}
	var out []Rule
	for _, sv := range portVariants(&r.Source) {
		for _, dv := range portVariants(&r.Destination) {
			f := fams
			if !addrDependent(&r.Source, sv) && !addrDependent(&r.Destination, dv) {
				f = []int{r.IPVersion}
			}
			for _, fam := range f {
				src, ok1 := c.entity(&r.Source, fam, false, sv)
				dst, ok2 := c.entity(&r.Destination, fam, true, dv)
				if !ok1 || !ok2 {
					continue
				}
				nr := tmpl
				nr.Family = fam
				nr.Matches = append(append(slices.Clone(common), src...), dst...)
				out = append(out, nr)
			}
		}
	}
	return out
}

// protoMatches returns the matches of a rule's protocol and ICMP fields,
// and false when they can match no packet.
func protoMatches(r *policy.ProgramRule) ([]Match, bool) {
	var ms []Match
	if r.Protocol != nil {
		ms = append(ms, &Cmp{Field: FieldL4Proto, Value: u8(r.Protocol.Num)})
	}
	if r.NotProtocol != nil {
		ms = append(ms, &Cmp{Field: FieldL4Proto, Neq: true, Value: u8(r.NotProtocol.Num)})
	}
	// Validation makes rules with ICMP fields set protocol ICMP or ICMPv6.
	typ, code := FieldICMPType, FieldICMPCode
	keys := []KeyType{KeyICMPType, KeyICMPCode}
	if r.Protocol != nil && r.Protocol.Num == policy.ProtoICMPv6 {
		typ, code, keys = FieldICMPv6Type, FieldICMPv6Code, []KeyType{KeyICMPv6Type, KeyICMPv6Code}
	}
	if f := r.ICMP; f != nil {
		if f.Type == nil {
			return nil, false // Evaluate: icmp without a type matches nothing
		}
		ms = append(ms, &Cmp{Field: typ, Value: u8(uint8(*f.Type))})
		if f.Code != nil {
			ms = append(ms, &Cmp{Field: code, Value: u8(uint8(*f.Code))})
		}
	}
	if f := r.NotICMP; f != nil && f.Type != nil {
		if f.Code == nil {
			ms = append(ms, &Cmp{Field: typ, Neq: true, Value: u8(uint8(*f.Type))})
		} else {
			ms = append(ms, &Lookup{Fields: []Field{typ, code}, Neq: true, Inline: &Set{Key: keys,
				Elements: []Element{{Key: []Range{single(u8(uint8(*f.Type))), single(u8(uint8(*f.Code)))}}}}})
		}
	}
	return ms, true
}

// entity returns the matches of a rule's source (dst false) or
// destination for family fam (0: the variant matches no addresses), and
// false when they can match no packet of that family.
func (c *compiler) entity(e *policy.ProgramEntity, fam int, dst bool, v portVariant) ([]Match, bool) {
	addr, port := FieldSaddr4, FieldSport
	switch {
	case dst && fam == 6:
		addr, port = FieldDaddr6, FieldDport
	case dst:
		addr, port = FieldDaddr4, FieldDport
	case fam == 6:
		addr = FieldSaddr6
	}
	var ms []Match
	if e.Nets != nil {
		if !hasFamily(e.Nets, fam) {
			return nil, false
		}
		ms = append(ms, inlineMatch(addr, false, addrElements(e.Nets, fam)))
	}
	if hasFamily(e.NotNets, fam) {
		ms = append(ms, inlineMatch(addr, true, addrElements(e.NotNets, fam)))
	}
	if e.Selector != "" {
		if !hasFamily(e.Selected, fam) {
			return nil, false
		}
		ms = append(ms, &Lookup{Fields: []Field{addr}, Set: c.addrSet("sel", fam, e.Selector, e.Selected)})
	}
	if e.NotSelector != "" && hasFamily(e.NotSelected, fam) {
		ms = append(ms, &Lookup{Fields: []Field{addr}, Neq: true, Set: c.addrSet("notsel", fam, "notSelector "+e.NotSelector, e.NotSelected)})
	}
	switch v {
	case portsNumeric:
		if m := portMatch(port, e.Ports, false); m != nil {
			ms = append(ms, m)
		}
	case portsNamed:
		name, ok := c.namedPortSet(e, fam, e.Ports, e.NamedPorts)
		if !ok {
			return nil, false
		}
		ms = append(ms, &Lookup{Fields: []Field{addr, FieldL4Proto, port}, Set: name})
	}
	if m := portMatch(port, e.NotPorts, true); m != nil {
		ms = append(ms, m)
	}
	if name, ok := c.namedPortSet(e, fam, e.NotPorts, e.NotNamedPorts); ok {
		ms = append(ms, &Lookup{Fields: []Field{addr, FieldL4Proto, port}, Neq: true, Set: name})
	}
	return ms, true
}

// portMatch matches the numeric ports among ps, or returns nil if there
// are none.
func portMatch(f Field, ps []policy.Port, neq bool) Match {
	els := portElements(ps)
	if len(els) == 0 {
		return nil
	}
	return inlineMatch(f, neq, els)
}

// inlineMatch matches field f against interval set elements: a lookup in
// an anonymous set, or, for one element, a comparison, as nft compiles
// `{ x }`.
func inlineMatch(f Field, neq bool, els []Element) Match {
	if len(els) == 1 {
		r := els[0].Key[0]
		c := &Cmp{Field: f, Neq: neq, Value: r.From}
		if !bytes.Equal(r.From, r.To) {
			c.To = r.To
		}
		return c
	}
	return &Lookup{Fields: []Field{f}, Neq: neq, Inline: &Set{Key: []KeyType{f.keyType()}, Interval: true, Elements: els}}
}

// addrSet makes (once) the named interval set of the addresses of family
// fam in ps, named after what it holds, and returns its name.
func (c *compiler) addrSet(prefix string, fam int, desc string, ps []netip.Prefix) string {
	name := fmt.Sprintf("%s%d-%s", prefix, fam, nameHash(desc))
	if _, ok := c.sets[name]; !ok {
		key := KeyIPv4
		if fam == 6 {
			key = KeyIPv6
		}
		c.sets[name] = &Set{Name: name, Key: []KeyType{key}, Interval: true, Comment: comment(desc), Elements: addrElements(ps, fam)}
	}
	return name
}

// namedPortSet makes (once) the set of address . protocol . port of the
// resolved named ports nps of family fam, and returns its name; false when
// ports names none or none resolves in fam.
func (c *compiler) namedPortSet(e *policy.ProgramEntity, fam int, ports []policy.Port, nps []policy.NamedPortNet) (string, bool) {
	var names []string
	for _, p := range ports {
		if p.Name != "" {
			names = append(names, p.Name)
		}
	}
	type group struct {
		proto uint8
		port  uint16
	}
	ranges := map[group][]Range{}
	for _, np := range nps {
		for _, p := range prefixesOf([]netip.Prefix{np.Net}, fam) {
			g := group{np.Protocol, np.Port}
			ranges[g] = append(ranges[g], prefixRange(p))
		}
	}
	if len(names) == 0 || len(ranges) == 0 {
		return "", false
	}
	slices.Sort(names)
	of := "any endpoint"
	if e.Selector != "" {
		of = e.Selector
	}
	desc := "named ports " + strings.Join(slices.Compact(names), ",") + " of " + of
	name := fmt.Sprintf("port%d-%s", fam, nameHash(desc))
	if _, ok := c.sets[name]; ok {
		return name, true
	}
	key := KeyIPv4
	if fam == 6 {
		key = KeyIPv6
	}
	var els []Element
	for g, rs := range ranges {
		for _, r := range mergeRanges(rs) {
			els = append(els, Element{Key: []Range{r, single(u8(g.proto)), single(u16(g.port))}})
		}
	}
	slices.SortFunc(els, func(a, b Element) int {
		for i := range a.Key {
			if c := bytes.Compare(a.Key[i].From, b.Key[i].From); c != 0 {
				return c
			}
		}
		return 0
	})
	c.sets[name] = &Set{Name: name, Key: []KeyType{key, KeyProto, KeyPort}, Interval: true, Comment: comment(desc), Elements: els}
	return name, true
}

// maxComment keeps comments inside the kernel's limit on user data
// (NFT_USERDATA_MAXLEN, 256 bytes, which also holds a TLV header).
const maxComment = 250

// comment makes s safe inside an nft double-quoted string, and short enough.
func comment(s string) string {
	s = strings.NewReplacer(`"`, "'", `\`, "/", "\n", " ").Replace(s)
	if len(s) > maxComment {
		s = s[:maxComment]
	}
	return s
}
