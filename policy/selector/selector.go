// Package selector parses and evaluates Calico label selectors, such as
// `app == "web" && tier in {"api", "db"} && !has(quarantine)`, exactly as
// Calico (libcalico-go lib/selector) accepts, evaluates and prints them.
//
// Data flow: Parse tokenizes the text (tokens carry their byte offsets, so a
// *ParseError points at the offending byte), parses it by precedence (!
// binds tighter than &&, which binds tighter than ||) into an immutable tree
// of nodes, and renders the canonical form once. Evaluate walks the tree
// against a label map; it does not allocate.
//
// Calico's quirks, reproduced on purpose:
//   - "" (or only blanks) is all(), and prints as all().
//   - Only spaces and tabs separate tokens; a newline is an error.
//   - Strings take double or single quotes and have no escapes, so a value
//     cannot hold both quote characters. Values are not validated as label
//     values: `a == "x y"` parses and matches nothing valid.
//   - Label names in selectors are runs of [A-Za-z0-9_./-], 1 to 512 bytes;
//     they are not checked as Kubernetes qualified names (see ValidateLabelKey
//     for the names that labels themselves may have).
//   - `a != "x"` and `a not in {...}` are true when a is missing; ==, in,
//     contains, starts with and ends with are false when it is missing.
//   - `starts with`, `ends with` and `not in` allow any blanks between their
//     two words, including none (`startswith`, `notin`).
//   - A set may be empty (`a in {}` matches nothing) and may end with a
//     comma (`{"a",}`); its values print sorted and without duplicates.
//   - Leading !s collapse by parity: `!!has(a)` is `has(a)`.
//   - global() matches every label set, like all(); it only means something
//     in a namespaceSelector, where the policy layer treats it as "objects
//     that have no namespace" (see UsesGlobal).
//
// weft follows the current libcalico-go tokenizer. Older Calico releases
// tokenized with regular expressions that also accepted newlines, carriage
// returns and form feeds inside has( ), all( ) and global( ) and between
// the words of starts with, ends with and not in; weft rejects those, as
// Calico does now. Two deliberate differences: more than 1,000 nested
// parentheses are an error (Calico recurses until its stack overflows), and
// !(!x) is x (Calico keeps both negations and prints "!!x", which it then
// reads back as x; collapsing them makes the canonical form a fixed point).
//
// Canonical form: each && or || chain is wrapped in parentheses, with one
// space around operators; values take double quotes unless they contain a
// double quote; parentheses the user wrote around a single term vanish;
// nested chains are not flattened (`(a && b) && c` prints as
// `((a == "x" && b == "y") && c == "z")`), as in Calico.
package selector

import (
	"slices"
	"strings"
)

// Selector is a parsed Calico label selector. It is immutable and safe for
// concurrent use.
type Selector interface {
	// Evaluate reports whether labels match. labels is not modified or
	// retained; nil means no labels.
	Evaluate(labels map[string]string) bool
	// EvaluateLabels is Evaluate for labels that are not a map (for example
	// an endpoint's labels merged with its namespace's, computed on lookup).
	EvaluateLabels(labels Labels) bool
	// String returns the canonical form, as Calico prints it (e.g.
	// `(a == "b" && has(c))`); parsing it gives an equal selector, that is
	// one with the same String.
	String() string
	// UsesGlobal reports whether the selector contains global() (meaningful
	// for a namespaceSelector).
	UsesGlobal() bool
	// Labels returns the label keys the selector refers to, sorted and
	// without duplicates; the caller owns the slice.
	Labels() []string
}

// Labels is a source of labels for EvaluateLabels. Get returns the value of
// key and whether it is present. It must be safe to call from the goroutine
// that calls EvaluateLabels.
type Labels interface {
	Get(key string) (value string, ok bool)
}

// mapLabels adapts a map to Labels without allocating (a map fits in an
// interface word).
type mapLabels map[string]string

func (m mapLabels) Get(key string) (string, bool) { v, ok := m[key]; return v, ok }

// op is the kind of a node.
type op uint8

const (
	opAll op = iota
	opGlobal
	opHas
	opEq
	opNe
	opIn
	opNotIn
	opContains
	opStartsWith
	opEndsWith
	opNot
	opAnd
	opOr
)

// text returns how a label operator prints, with its spaces.
func (o op) text() string {
	switch o {
	case opEq:
		return " == "
	case opNe:
		return " != "
	case opIn:
		return " in "
	case opNotIn:
		return " not in "
	case opContains:
		return " contains "
	case opStartsWith:
		return " starts with "
	case opEndsWith:
		return " ends with "
	}
	return " ? "
}

