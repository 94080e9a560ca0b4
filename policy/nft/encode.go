package nft

import (
	"bytes"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Element batching. The library puts all elements of one call into one
// netlink message, whose length field is 16 bits (FACTS.md): Apply sends
// large sets in several messages of the same transaction.
const (
	maxElementsPerMessage = 500
	maxElementBytes       = 32 << 10
)

// firstReg is the first 32-bit register (NFT_REG32_00) a rule loads into;
// the fields of a concatenation take consecutive registers, each rounded up
// to 4 bytes, as nft lays them out.
const firstReg = 8

// table returns weft's policy table. A new value each call: the library
// keeps pointers to it in queued messages.
func table() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
}

var keyDatatypes = map[KeyType]nftables.SetDatatype{
	KeyIfname: nftables.TypeIFName, KeyIPv4: nftables.TypeIPAddr, KeyIPv6: nftables.TypeIP6Addr,
	KeyProto: nftables.TypeInetProto, KeyPort: nftables.TypeInetService,
	KeyICMPType: nftables.TypeICMPType, KeyICMPCode: nftables.TypeICMPCode,
	KeyICMPv6Type: nftables.TypeICMP6Type, KeyICMPv6Code: nftables.TypeICMPV6Code,
}

var hookNums = map[string]*nftables.ChainHook{
	"forward": nftables.ChainHookForward, "input": nftables.ChainHookInput, "output": nftables.ChainHookOutput,
}

// encoder queues a Ruleset on a Conn.
type encoder struct {
	conn Conn
	t    *nftables.Table
}

// queueReplace queues the messages that replace table inet weft with rs:
// add the table (so that deleting it cannot fail), delete it, add it again
// with its chains, then its sets and maps (whose verdicts name chains),
// then the rules (which name sets and chains). Flush sends them as one
// transaction.
func queueReplace(conn Conn, rs *Ruleset) error {
	e := &encoder{conn: conn, t: table()}
	conn.AddTable(e.t)
	conn.DelTable(e.t)
	conn.AddTable(e.t)
	chains := make([]*nftables.Chain, len(rs.Chains))
	for i, c := range rs.Chains {
		nc := &nftables.Chain{Name: c.Name, Table: e.t}
		if c.Hook != nil {
			accept := nftables.ChainPolicyAccept
			nc.Type, nc.Hooknum, nc.Policy = nftables.ChainTypeFilter, hookNums[c.Hook.Hook], &accept
			nc.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(c.Hook.Priority))
		}
		chains[i] = conn.AddChain(nc)
	}
	for _, s := range rs.Sets {
		if err := e.set(s); err != nil {
			return err
		}
	}
	for i, c := range rs.Chains {
		if err := e.rules(chains[i], c, i == 0, rs.Version); err != nil {
			return err
		}
	}
	return nil
}

// newSet returns the library's Set for s (without elements).
func (e *encoder) newSet(s Set) *nftables.Set {
	// Mark the key's byte order as nft does, for nft to list the
	// elements: interface names in host order (else nft lists them as
	// ""), everything else in network order.
	ns := &nftables.Set{Table: e.t, Name: s.Name, Interval: s.Interval, Concatenation: len(s.Key) > 1,
		Comment: s.Comment, KeyByteOrder: binaryutil.BigEndian}
	if len(s.Key) == 1 && s.Key[0] == KeyIfname {
		ns.KeyByteOrder = binaryutil.NativeEndian
	}
	if len(s.Key) == 1 {
		ns.KeyType = keyDatatypes[s.Key[0]]
	} else {
		types := make([]nftables.SetDatatype, len(s.Key))
		for i, k := range s.Key {
			types[i] = keyDatatypes[k]
		}
		ns.KeyType = nftables.MustConcatSetType(types...)
	}
	if s.Verdict {
		ns.IsMap, ns.DataType = true, nftables.TypeVerdict
	}
	return ns
}

// set queues a named set and its elements, in batches.
func (e *encoder) set(s Set) error {
	ns := e.newSet(s)
	if err := e.conn.AddSet(ns, nil); err != nil {
		return fmt.Errorf("add set %s: %w", s.Name, err)
	}
	return e.elements(ns, elements(s), true)
}

