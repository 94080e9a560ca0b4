package selector

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits. maxLabelLen is Calico's (tokenizer.MaxLabelLength). maxDepth is
// weft's own: Calico has no limit and would overflow its stack (a fatal
// error, not a panic) on a selector of a million "(", which a policy file
// could carry; a thousand levels is far beyond anything people or tools
// write.
const (
	maxLabelLen = 512
	maxDepth    = 1000
)

// ParseError is the error Parse returns: the selector, the byte offset in it
// where the problem was found (len(Selector) for "too short"), and what was
// expected there.
type ParseError struct {
	Selector string
	Pos      int
	Msg      string
}

// Error returns e.g. `selector "a == ": at 5: expected a quoted value`.
func (e *ParseError) Error() string {
	return fmt.Sprintf("selector %q: at %d: %s", e.Selector, e.Pos, e.Msg)
}

type kind uint8

const (
	tokNone kind = iota
	tokLabel
	tokString
	tokLBrace
	tokRBrace
	tokComma
	tokEq
	tokNe
	tokIn
	tokNotIn
	tokContains
	tokStartsWith
	tokEndsWith
	tokNot
	tokAnd
	tokOr
	tokLParen
	tokRParen
	tokHas
	tokAll
	tokGlobal
	tokEOF
)

// token is one lexeme: its kind, its byte offset, and its text (the label
// name for tokLabel and tokHas, the unquoted value for tokString).
type token struct {
	kind kind
	pos  int
	text string
}

// describe names a token for an error message.
func (t token) describe() string {
	switch t.kind {
	case tokLabel:
		return fmt.Sprintf("label %q", t.text)
	case tokString:
		return fmt.Sprintf("quoted value %q", t.text)
	case tokHas:
		return "has(" + t.text + ")"
	case tokAll:
		return "all()"
	case tokGlobal:
		return "global()"
	case tokEOF:
		return "the end of the selector"
	}
	return fmt.Sprintf("%q", kindText(t.kind))
}

// kindText is the spelling of a fixed token.
func kindText(k kind) string {
	return [...]string{
		tokLBrace: "{", tokRBrace: "}", tokComma: ",", tokEq: "==", tokNe: "!=",
		tokIn: "in", tokNotIn: "not in", tokContains: "contains", tokStartsWith: "starts with",
		tokEndsWith: "ends with", tokNot: "!", tokAnd: "&&", tokOr: "||", tokLParen: "(", tokRParen: ")",
		tokEOF: "",
	}[k]
}

// labelOp maps an operator token to its node op.
func labelOp(k kind) (op, bool) {
	switch k {
	case tokEq:
		return opEq, true
	case tokNe:
		return opNe, true
	case tokIn:
		return opIn, true
	case tokNotIn:
		return opNotIn, true
	case tokContains:
		return opContains, true
	case tokStartsWith:
		return opStartsWith, true
	case tokEndsWith:
		return opEndsWith, true
	}
	return 0, false
}

// parser is a recursive-descent parser over a lexer that produces one token
// of lookahead at a time.
type parser struct {
	src   string
	pos   int   // next byte to lex
	tok   token // current token
	depth int   // open parentheses
}

// Parse parses a Calico selector. An empty or all-blank selector is all(), as
// in Calico. Errors are *ParseError.
func Parse(s string) (Selector, error) {
	p := &parser{src: s}
	if err := p.next(); err != nil {
		return nil, err
	}
	if p.tok.kind == tokEOF {
		return All(), nil
	}
	root, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokEOF {
		return nil, p.errAt(p.tok.pos, `expected "&&", "||" or the end of the selector, found %s`, p.tok.describe())
	}
	return newSelector(root), nil
}

