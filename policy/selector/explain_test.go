package selector

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestExplain(t *testing.T) {
	tests := []struct {
		sel    string
		labels map[string]string
		want   string
	}{
		{`all()`, nil, `all() is true`},
		{`a == "b"`, labels{"a": "b"}, `a == "b" is true (a is "b")`},
		{`a == "b"`, nil, `a == "b" is false (a is missing)`},
		{`a != "b"`, nil, `a != "b" is true (a is missing)`},
		{`app == "web" && tier == "db"`, labels{"app": "web", "tier": "api"}, `tier == "db" is false (tier is "api")`},
		{`app == "web" && tier == "db"`, labels{"app": "web", "tier": "db"}, `app == "web" is true (app is "web"); tier == "db" is true (tier is "db")`},
		{`a == "1" || has(b)`, nil, `a == "1" is false (a is missing); has(b) is false (b is missing)`},
		{`a == "1" || has(b)`, labels{"b": ""}, `has(b) is true (b is "")`},
		{`!has(quarantine)`, labels{"quarantine": "yes"}, `has(quarantine) is true (quarantine is "yes")`},
		{`a in {"x", "y"} && !(b == "1" || c == "2")`, labels{"a": "x", "c": "2"}, `c == "2" is true (c is "2")`},
		{`a == '"'`, labels{"a": `'"`}, `a == '"' is false (a is "'\"")`},
	}
	for _, tt := range tests {
		got := Explain(MustParse(tt.sel), tt.labels)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Explain(%q, %v) (-want +got):\n%s", tt.sel, tt.labels, diff)
		}
	}
}