// elements queues adding (or deleting) groups of elements to set ns, in
// messages of at most maxElementsPerMessage elements and about
// maxElementBytes bytes; a group is never split.
func (e *encoder) elements(ns *nftables.Set, groups [][]nftables.SetElement, add bool) error {
	send, verb := e.conn.SetAddElements, "add"
	if !add {
		send, verb = e.conn.SetDeleteElements, "delete"
	}
	var batch []nftables.SetElement
	size := 0
	for _, g := range groups {
		n := 0
		for _, el := range g {
			n += len(el.Key) + len(el.KeyEnd) + len(el.Comment) + 64
			if el.VerdictData != nil {
				n += len(el.VerdictData.Chain)
			}
		}
		if len(batch) > 0 && (len(batch)+len(g) > maxElementsPerMessage || size+n > maxElementBytes) {
			if err := send(ns, batch); err != nil {
				return fmt.Errorf("%s elements of set %s: %w", verb, ns.Name, err)
			}
			batch, size = nil, 0
		}
		batch, size = append(batch, g...), size+n
	}
	if len(batch) > 0 {
		if err := send(ns, batch); err != nil {
			return fmt.Errorf("%s elements of set %s: %w", verb, ns.Name, err)
		}
	}
	return nil
}

// elements returns the kernel elements of s, grouped so that a batch never
// splits a range's start from its end.
func elements(s Set) [][]nftables.SetElement {
	return kernelElements(s, s.Elements, zeroEnd(&s, s.Elements))
}

// kernelElements returns the kernel elements of els, elements of set s,
// grouped so that a batch never splits a range's start from its end; with
// zero, an interval end at zero first.
func kernelElements(s Set, els []Element, zero bool) [][]nftables.SetElement {
	var out [][]nftables.SetElement
	concat := len(s.Key) > 1
	if zero {
		out = append(out, []nftables.SetElement{zeroEndElement(s)})
	}
	for _, el := range els {
		ne := nftables.SetElement{Comment: el.Comment}
		if el.Verdict != nil {
			ne.VerdictData = verdictExpr(*el.Verdict)
		}
		switch {
		case !s.Interval:
			ne.Key = key(el, false, concat)
			out = append(out, []nftables.SetElement{ne})
		case concat:
			// A concatenation with ranges (nft_set_pipapo) takes the end of
			// every field's range as NFTA_SET_ELEM_KEY_END.
			ne.Key, ne.KeyEnd = key(el, false, true), key(el, true, true)
			out = append(out, []nftables.SetElement{ne})
		default:
			// Plain ranges (nft_set_rbtree) are a start element and an
			// interval-end element one past the end, as nft sends them,
			// with an interval end at zero before a first range that does
			// not start there (zero, above).
			ne.Key = el.Key[0].From
			g := []nftables.SetElement{ne}
			if end, ok := increment(el.Key[0].To); ok {
				g = append(g, nftables.SetElement{Key: end, IntervalEnd: true})
			}
			out = append(out, g)
		}
	}
	return out
}

// zeroEndElement returns the interval end at zero of rbtree set s.
func zeroEndElement(s Set) nftables.SetElement {
	return nftables.SetElement{Key: make([]byte, keyLen(s.Key[0])), IntervalEnd: true}
}

// keysOnly returns groups with only what identifies each element to a
// delete: key, key end and the interval-end flag.
func keysOnly(groups [][]nftables.SetElement) [][]nftables.SetElement {
	for _, g := range groups {
		for i := range g {
			g[i] = nftables.SetElement{Key: g[i].Key, KeyEnd: g[i].KeyEnd, IntervalEnd: g[i].IntervalEnd}
		}
	}
	return groups
}

