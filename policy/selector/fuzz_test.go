package selector

import (
	"errors"
	"slices"
	"testing"
)

// FuzzParse checks that Parse never panics, that its errors are
// *ParseErrors that point inside the input, and that every selector that
// parses prints a canonical form that parses back to an equal selector: the
// same String, and the same result on label sets built from the keys and
// values the selector mentions.
//
//	go test ./policy/selector -run '^$' -fuzz FuzzParse -fuzztime 30s
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		``, ` `, `all()`, `global()`, ` (all() )`, `a == "b"`, `a=="b"`, `a == 'b'`, `a == '"'`,
		`a != "'"`, `a contains "x"`, `a startswith "x"`, `a starts  with 'y'`, `a ends with ""`,
		`a in {"d", "a", "b"}`, `a in {}`, `a in {"a",}`, `a notin{"b"}`, `a not in {'"', "'"}`,
		`has(a)`, `has( projectcalico.org/namespace )`, `!has(a)`, `!!has(a)`, `!(!has(a))`,
		`!a == "b"`, `a == "1" || b == "2" && c == "3"`, `(a == "1" || b == "2") && c == "3"`,
		`((a == "1" && b == "2") && c == "3")`, `! (a == "b"&&! c != "d")`,
		`!(!(k == 'v' && has(t) || all()) && (a in {'b', 'c'}))`,
		`contains contains "contains"`, `not in {}`, `global() || name == "kube-system"`,
		// Invalid ones, to start the fuzzer near the error paths.
		`a == `, `b == b`, `a b`, `!`, `foo == "bar" &`, `foo in {"", ||`, `"FOO`, `(`, `()`,
		`(a == "foo"`, `%`, `has (a)`, `has()`, `all(x)`, `a inx {}`, "a == \"b\"\n&& c", "\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := Parse(s)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q) error %T, want *ParseError", s, err)
			}
			if pe.Selector != s || pe.Pos < 0 || pe.Pos > len(s) || pe.Msg == "" {
				t.Fatalf("Parse(%q) = %#v: bad selector, position or message", s, pe)
			}
			return
		}
		canon := sel.String()
		again, err := Parse(canon)
		if err != nil {
			t.Fatalf("Parse(%q) printed %q, which does not parse: %v", s, canon, err)
		}
		if again.String() != canon {
			t.Fatalf("Parse(%q) printed %q, which prints as %q", s, canon, again.String())
		}
		if again.UsesGlobal() != sel.UsesGlobal() || !slices.Equal(again.Labels(), sel.Labels()) {
			t.Fatalf("Parse(%q) and its canonical form %q differ in UsesGlobal or Labels", s, canon)
		}
		for _, l := range labelSets(sel) {
			if sel.Evaluate(l) != again.Evaluate(l) {
				t.Fatalf("Parse(%q) and its canonical form %q disagree on %v", s, canon, l)
			}
		}
	})
}

// labelSets builds label sets to tell selectors apart: none, and each key
// alone or all keys together with each value the selector mentions (plus
// "" and a value it does not), bounded so large inputs stay fast.
func labelSets(sel Selector) []map[string]string {
	keys := sel.Labels()
	values := []string{"", "zz-not-mentioned"}
	sel.(*selector).root.walk(func(n *node) {
		if n.op != opHas && n.key != "" {
			values = append(values, n.value)
			values = append(values, n.set...)
		}
	})
	keys = keys[:min(len(keys), 6)]
	values = values[:min(len(values), 8)]
	sets := []map[string]string{{}}
	for _, v := range values {
		all := map[string]string{}
		for _, k := range keys {
			sets = append(sets, map[string]string{k: v})
			all[k] = v
		}
		sets = append(sets, all)
	}
	return sets
}