// node is one term of a parsed selector. Which fields are set depends on op:
// key for has and the label operators, value for the single-value operators,
// set (sorted, deduplicated) for in and not in, kids for !, && and ||.
type node struct {
	op    op
	key   string
	value string
	set   []string
	kids  []*node
}

func (n *node) eval(l Labels) bool {
	switch n.op {
	case opAll, opGlobal:
		return true
	case opHas:
		_, ok := l.Get(n.key)
		return ok
	case opNot:
		return !n.kids[0].eval(l)
	case opAnd:
		for _, k := range n.kids {
			if !k.eval(l) {
				return false
			}
		}
		return true
	case opOr:
		for _, k := range n.kids {
			if k.eval(l) {
				return true
			}
		}
		return false
	}
	v, ok := l.Get(n.key)
	switch n.op {
	case opEq:
		return ok && v == n.value
	case opNe:
		return !ok || v != n.value // Calico: a missing label is "not equal"
	case opIn:
		return ok && inSet(n.set, v)
	case opNotIn:
		return !ok || !inSet(n.set, v) // Calico: a missing label is "not in"
	case opContains:
		return ok && strings.Contains(v, n.value)
	case opStartsWith:
		return ok && strings.HasPrefix(v, n.value)
	case opEndsWith:
		return ok && strings.HasSuffix(v, n.value)
	}
	return false
}

func inSet(set []string, v string) bool {
	if len(set) <= 8 { // short sets: a scan beats a binary search
		return slices.Contains(set, v)
	}
	_, ok := slices.BinarySearch(set, v)
	return ok
}

// write appends the canonical form of n to b.
func (n *node) write(b *strings.Builder) {
	switch n.op {
	case opAll:
		b.WriteString("all()")
	case opGlobal:
		b.WriteString("global()")
	case opHas:
		b.WriteString("has(")
		b.WriteString(n.key)
		b.WriteByte(')')
	case opNot:
		b.WriteByte('!')
		n.kids[0].write(b)
	case opAnd, opOr:
		sep := " && "
		if n.op == opOr {
			sep = " || "
		}
		b.WriteByte('(')
		for i, k := range n.kids {
			if i > 0 {
				b.WriteString(sep)
			}
			k.write(b)
		}
		b.WriteByte(')')
	case opIn, opNotIn:
		b.WriteString(n.key)
		b.WriteString(n.op.text())
		b.WriteByte('{')
		for i, v := range n.set {
			if i > 0 {
				b.WriteString(", ")
			}
			writeQuoted(b, v)
		}
		b.WriteByte('}')
	default:
		b.WriteString(n.key)
		b.WriteString(n.op.text())
		writeQuoted(b, n.value)
	}
}

// writeQuoted quotes s as Calico does: double quotes, unless s holds one.
// (No string holds both: the syntax has no escapes.)
func writeQuoted(b *strings.Builder, s string) {
	q := byte('"')
	if strings.IndexByte(s, '"') >= 0 {
		q = '\''
	}
	b.WriteByte(q)
	b.WriteString(s)
	b.WriteByte(q)
}

// walk calls f on n and every node below it, parents first.
func (n *node) walk(f func(*node)) {
	f(n)
	for _, k := range n.kids {
		k.walk(f)
	}
}

// selector implements Selector.
type selector struct {
	root   *node
	str    string // canonical form, rendered once at parse time
	global bool
}

func newSelector(root *node) *selector {
	var b strings.Builder
	root.write(&b)
	s := &selector{root: root, str: b.String()}
	root.walk(func(n *node) { s.global = s.global || n.op == opGlobal })
	return s
}

func (s *selector) Evaluate(labels map[string]string) bool {
	return s.root.eval(mapLabels(labels))
}

func (s *selector) EvaluateLabels(labels Labels) bool { return s.root.eval(labels) }

func (s *selector) String() string { return s.str }

func (s *selector) UsesGlobal() bool { return s.global }

func (s *selector) Labels() []string {
	var keys []string
	s.root.walk(func(n *node) {
		if n.key != "" {
			keys = append(keys, n.key)
		}
	})
	slices.Sort(keys)
	return slices.Compact(keys)
}

// All returns the selector all(), which matches every label set.
func All() Selector { return newSelector(&node{op: opAll}) }

// MustParse is Parse for selectors known to be valid (constants, tests); it
// panics if s does not parse.
func MustParse(s string) Selector {
	sel, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return sel
}