// queueDelta queues d (not Full) in the order its doc gives. Flush sends
// it as one transaction.
func queueDelta(conn Conn, d *delta) error {
	e := &encoder{conn: conn, t: table()}
	chain := func(name string) *nftables.Chain { return &nftables.Chain{Name: name, Table: e.t} }
	for _, name := range d.NewChains {
		conn.AddChain(chain(name))
	}
	for _, s := range d.NewSets {
		if err := e.set(s); err != nil {
			return err
		}
	}
	for _, ed := range d.Elements {
		if err := e.elements(e.newSet(ed.Set), keysOnly(kernelElements(ed.Set, ed.Del, ed.DelZeroEnd)), false); err != nil {
			return err
		}
	}
	for _, ed := range d.Elements {
		if err := e.elements(e.newSet(ed.Set), kernelElements(ed.Set, ed.Add, ed.AddZeroEnd), true); err != nil {
			return err
		}
	}
	for i, c := range d.Fill {
		nc := chain(c.Name)
		if d.Flush[i] {
			conn.FlushChain(nc)
		}
		// Fill[0] is the first chain: its first rule carries the version.
		if err := e.rules(nc, c, i == 0, d.Version); err != nil {
			return err
		}
	}
	for _, name := range d.DelChains {
		conn.FlushChain(chain(name))
	}
	for _, name := range d.DelChains {
		conn.DelChain(chain(name))
	}
	for _, name := range d.DelSets {
		conn.DelSet(&nftables.Set{Table: e.t, Name: name})
	}
	return nil
}

// rules queues the rules of c into nc; with first, the first carries
// version as its comment.
func (e *encoder) rules(nc *nftables.Chain, c Chain, first bool, version string) error {
	for j, r := range c.Rules {
		if first && j == 0 {
			r.Comment = version
		}
		exprs, err := e.rule(r)
		if err != nil {
			return fmt.Errorf("encode rule %d of chain %s: %w", j, c.Name, err)
		}
		nr := &nftables.Rule{Table: e.t, Chain: nc, Exprs: exprs}
		if r.Comment != "" {
			nr.UserData = userdata.AppendString(nil, userdata.TypeComment, r.Comment)
		}
		e.conn.AddRule(nr)
	}
	return nil
}

// key returns an element's key (or, with end, the end of its ranges),
// each field of a concatenation padded to 4 bytes.
func key(el Element, end, concat bool) []byte {
	var b []byte
	for _, r := range el.Key {
		v := r.From
		if end {
			v = r.To
		}
		b = append(b, v...)
		if concat {
			for len(b)%4 != 0 {
				b = append(b, 0)
			}
		}
	}
	return b
}

func verdictExpr(v Verdict) *expr.Verdict {
	kinds := map[VerdictKind]expr.VerdictKind{VerdictAccept: expr.VerdictAccept, VerdictDrop: expr.VerdictDrop,
		VerdictReturn: expr.VerdictReturn, VerdictJump: expr.VerdictJump, VerdictGoto: expr.VerdictGoto}
	return &expr.Verdict{Kind: kinds[v.Kind], Chain: v.Chain}
}

// load returns the expression that loads field f into register reg.
func load(f Field, reg uint32) expr.Any {
	payload := func(base expr.PayloadBase, off, n uint32) expr.Any {
		return &expr.Payload{DestRegister: reg, Base: base, Offset: off, Len: n}
	}
	nh, th := expr.PayloadBaseNetworkHeader, expr.PayloadBaseTransportHeader
	switch f {
	case FieldL4Proto:
		return &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg}
	case FieldIIFName:
		return &expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg}
	case FieldOIFName:
		return &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: reg}
	case FieldSaddr4:
		return payload(nh, 12, 4) // RFC 791
	case FieldDaddr4:
		return payload(nh, 16, 4)
	case FieldSaddr6:
		return payload(nh, 8, 16) // RFC 8200
	case FieldDaddr6:
		return payload(nh, 24, 16)
	case FieldSport:
		return payload(th, 0, 2) // TCP, UDP, SCTP and UDP-Lite alike
	case FieldDport:
		return payload(th, 2, 2)
	case FieldICMPType, FieldICMPv6Type:
		return payload(th, 0, 1)
	}
	return payload(th, 1, 1) // ICMP code
}

