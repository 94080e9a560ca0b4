package config

import (
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/google/go-cmp/cmp"
	"github.com/urfave/cli/v2"
)

// runAgent runs a real `weft agent` command built from Flags() with args
// and returns what FromCLI made of them.
func runAgent(t *testing.T, args ...string) (Config, error) {
	t.Helper()
	var got Config
	app := &cli.App{
		Name:      "weft",
		Writer:    io.Discard,
		ErrWriter: io.Discard,
		Commands: []*cli.Command{{
			Name:  "agent",
			Flags: Flags(),
			Action: func(ctx *cli.Context) error {
				var err error
				got, err = FromCLI(ctx)
				return err
			},
		}},
	}
	err := app.Run(append([]string{"weft", "agent"}, args...))
	return got, err
}

// clearEnv unsets every WEFT_* variable for the test, restoring them after.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "WEFT_") {
			t.Setenv(k, "") // registers the restore
			os.Unsetenv(k)
		}
	}
}

func writeFile(t *testing.T, doc string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "weft.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPrecedence(t *testing.T) {
	const file = `nodeName: file-node
clusterName: file-cluster
bindPort: 1001
logLevel: warn
join: [file-seed]
labels: {from: file}
location: {region: file-region}
gossip: {probeInterval: 2s}
overlay: ipip
vxlan: {port: 8472}
resyncPeriod: 1m
`
	// fromFile is Default() changed by file.
	fromFile := func(edit func(c *Config)) Config {
		return withDefaults(func(c *Config) {
			c.NodeName, c.ClusterName, c.BindPort, c.LogLevel = "file-node", "file-cluster", 1001, "warn"
			c.Join, c.Labels = []string{"file-seed"}, map[string]string{"from": "file"}
			c.Location.Region = "file-region"
			c.Gossip.ProbeInterval.Duration = 2e9
			c.Overlay, c.VXLAN.Port, c.ResyncPeriod.Duration = "ipip", 8472, time.Minute
			if edit != nil {
				edit(c)
			}
		})
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want Config
	}{
		{
			name: "file over defaults",
			want: fromFile(nil),
		},
		{
			name: "env over file, flag over env",
			env: map[string]string{
				"WEFT_BIND_PORT":             "2002",
				"WEFT_LOG_LEVEL":             "error",
				"WEFT_JOIN":                  "env-a, env-b",
				"WEFT_LABELS":                "from=env",
				"WEFT_LOCATION_ZONE":         "env-zone",
				"WEFT_GOSSIP_PROBE_INTERVAL": "3s",
				"WEFT_INSECURE":              "true",
				"WEFT_SUBNET":                "10.244.9.0/24",
				"WEFT_OVERLAY":               "vxlan",
				"WEFT_OVERLAY_MODE":          "always",
				"WEFT_ENCRYPTION":            "always",
				"WEFT_VXLAN_VNI":             "42",
				"WEFT_VXLAN_PORT":            "8000",
				"WEFT_IP_MASQ":               "false",
				"WEFT_RESYNC_PERIOD":         "2m",
			},
			args: []string{"--log-level", "debug", "--join", "flag-a", "--join", "flag-b,flag-c",
				"--gossip-probe-interval=4s", "--insecure=false", "--cluster-cidr", "10.244.0.0/16",
				"--encryption", "never", "--vxlan-port=9000", "--vxlan-device", "vx0", "--ip-masq", "--resync-period", "5s"},
			want: withDefaults(func(c *Config) {
				c.NodeName, c.ClusterName = "file-node", "file-cluster" // file
				c.BindPort = 2002                                       // env over file
				c.LogLevel = "debug"                                    // flag over env over file
				c.Join = []string{"flag-a", "flag-b", "flag-c"}         // flag replaces env and file
				c.Labels = map[string]string{"from": "env"}             // env replaces file
				c.Location = Location{Region: "file-region", Zone: "env-zone"}
				c.Gossip.ProbeInterval.Duration = 4e9 // flag over env over file
				c.Insecure = false                    // flag over env
				c.Subnet = netip.MustParsePrefix("10.244.9.0/24")
				c.Overlay = "vxlan"                                 // env over file
				c.OverlayMode = "always"                            // env over default
				c.Encryption = "never"                              // flag over env
				c.VXLAN = VXLAN{VNI: 42, Port: 9000, Device: "vx0"} // env, flag over env over file, flag
				c.IPMasq = true                                     // flag over env
				c.ResyncPeriod.Duration = 5 * time.Second           // flag over env over file
			}),
		},
		{
			name: "empty env clears a list and an optional address",
			env:  map[string]string{"WEFT_JOIN": "", "WEFT_LABELS": "", "WEFT_PUBLIC_ADDRESS": ""},
			want: fromFile(func(c *Config) { c.Join, c.Labels = nil, nil }),
		},
		{
			name: "WEFT_IP_MASQ=false turns masquerade off",
			env:  map[string]string{"WEFT_IP_MASQ": "false"},
			want: fromFile(func(c *Config) { c.IPMasq = false }),
		},
		{
			name: "--ip-masq=false turns masquerade off",
			args: []string{"--ip-masq=false"},
			want: fromFile(func(c *Config) { c.IPMasq = false }),
		},
		{
			name: "--ip-masq=false over WEFT_IP_MASQ=true",
			env:  map[string]string{"WEFT_IP_MASQ": "true"},
			args: []string{"--ip-masq=false"},
			want: fromFile(func(c *Config) { c.IPMasq = false }),
		},
		{
			name: "WEFT_IP_MASQ=true keeps the default",
			env:  map[string]string{"WEFT_IP_MASQ": "true"},
			want: fromFile(nil),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			t.Setenv("WEFT_CONFIG", writeFile(t, file))
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			got, err := runAgent(t, tt.args...)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpOpts...); diff != "" {
				t.Errorf("FromCLI (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFromCLIErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  map[string]string
		args []string
		want []string // substrings of the error
	}{
		{"bad prefix flag", "", nil, []string{"--cluster-cidr", "10.0.0.0/33"}, []string{"--cluster-cidr", "WEFT_CLUSTER_CIDR", `"10.0.0.0/33"`}},
		{"bad address env", "", map[string]string{"WEFT_BIND_ADDRESS": "bogus"}, nil, []string{"--bind-address", "WEFT_BIND_ADDRESS", `"bogus"`}},
		{"label without =", "", nil, []string{"--labels", "a=b,c"}, []string{"--labels", `"c"`, "key=value"}},
		{"label twice", "", nil, []string{"--labels", "a=b", "--labels", "a=c"}, []string{"--labels", `"a=c"`}},
		{"int env", "", map[string]string{"WEFT_SUBNET_SIZE": "x"}, nil, []string{"WEFT_SUBNET_SIZE", "subnet-size", `"x"`}},
		{"int flag", "", nil, []string{"--bind-port", "x"}, []string{"bind-port", `"x"`}},
		{"duration flag", "", nil, []string{"--gossip-probe-timeout", "5x"}, []string{"gossip-probe-timeout", `"5x"`}},
		{"invalid result", "", nil, []string{"--subnet-size", "31"}, []string{"subnetSize: 31"}},
		{"flag breaks file", "subnet: 10.244.3.0/24\n", nil, []string{"--cluster-cidr", "10.1.0.0/16"}, []string{"subnet", `"10.244.3.0/24"`, "10.1.0.0/16"}},
		{"bad file", "bindPort: x\n", nil, nil, []string{"bindPort", `"x"`, "weft.yaml"}},
		{"bad overlay flag", "", nil, []string{"--overlay", "geneve"}, []string{`overlay: "geneve"`, "vxlan, ipip"}},
		{"bad overlay mode env", "", map[string]string{"WEFT_OVERLAY_MODE": "sometimes"}, nil, []string{`overlayMode: "sometimes"`}},
		{"bad encryption flag", "", nil, []string{"--encryption", "wireguard"}, []string{`encryption: "wireguard"`}},
		{"vni flag too big", "", nil, []string{"--vxlan-vni", "16777216"}, []string{"vxlan.vni: 16777216"}},
		{"vni flag not a number", "", nil, []string{"--vxlan-vni", "one"}, []string{"vxlan-vni", `"one"`}},
		{"vxlan port flag is bind port", "", nil, []string{"--vxlan-port", "7000", "--bind-port", "7000"}, []string{"vxlan.port: 7000", "bindPort"}},
		{"bad vxlan device env", "", map[string]string{"WEFT_VXLAN_DEVICE": "a/b"}, nil, []string{`vxlan.device: "a/b"`}},
		{"ip-masq env not a bool", "", map[string]string{"WEFT_IP_MASQ": "maybe"}, nil, []string{"WEFT_IP_MASQ", `"maybe"`}},
		{"ip-masq flag with a separate value", "", nil, []string{"--ip-masq", "false"}, []string{`"false"`, "--ip-masq=false"}},
		{"stray argument", "", nil, []string{"extra"}, []string{`unexpected argument "extra"`}},
		{"resync period flag short", "", nil, []string{"--resync-period", "500ms"}, []string{`resyncPeriod: "500ms"`, "at least 1s"}},
		{"resync period env bad", "", map[string]string{"WEFT_RESYNC_PERIOD": "soon"}, nil, []string{"WEFT_RESYNC_PERIOD", `"soon"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			args := append([]string{"--node-name", "n1", "--config", writeFile(t, tt.file)}, tt.args...)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			got, err := runAgent(t, args...)
			if err == nil {
				t.Fatalf("run = nil error, want one")
			}
			checkMentions(t, err, tt.want...)
			if diff := cmp.Diff(Config{}, got, cmpOpts...); diff != "" {
				t.Errorf("FromCLI returned a Config with its error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFromCLIConfigFile(t *testing.T) {
	clearEnv(t)
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	if _, err := runAgent(t, "--config", missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("explicit missing --config: error %v, want one naming %s", err, missing)
	}
	// A file that is invalid on its own but fixed by a flag is fine: the
	// result is validated as a whole.
	path := writeFile(t, "nodeName: Not_Valid\n")
	got, err := runAgent(t, "--config", path, "--node-name", "n1")
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if diff := cmp.Diff(withDefaults(func(c *Config) { c.NodeName = "n1" }), got, cmpOpts...); diff != "" {
		t.Errorf("FromCLI (-want +got):\n%s", diff)
	}
}

// TestFlags checks that there is one flag per Config field, named after
// the field's YAML path, each with its WEFT_* variable, a one-line usage,
// the default in its help and no value of its own.
func TestFlags(t *testing.T) {
	var want []string
	for _, p := range leafPaths(reflect.TypeFor[Config](), "") {
		want = append(want, kebab(p))
	}
	want = append(want, "config")
	slices.Sort(want)
	// Flag names are public: pin them, so that renaming a field cannot
	// rename its flag unnoticed.
	pinned := []string{
		"config",
		"node-name", "cluster-name", "cluster-cidr", "subnet-size", "subnet", "join",
		"bind-address", "bind-port", "cluster-key-file", "insecure",
		"location-cloud", "location-region", "location-zone",
		"underlay-interface", "advertise-address", "public-address", "state-dir", "run-dir", "labels",
		"overlay", "overlay-mode", "encryption", "vxlan-vni", "vxlan-port", "vxlan-device", "ip-masq", "resync-period",
		"wireguard-port", "wireguard-device", "wireguard-keepalive", "wireguard-behind-nat",
		"cloud", "aws-region", "aws-endpoint", "aws-imds-endpoint", "aws-route-table-ids", "aws-route-table-tag",
		"gossip-probe-interval", "gossip-probe-timeout", "gossip-suspicion-mult", "gossip-gossip-interval",
		"gossip-push-pull-interval", "gossip-join-retry-max", "gossip-dead-reservation",
		"policy-enabled", "policy-failsafe-inbound", "policy-failsafe-outbound", "policy-default-deny-workloads",
		"health-enabled", "health-interval", "health-misses", "health-hold-down", "health-timeout",
		"health-max-probes-per-second", "health-port", "metrics-listen",
		"log-level", "log-format",
	}
	if len(pinned) != 59 {
		t.Fatalf("pinned lists %d flags, want 59", len(pinned))
	}
	slices.Sort(pinned)
	if diff := cmp.Diff(pinned, want); diff != "" {
		t.Errorf("flag names from the Config fields (-pinned +derived):\n%s", diff)
	}

	var got []string
	for _, f := range Flags() {
		name := f.Names()[0]
		got = append(got, name)
		df := f.(cli.DocGenerationFlag)
		if diff := cmp.Diff([]string{"WEFT_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))}, df.GetEnvVars()); diff != "" {
			t.Errorf("--%s env vars (-want +got):\n%s", name, diff)
		}
		if u := df.GetUsage(); u == "" || strings.ContainsAny(u, "\n\t") {
			t.Errorf("--%s usage %q: want one non-empty line", name, u)
		}
		if df.GetDefaultText() == "" {
			t.Errorf("--%s has no default text", name)
		}
		if v := df.GetValue(); v != "" && v != "0" && v != "false" && v != "0s" {
			t.Errorf("--%s has value %q, want none", name, v)
		}
	}
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("flag names (-want +got):\n%s", diff)
	}
}

// leafPaths lists the YAML paths of the leaf fields of struct type t.
func leafPaths(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		p := joinPath(prefix, name)
		if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() == t.PkgPath() && f.Type != reflect.TypeFor[Duration]() {
			out = append(out, leafPaths(f.Type, p)...)
			continue
		}
		out = append(out, p)
	}
	return out
}

// kebab turns a YAML path into a flag name: gossip.probeInterval is
// gossip-probe-interval, clusterCIDR is cluster-cidr.
func kebab(path string) string {
	var b strings.Builder
	var prev rune
	for _, r := range path {
		switch {
		case r == '.':
			b.WriteByte('-')
		case unicode.IsUpper(r) && (unicode.IsLower(prev) || unicode.IsDigit(prev)):
			b.WriteByte('-')
			b.WriteRune(unicode.ToLower(r))
		default:
			b.WriteRune(unicode.ToLower(r))
		}
		prev = r
	}
	return b.String()
}

// TestEncryptionUsage checks that the help does not promise encryption that
// does not exist yet.
func TestEncryptionUsage(t *testing.T) {
	for _, f := range Flags() {
		if f.Names()[0] == "encryption" {
			checkMentionsText(t, f.(cli.DocGenerationFlag).GetUsage(), "not implemented yet", "pairs that need encryption get no path until WireGuard support lands")
			return
		}
	}
	t.Fatal("no --encryption flag")
}

// checkMentionsText fails t unless s contains every one of want.
func checkMentionsText(t *testing.T, s string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Errorf("%q does not mention %q", s, w)
		}
	}
}

func TestPrecedenceText(t *testing.T) {
	for _, w := range []string{"flags", "WEFT_", DefaultPath, "defaults"} {
		if !strings.Contains(Precedence, w) {
			t.Errorf("Precedence does not mention %q", w)
		}
	}
}
