package nft

import (
	"bytes"
	"fmt"
	"slices"
)

// delta is what turns the Ruleset last applied into a new one as one
// incremental transaction. diff makes it; queueDelta sends it in this order,
// so that every reference exists when it is made and is gone before what it
// names is deleted (the kernel checks references per message, not at
// commit):
//
//  1. NewChains are created empty (map elements and rules may jump to them);
//  2. NewSets are created with their elements;
//  3. in every set of Elements, Del is deleted, then (in a second pass over
//     all sets) Add is added: a changed element (verdict or comment) is
//     deleted and added again;
//  4. every chain of Fill is filled with its rules, an existing one flushed
//     first (Flush reports which): the first chain is always in Fill, as
//     its first rule carries the version comment (Compile makes that the
//     chain weft-version, whose rewrite costs the kernel no validation);
//  5. DelChains are flushed, all of them, then deleted (one may jump to
//     another);
//  6. DelSets are deleted (only rules flushed in 4 and 5 named them).
//
// Full, when not "", says why the change cannot be made incrementally;
// Apply then replaces the whole table and ignores the rest.
type delta struct {
	Full      string
	Version   string
	NewChains []string
	NewSets   []Set
	Elements  []elementDelta
	Fill      []Chain
	// Flush[i] reports whether Fill[i] exists before the transaction and is
	// flushed before it is filled.
	Flush     []bool
	DelChains []string
	DelSets   []string
}

// elementDelta is the change of the elements of one set that exists before
// and after: Set is its definition (its Elements are not used), Del and Add
// the elements to delete and add. For an interval set of single values
// (nft_set_rbtree), DelZeroEnd and AddZeroEnd delete or add the interval
// end at zero that precedes a first range not starting at zero (see
// elements).
type elementDelta struct {
	Set                    Set
	Del, Add               []Element
	DelZeroEnd, AddZeroEnd bool
}

// Thresholds of diff: a delta with more operations than
// max(minFullDelta, half the new table) is sent as a full replace, which
// then costs about as much and leaves a table built in one piece.
const minFullDelta = 2000

// Size returns the number of operations d sends: chains created or
// deleted, sets created, elements deleted or added, rules written.
func (d *delta) Size() int {
	n := len(d.NewChains) + len(d.DelChains) + len(d.DelSets)
	for _, s := range d.NewSets {
		n += 1 + len(s.Elements)
	}
	for _, e := range d.Elements {
		n += len(e.Del) + len(e.Add)
	}
	for _, c := range d.Fill {
		n += len(c.Rules)
	}
	return n
}

// size returns the number of operations a full load of rs sends.
func size(rs *Ruleset) int {
	n := len(rs.Chains) + len(rs.Sets)
	for _, s := range rs.Sets {
		n += len(s.Elements)
	}
	for _, c := range rs.Chains {
		n += len(c.Rules)
	}
	return n
}

// diff returns the delta from old, the ruleset the kernel holds, to new.
// It is pure: old and new are only read, and the delta shares their
// slices. Full is set when old has no chains, when the base chains (names,
// hooks, priorities, order) differ, when a set keeps its name but changes
// its definition (key, verdict, interval, comment), and when the delta
// would be larger than max(minFullDelta, half of new).
func diff(old, new *Ruleset) delta {
	d := delta{Version: new.Version}
	if len(old.Chains) == 0 {
		d.Full = "no previous ruleset"
		return d
	}
	if len(new.Chains) == 0 {
		d.Full = "new ruleset has no chains"
		return d
	}
	if r := baseChainsDiff(old.Chains, new.Chains); r != "" {
		d.Full = r
		return d
	}

	dOld, dNew := validDigests(old), validDigests(new)
	oldSets := make(map[string]*Set, len(old.Sets))
	for i := range old.Sets {
		oldSets[old.Sets[i].Name] = &old.Sets[i]
	}
	newSets := make(map[string]bool, len(new.Sets))
	for i := range new.Sets {
		s := &new.Sets[i]
		newSets[s.Name] = true
		o, ok := oldSets[s.Name]
		if !ok {
			d.NewSets = append(d.NewSets, *s)
			continue
		}
		if !sameSetDef(o, s) {
			d.Full = "set " + s.Name + " changed its definition"
			return d
		}
		head, tail := 0, 0
		if dOld != nil && dNew != nil {
			ca, cb := dOld.sets[s.Name], dNew.sets[s.Name]
			if sameChunks(ca, cb) && len(o.Elements) == len(s.Elements) {
				continue
			}
			if h, t, ok := window(ca, cb, len(o.Elements), len(s.Elements)); ok {
				head, tail = h, t
			}
		}
		if ed, changed := elementsDiff(o, s, head, tail); changed {
			d.Elements = append(d.Elements, ed)
		}
	}
	for _, s := range old.Sets {
		if !newSets[s.Name] {
			d.DelSets = append(d.DelSets, s.Name)
		}
	}

	oldChains := make(map[string]*Chain, len(old.Chains))
	for i := range old.Chains {
		oldChains[old.Chains[i].Name] = &old.Chains[i]
	}
	newChains := make(map[string]bool, len(new.Chains))
	for i := range new.Chains {
		c := &new.Chains[i]
		newChains[c.Name] = true
		o, ok := oldChains[c.Name]
		switch {
		case !ok:
			d.NewChains = append(d.NewChains, c.Name)
			if len(c.Rules) > 0 {
				d.Fill, d.Flush = append(d.Fill, *c), append(d.Flush, false)
			}
		case i == 0 || !sameChain(dOld, dNew, o, c):
			// The first chain carries the version in its first rule.
			d.Fill, d.Flush = append(d.Fill, *c), append(d.Flush, true)
		}
	}
	for _, c := range old.Chains {
		if !newChains[c.Name] {
			d.DelChains = append(d.DelChains, c.Name)
		}
	}
	if n, limit := d.Size(), max(minFullDelta, size(new)/2); n > limit {
		d.Full = fmt.Sprintf("delta of %d operations exceeds %d", n, limit)
	}
	return d
}

