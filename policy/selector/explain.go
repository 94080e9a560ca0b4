package selector

import (
	"strconv"
	"strings"
)

// Explain says why sel gives the result it does on labels, naming the terms
// that decide it and the label values they saw, e.g.
// `tier == "db" is false (tier is "api")`, or for a || that fails,
// `a == "1" is false (a is missing); has(b) is false (b is missing)`.
// It is meant for people (weft policy trace), not for parsing. labels is
// not modified or retained. A Selector not made by this package is
// explained by its String alone.
func Explain(sel Selector, labels map[string]string) string {
	s, ok := sel.(*selector)
	if !ok {
		return sel.String()
	}
	var b strings.Builder
	s.root.explain(&b, mapLabels(labels))
	return b.String()
}

// explain writes the reasons for n's result: the first deciding operand of
// a chain that short-circuits, or every operand of one that does not.
func (n *node) explain(b *strings.Builder, l Labels) {
	result := n.eval(l)
	switch n.op {
	case opNot:
		n.kids[0].explain(b, l)
		return
	case opAnd, opOr:
		decisive := n.op == opOr // || is decided by a true operand, && by a false one
		if result == decisive {
			for _, k := range n.kids {
				if k.eval(l) == decisive {
					k.explain(b, l)
					return
				}
			}
		}
		for i, k := range n.kids {
			if i > 0 {
				b.WriteString("; ")
			}
			k.explain(b, l)
		}
		return
	}
	n.write(b)
	b.WriteString(" is ")
	b.WriteString(strconv.FormatBool(result))
	if n.key == "" {
		return
	}
	b.WriteString(" (")
	b.WriteString(n.key)
	if v, ok := l.Get(n.key); ok {
		b.WriteString(" is ")
		b.WriteString(strconv.Quote(v))
	} else {
		b.WriteString(" is missing")
	}
	b.WriteByte(')')
}
