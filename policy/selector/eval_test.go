package selector

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type labels = map[string]string

// TestEvaluate covers every operator and Calico's quirks (most cases come
// from Calico's parser tests); each case also runs on the canonical form and
// through EvaluateLabels.
func TestEvaluate(t *testing.T) {
	tests := []struct {
		sel      string
		match    []labels
		notMatch []labels
	}{
		{`a == "b"`, []labels{{"a": "b"}, {"a": "b", "c": "d"}}, []labels{nil, {}, {"a": "c"}, {"c": "d"}, {"a": "B"}, {"a": "b "}}},
		{`a == ""`, []labels{{"a": ""}}, []labels{{}, {"a": "x"}}},
		{`a == 'a'`, []labels{{"a": "a"}}, []labels{{"a": "b"}, {}}},
		// != and not in are true when the label is missing.
		{`a != "b"`, []labels{{}, nil, {"a": "a"}, {"a": ""}, {"c": "b"}}, []labels{{"a": "b"}}},
		{`a != ""`, []labels{{}, {"a": "x"}}, []labels{{"a": ""}}},
		{`a in {"'", '"', "c"}`, []labels{{"a": "c"}, {"a": `"`}, {"a": `'`}}, []labels{{}, {"a": "e"}}},
		{`a not in {"'", '"', "c"}`, []labels{{}, {"a": "e"}, {"b": "c"}}, []labels{{"a": "c"}, {"a": `"`}, {"a": `'`}}},
		{`a in {}`, nil, []labels{{}, {"a": ""}, {"a": "x"}}},
		{`a not in {}`, []labels{{}, {"a": ""}, {"a": "x"}}, nil},
		{`a in {""}`, []labels{{"a": ""}}, []labels{{}, {"a": "x"}}},
		{`a in {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"}`, []labels{{"a": "a"}, {"a": "f"}, {"a": "k"}}, []labels{{}, {"a": "l"}, {"a": ""}}},
		{`a not in {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"}`, []labels{{}, {"a": "l"}}, []labels{{"a": "a"}, {"a": "k"}}},
		{`!a in {"a"}`, []labels{{"a": "b"}, {}}, []labels{{"a": "a"}}},
		{`a contains "a"`, []labels{{"a": "a"}, {"a": "bab"}, {"a": "aaa", "b": "c"}}, []labels{{}, {"a": "b"}, {"b": "aaa"}}},
		{`a contains ""`, []labels{{"a": ""}, {"a": "x"}}, []labels{{}}},
		{`a starts with "a"`, []labels{{"a": "a"}, {"a": "abb"}}, []labels{{}, {"a": "b"}, {"a": "baa"}, {"b": "aaa"}}},
		{`a starts with ""`, []labels{{"a": ""}}, []labels{{}}},
		{`a ends with "a"`, []labels{{"a": "a"}, {"a": "bba"}}, []labels{{}, {"a": "b"}, {"a": "aab"}, {"b": "aaa"}}},
		{`has(a)`, []labels{{"a": "b"}, {"a": ""}}, []labels{{}, {"b": "a"}}},
		{`!has(a)`, []labels{{}, {"b": "b"}}, []labels{{"a": "b"}, {"a": ""}}},
		{`!!has(b)`, []labels{{"b": ""}}, []labels{{"a": "b"}}},
		{`!!! has(a)`, []labels{{}}, []labels{{"a": "b"}}},
		{`! !!has(a)`, []labels{{}}, []labels{{"a": "b"}}},
		{`!(!has(a))`, []labels{{"a": "b"}}, []labels{{}}},
		{``, []labels{nil, {}, {"a": "b"}}, nil},
		{` `, []labels{{}}, nil},
		{`all()`, []labels{{}, {"a": "b"}}, nil},
		{`global()`, []labels{{}, {"a": "b"}}, nil},
		{`!all()`, nil, []labels{{}, {"a": "b"}}},
		{`has(projectcalico.org/namespace)`, []labels{{"projectcalico.org/namespace": "x"}}, []labels{{"namespace": "x"}}},
		// Boolean expressions.
		{`a == "b" && c == "d"`, []labels{{"a": "b", "c": "d"}}, []labels{{}, {"a": "b", "c": "e"}, {"a": "c", "c": "d"}, {"c": "d"}, {"a": "b"}}},
		{`a == "b" || c == "d"`, []labels{{"a": "b", "c": "d"}, {"a": "b"}, {"c": "d"}}, []labels{{}, {"a": "e", "c": "e"}, {"c": "e"}}},
		{`a == 'a1' && b != 'b1'`, []labels{{"a": "a1"}, {"a": "a1", "b": "b2"}}, []labels{{"a": "a1", "b": "b1"}}},
		{`a != 'a1' && !b == 'b1'`, []labels{{}}, []labels{{"a": "a1", "b": "b1"}, {"b": "b1"}}},
		{`!a == 'a1' && b == 'b1'`, []labels{{"b": "b1"}, {"a": "a2", "b": "b1"}}, []labels{{"a": "a1", "b": "b1"}}},
		{`has(a) && !has(b)`, []labels{{"a": "a"}}, []labels{{"a": "a", "b": "b"}, {}}},
		{`!(!has(a) || has(b))`, []labels{{"a": "a"}}, []labels{{"b": "b"}, {"a": "a", "b": "b"}}},
		{`a != 'a1' || b != 'b1'`, []labels{{}, {"a": "a1"}}, []labels{{"a": "a1", "b": "b1"}}},
		{`! a == 'a1' || ! b == 'b1'`, []labels{{"a": "a1"}}, []labels{{"a": "a1", "b": "b1"}}},
		// Precedence: ! over && over ||.
		{`a == "1" || b == "2" && c == "3"`, []labels{{"a": "1"}, {"b": "2", "c": "3"}}, []labels{{"b": "2"}, {"c": "3"}}},
		{`(a == "1" || b == "2") && c == "3"`, []labels{{"a": "1", "c": "3"}, {"b": "2", "c": "3"}}, []labels{{"a": "1"}, {"c": "3"}}},
		{`!has(a) && has(b)`, []labels{{"b": ""}}, []labels{{"a": "", "b": ""}, {}}},
		{`!(has(a) && has(b))`, []labels{{"a": ""}, {"b": ""}, {}}, []labels{{"a": "", "b": ""}}},
		{`!has(a) || has(b)`, []labels{{}, {"a": "", "b": ""}}, []labels{{"a": ""}}},
		// global() is true wherever it appears; the policy layer gives it meaning.
		{`global() && has(a)`, []labels{{"a": ""}}, []labels{{}}},
		{`!global()`, nil, []labels{{}}},
	}
	for _, tt := range tests {
		sel, err := Parse(tt.sel)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.sel, err)
		}
		canon := MustParse(sel.String())
		for _, c := range []struct {
			set  []labels
			want bool
		}{{tt.match, true}, {tt.notMatch, false}} {
			for _, l := range c.set {
				if got := sel.Evaluate(l); got != c.want {
					t.Errorf("%q.Evaluate(%v) = %v, want %v", tt.sel, l, got, c.want)
				}
				if got := canon.Evaluate(l); got != c.want {
					t.Errorf("canonical %q.Evaluate(%v) = %v, want %v", canon, l, got, c.want)
				}
				if got := sel.EvaluateLabels(mapLabels(l)); got != c.want {
					t.Errorf("%q.EvaluateLabels(%v) = %v, want %v", tt.sel, l, got, c.want)
				}
			}
		}
	}
}

// TestEvaluateDoesNotModify checks that Evaluate neither changes nor keeps
// the labels it is given.
func TestEvaluateDoesNotModify(t *testing.T) {
	l := labels{"a": "b", "c": "d"}
	MustParse(`a == "b" && !has(x) && c in {"d"}`).Evaluate(l)
	if diff := cmp.Diff(labels{"a": "b", "c": "d"}, l); diff != "" {
		t.Errorf("labels changed (-want +got):\n%s", diff)
	}
}

// TestEvaluateConcurrent evaluates one selector from many goroutines (run
// with -race).
func TestEvaluateConcurrent(t *testing.T) {
	sel := MustParse(`app in {"web", "api"} && tier != "db"`)
	done := make(chan string)
	for i := range 8 {
		go func() {
			l := labels{"app": "web", "tier": fmt.Sprint(i)}
			for range 1000 {
				if !sel.Evaluate(l) || sel.String() == "" || len(sel.Labels()) != 2 {
					done <- "wrong result"
					return
				}
			}
			done <- ""
		}()
	}
	for range 8 {
		if msg := <-done; msg != "" {
			t.Error(msg)
		}
	}
}