func (p *parser) errAt(pos int, format string, args ...any) *ParseError {
	return &ParseError{Selector: p.src, Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

// parseOr parses and-terms separated by ||.
func (p *parser) parseOr() (*node, error) {
	return p.parseChain(tokOr, opOr, p.parseAnd)
}

// parseAnd parses operations separated by &&.
func (p *parser) parseAnd() (*node, error) {
	return p.parseChain(tokAnd, opAnd, p.parseOperation)
}

// parseChain parses one or more terms separated by sep; a single term is
// returned as it is, as Calico does.
func (p *parser) parseChain(sep kind, o op, term func() (*node, error)) (*node, error) {
	n, err := term()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != sep {
		return n, nil
	}
	chain := &node{op: o, kids: []*node{n}}
	for p.tok.kind == sep {
		if err := p.next(); err != nil {
			return nil, err
		}
		if n, err = term(); err != nil {
			return nil, err
		}
		chain.kids = append(chain.kids, n)
	}
	return chain, nil
}

// parseOperation parses one term with any leading !s: has(), all(),
// global(), a label operation, or a parenthesized expression.
func (p *parser) parseOperation() (*node, error) {
	negated := false
	for p.tok.kind == tokNot {
		negated = !negated
		if err := p.next(); err != nil {
			return nil, err
		}
	}
	var n *node
	t := p.tok
	switch t.kind {
	case tokHas:
		n = &node{op: opHas, key: t.text}
	case tokAll:
		n = &node{op: opAll}
	case tokGlobal:
		n = &node{op: opGlobal}
	case tokLabel:
		var err error
		if n, err = p.parseLabelOp(); err != nil {
			return nil, err
		}
	case tokLParen:
		if p.depth++; p.depth > maxDepth {
			return nil, p.errAt(t.pos, "more than %d nested parentheses", maxDepth)
		}
		if err := p.next(); err != nil {
			return nil, err
		}
		var err error
		if n, err = p.parseOr(); err != nil {
			return nil, err
		}
		if p.tok.kind != tokRParen {
			return nil, p.errAt(p.tok.pos, `expected ")" to close "(" at %d, found %s`, t.pos, p.tok.describe())
		}
		p.depth--
	default:
		return nil, p.errAt(t.pos, `expected a term such as has(a), a == "b" or (...), found %s`, t.describe())
	}
	if err := p.next(); err != nil {
		return nil, err
	}
	if !negated {
		return n, nil
	}
	if n.op == opNot {
		// !(!x) is x. Calico keeps both and prints "!!x", which reads back
		// as x; collapsing here keeps the canonical form stable.
		return n.kids[0], nil
	}
	return &node{op: opNot, kids: []*node{n}}, nil
}

// parseLabelOp parses `label OP "value"` or `label [not] in {...}`, with the
// label as the current token; it leaves the last token of the operation
// current.
func (p *parser) parseLabelOp() (*node, error) {
	label := p.tok
	if err := p.next(); err != nil {
		return nil, err
	}
	opTok := p.tok
	o, ok := labelOp(opTok.kind)
	if !ok {
		return nil, p.errAt(opTok.pos, "expected an operator after label %q (==, !=, in, not in, contains, starts with or ends with), found %s",
			label.text, opTok.describe())
	}
	if err := p.next(); err != nil {
		return nil, err
	}
	n := &node{op: o, key: label.text}
	if o != opIn && o != opNotIn {
		if p.tok.kind != tokString {
			return nil, p.errAt(p.tok.pos, "expected a quoted value after %q, found %s", kindText(opTok.kind), p.tok.describe())
		}
		n.value = p.tok.text
		return n, nil
	}
	if p.tok.kind != tokLBrace {
		return nil, p.errAt(p.tok.pos, `expected a set such as {"a", "b"} after %q, found %s`, kindText(opTok.kind), p.tok.describe())
	}
	// Calico's set literal: { [value {, value} [,]] }; a trailing comma is
	// accepted.
	n.set = []string{}
	for {
		if err := p.next(); err != nil {
			return nil, err
		}
		if p.tok.kind != tokString {
			break
		}
		n.set = append(n.set, p.tok.text)
		if err := p.next(); err != nil {
			return nil, err
		}
		if p.tok.kind != tokComma {
			if p.tok.kind != tokRBrace {
				return nil, p.errAt(p.tok.pos, `expected "," or "}" in the set, found %s`, p.tok.describe())
			}
			break
		}
	}
	if p.tok.kind != tokRBrace {
		return nil, p.errAt(p.tok.pos, `expected a quoted value or "}" in the set, found %s`, p.tok.describe())
	}
	slices.Sort(n.set)
	n.set = slices.Compact(n.set)
	return n, nil
}

// isLabelChar reports whether c may appear in a label name in a selector.
func isLabelChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '_' || c == '.' || c == '/' || c == '-'
}

// skipBlanks returns the offset of the first byte at or after i that is not
// a space or a tab (Calico's only whitespace).
func skipBlanks(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// matchWords reports whether the words start at i, separated by any blanks
// and followed by a word boundary, and returns the offset after the last.
func matchWords(s string, i int, words ...string) (int, bool) {
	for k, w := range words {
		if k > 0 {
			i = skipBlanks(s, i)
		}
		if !strings.HasPrefix(s[i:], w) {
			return 0, false
		}
		i += len(w)
	}
	if i < len(s) && isLabelChar(s[i]) {
		return 0, false
	}
	return i, true
}

// labelAt returns the end of the label name starting at i.
func (p *parser) labelAt(i int) (int, error) {
	j := i
	for j < len(p.src) && isLabelChar(p.src[j]) {
		j++
	}
	if j-i > maxLabelLen {
		return 0, p.errAt(i, "label name is %d bytes long, more than %d", j-i, maxLabelLen)
	}
	return j, nil
}

// next lexes the token at p.pos into p.tok. The previous token's kind
// matters: after a label come the word operators, as in Calico.
func (p *parser) next() error {
	s := p.src
	i := skipBlanks(s, p.pos)
	prev := p.tok
	p.tok = token{pos: i}
	if i == len(s) {
		p.tok.kind, p.pos = tokEOF, i
		return nil
	}
	end := i + 1
	switch c := s[i]; c {
	case '(':
		p.tok.kind = tokLParen
	case ')':
		p.tok.kind = tokRParen
	case '{':
		p.tok.kind = tokLBrace
	case '}':
		p.tok.kind = tokRBrace
	case ',':
		p.tok.kind = tokComma
	case '"', '\'':
		k := strings.IndexByte(s[i+1:], c)
		if k < 0 {
			return p.errAt(i, "unterminated string: no closing %c", c)
		}
		p.tok.kind, p.tok.text, end = tokString, s[i+1:i+1+k], i+2+k
	case '=', '&', '|':
		if i+1 >= len(s) || s[i+1] != c {
			return p.errAt(i, "expected %q, found a single %q", string([]byte{c, c}), string(c))
		}
		p.tok.kind, end = tokEq, i+2
		if c == '&' {
			p.tok.kind = tokAnd
		} else if c == '|' {
			p.tok.kind = tokOr
		}
	case '!':
		p.tok.kind = tokNot
		if i+1 < len(s) && s[i+1] == '=' {
			p.tok.kind, end = tokNe, i+2
		}
	default:
		var err error
		if end, err = p.word(i, prev); err != nil {
			return err
		}
	}
	p.pos = end
	return nil
}

// word lexes a word operator (after a label), has(label), all(), global() or
// a label, starting at i; it sets p.tok and returns the end offset.
func (p *parser) word(i int, prev token) (int, error) {
	s := p.src
	if prev.kind == tokLabel {
		for _, w := range []struct {
			kind  kind
			words []string
		}{
			{tokContains, []string{"contains"}},
			{tokStartsWith, []string{"starts", "with"}},
			{tokEndsWith, []string{"ends", "with"}},
			{tokNotIn, []string{"not", "in"}},
			{tokIn, []string{"in"}},
		} {
			if end, ok := matchWords(s, i, w.words...); ok {
				p.tok.kind = w.kind
				return end, nil
			}
		}
		return 0, p.errAt(i, "expected an operator after label %q (==, !=, in, not in, contains, starts with or ends with)", prev.text)
	}
	for _, f := range []struct {
		kind kind
		name string
	}{{tokHas, "has("}, {tokAll, "all("}, {tokGlobal, "global("}} {
		if !strings.HasPrefix(s[i:], f.name) {
			continue
		}
		j := skipBlanks(s, i+len(f.name))
		if f.kind == tokHas {
			end, err := p.labelAt(j)
			if err != nil {
				return 0, err
			}
			if end == j {
				return 0, p.errAt(j, "expected a label name in has(...)")
			}
			p.tok.text = s[j:end]
			j = skipBlanks(s, end)
		}
		if j == len(s) || s[j] != ')' {
			return 0, p.errAt(j, "expected \")\" to close %s", f.name)
		}
		p.tok.kind = f.kind
		return j + 1, nil
	}
	end, err := p.labelAt(i)
	if err != nil {
		return 0, err
	}
	if end == i {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case unicode.IsSpace(r):
			return 0, p.errAt(i, "unexpected %q: only spaces and tabs may separate the parts of a selector", r)
		case r == utf8.RuneError && size <= 1:
			return 0, p.errAt(i, "unexpected byte %#x (not UTF-8)", s[i])
		}
		return 0, p.errAt(i, "unexpected character %q", r)
	}
	p.tok.kind, p.tok.text = tokLabel, s[i:end]
	return end, nil
}
