package selector

import (
	"strings"
	"testing"
)

// TestValidateLabelKey follows Kubernetes' IsQualifiedName, which Calico's
// validator applies to label keys.
func TestValidateLabelKey(t *testing.T) {
	tests := []struct {
		key     string
		wantErr string // "" for valid; else a substring of the error
	}{
		{"app", ""},
		{"a", ""},
		{"A", ""},
		{"9", ""},
		{"MyName", ""},
		{"my.name", ""},
		{"123-abc", ""},
		{"a_b-c.d", ""},
		{strings.Repeat("a", 63), ""},
		{"projectcalico.org/namespace", ""},
		{"pcns.projectcalico.org/name", ""},
		{"kubernetes.io/metadata.name", ""},
		{"example.com/MyName", ""},
		{"a-b.c-d/x", ""},
		{"1.2.3/x", ""},
		{strings.Repeat("a", 253) + "/x", ""},
		{"", `label key "": name "": must not be empty`},
		{strings.Repeat("a", 64), "is 64 characters long, more than 63"},
		{"-a", "must begin and end with a letter or digit"},
		{"a-", "must begin and end with a letter or digit"},
		{"_a", "must begin and end"},
		{".a", "must begin and end"},
		{"a b", `has ' ' at 1`},
		{"a:b", `has ':' at 1`},
		{"a=b", `has '='`},
		{"aé", "must begin and end"},
		{"aéb", `has 'é' at 1`},
		{"/a", `prefix "": must not be empty`},
		{"a/", `name "": must not be empty`},
		{"a/b/c", `more than one "/"`},
		{"Example.com/a", `has 'E': a DNS subdomain has only lower-case letters`},
		{"a_b.com/a", `has '_'`},
		{"-a.com/x", `part "-a" must begin and end`},
		{"a-.com/x", `part "a-" must begin and end`},
		{"a..com/x", "empty part between dots"},
		{".a.com/x", "empty part"},
		{"a.com./x", "empty part"},
		{strings.Repeat("a", 254) + "/x", "is 254 characters long, more than 253"},
		{"a.com/-x", "must begin and end"},
	}
	for _, tt := range tests {
		err := ValidateLabelKey(tt.key)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("ValidateLabelKey(%q) = %v, want nil", tt.key, err)
		case tt.wantErr != "" && err == nil:
			t.Errorf("ValidateLabelKey(%q) = nil, want an error containing %q", tt.key, tt.wantErr)
		case err != nil && !strings.Contains(err.Error(), tt.wantErr):
			t.Errorf("ValidateLabelKey(%q) = %q, want it to contain %q", tt.key, err, tt.wantErr)
		case err != nil && !strings.Contains(err.Error(), `label key "`):
			t.Errorf("ValidateLabelKey(%q) = %q, want it to name the key", tt.key, err)
		}
	}
}

// TestValidateLabelValue follows Kubernetes' IsValidLabelValue.
func TestValidateLabelValue(t *testing.T) {
	tests := []struct {
		value   string
		wantErr string
	}{
		{"", ""},
		{"a", ""},
		{"web", ""},
		{"Web-1.2_3", ""},
		{"1", ""},
		{strings.Repeat("z", 63), ""},
		{strings.Repeat("z", 64), `label value "zzz`},
		{strings.Repeat("z", 64), "more than 63"},
		{"-a", "must begin and end with a letter or digit"},
		{"a.", "must begin and end"},
		{"a/b", `has '/' at 1`},
		{"a b", `has ' '`},
		{"a,b", `has ','`},
		{`a"b`, `has '"'`},
		{"aéb", `has 'é'`},
		{" ", "must begin and end"},
	}
	for _, tt := range tests {
		err := ValidateLabelValue(tt.value)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("ValidateLabelValue(%q) = %v, want nil", tt.value, err)
		case tt.wantErr != "" && err == nil:
			t.Errorf("ValidateLabelValue(%q) = nil, want an error containing %q", tt.value, tt.wantErr)
		case err != nil && !strings.Contains(err.Error(), tt.wantErr):
			t.Errorf("ValidateLabelValue(%q) = %q, want it to contain %q", tt.value, err, tt.wantErr)
		}
	}
}
