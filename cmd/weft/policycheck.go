package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v2"
	"sigs.k8s.io/yaml"

	"github.com/weft-net/weft/policy/selector"
)

// maxBatchLine bounds one line of `check --batch` input; a longer line gets
// an error line of its own.
const maxBatchLine = 1 << 20

// policyCheckCommand returns the `check` command, meant to be registered
// under `weft policy`. It evaluates a Calico selector against labels, offline.
func policyCheckCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "tell whether a Calico label selector matches some labels (offline, no agent needed)",
		UsageText: "weft policy check --selector EXPR [--labels KEY=VALUE,... | --labels-file FILE] [--explain]\n" +
			"weft policy check --batch [--explain] < requests.jsonl",
		Description: `Evaluate a Calico label selector against a set of labels, exactly as Calico does, and
print true or false. The selector is the same text as in a Calico policy's "selector" field:

  app == "web"                      the label app has the value web
  tier != "db"                      tier is not db, or there is no tier label at all
  app in {"web", "api"}             app is one of these values
  env not in {"dev", "test"}        env is none of these, or there is no env label
  has(team)    !has(team)           the label team is present / absent
  name starts with "web-"           also: ends with, contains
  a == "x" && (b == "y" || !has(c)) ! binds tighter than &&, and && tighter than ||
  all()  or an empty selector       matches everything

Values go in double or single quotes (there are no escapes); only spaces and tabs may
separate the parts of a selector. Labels must be valid Kubernetes labels, as in Calico.

Examples:
  $ weft policy check --selector 'app == "web" && tier != "db"' --labels app=web,tier=frontend
  true
  $ weft policy check --selector 'app in {"web", "api"}' --labels-file pod-labels.yaml --explain
  $ echo '{"selector": "has(app)", "labels": {"app": "web"}}' | weft policy check --batch
  {"match":true}

With --batch, each input line is a JSON object {"selector": ..., "labels": {...}} and each
output line is {"match": true|false} or {"error": "..."}, in the same order; blank lines
are skipped. A selector that does not parse, or a bad label, exits with status 2 (except
in --batch, where it becomes an error line).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "selector", Aliases: []string{"s"}, Usage: `the selector, e.g. 'app == "web"'`},
			&cli.StringSliceFlag{Name: "labels", Aliases: []string{"l"}, Usage: "the labels, as KEY=VALUE pairs separated by commas (repeatable)"},
			&cli.StringFlag{Name: "labels-file", Usage: "read the labels from a YAML or JSON map of KEY: VALUE"},
			&cli.BoolFlag{Name: "batch", Usage: "read JSON lines from stdin and answer each with a JSON line"},
			&cli.BoolFlag{Name: "explain", Usage: "also print the canonical selector and the terms that decided the result"},
		},
		Action: runPolicyCheck,
	}
}

func runPolicyCheck(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q: put the selector in --selector", c.Args().First())}
	}
	if c.Bool("batch") {
		for _, f := range []string{"selector", "labels", "labels-file"} {
			if c.IsSet(f) {
				return usageError{fmt.Errorf("--batch reads selectors and labels from stdin: drop --%s", f)}
			}
		}
		return policyCheckBatch(c.App.Reader, c.App.Writer, c.Bool("explain"))
	}
	if !c.IsSet("selector") {
		return usageError{errors.New(`--selector is required (or --batch), e.g. --selector 'app == "web"'`)}
	}
	if c.IsSet("labels") && c.IsSet("labels-file") {
		return usageError{errors.New("give the labels with --labels or --labels-file, not both")}
	}
	labels, err := parseLabelPairs(c.StringSlice("labels"))
	if err != nil {
		return usageError{fmt.Errorf("--labels: %w", err)}
	}
	if f := c.String("labels-file"); f != "" {
		if labels, err = readLabelsFile(f); err != nil {
			return usageError{fmt.Errorf("--labels-file %s: %w", f, err)}
		}
	}
	expr := c.String("selector")
	sel, err := selector.Parse(expr)
	if err != nil {
		var pe *selector.ParseError
		if errors.As(err, &pe) {
			if mark := caretLine(pe.Selector, pe.Pos); mark != "" {
				err = fmt.Errorf("%w\n%s", err, mark)
			}
		}
		return usageError{err}
	}
	match := sel.Evaluate(labels)
	if _, err := fmt.Fprintln(c.App.Writer, match); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	if c.Bool("explain") {
		_, err = fmt.Fprintf(c.App.Writer, "selector: %s\nbecause:  %s\n", sel, selector.Explain(sel, labels))
		if err != nil {
			return fmt.Errorf("write result: %w", err)
		}
	}
	return nil
}

// parseLabelPairs turns KEY=VALUE items (each possibly holding several,
// separated by commas) into validated labels.
func parseLabelPairs(items []string) (map[string]string, error) {
	labels := map[string]string{}
	for _, item := range items {
		for pair := range strings.SplitSeq(item, ",") {
			pair = strings.TrimSpace(pair)
			if pair == "" {
				continue
			}
			k, v, ok := strings.Cut(pair, "=")
			if !ok {
				return nil, fmt.Errorf("%q: want KEY=VALUE (KEY= for an empty value)", pair)
			}
			if _, dup := labels[k]; dup {
				return nil, fmt.Errorf("label %q given twice", k)
			}
			labels[k] = v
		}
	}
	return labels, validateCheckLabels(labels)
}

// readLabelsFile reads a YAML or JSON map of label keys to string values.
func readLabelsFile(name string) (map[string]string, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var raw map[string]any
	if err := yaml.UnmarshalStrict(data, &raw); err != nil {
		return nil, fmt.Errorf("want a map of KEY: VALUE: %w", err)
	}
	labels := make(map[string]string, len(raw))
	for k, v := range raw {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("label %q: value %v is a %s, not a string: quote it (%q)", k, v, yamlValueKind(v), fmt.Sprint(v))
		}
		labels[k] = s
	}
	return labels, validateCheckLabels(labels)
}

func yamlValueKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case []any:
		return "list"
	case map[string]any:
		return "map"
	}
	return fmt.Sprintf("%T", v)
}

// validateCheckLabels checks keys and values as Calico does, in key order so the
// error is stable.
func validateCheckLabels(labels map[string]string) error {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := selector.ValidateLabelKey(k); err != nil {
			return err
		}
		if err := selector.ValidateLabelValue(labels[k]); err != nil {
			return fmt.Errorf("label %q: %w", k, err)
		}
	}
	return nil
}

// caretLine shows the line of s that holds pos, with a caret under pos, or
// "" if the line would not print cleanly.
func caretLine(s string, pos int) string {
	start := strings.LastIndexByte(s[:pos], '\n') + 1
	end := len(s)
	if i := strings.IndexByte(s[pos:], '\n'); i >= 0 {
		end = pos + i
	}
	line := s[start:end]
	if !utf8.ValidString(line) || strings.ContainsFunc(line, func(r rune) bool { return r != '\t' && !unicode.IsPrint(r) }) {
		return ""
	}
	var pad strings.Builder
	for _, r := range s[start:pos] {
		if r == '\t' {
			pad.WriteByte('\t')
		} else {
			pad.WriteByte(' ')
		}
	}
	return "  " + line + "\n  " + pad.String() + "^"
}

// checkRequest is one line of `check --batch` input.
type checkRequest struct {
	Selector *string           `json:"selector"`
	Labels   map[string]string `json:"labels"`
}

// checkResult is one line of `check --batch` output.
type checkResult struct {
	Match   *bool  `json:"match,omitempty"`
	Explain string `json:"explain,omitempty"`
	Error   string `json:"error,omitempty"`
}

// policyCheckBatch answers each JSON line of r with a JSON line on w. Bad
// input lines get error lines; only a read or write failure is an error.
func policyCheckBatch(r io.Reader, w io.Writer, explain bool) error {
	br := bufio.NewReaderSize(r, 64<<10)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // selectors are full of && and <
	for n := 1; ; n++ {
		line, tooLong, err := readBatchLine(br, maxBatchLine)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read stdin line %d: %w", n, err)
		}
		if len(bytes.TrimSpace(line)) > 0 || tooLong {
			res := checkOne(line, explain)
			if tooLong {
				res = checkResult{Error: fmt.Sprintf("longer than %d bytes", maxBatchLine)}
			}
			if res.Error != "" {
				res.Error = fmt.Sprintf("line %d: %s", n, res.Error)
			}
			if werr := enc.Encode(res); werr != nil {
				return fmt.Errorf("write result for line %d: %w", n, werr)
			}
		}
		if err != nil {
			return nil // io.EOF
		}
	}
}

// readBatchLine reads one line without its newline. A line longer than max is
// consumed and reported as tooLong. err is io.EOF after the last line.
func readBatchLine(br *bufio.Reader, max int) (line []byte, tooLong bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			line = append(line, chunk...)
			if len(line) > max {
				line, tooLong = nil, true
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimSuffix(line, []byte("\n")), tooLong, err
	}
}

func checkOne(line []byte, explain bool) checkResult {
	var req checkRequest
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return checkResult{Error: fmt.Sprintf(`want a JSON object {"selector": "...", "labels": {...}}: %v`, err)}
	}
	if rest := bytes.TrimSpace(line[dec.InputOffset():]); len(rest) > 0 {
		return checkResult{Error: fmt.Sprintf("want one JSON object per line, found %q after it", rest)}
	}
	if req.Selector == nil {
		return checkResult{Error: `missing "selector" (use "" or "all()" to match everything)`}
	}
	if err := validateCheckLabels(req.Labels); err != nil {
		return checkResult{Error: err.Error()}
	}
	sel, err := selector.Parse(*req.Selector)
	if err != nil {
		return checkResult{Error: err.Error()}
	}
	match := sel.Evaluate(req.Labels)
	res := checkResult{Match: &match}
	if explain {
		res.Explain = selector.Explain(sel, req.Labels)
	}
	return res
}
