package config

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

// examplePath is the documented example config, which lists every field
// with its default.
const examplePath = "../../docs/weft.example.yaml"

func TestExampleFile(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse %s: %v", examplePath, err)
	}
	if diff := cmp.Diff(Default(), got, cmpOpts...); diff != "" {
		t.Errorf("%s does not hold the defaults (-want +got):\n%s", examplePath, diff)
	}
	// nodeName is left empty there (the host name); the test machine's host
	// name need not be a valid one.
	got.NodeName = "example"
	if err := got.Validate(); err != nil {
		t.Errorf("Validate %s: %v", examplePath, err)
	}

	// Every field is listed.
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	var missing []string
	for _, p := range leafPaths(reflect.TypeFor[Config](), "") {
		if !hasPath(doc, p) {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		t.Errorf("%s does not list %v", examplePath, missing)
	}
}

// hasPath reports whether the dotted path is a key of doc.
func hasPath(doc map[string]any, path string) bool {
	for {
		k, rest, nested := strings.Cut(path, ".")
		v, ok := doc[k]
		if !ok {
			return false
		}
		if !nested {
			return true
		}
		if doc, ok = v.(map[string]any); !ok {
			return false
		}
		path = rest
	}
}
