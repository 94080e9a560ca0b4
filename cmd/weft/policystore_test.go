package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-net/weft/internal/api"
)

func runWeft(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out strings.Builder
	app := newApp()
	app.Writer, app.ErrWriter = &out, io.Discard
	err := app.Run(flagsFirst(app, append([]string{"weft"}, args...)))
	return out.String(), err
}

func exitCode(err error) int {
	var ec exitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	if err != nil {
		return 1
	}
	return 0
}

// Bad input is refused before anything is sent: the commands exit with
// status 2 and name the file, field and value. Good input gets as far as
// asking the agent (none runs here).
func TestPolicyCommandsCheckLocally(t *testing.T) {
	dir := t.TempDir()
	write := func(name, doc string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: a}\nspec: {selector: all()}\n")
	bad := write("bad.yaml", "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: b}\nspec: {ingress: [{action: Allow, protocol: TCP, destination: {ports: [http-]}}]}\n")
	wep := write("wep.yaml", "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {ipNetworks: [10.0.0.1/32]}\n")
	dup := write("dup.yaml", "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\n---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\n")
	runDir := filepath.Join(dir, "run") // no agent
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"policy", "apply", "-f", bad, "--run-dir", runDir}, 2, `bad.yaml: document 1 (GlobalNetworkPolicy b): spec.ingress[0].destination.ports[0]: "http-"`},
		{[]string{"policy", "apply", "-f", good, "-f", bad, "--run-dir", runDir}, 2, "nothing applied"},
		{[]string{"policy", "apply", "-f", wep, "--run-dir", runDir}, 2, "weft endpoint add"},
		{[]string{"policy", "apply", "-f", dup, "--run-dir", runDir}, 2, "already defined at " + dup + ": document 1"},
		{[]string{"policy", "apply", "--run-dir", runDir}, 2, "-f FILE|DIR is required"},
		{[]string{"policy", "apply", "-f", good, "--run-dir", runDir}, 1, api.ErrNoAgent.Error()},
		{[]string{"policy", "get", "wep/x", "--run-dir", runDir}, 2, `unknown kind "wep"`},
		{[]string{"policy", "get", "-o", "xml", "--run-dir", runDir}, 2, `--output: "xml"`},
		{[]string{"policy", "delete", "--run-dir", runDir}, 2, "either KIND/NAME arguments or -f"},
		{[]string{"policy", "delete", "gnp/a/b", "--run-dir", runDir}, 2, "cluster-wide"},
		{[]string{"policy", "delete", "gnp/a", "--run-dir", runDir}, 1, api.ErrNoAgent.Error()},
		{[]string{"endpoint", "add", "w1", "--iface", "wlw1", "--ip", "10.0.0.1", "--labels", "app=we b", "--run-dir", runDir}, 2, `--labels: label "app": label value "we b"`},
		{[]string{"endpoint", "add", "w1", "--iface", "wlw1", "--ip", "10.0.0.x", "--run-dir", runDir}, 2, `--ip: "10.0.0.x"`},
		{[]string{"endpoint", "add", "w1", "--ip", "10.0.0.1", "--run-dir", runDir}, 2, "--iface is required"},
		{[]string{"endpoint", "add", "W1", "--iface", "wlw1", "--ip", "10.0.0.1", "--run-dir", runDir}, 2, `name: "W1"`},
		{[]string{"endpoint", "add", "w1", "--iface", "wlw1", "--ip", "10.0.0.1", "--port", "http=tcp", "--run-dir", runDir}, 2, `--port: "http=tcp"`},
		{[]string{"endpoint", "add", "w1", "--iface", "wlw1", "--ip", "10.0.0.1,fd00::1", "--labels", "app=web", "--port", "http=tcp:80", "--run-dir", runDir}, 1, api.ErrNoAgent.Error()},
		{[]string{"policy", "trace", "--from", "10.0.0.1", "--to", "10.0.0.2", "--default-deny-workloads", "--run-dir", runDir}, 2, "--default-deny-workloads needs -f"},
		{[]string{"policy", "trace", "--from", "10.0.0.1", "--to", "10.0.0.2", "--run-dir", runDir}, 1, api.ErrNoAgent.Error()},
	}
	for _, tt := range tests {
		_, err := runWeft(t, tt.args...)
		if exitCode(err) != tt.code || err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("weft %v: exit %d, %v; want exit %d and an error with %q", tt.args, exitCode(err), err, tt.code, tt.want)
		}
	}
}

// Every new subcommand explains itself.
func TestPolicyHelp(t *testing.T) {
	for _, args := range [][]string{
		{"policy", "apply", "--help"}, {"policy", "get", "--help"}, {"policy", "delete", "--help"},
		{"policy", "stats", "--help"}, {"policy", "trace", "--help"},
		{"endpoint", "add", "--help"}, {"endpoint", "del", "--help"}, {"endpoint", "list", "--help"},
	} {
		out, err := runWeft(t, args...)
		if err != nil || !strings.Contains(out, "USAGE") || len(out) < 200 {
			t.Errorf("weft %v: %v\n%s", args, err, out)
		}
	}
}
