package selector

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestParseCanonical parses valid selectors (many from Calico's own parser
// and tokenizer tests) and checks the canonical form, and that the canonical
// form parses back to itself.
func TestParseCanonical(t *testing.T) {
	long := strings.Repeat("x", maxLabelLen)
	deep := strings.Repeat("(", maxDepth) + "has(a)" + strings.Repeat(")", maxDepth)
	tests := []struct {
		name string
		in   string
		want string // "" means the same as in
	}{
		{"empty is all", ``, `all()`},
		{"blanks are all", " \t ", `all()`},
		{"all", `all()`, ``},
		{"all with blanks", ` all( ) `, `all()`},
		{"all in parens", ` (all() )`, `all()`},
		{"global", `global()`, ``},
		{"global with blanks", `global(	)`, `global()`},
		{"eq", `a == "b"`, ``},
		{"eq without blanks", `a=="b"`, `a == "b"`},
		{"eq with tabs", "a\t==\t\"b\"", `a == "b"`},
		{"single quotes become double", `a == 'b'`, `a == "b"`},
		{"value holding a double quote keeps single quotes", `a == '"'`, ``},
		{"value holding a single quote", `a == "'"`, ``},
		{"ne", `a!='"'`, `a != '"'`},
		{"empty value", `a == ""`, ``},
		{"value is not validated", `a == "x y/é"`, ``},
		{"value may hold a newline", "a == \"x\ny\"", ``},
		{"contains", `a contains "x"`, ``},
		{"contains without blank", `label contains"value"`, `label contains "value"`},
		{"keywords as label and value", `contains contains 'contains'`, `contains contains "contains"`},
		{"starts with", `a starts with "x"`, ``},
		{"startswith in one word", `a startswith '"'`, `a starts with '"'`},
		{"starts  with, blanks between", "a starts \t with \"x\"", `a starts with "x"`},
		{"startswith as a label", `startswith starts with "v"`, ``},
		{"ends with", `a ends with "x"`, ``},
		{"endswith in one word", `a endswith "'"`, `a ends with "'"`},
		{"in sorts", `a in {"d", "a", "b"}`, `a in {"a", "b", "d"}`},
		{"in deduplicates", `a in {"z", "z", "x", "y", "x", "a"}`, `a in {"a", "x", "y", "z"}`},
		{"in one", `a in {'d'}`, `a in {"d"}`},
		{"in empty set", `a in {}`, ``},
		{"in trailing comma", `a in {"a",}`, `a in {"a"}`},
		{"in mixed quotes", `a in {"'", '"', "c"}`, `a in {'"', "'", "c"}`},
		{"in without blanks", `a in{"x","y"}`, `a in {"x", "y"}`},
		{"not in", `a not in {"b", "a"}`, `a not in {"a", "b"}`},
		{"notin in one word", `a notin{"b"}`, `a not in {"b"}`},
		{"not  in, blanks", `a  not  in  {}`, `a not in {}`},
		{"has", `has(a)`, ``},
		{"has with blanks", `has( a	)`, `has(a)`},
		{"has prefixed key", `has(calico/k8s_NS-.1/role)`, ``},
		{"not has", `!has(a)`, ``},
		{"not, blank, has", `! has(a)`, `!has(a)`},
		{"double not cancels", `!!has(a)`, `has(a)`},
		{"triple not", `!! ! has(a)`, `!has(a)`},
		{"not of parenthesized not cancels", `!(!has(a))`, `has(a)`},
		{"not binds to the operation", `!a == "b"`, ``},
		{"parens around one term vanish", `!(k == 'v')`, `!k == "v"`},
		{"and", `a == "b" && has(c)`, `(a == "b" && has(c))`},
		{"and without blanks", `a=="b"&&has(c)&&!has(d)`, `(a == "b" && has(c) && !has(d))`},
		{"or", `a == "b" || c == "d" || all()`, `(a == "b" || c == "d" || all())`},
		{"and binds tighter than or", `a == "1" || b == "2" && c == "3"`, `(a == "1" || (b == "2" && c == "3"))`},
		{"and binds tighter than or, left", `a == "1" && b == "2" || c == "3"`, `((a == "1" && b == "2") || c == "3")`},
		{"not binds tighter than and", `!a == "1" && b == "2"`, `(!a == "1" && b == "2")`},
		{"parens override", `(a == "1" || b == "2") && c == "3"`, `((a == "1" || b == "2") && c == "3")`},
		{"nested chains are not flattened", `(a == "1" && b == "2") && c == "3"`, `((a == "1" && b == "2") && c == "3")`},
		{"nested right", `a == "1" && (b == "2" && c == "3")`, `(a == "1" && (b == "2" && c == "3"))`},
		{"calico canonical 1", `! (has( b)||! has(a ))`, `!(has(b) || !has(a))`},
		{"calico canonical 2", `! (a == "b"&&! c != "d")`, `!(a == "b" && !c != "d")`},
		{"calico visitor example", `!(!(k == 'v' && has(t) || all()) && (a in {'b', 'c'}))`,
			`!(!((k == "v" && has(t)) || all()) && a in {"b", "c"})`},
		{"keywords as labels", `has == "x" && all == "y" && global == "z" && in == "w" && not in {}`,
			`(has == "x" && all == "y" && global == "z" && in == "w" && not in {})`},
		{"prefixed label", `projectcalico.org/namespace == "prod"`, ``},
		{"label of digits and punctuation", `123 == "4" && ./- == "x"`, `(123 == "4" && ./- == "x")`},
		{"label of the maximum length", long + ` == "x"`, ``},
		{"global in a namespace selector", `global() || name == "kube-system"`, `(global() || name == "kube-system")`},
		{"nesting at the limit", deep, `has(a)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == "" {
				want = tt.in
			}
			sel, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(want, sel.String()); diff != "" {
				t.Errorf("Parse(%q).String() (-want +got):\n%s", tt.in, diff)
			}
			again, err := Parse(sel.String())
			if err != nil {
				t.Fatalf("Parse(canonical %q): %v", sel.String(), err)
			}
			if diff := cmp.Diff(want, again.String()); diff != "" {
				t.Errorf("canonical form does not round-trip (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseErrors checks that bad selectors (many from Calico's tests) fail
// with a *ParseError at the right byte offset and a useful message.
func TestParseErrors(t *testing.T) {
	tooLong := strings.Repeat("x", maxLabelLen+1)
	tooDeep := strings.Repeat("(", maxDepth+1) + "has(a)" + strings.Repeat(")", maxDepth+1)
	tests := []struct {
		name    string
		in      string
		wantPos int
		wantMsg string // a substring of Msg
	}{
		{"no value", `a == `, 5, "expected a quoted value"},
		{"label as value", `b == b`, 5, `expected a quoted value after "==", found label "b"`},
		{"contains label", `b contains b`, 11, "expected a quoted value"},
		{"starts with label", `b starts with b`, 14, "expected a quoted value"},
		{"ends with label", `b ends with b`, 12, "expected a quoted value"},
		{"value on the left", `'b1' == b`, 0, `expected a term such as has(a), a == "b" or (...), found quoted value "b1"`},
		{"bare label", `b`, 1, `expected an operator after label "b"`},
		{"bare label and blank", `a `, 2, `expected an operator after label "a"`},
		{"two labels", `a b`, 2, `expected an operator after label "a"`},
		{"unknown operator", `label squiggles "value"`, 6, "expected an operator"},
		{"starts without with", `label starts foo "value"`, 6, "expected an operator"},
		{"ends without with", `label ends foo "value"`, 6, "expected an operator"},
		{"operator needs a word boundary", `a inx {}`, 2, "expected an operator"},
		{"contains needs a word boundary", `a containsx "y"`, 2, "expected an operator"},
		{"has needs its paren", `has (a)`, 4, `expected an operator after label "has" (==, !=, in, not in, contains, starts with or ends with), found "("`},
		{"lone not", `!`, 1, "found the end of the selector"},
		{"single ampersand", `foo == "bar" &`, 13, `expected "&&", found a single "&"`},
		{"single bar", `foo == "bar" |`, 13, `expected "||", found a single "|"`},
		{"triple ampersand", `a == "b" &&& c == "d"`, 11, `expected "&&"`},
		{"single equals", `a = "b"`, 2, `expected "==", found a single "="`},
		{"triple equals", `a === "b"`, 4, `expected "=="`},
		{"ne without value", `foo != ||`, 7, `expected a quoted value after "!="`},
		{"set cut off", `foo in {"", ||`, 12, `expected a quoted value or "}" in the set, found "||"`},
		{"set needs braces", `foo in ""`, 7, `expected a set such as {"a", "b"} after "in"`},
		{"not in needs braces", `foo not in "a"`, 11, `after "not in"`},
		{"set with only a comma", `a in {,}`, 6, `expected a quoted value or "}"`},
		{"set without commas", `a in {"x" "y"}`, 10, `expected "," or "}" in the set`},
		{"set with two commas", `a in {"x",,}`, 10, `expected a quoted value or "}"`},
		{"set not closed", `a in {"x"`, 9, `expected "," or "}"`},
		{"unterminated double", `"FOO`, 0, `unterminated string: no closing "`},
		{"unterminated mismatched", `"FOO'`, 0, "unterminated string"},
		{"unterminated single", `a == 'FOO`, 5, `unterminated string: no closing '`},
		{"open paren", `(`, 1, "expected a term"},
		{"unclosed paren", `(a == "foo"`, 11, `expected ")" to close "(" at 0, found the end of the selector`},
		{"unclosed inner paren", `has(x) && (a == "foo" || (has(b))`, 33, `expected ")" to close "(" at 10`},
		{"close paren", `)`, 0, `found ")"`},
		{"empty parens", `()`, 1, `found ")"`},
		{"extra close paren", `a == "b")`, 8, `expected "&&", "||" or the end of the selector, found ")"`},
		{"missing and", `a == "b" c == "d"`, 9, `found label "c"`},
		{"unexpected character", `%`, 0, `unexpected character '%'`},
		{"unexpected character after and", `a == "b" && %`, 12, "unexpected character"},
		{"unexpected character after or", `a == "b" || %`, 12, "unexpected character"},
		{"non-ASCII label", `é == "x"`, 0, `unexpected character 'é'`},
		{"not UTF-8", "\xff", 0, "unexpected byte 0xff"},
		{"newline is not a blank", "a == \"b\"\n&& c == \"d\"", 8, `unexpected '\n': only spaces and tabs`},
		{"carriage return", "\rall()", 0, "only spaces and tabs"},
		{"dangling and", `has(foo) &&`, 11, "expected a term"},
		{"has without a label", `has()`, 4, "expected a label name in has(...)"},
		{"has with a bad label", `has("a")`, 4, "expected a label name"},
		{"has not closed", `has(a`, 5, `expected ")" to close has(`},
		{"has with two labels", `has(a b)`, 6, `expected ")" to close has(`},
		{"all with an argument", `all(x)`, 4, `expected ")" to close all(`},
		{"global not closed", `global( `, 8, `expected ")" to close global(`},
		{"label too long", tooLong + ` == "x"`, 0, "label name is 513 bytes long, more than 512"},
		{"has label too long", `has(` + tooLong + `)`, 4, "more than 512"},
		{"nesting too deep", tooDeep, maxDepth, "more than 1000 nested parentheses"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %q, want an error", tt.in, sel)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q) error %T %v, want *ParseError", tt.in, err, err)
			}
			if diff := cmp.Diff(tt.in, pe.Selector); diff != "" {
				t.Errorf("ParseError.Selector (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantPos, pe.Pos); diff != "" {
				t.Errorf("Parse(%q) position (-want +got):\n%s\nerror: %v", tt.in, diff, err)
			}
			if !strings.Contains(pe.Msg, tt.wantMsg) {
				t.Errorf("Parse(%q) message %q, want it to contain %q", tt.in, pe.Msg, tt.wantMsg)
			}
		})
	}
}

func TestParseErrorString(t *testing.T) {
	_, err := Parse(`a == `)
	want := `selector "a == ": at 5: expected a quoted value after "==", found the end of the selector`
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("Error() (-want +got):\n%s", diff)
	}
}

func TestIntrospection(t *testing.T) {
	tests := []struct {
		in         string
		wantLabels []string
		wantGlobal bool
	}{
		{``, nil, false},
		{`global()`, nil, true},
		{`!global() && has(b)`, []string{"b"}, true},
		{`b == "1" && (a in {"x"} || !has(b)) && c not in {} && d contains "" && e starts with "" && f ends with "" && g != ""`,
			[]string{"a", "b", "c", "d", "e", "f", "g"}, false},
		{`projectcalico.org/namespace == "x"`, []string{"projectcalico.org/namespace"}, false},
	}
	for _, tt := range tests {
		sel := MustParse(tt.in)
		if diff := cmp.Diff(tt.wantLabels, sel.Labels()); diff != "" {
			t.Errorf("%q Labels() (-want +got):\n%s", tt.in, diff)
		}
		if got := sel.UsesGlobal(); got != tt.wantGlobal {
			t.Errorf("%q UsesGlobal() = %v, want %v", tt.in, got, tt.wantGlobal)
		}
	}
	if got := All().String(); got != "all()" {
		t.Errorf("All().String() = %q, want all()", got)
	}
}

func TestMustParsePanics(t *testing.T) {
	defer func() {
		if _, ok := recover().(*ParseError); !ok {
			t.Errorf("MustParse of a bad selector did not panic with a *ParseError")
		}
	}()
	MustParse(`a ==`)
}
