package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/urfave/cli/v2"
)

const traceEndpoints = `apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {env: prod}}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: web, namespace: prod, labels: {app: web}}
spec: {orchestrator: k8s, ipNetworks: [10.0.0.1/32]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: db, namespace: prod, labels: {app: db}}
spec:
  orchestrator: k8s
  ipNetworks: [10.0.0.2/32]
  ports: [{name: pg, protocol: TCP, port: 5432}]
`

const tracePolicies = `apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.no-ping}
spec:
  tier: security
  order: 10
  selector: all()
  ingress:
  - {action: Deny, protocol: ICMP, icmp: {type: 8}}
  - {action: Pass}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: pg}]
`

// runTrace runs `weft trace ARGS` in-process, with the endpoints and policies
// in a directory whose path replaces DIR in args.
func runTrace(t *testing.T, args ...string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string]string{"endpoints.yaml": traceEndpoints, "policies.yml": tracePolicies, "notes.txt": "not read"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	app := &cli.App{
		Name:           "weft",
		Writer:         &out,
		ErrWriter:      io.Discard,
		Commands:       []*cli.Command{policyTraceCommand()},
		ExitErrHandler: func(*cli.Context, error) {},
	}
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "DIR", dir)
	}
	err := app.Run(append([]string{"weft", "trace"}, args...))
	return out.String(), err
}

func TestPolicyTraceText(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{{
		name: "allowed by the Kubernetes policy after a Pass",
		args: []string{"-f", "DIR", "--from", "10.0.0.1", "--to", "10.0.0.2", "--proto", "tcp", "--port", "5432", "--src-port", "40000"},
		want: `verdict: allow
flow: 10.0.0.1:40000 -> 10.0.0.2:5432 TCP

egress of WorkloadEndpoint prod/web: allow
   tier security: skip: no policy in the tier applies to the endpoint for egress
   tier default: skip: no policy in the tier applies to the endpoint for egress
=> allow: no policy applies to the endpoint; workload endpoints are allowed by default (profile)

ingress of WorkloadEndpoint prod/db: allow
   tier security, GlobalNetworkPolicy security.no-ping, ingress[0] (Deny): no match: protocol ICMP: the flow is TCP
   tier security, GlobalNetworkPolicy security.no-ping, ingress[1] (Pass): pass: go on with the next tier
=> tier default, NetworkPolicy prod/knp.default.db, ingress[0] (Allow): allow
`,
	}, {
		name: "ping denied in the security tier; the default ICMP type is echo request",
		args: []string{"--file", "DIR", "--from", "10.0.0.1", "--to", "10.0.0.2", "--proto", "icmp"},
		want: `verdict: deny
flow: 10.0.0.1 -> 10.0.0.2 ICMP type 8 code 0

egress of WorkloadEndpoint prod/web: allow
   tier security: skip: no policy in the tier applies to the endpoint for egress
   tier default: skip: no policy in the tier applies to the endpoint for egress
=> allow: no policy applies to the endpoint; workload endpoints are allowed by default (profile)

ingress of WorkloadEndpoint prod/db: deny
=> tier security, GlobalNetworkPolicy security.no-ping, ingress[0] (Deny): deny
`,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := runTrace(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPolicyTraceJSON(t *testing.T) {
	out, err := runTrace(t, "-f", "DIR", "--from", "192.0.2.9", "--to", "10.0.0.2", "--proto", "6", "--port", "5432", "--output", "json")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Verdict string `json:"verdict"`
		Ingress struct {
			Endpoint string `json:"endpoint"`
			Action   string `json:"action"`
			Steps    []struct {
				Tier, Policy, Rule, Result, Why string
			} `json:"steps"`
		} `json:"ingress"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	last := got.Ingress.Steps[len(got.Ingress.Steps)-1]
	summary := []string{got.Verdict, got.Ingress.Endpoint, got.Ingress.Action, last.Tier, last.Result, last.Why}
	want := []string{"deny", "WorkloadEndpoint prod/db", "deny", "default", "deny", "end of tier: the tier's policies apply to the endpoint but no rule decided"}
	if diff := cmp.Diff(want, summary); diff != "" {
		t.Errorf("verdict (-want +got):\n%s\n%s", diff, out)
	}
}

// Bad input exits with status 2 and says what is wrong.
func TestPolicyTraceBadInput(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"bad address", []string{"-f", "DIR", "--from", "10.0.0", "--to", "10.0.0.2"}, `--from: "10.0.0": want an IP address`},
		{"mixed IP versions", []string{"-f", "DIR", "--from", "10.0.0.1", "--to", "fd00::1"}, "want addresses of one IP version"},
		{"bad protocol", []string{"-f", "DIR", "--from", "10.0.0.1", "--to", "10.0.0.2", "--proto", "gre"}, `--proto: "gre": invalid protocol`},
		{"port without ports", []string{"-f", "DIR", "--from", "10.0.0.1", "--to", "10.0.0.2", "--proto", "icmp", "--port", "80"}, "--port: protocol ICMP has no ports"},
		{"ICMP type on TCP", []string{"-f", "DIR", "--from", "10.0.0.1", "--to", "10.0.0.2", "--icmp-type", "8"}, "want --proto icmp or icmpv6"},
		{"port out of range", []string{"-f", "DIR", "--from", "10.0.0.1", "--to", "10.0.0.2", "--port", "70000"}, "--port: 70000: want 0-65535"},
		{"bad output", []string{"-f", "DIR", "--from", "10.0.0.1", "--to", "10.0.0.2", "-o", "yaml"}, `--output: "yaml"`},
		{"no such file", []string{"-f", "DIR/nothing.yaml", "--from", "10.0.0.1", "--to", "10.0.0.2"}, "read policy resources: stat"},
		{"missing --to", []string{"-f", "DIR", "--from", "10.0.0.1"}, "--to is required"},
		{"not a number", []string{"-f", "DIR", "--from", "10.0.0.1", "--to", "10.0.0.2", "--port", "http"}, `invalid value "http" for flag -port`},
		{"an argument", []string{"-f", "DIR", "--from", "10.0.0.1", "--to", "10.0.0.2", "extra"}, `unexpected argument "extra"`},
		{"bad wireguard port", []string{"-f", "DIR", "--from", "10.0.0.1", "--to", "10.0.0.2", "--wireguard-port", "-1"}, "--wireguard-port: -1: want 0-65535"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runTrace(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			var ec exitCoder
			if !errors.As(err, &ec) || ec.ExitCode() != 2 {
				t.Errorf("error %v does not exit with status 2", err)
			}
		})
	}
}

// An error in a resource file names the file, document, object and field.
func TestPolicyTraceBadFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(tracePolicies+"---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\nspec: {ingress: [{action: Allow, protocol: TCP, destination: {ports: [http-]}}]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	app := &cli.App{Name: "weft", Writer: io.Discard, ErrWriter: io.Discard, Commands: []*cli.Command{policyTraceCommand()}, ExitErrHandler: func(*cli.Context, error) {}}
	err := app.Run([]string{"weft", "trace", "-f", bad, "--from", "10.0.0.1", "--to", "10.0.0.2"})
	want := bad + `: document 4 (GlobalNetworkPolicy x): spec.ingress[0].destination.ports[0]: "http-": invalid port name`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error %v, want one starting %q", err, want)
	}
	var ec exitCoder
	if !errors.As(err, &ec) || ec.ExitCode() != 2 {
		t.Errorf("error %v does not exit with status 2", err)
	}
}