// rule returns the expressions of r. Anonymous sets are queued on the
// way, as they must precede the rule that uses them.
func (e *encoder) rule(r Rule) ([]expr.Any, error) {
	var out []expr.Any
	fam := r.Family
	for _, m := range r.Matches {
		switch m := m.(type) {
		case *Cmp:
			fam = max(fam, m.Field.family())
		case *Lookup:
			for _, f := range m.Fields {
				fam = max(fam, f.family())
			}
		}
	}
	if fam != 0 {
		// In an inet table every IPv4 or IPv6 header field needs this check
		// first, as nft adds it.
		proto := byte(unix.NFPROTO_IPV4)
		if fam == 6 {
			proto = unix.NFPROTO_IPV6
		}
		out = append(out, &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}})
	}
	for _, m := range r.Matches {
		switch m := m.(type) {
		case *Cmp:
			out = append(out, cmpExprs(m)...)
		case *Lookup:
			reg := uint32(firstReg)
			for _, f := range m.Fields {
				out = append(out, load(f, reg))
				reg += uint32((keyLen(f.keyType()) + 3) / 4)
			}
			lk := &expr.Lookup{SourceRegister: firstReg, SetName: m.Set, Invert: m.Neq}
			if m.Inline != nil {
				s := e.newSet(*m.Inline)
				s.Anonymous, s.Constant = true, true
				var els []nftables.SetElement
				for _, g := range elements(*m.Inline) {
					els = append(els, g...)
				}
				if err := e.conn.AddSet(s, els); err != nil {
					return nil, fmt.Errorf("add anonymous set: %w", err)
				}
				lk.SetName, lk.SetID = s.Name, s.ID
			}
			if m.Vmap {
				lk.IsDestRegSet, lk.DestRegister = true, 0 // the verdict register
			}
			out = append(out, lk)
		case *CtState:
			var bits uint32
			for _, s := range m.States {
				bits |= map[string]uint32{"invalid": expr.CtStateBitINVALID, "established": expr.CtStateBitESTABLISHED,
					"related": expr.CtStateBitRELATED, "new": expr.CtStateBitNEW}[s]
			}
			out = append(out, &expr.Ct{Register: 1, Key: expr.CtKeySTATE},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native(bits), Xor: native(0)},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: native(0)})
		case *MarkTest:
			out = append(out, &expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native(m.Bit), Xor: native(0)},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: native(m.Bit)})
		default:
			return nil, fmt.Errorf("unknown match %T", m)
		}
	}
	if r.Counter {
		out = append(out, &expr.Counter{})
	}
	if r.Log != "" {
		out = append(out, &expr.Log{Key: 1 << unix.NFTA_LOG_PREFIX, Data: []byte(r.Log)})
	}
	if m := r.Mark; m != nil {
		xor := uint32(0)
		if m.Set {
			xor = m.Bit
		}
		out = append(out, &expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native(^m.Bit), Xor: native(xor)},
			&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1})
	}
	if r.Verdict.Kind != VerdictNone {
		out = append(out, verdictExpr(r.Verdict))
	}
	return out, nil
}

// cmpExprs compares a field with a value, an address prefix (masked, as
// nft does) or a range.
func cmpExprs(m *Cmp) []expr.Any {
	op, rop := expr.CmpOpEq, expr.CmpOpEq
	if m.Neq {
		op, rop = expr.CmpOpNeq, expr.CmpOpNeq
	}
	out := []expr.Any{load(m.Field, firstReg)}
	switch {
	case m.To == nil || bytes.Equal(m.Value, m.To):
		return append(out, &expr.Cmp{Op: op, Register: firstReg, Data: m.Value})
	case m.Field.family() != 0:
		if p, ok := rangePrefix(Range{From: m.Value, To: m.To}); ok {
			mask := netipMask(p)
			return append(out, &expr.Bitwise{SourceRegister: firstReg, DestRegister: firstReg, Len: uint32(len(mask)),
				Mask: mask, Xor: make([]byte, len(mask))}, &expr.Cmp{Op: op, Register: firstReg, Data: m.Value})
		}
	}
	return append(out, &expr.Range{Op: rop, Register: firstReg, FromData: m.Value, ToData: m.To})
}

// netipMask returns the netmask of p as bytes.
func netipMask(p netip.Prefix) []byte {
	b := make([]byte, p.Addr().BitLen()/8)
	for i := range p.Bits() {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return b
}

// native returns v in host byte order: how the kernel keeps the mark and
// the conntrack state.
func native(v uint32) []byte { return binaryutil.NativeEndian.PutUint32(v) }
