package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// cmpOpts compares netip values by ==; cmp cannot see their unexported fields.
var cmpOpts = []cmp.Option{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

// withDefaults returns Default() changed by edit.
func withDefaults(edit func(c *Config)) Config {
	c := Default()
	if edit != nil {
		edit(&c)
	}
	return c
}

func TestParseGood(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want Config
	}{
		{
			name: "only nodeName",
			doc:  "nodeName: n1\n",
			want: withDefaults(func(c *Config) { c.NodeName = "n1" }),
		},
		{
			name: "comments and null values keep defaults",
			doc:  "# hello\nnodeName: n1\nclusterName:\nsubnet: ~\ngossip:\nlocation: {zone: }\n",
			want: withDefaults(func(c *Config) { c.NodeName = "n1" }),
		},
		{
			name: "empty list and map are none",
			doc:  "nodeName: n1\njoin: []\nlabels: {}\n",
			want: withDefaults(func(c *Config) { c.NodeName = "n1" }),
		},
		{
			name: "flow style (JSON)",
			doc:  `{"nodeName": "n1", "bindPort": 8000, "insecure": true}`,
			want: withDefaults(func(c *Config) { c.NodeName, c.BindPort, c.Insecure = "n1", 8000, true }),
		},
		{
			name: "quoted number as a string",
			doc:  "nodeName: \"123\"\nlocation: {zone: \"1\"}\n",
			want: withDefaults(func(c *Config) { c.NodeName, c.Location.Zone = "123", "1" }),
		},
		{
			name: "gossip partly set keeps the rest",
			doc:  "nodeName: n1\ngossip:\n  probeInterval: 1s\n  probeTimeout: 400ms\n  suspicionMult: 5\n",
			want: withDefaults(func(c *Config) {
				c.NodeName = "n1"
				c.Gossip.ProbeInterval = Duration{time.Second}
				c.Gossip.ProbeTimeout = Duration{400 * time.Millisecond}
				c.Gossip.SuspicionMult = 5
			}),
		},
		{
			name: "data plane partly set keeps the rest",
			doc:  "nodeName: n1\noverlayMode: always\nvxlan: {port: 8472}\nipMasq: false\n",
			want: withDefaults(func(c *Config) {
				c.NodeName, c.OverlayMode, c.IPMasq = "n1", "always", false
				c.VXLAN.Port = 8472
			}),
		},
		{
			name: "every field",
			doc: `nodeName: host-1.example.com
clusterName: prod-eu
clusterCIDR: 10.32.0.0/12
subnetSize: 26
subnet: 10.33.4.64/26
join: ["198.18.0.1", "198.18.0.2:7000", "[2001:db8::1]:7946", "2001:db8::2", "seed.example.com", "Seed-2:8000"]
bindAddress: 198.18.0.10
bindPort: 7000
clusterKeyFile: /etc/weft/prod.key
insecure: false
location: {cloud: aws, region: eu-west-1, zone: eu-west-1a}
underlayInterface: ens5
advertiseAddress: 198.18.0.10
publicAddress: 2001:db8::10
stateDir: /srv/weft/state
runDir: /srv/weft/run
labels: {tier: edge, example.com/rack: r12, empty: ""}
overlay: ipip
overlayMode: never
encryption: always
policy: {enabled: false, failsafeInbound: ["tcp:7000", "udp:10.0.0.0/8:53"], failsafeOutbound: ["udp:53"], defaultDenyWorkloads: true}
vxlan: {vni: 16777215, port: 8472, device: vx0}
ipMasq: false
resyncPeriod: 1s
wireguard: {port: 51000, device: wg9, keepalive: 10s, behindNAT: true}
cloud: aws
aws: {region: eu-west-1, endpoint: "http://198.18.0.5:8080", imdsEndpoint: "http://127.0.0.1:1338", routeTableIDs: [rtb-0abc], routeTableTag: "team=net"}
gossip:
  probeInterval: 1s
  probeTimeout: 500ms
  suspicionMult: 4
  gossipInterval: 300ms
  pushPullInterval: 30s
  joinRetryMax: 1m
  deadReservation: 168h
health: {enabled: false, interval: 250ms, misses: 5, holdDown: 30s, timeout: 2s, maxProbesPerSecond: 50, port: 7000}
metrics: {listen: "127.0.0.1:9587"}
logLevel: debug
logFormat: json
`,
			want: Config{
				NodeName:          "host-1.example.com",
				ClusterName:       "prod-eu",
				ClusterCIDR:       netip.MustParsePrefix("10.32.0.0/12"),
				SubnetSize:        26,
				Subnet:            netip.MustParsePrefix("10.33.4.64/26"),
				Join:              []string{"198.18.0.1", "198.18.0.2:7000", "[2001:db8::1]:7946", "2001:db8::2", "seed.example.com", "Seed-2:8000"},
				BindAddress:       netip.MustParseAddr("198.18.0.10"),
				BindPort:          7000,
				ClusterKeyFile:    "/etc/weft/prod.key",
				Location:          Location{Cloud: "aws", Region: "eu-west-1", Zone: "eu-west-1a"},
				UnderlayInterface: "ens5",
				AdvertiseAddress:  netip.MustParseAddr("198.18.0.10"),
				PublicAddress:     netip.MustParseAddr("2001:db8::10"),
				StateDir:          "/srv/weft/state",
				RunDir:            "/srv/weft/run",
				Labels:            map[string]string{"tier": "edge", "example.com/rack": "r12", "empty": ""},
				Overlay:           "ipip",
				OverlayMode:       "never",
				Encryption:        "always",
				VXLAN:             VXLAN{VNI: 16777215, Port: 8472, Device: "vx0"},
				IPMasq:            false,
				ResyncPeriod:      Duration{time.Second},
				WireGuard:         WireGuard{Port: 51000, Device: "wg9", Keepalive: Duration{10 * time.Second}, BehindNAT: true},
				Cloud:             "aws",
				AWS:               AWS{Region: "eu-west-1", Endpoint: "http://198.18.0.5:8080", IMDSEndpoint: "http://127.0.0.1:1338", RouteTableIDs: []string{"rtb-0abc"}, RouteTableTag: "team=net"},
				Gossip: GossipTimings{
					ProbeInterval:    Duration{time.Second},
					ProbeTimeout:     Duration{500 * time.Millisecond},
					SuspicionMult:    4,
					GossipInterval:   Duration{300 * time.Millisecond},
					PushPullInterval: Duration{30 * time.Second},
					JoinRetryMax:     Duration{time.Minute},
					DeadReservation:  Duration{168 * time.Hour},
				},
				Policy: Policy{FailsafeInbound: []string{"tcp:7000", "udp:10.0.0.0/8:53"}, FailsafeOutbound: []string{"udp:53"}, DefaultDenyWorkloads: true},
				Health: Health{Enabled: false, Interval: Duration{250 * time.Millisecond}, Misses: 5, HoldDown: Duration{30 * time.Second},
					Timeout: Duration{2 * time.Second}, MaxProbesPerSecond: 50, Port: 7000},
				Metrics:   Metrics{Listen: "127.0.0.1:9587"},
				LogLevel:  "debug",
				LogFormat: "json",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.doc))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpOpts...); diff != "" {
				t.Errorf("Parse (-want +got):\n%s", diff)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
			path := filepath.Join(t.TempDir(), "weft.yaml")
			if err := os.WriteFile(path, []byte(tt.doc), 0o600); err != nil {
				t.Fatal(err)
			}
			loaded, err := Load(path, true)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if diff := cmp.Diff(tt.want, loaded, cmpOpts...); diff != "" {
				t.Errorf("Load (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseEmpty checks that an empty document is Default(). Default is not
// validated here: the host name of the test machine may not be a valid
// nodeName.
func TestParseEmpty(t *testing.T) {
	for _, doc := range []string{"", "\n", "# only a comment\n", "---\n", "null\n"} {
		got, err := Parse([]byte(doc))
		if err != nil {
			t.Fatalf("Parse(%q): %v", doc, err)
		}
		if diff := cmp.Diff(Default(), got, cmpOpts...); diff != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", doc, diff)
		}
	}
}

func TestParseValidateBad(t *testing.T) {
	tests := []struct {
		name  string
		doc   string
		field string // the error must mention the field...
		value string // ...and the value
	}{
		// Shape: Parse refuses these.
		{"unknown field", "nodname: n1\n", "nodname", "unknown field"},
		{"mis-cased field", "NodeName: n1\n", "NodeName", `did you mean "nodeName"`},
		{"unknown nested field", "gossip: {probeIntervall: 1s}\n", "gossip.probeIntervall", "unknown field"},
		{"duplicate key", "nodeName: a\nnodeName: b\n", "nodeName", "already set"},
		{"number for string", "nodeName: 123\n", "nodeName", "123"},
		{"bool for string", "location: {zone: yes}\n", "location.zone", "true"},
		{"string for int", "bindPort: abc\n", "bindPort", `"abc"`},
		{"float for int", "subnetSize: 24.5\n", "subnetSize", "24.5"},
		{"string for bool", "insecure: maybe\n", "insecure", `"maybe"`},
		{"list for map", "labels: [a]\n", "labels", `["a"]`},
		{"scalar for struct", "gossip: 5\n", "gossip", "5"},
		{"null in list", "join: [a, null]\n", "join[1]", "null"},
		{"number in map", "labels: {tier: 1}\n", `labels["tier"]`, "1"},
		{"bad prefix", "clusterCIDR: 10.0.0.0/33\n", "clusterCIDR", `"10.0.0.0/33"`},
		{"bad address", "bindAddress: 300.1.1.1\n", "bindAddress", `"300.1.1.1"`},
		{"number for duration", "gossip: {probeInterval: 5}\n", "gossip.probeInterval", "5"},
		{"bad duration", "gossip: {probeTimeout: 5x}\n", "gossip.probeTimeout", `"5x"`},
		{"unknown vxlan field", "vxlan: {id: 1}\n", "vxlan.id", "unknown field"},
		{"scalar for vxlan", "vxlan: 5\n", "vxlan", "5"},
		{"string for vni", "vxlan: {vni: \"1\"}\n", "vxlan.vni", `"1"`},
		{"string for ipMasq", "ipMasq: \"false\"\n", "ipMasq", `"false"`},
		{"number for resyncPeriod", "resyncPeriod: 30\n", "resyncPeriod", "30"},
		{"top level list", "- a\n", "top level", `["a"]`},
		{"two documents", "nodeName: a\n---\nnodeName: b\n", "document", "---"},
		// Values: Validate refuses these.
		{"empty nodeName", "nodeName: \"\"\n", "nodeName", `""`},
		{"upper-case nodeName", "nodeName: Node_1\n", "nodeName", `"Node_1"`},
		{"long nodeName", "nodeName: " + strings.Repeat("a", 64) + "\n", "nodeName", strings.Repeat("a", 64)},
		{"empty clusterName", "clusterName: \"\"\n", "clusterName", `""`},
		{"clusterName with dot", "clusterName: a.b\n", "clusterName", `"a.b"`},
		{"IPv6 clusterCIDR", "clusterCIDR: fd00::/64\n", "clusterCIDR", `"fd00::/64"`},
		{"unmasked clusterCIDR", "clusterCIDR: 10.244.1.0/16\n", "clusterCIDR", `"10.244.1.0/16"`},
		{"subnetSize too long", "subnetSize: 31\n", "subnetSize", "31"},
		{"subnetSize not longer than cidr", "subnetSize: 16\n", "subnetSize", "16"},
		{"subnet outside", "subnet: 10.1.0.0/24\n", "subnet", `"10.1.0.0/24"`},
		{"subnet wrong size", "subnet: 10.244.0.0/25\n", "subnet", `"10.244.0.0/25"`},
		{"subnet unmasked", "subnet: 10.244.3.1/24\n", "subnet", `"10.244.3.1/24"`},
		{"join bad port", "join: [\"seed:99999\"]\n", "join[0]", `"seed:99999"`},
		{"join port zero", "join: [\"198.18.0.1:0\"]\n", "join[0]", `"198.18.0.1:0"`},
		{"join underscore", "join: [ok, bad_host]\n", "join[1]", `"bad_host"`},
		{"join short IP", "join: [\"1.2.3\"]\n", "join[0]", `"1.2.3"`},
		{"join unspecified", "join: [\"[::]:7946\"]\n", "join[0]", `"[::]:7946"`},
		{"join multicast", "join: [224.0.0.1]\n", "join[0]", `"224.0.0.1"`},
		{"join empty port", "join: [\"seed:\"]\n", "join[0]", `"seed:"`},
		{"bindAddress multicast", "bindAddress: 224.0.0.1\n", "bindAddress", `"224.0.0.1"`},
		{"bindAddress empty", "bindAddress: \"\"\n", "bindAddress", `""`},
		{"bindPort zero", "bindPort: 0\n", "bindPort", "0"},
		{"bindPort high", "bindPort: 70000\n", "bindPort", "70000"},
		{"relative key file", "clusterKeyFile: cluster.key\n", "clusterKeyFile", `"cluster.key"`},
		{"upper-case region", "location: {region: EU-West}\n", "location.region", `"EU-West"`},
		{"long zone", "location: {zone: " + strings.Repeat("z", 33) + "}\n", "location.zone", strings.Repeat("z", 33)},
		{"ifname with slash", "underlayInterface: eth0/1\n", "underlayInterface", `"eth0/1"`},
		{"ifname too long", "underlayInterface: abcdefghijklmnop\n", "underlayInterface", `"abcdefghijklmnop"`},
		{"advertise unspecified", "advertiseAddress: 0.0.0.0\n", "advertiseAddress", `"0.0.0.0"`},
		{"public multicast", "publicAddress: ff02::1\n", "publicAddress", `"ff02::1"`},
		{"advertise with zone", "advertiseAddress: fe80::1%eth0\n", "advertiseAddress", `"fe80::1%eth0"`},
		{"relative stateDir", "stateDir: var/lib/weft\n", "stateDir", `"var/lib/weft"`},
		{"empty runDir", "runDir: \"\"\n", "runDir", `""`},
		{"too many labels", "labels: {a: x, b: x, c: x, d: x, e: x, f: x, g: x, h: x, i: x}\n", "labels", "9 labels"},
		{"bad label key", "labels: {\"-a\": x}\n", `labels["-a"]`, `"-a"`},
		{"bad label prefix", "labels: {\"Ex.com/a\": x}\n", `labels["Ex.com/a"]`, `"Ex.com/a"`},
		{"bad label value", "labels: {a: \"x y\"}\n", `labels["a"]`, `"x y"`},
		{"probeTimeout not shorter", "gossip: {probeTimeout: 500ms}\n", "gossip.probeTimeout", `"500ms"`},
		{"zero probeInterval", "gossip: {probeInterval: 0s}\n", "gossip.probeInterval", `"0s"`},
		{"negative deadReservation", "gossip: {deadReservation: -1h}\n", "gossip.deadReservation", `"-1h0m0s"`},
		{"suspicionMult zero", "gossip: {suspicionMult: 0}\n", "gossip.suspicionMult", "0"},
		{"suspicionMult high", "gossip: {suspicionMult: 11}\n", "gossip.suspicionMult", "11"},
		{"health interval tiny", "health: {interval: 1ms}\n", "health.interval", "1ms"},
		{"health misses zero", "health: {misses: 0}\n", "health.misses", "0"},
		{"health holdDown negative", "health: {holdDown: -1s}\n", "health.holdDown", "-1s"},
		{"health budget zero", "health: {maxProbesPerSecond: 0}\n", "health.maxProbesPerSecond", "0"},
		{"health port", "health: {port: 65536}\n", "health.port", "65536"},
		{"metrics listen without port", "metrics: {listen: localhost}\n", "metrics.listen", "localhost"},
		{"overlay", "overlay: geneve\n", "overlay", `"geneve"`},
		{"upper-case overlay", "overlay: VXLAN\n", "overlay", `"VXLAN"`},
		{"empty overlay", "overlay: \"\"\n", "overlay", `""`},
		{"overlayMode", "overlayMode: crosssubnet\n", "overlayMode", `"crosssubnet"`},
		{"overlayMode Calico spelling", "overlayMode: CrossSubnet\n", "overlayMode", `"CrossSubnet"`},
		{"encryption", "encryption: sometimes\n", "encryption", `"sometimes"`},
		{"encryption wireguard", "encryption: wireguard\n", "encryption", `"wireguard"`},
		{"vni zero", "vxlan: {vni: 0}\n", "vxlan.vni", "0"},
		{"vni over 24 bits", "vxlan: {vni: 16777216}\n", "vxlan.vni", "16777216"},
		{"vxlan port zero", "vxlan: {port: 0}\n", "vxlan.port", "0"},
		{"vxlan port high", "vxlan: {port: 65536}\n", "vxlan.port", "65536"},
		{"vxlan port is bindPort", "vxlan: {port: 7946}\n", "vxlan.port", "7946"},
		{"vxlan device empty", "vxlan: {device: \"\"}\n", "vxlan.device", `""`},
		{"vxlan device too long", "vxlan: {device: weft.vxlan.longer}\n", "vxlan.device", `"weft.vxlan.longer"`},
		{"vxlan device with space", "vxlan: {device: \"weft vx\"}\n", "vxlan.device", `"weft vx"`},
		{"vxlan device is underlay", "underlayInterface: eth0\nvxlan: {device: eth0}\n", "vxlan.device", `"eth0"`},
		{"resyncPeriod short", "resyncPeriod: 999ms\n", "resyncPeriod", `"999ms"`},
		{"resyncPeriod zero", "resyncPeriod: 0s\n", "resyncPeriod", `"0s"`},
		{"resyncPeriod negative", "resyncPeriod: -30s\n", "resyncPeriod", `"-30s"`},
		{"logLevel", "logLevel: verbose\n", "logLevel", `"verbose"`},
		{"logFormat", "logFormat: xml\n", "logFormat", `"xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A valid nodeName unless the case is about it, so that the host
			// name of the test machine cannot add an error.
			doc := tt.doc
			if !strings.Contains(doc, "odeName") && !strings.Contains(doc, "---") && !strings.HasPrefix(doc, "-") {
				doc = "nodeName: n1\n" + doc
			}
			c, err := Parse([]byte(doc))
			if err == nil {
				err = c.Validate()
			} else if diff := cmp.Diff(Config{}, c, cmpOpts...); diff != "" {
				t.Errorf("Parse returned a Config with its error (-want +got):\n%s", diff)
			}
			if err == nil {
				t.Fatalf("Parse+Validate(%q) = nil error, want one", doc)
			}
			checkMentions(t, err, tt.field, tt.value)

			path := filepath.Join(t.TempDir(), "weft.yaml")
			if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := Load(path, false)
			if err == nil {
				t.Fatalf("Load = nil error, want one")
			}
			checkMentions(t, err, path, tt.field, tt.value)
			if diff := cmp.Diff(Config{}, got, cmpOpts...); diff != "" {
				t.Errorf("Load returned a Config with its error (-want +got):\n%s", diff)
			}
		})
	}
}

// checkMentions fails t unless err's text contains every one of want.
func checkMentions(t *testing.T, err error, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func TestParseSyntaxErrors(t *testing.T) {
	for _, doc := range []string{"nodeName: [", "\t", "nodeName: .inf\n", strings.Repeat("#", maxDocumentSize+1)} {
		c, err := Parse([]byte(doc))
		if err == nil {
			t.Errorf("Parse(%.20q) = nil error, want one", doc)
		}
		if diff := cmp.Diff(Config{}, c, cmpOpts...); diff != "" {
			t.Errorf("Parse(%.20q) returned a Config with its error (-want +got):\n%s", doc, diff)
		}
	}
}

func TestValidateReportsAll(t *testing.T) {
	c := withDefaults(func(c *Config) {
		c.NodeName = "n1"
		c.BindPort = 0
		c.LogLevel = "loud"
		c.Gossip.SuspicionMult = 0
		c.Overlay = "gre"
		c.VXLAN.VNI = -1
	})
	err := c.Validate()
	var n int
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Errorf("error %q is not a *FieldError", e)
			continue
		}
		n++
	}
	if n != 5 {
		t.Errorf("Validate returned %d errors, want 5: %v", n, err)
	}
	checkMentions(t, err, "bindPort: 0", `logLevel: "loud"`, "gossip.suspicionMult: 0", `overlay: "gre"`, "vxlan.vni: -1")
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("nodeName: n1\nbindPort: 8000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		path     string
		explicit bool
		want     Config
		wantErr  string // substring; "" for no error
	}{
		{"missing default file", missing, false, Default(), ""},
		{"missing explicit file", missing, true, Config{}, missing},
		{"directory", dir, true, Config{}, dir},
		{"good file", good, true, withDefaults(func(c *Config) { c.NodeName, c.BindPort = "n1", 8000 }), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := load(tt.path, tt.explicit)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("load: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("load = nil error, want one mentioning %q", tt.wantErr)
			case err != nil:
				checkMentions(t, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmpOpts...); diff != "" {
				t.Errorf("load (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDurationText(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"500ms", 500 * time.Millisecond, false},
		{"1h30m", 90 * time.Minute, false},
		{"0", 0, false},
		{"5", 0, true},
		{"", 0, true},
		{"5x", 0, true},
	}
	for _, tt := range tests {
		var d Duration
		err := d.UnmarshalText([]byte(tt.in))
		if gotErr := err != nil; gotErr != tt.wantErr {
			t.Errorf("UnmarshalText(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err != nil {
			checkMentions(t, err, `"`+tt.in+`"`)
			continue
		}
		if d.Duration != tt.want {
			t.Errorf("UnmarshalText(%q) = %v, want %v", tt.in, d.Duration, tt.want)
		}
		b, _ := d.MarshalText()
		var back Duration
		if err := back.UnmarshalText(b); err != nil || back != d {
			t.Errorf("round trip of %v through %q = %v, %v", d, b, back, err)
		}
	}
}
