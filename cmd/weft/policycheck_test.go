package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/urfave/cli/v2"
)

// runCheck runs `weft check ARGS` in-process with stdin and returns stdout
// and the exit status main would use.
func runCheck(t *testing.T, stdin string, args ...string) (string, int, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	app := &cli.App{
		Name:           "weft",
		Commands:       []*cli.Command{policyCheckCommand()},
		Reader:         strings.NewReader(stdin),
		Writer:         &out,
		ErrWriter:      &errOut,
		ExitErrHandler: func(*cli.Context, error) {}, // as in main: no os.Exit
	}
	err := app.Run(append([]string{"weft", "check"}, args...))
	code := 0
	if err != nil {
		code = 1
		var ec exitCoder
		if errors.As(err, &ec) {
			code = ec.ExitCode()
		}
	}
	return out.String(), code, err
}

func writeCheckFile(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPolicyCheck(t *testing.T) {
	yamlFile := writeCheckFile(t, "labels.yaml", "app: web\nprojectcalico.org/namespace: prod\nempty: \"\"\n")
	jsonFile := writeCheckFile(t, "labels.json", `{"app": "web", "tier": "db"}`)
	numberFile := writeCheckFile(t, "number.yaml", "app: web\nversion: 1\n")
	dupFile := writeCheckFile(t, "dup.yaml", "app: web\napp: api\n")
	listFile := writeCheckFile(t, "list.yaml", "- app\n")
	badKeyFile := writeCheckFile(t, "badkey.yaml", "Bad_Prefix/app: web\n")
	emptyFile := writeCheckFile(t, "empty.yaml", "")
	tests := []struct {
		name     string
		args     []string
		wantOut  string
		wantCode int
		wantErr  string // a substring of the error
	}{
		{"match", []string{"--selector", `app == "web" && tier != "db"`, "--labels", "app=web,tier=frontend"}, "true\n", 0, ""},
		{"no match", []string{"--selector", `app == "web" && tier != "db"`, "--labels", "app=web,tier=db"}, "false\n", 0, ""},
		{"short flags", []string{"-s", `has(app)`, "-l", "app=web"}, "true\n", 0, ""},
		{"empty selector is all()", []string{"--selector", ``}, "true\n", 0, ""},
		{"no labels", []string{"--selector", `has(app)`}, "false\n", 0, ""},
		{"!= is true on a missing label", []string{"--selector", `app != "web"`}, "true\n", 0, ""},
		{"not in is true on a missing label", []string{"--selector", `app not in {"web"}`, "--labels", "tier=db"}, "true\n", 0, ""},
		{"repeated --labels", []string{"--selector", `app == "web" && tier == "db"`, "--labels", "app=web", "--labels", "tier=db"}, "true\n", 0, ""},
		{"blanks around pairs", []string{"--selector", `tier == "db"`, "--labels", "app=web, tier=db"}, "true\n", 0, ""},
		{"empty value", []string{"--selector", `a == ""`, "--labels", "a="}, "true\n", 0, ""},
		{"prefixed key", []string{"--selector", `projectcalico.org/namespace in {"prod", "staging"}`, "--labels", "projectcalico.org/namespace=prod"}, "true\n", 0, ""},
		{"yaml file", []string{"--selector", `app == "web" && projectcalico.org/namespace == "prod" && has(empty)`, "--labels-file", yamlFile}, "true\n", 0, ""},
		{"json file", []string{"--selector", `tier == "db"`, "--labels-file", jsonFile}, "true\n", 0, ""},
		{"empty file", []string{"--selector", `!has(a)`, "--labels-file", emptyFile}, "true\n", 0, ""},
		{"explain", []string{"--selector", `app == "web"&&tier=='db'`, "--labels", "app=web,tier=api", "--explain"},
			"false\nselector: (app == \"web\" && tier == \"db\")\nbecause:  tier == \"db\" is false (tier is \"api\")\n", 0, ""},
		{"parse error", []string{"--selector", `a == `}, "", 2, "selector \"a == \": at 5: expected a quoted value after \"==\", found the end of the selector\n  a == \n       ^"},
		{"parse error in the middle", []string{"--selector", `app == "web" & has(x)`}, "", 2, "at 13: expected \"&&\", found a single \"&\"\n  app == \"web\" & has(x)\n               ^"},
		{"parse error after a newline", []string{"--selector", "has(a)\n&& has(b)"}, "", 2, "at 6: unexpected '\\n'"},
		{"bad label key", []string{"--selector", `all()`, "--labels", "-app=web"}, "", 2, `--labels: label key "-app": name "-app": must begin and end with a letter or digit`},
		{"bad label value", []string{"--selector", `all()`, "--labels", "app=web/1"}, "", 2, `label "app": label value "web/1": has '/'`},
		{"pair without =", []string{"--selector", `all()`, "--labels", "app"}, "", 2, `--labels: "app": want KEY=VALUE`},
		{"label twice", []string{"--selector", `all()`, "--labels", "app=web,app=api"}, "", 2, `label "app" given twice`},
		{"number in file", []string{"--selector", `all()`, "--labels-file", numberFile}, "", 2, `label "version": value 1 is a number, not a string: quote it ("1")`},
		{"duplicate in file", []string{"--selector", `all()`, "--labels-file", dupFile}, "", 2, "want a map of KEY: VALUE"},
		{"list file", []string{"--selector", `all()`, "--labels-file", listFile}, "", 2, "want a map of KEY: VALUE"},
		{"bad key in file", []string{"--selector", `all()`, "--labels-file", badKeyFile}, "", 2, `prefix "Bad_Prefix"`},
		{"missing file", []string{"--selector", `all()`, "--labels-file", "/nonexistent/labels.yaml"}, "", 2, "no such file"},
		{"both label flags", []string{"--selector", `all()`, "--labels", "a=b", "--labels-file", yamlFile}, "", 2, "not both"},
		{"no selector", []string{"--labels", "a=b"}, "", 2, "--selector is required"},
		{"selector as an argument", []string{`app == "web"`}, "", 2, `unexpected argument "app == \"web\""`},
		{"batch with selector", []string{"--batch", "--selector", "all()"}, "", 2, "drop --selector"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code, err := runCheck(t, "", tt.args...)
			if diff := cmp.Diff(tt.wantOut, out); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			if code != tt.wantCode {
				t.Errorf("exit status %d, want %d (error: %v)", code, tt.wantCode, err)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestPolicyCheckBatch(t *testing.T) {
	tooLong := `{"selector": "` + strings.Repeat("x", maxBatchLine) + `"}`
	input := strings.Join([]string{
		`{"selector": "app == \"web\"", "labels": {"app": "web"}}`,
		`{"selector": "app == 'web'", "labels": {}}`,
		``,
		`not json`,
		`{"selector": "a == ", "labels": {}}`,
		`{"labels": {"a": "b"}}`,
		`{"selector": "", "extra": 1}`,
		`{"selector": "has(a)", "labels": {"a": "x"}} {"x": 1}`,
		`{"selector": "has(a)", "labels": {"bad key": "x"}}`,
		`{"selector": "has(a)", "labels": {"a": 1}}`,
		tooLong,
		`  {"selector": "!has(a)"}  `,
		`{"selector": "a && b"}`,
		`{"selector": "` + strings.Repeat("has(a) || ", 10000) + `has(a)", "labels": {"a": ""}}`, // over bufio's 64 KiB
		`{"selector": "tier not in {'db'}", "labels": {"tier": "db"}}`,                           // last line, no newline
	}, "\n")
	type line struct {
		Match *bool
		Error string // a substring of the error
	}
	yes, no := true, false
	want := []line{
		{Match: &yes},
		{Match: &no},
		{Error: `line 4: want a JSON object {"selector": "...", "labels": {...}}: invalid character`},
		{Error: `line 5: selector "a == ": at 5: expected a quoted value`},
		{Error: `line 6: missing "selector"`},
		{Error: `line 7: want a JSON object`},
		{Error: `line 8: want one JSON object per line, found "{\"x\": 1}" after it`},
		{Error: `line 9: label key "bad key"`},
		{Error: `line 10: want a JSON object`},
		{Error: "line 11: longer than 1048576 bytes"},
		{Match: &yes},
		{Error: `line 13: selector "a && b": at 2: expected an operator after label "a"`},
		{Match: &yes},
		{Match: &no},
	}
	out, code, err := runCheck(t, input, "--batch")
	if code != 0 || err != nil {
		t.Fatalf("exit status %d, error %v; want 0", code, err)
	}
	var got []line
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var r checkResult
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("output line %q is not JSON: %v", l, err)
		}
		got = append(got, line{Match: r.Match, Error: r.Error})
	}
	if len(got) != len(want) {
		t.Fatalf("got %d output lines, want %d:\n%s", len(got), len(want), out)
	}
	for i := range want {
		if !strings.Contains(got[i].Error, want[i].Error) || (want[i].Error == "") != (got[i].Error == "") {
			t.Errorf("line %d: error %q, want one containing %q", i+1, got[i].Error, want[i].Error)
		}
		if diff := cmp.Diff(want[i].Match, got[i].Match); diff != "" {
			t.Errorf("line %d: match (-want +got):\n%s", i+1, diff)
		}
	}
	// The exact wire form of the two kinds of line.
	if !strings.HasPrefix(out, "{\"match\":true}\n{\"match\":false}\n{\"error\":") {
		t.Errorf("output starts %q, want {\"match\":true}, {\"match\":false}, {\"error\":...", out[:min(len(out), 60)])
	}
}

func TestPolicyCheckBatchExplain(t *testing.T) {
	out, code, err := runCheck(t, `{"selector": "a == \"1\" && b == \"2\"", "labels": {"a": "1"}}`+"\n", "--batch", "--explain")
	if code != 0 || err != nil {
		t.Fatalf("exit status %d, error %v; want 0", code, err)
	}
	want := `{"match":false,"explain":"b == \"2\" is false (b is missing)"}` + "\n"
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

func TestPolicyCheckHelp(t *testing.T) {
	out, code, err := runCheck(t, "", "--help")
	if code != 0 || err != nil {
		t.Fatalf("exit status %d, error %v; want 0", code, err)
	}
	for _, want := range []string{"--selector", "--labels-file", "--batch", "Examples:", "weft policy check --selector"} {
		if !strings.Contains(out, want) {
			t.Errorf("help does not mention %q:\n%s", want, out)
		}
	}
}