// baseChainsDiff returns "" when old and new have the same base chains, in
// the same order and with the same hooks, else a short reason.
func baseChainsDiff(old, new []Chain) string {
	var o, n []string
	for _, c := range old {
		if c.Hook != nil {
			o = append(o, fmt.Sprintf("%s %s %d", c.Name, c.Hook.Hook, c.Hook.Priority))
		}
	}
	for _, c := range new {
		if c.Hook != nil {
			n = append(n, fmt.Sprintf("%s %s %d", c.Name, c.Hook.Hook, c.Hook.Priority))
		}
	}
	if !slices.Equal(o, n) || old[0].Name != new[0].Name {
		return "base chains changed"
	}
	return ""
}

// sameSetDef reports whether a and b define the same set, elements aside.
func sameSetDef(a, b *Set) bool {
	return a.Name == b.Name && slices.Equal(a.Key, b.Key) && a.Verdict == b.Verdict &&
		a.Interval == b.Interval && a.Comment == b.Comment
}

// rbtree reports whether s is an interval set of single values, which the
// kernel keeps as start and interval-end elements.
func rbtree(s *Set) bool { return s.Interval && len(s.Key) == 1 }

// zeroEnd reports whether the kernel holds an interval end at zero before
// the elements of an rbtree set (see elements).
func zeroEnd(s *Set, els []Element) bool {
	return rbtree(s) && len(els) > 0 && !isZero(els[0].Key[0].From)
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// elementsDiff returns the elements to delete from and add to set o to make
// it n, and whether there are any. An element is identified by its key;
// one whose verdict or comment changed is deleted and added. A range of an
// rbtree set that changes at all is deleted whole and the new one added
// whole: the kernel refuses an interval end or start added inside a range
// (partial overlap), even when the other end goes in the same transaction.
//
// Compile emits elements in key order; diff then merges the two lists in
// one pass (after skipping their common head and tail, which is all of
// most sets), else it falls back to a map.
//
// head and tail are counts of elements known (from digests) to be equal at
// the head and at the tail of both lists: they are skipped unread.
func elementsDiff(o, n *Set, head, tail int) (elementDelta, bool) {
	ed := elementDelta{Set: *n}
	ed.Set.Elements = nil
	a, b := o.Elements, n.Elements
	za, zb := zeroEnd(o, a), zeroEnd(n, b)
	ed.DelZeroEnd, ed.AddZeroEnd = za && !zb, zb && !za
	if head+tail <= min(len(a), len(b)) {
		a, b = a[head:len(a)-tail], b[head:len(b)-tail]
	}
	for len(a) > 0 && len(b) > 0 && sameElement(&a[0], &b[0]) {
		a, b = a[1:], b[1:]
	}
	for len(a) > 0 && len(b) > 0 && sameElement(&a[len(a)-1], &b[len(b)-1]) {
		a, b = a[:len(a)-1], b[:len(b)-1]
	}
	if sortedElements(a) && sortedElements(b) {
		i, j := 0, 0
		for i < len(a) || j < len(b) {
			switch c := compareElements(a, b, i, j); {
			case c < 0:
				ed.Del = append(ed.Del, a[i])
				i++
			case c > 0:
				ed.Add = append(ed.Add, b[j])
				j++
			default:
				if !samePayload(&a[i], &b[j]) {
					ed.Del, ed.Add = append(ed.Del, a[i]), append(ed.Add, b[j])
				}
				i, j = i+1, j+1
			}
		}
	} else {
		ed.Del, ed.Add = unsortedDiff(a, b)
	}
	changed := len(ed.Del) > 0 || len(ed.Add) > 0 || ed.DelZeroEnd || ed.AddZeroEnd
	return ed, changed
}

// compareElements compares a[i] and b[j] by key, an exhausted list last.
func compareElements(a, b []Element, i, j int) int {
	switch {
	case i == len(a):
		return 1
	case j == len(b):
		return -1
	}
	return compareKeys(a[i].Key, b[j].Key)
}

// unsortedDiff returns the elements of a not in b (or changed) and of b
// not in a (or changed), by maps of their keys.
func unsortedDiff(a, b []Element) (del, add []Element) {
	index := func(els []Element) map[string]*Element {
		m := make(map[string]*Element, len(els))
		for i := range els {
			m[keyString(els[i].Key)] = &els[i]
		}
		return m
	}
	ia, ib := index(a), index(b)
	for i := range a {
		if o, ok := ib[keyString(a[i].Key)]; !ok || !samePayload(o, &a[i]) {
			del = append(del, a[i])
		}
	}
	for i := range b {
		if o, ok := ia[keyString(b[i].Key)]; !ok || !samePayload(o, &b[i]) {
			add = append(add, b[i])
		}
	}
	return del, add
}

func keyString(k []Range) string {
	var b []byte
	for _, r := range k {
		b = append(b, byte(len(r.From)))
		b = append(b, r.From...)
		b = append(b, r.To...)
	}
	return string(b)
}

// sortedElements reports whether els are in strictly increasing key order.
func sortedElements(els []Element) bool {
	for i := 1; i < len(els); i++ {
		if compareKeys(els[i-1].Key, els[i].Key) >= 0 {
			return false
		}
	}
	return true
}

// compareKeys orders keys field by field, by From then To.
func compareKeys(a, b []Range) int {
	for i := range min(len(a), len(b)) {
		if c := bytes.Compare(a[i].From, b[i].From); c != 0 {
			return c
		}
		if c := bytes.Compare(a[i].To, b[i].To); c != 0 {
			return c
		}
	}
	return len(a) - len(b)
}

// sameElement reports whether a and b have the same key, verdict and
// comment.
func sameElement(a, b *Element) bool {
	if len(a.Key) != len(b.Key) || !samePayload(a, b) {
		return false
	}
	for i := range a.Key {
		if !bytes.Equal(a.Key[i].From, b.Key[i].From) || !bytes.Equal(a.Key[i].To, b.Key[i].To) {
			return false
		}
	}
	return true
}

func samePayload(a, b *Element) bool {
	if a.Comment != b.Comment || (a.Verdict == nil) != (b.Verdict == nil) {
		return false
	}
	return a.Verdict == nil || *a.Verdict == *b.Verdict
}

// sameChain reports whether chains a (of the old ruleset, with digests
// dOld) and b (of the new one) hold the same rules: by their digests when
// both have them, else match by match.
func sameChain(dOld, dNew *digests, a, b *Chain) bool {
	if dOld != nil && dNew != nil {
		ha, okA := dOld.chains[a.Name]
		hb, okB := dNew.chains[b.Name]
		if okA && okB {
			return ha == hb && len(a.Rules) == len(b.Rules)
		}
	}
	return sameRules(a.Rules, b.Rules)
}

// sameRules reports whether two rule lists are the same, match by match.
func sameRules(a, b []Rule) bool {
	return slices.EqualFunc(a, b, sameRule)
}

func sameRule(a, b Rule) bool {
	if a.Family != b.Family || a.Counter != b.Counter || a.Log != b.Log || a.Verdict != b.Verdict ||
		a.Comment != b.Comment || (a.Mark == nil) != (b.Mark == nil) || (a.Mark != nil && *a.Mark != *b.Mark) {
		return false
	}
	return slices.EqualFunc(a.Matches, b.Matches, sameMatch)
}

func sameMatch(a, b Match) bool {
	switch a := a.(type) {
	case *Cmp:
		b, ok := b.(*Cmp)
		return ok && a.Field == b.Field && a.Neq == b.Neq && bytes.Equal(a.Value, b.Value) &&
			bytes.Equal(a.To, b.To) && (a.To == nil) == (b.To == nil)
	case *Lookup:
		b, ok := b.(*Lookup)
		if !ok || !slices.Equal(a.Fields, b.Fields) || a.Set != b.Set || a.Neq != b.Neq || a.Vmap != b.Vmap ||
			(a.Inline == nil) != (b.Inline == nil) {
			return false
		}
		return a.Inline == nil || (sameSetDef(a.Inline, b.Inline) &&
			slices.EqualFunc(a.Inline.Elements, b.Inline.Elements, func(x, y Element) bool { return sameElement(&x, &y) }))
	case *CtState:
		b, ok := b.(*CtState)
		return ok && slices.Equal(a.States, b.States)
	case *MarkTest:
		b, ok := b.(*MarkTest)
		return ok && *a == *b
	}
	return false
}
