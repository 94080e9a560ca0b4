package nft

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-net/weft/policy"
)

var update = flag.Bool("update", false, "rewrite the golden testdata/*.nft files")

// loadSet resolves the resource files (under testdata) into a Set.
func loadSet(t testing.TB, files ...string) *policy.Set {
	t.Helper()
	var objs []policy.Object
	for _, f := range files {
		o, err := policy.LoadObjects(filepath.Join("testdata", f))
		if err != nil {
			t.Fatalf("load %s: %v", f, err)
		}
		objs = append(objs, o...)
	}
	set, err := policy.NewSet(objs)
	if err != nil {
		t.Fatalf("resolve %v: %v", files, err)
	}
	return set
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

// node1 is the host of world.yaml's node1 workloads, plus one interface
// whose address no endpoint has.
var node1 = HostInfo{Node: "node1", Workloads: []Workload{
	{Interface: "wlfront", Addrs: addrs("10.0.1.1", "fd00::1:1")},
	{Interface: "wlback", Addrs: addrs("10.0.1.2")},
	{Interface: "wldns", Addrs: addrs("10.0.3.10")},
	{Interface: "wlstray", Addrs: addrs("10.0.9.9")},
}}

func TestCompileGolden(t *testing.T) {
	deny := policy.Options{DefaultDenyWorkloads: true}
	tests := []struct {
		name  string
		files []string
		host  HostInfo
		opts  policy.Options
	}{
		{name: "no-policy", files: []string{"world.yaml"}, host: HostInfo{Workloads: node1.Workloads}},
		{name: "no-workloads", files: []string{"world.yaml"}},
		{name: "default-deny-workloads", files: []string{"world.yaml"}, host: HostInfo{Workloads: node1.Workloads}, opts: deny},
		{name: "default-deny", files: []string{"world.yaml", "default-deny.yaml"}, host: node1, opts: policy.DefaultOptions(7946, 51820)},
		{name: "tiers", files: []string{"world.yaml", "tiers.yaml"}, host: HostInfo{Workloads: node1.Workloads}},
		{name: "kubernetes", files: []string{"world.yaml", "kubernetes.yaml"}, host: HostInfo{Workloads: node1.Workloads}},
		{name: "host", files: []string{"world.yaml", "host.yaml"}, host: node1,
			opts: policy.Options{FailsafeInbound: []policy.Failsafe{{Protocol: policy.ProtoTCP, Port: 22},
				{Protocol: policy.ProtoTCP, Port: 7946, Net: netip.MustParsePrefix("198.18.0.0/15")}},
				FailsafeOutbound: []policy.Failsafe{{Protocol: policy.ProtoUDP, Port: 53}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := Compile(loadSet(t, tt.files...), tt.host, tt.opts)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			got := rs.String()
			golden := filepath.Join("testdata", tt.name+".nft")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden file (run with -update to make it): %v", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("ruleset differs from %s (-want +got; -update rewrites it):\n%s", golden, diff)
			}
		})
	}
}

// TestCompileDeterministic checks that the order of workloads does not
// change the ruleset, and that a change of an endpoint's labels changes its
// version.
func TestCompileDeterministic(t *testing.T) {
	set := loadSet(t, "world.yaml", "default-deny.yaml")
	a, err := Compile(set, node1, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rev := node1
	rev.Workloads = nil
	for i := len(node1.Workloads) - 1; i >= 0; i-- {
		rev.Workloads = append(rev.Workloads, node1.Workloads[i])
	}
	b, err := Compile(set, rev, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a.String(), b.String()); diff != "" {
		t.Errorf("workload order changed the ruleset (-first +reversed):\n%s", diff)
	}
	c, err := Compile(set, HostInfo{Node: "node1", Workloads: node1.Workloads[1:]}, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Version == c.Version {
		t.Errorf("version %q unchanged after removing a workload", a.Version)
	}
}

func TestCompileRejectsBadHost(t *testing.T) {
	set := loadSet(t, "world.yaml")
	tests := []struct {
		name string
		host HostInfo
		want string
	}{
		{"empty interface", HostInfo{Workloads: []Workload{{}}}, `workloads[0].interface "": want 1-15 bytes`},
		{"long interface", HostInfo{Workloads: []Workload{{Interface: "a234567890123456"}}}, `workloads[0].interface "a234567890123456": want 1-15 bytes`},
		{"slash", HostInfo{Workloads: []Workload{{Interface: "a/b"}}}, `workloads[0].interface "a/b": contains a character`},
		{"quote", HostInfo{Workloads: []Workload{{Interface: `a"b`}}}, `workloads[0].interface "a\"b": contains a character`},
		{"twice", HostInfo{Workloads: []Workload{{Interface: "a"}, {Interface: "a"}}}, `workloads[1].interface "a": used twice`},
		{"invalid addr", HostInfo{Workloads: []Workload{{Interface: "a", Addrs: []netip.Addr{{}}}}}, `workloads[0].addrs[0] "invalid IP": want an IPv4 or IPv6 address`},
		{"addr twice", HostInfo{Workloads: []Workload{{Interface: "a", Addrs: addrs("10.0.0.1")}, {Interface: "b", Addrs: addrs("10.0.0.1")}}}, `workloads[1].addrs[0] 10.0.0.1: used twice`},
		{"host endpoint addr", HostInfo{Workloads: []Workload{{Interface: "a", Addrs: addrs("198.18.0.11")}}}, `workloads[0].addrs 198.18.0.11: is the address of HostEndpoint node1-eth0`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(set, tt.host, policy.Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Compile error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestMergeRanges(t *testing.T) {
	r := func(a, b string) Range {
		return Range{From: netip.MustParseAddr(a).AsSlice(), To: netip.MustParseAddr(b).AsSlice()}
	}
	tests := []struct {
		name string
		in   []Range
		want []Range
	}{
		{"empty", nil, nil},
		{"disjoint sorted", []Range{r("10.0.0.5", "10.0.0.5"), r("10.0.0.1", "10.0.0.1")},
			[]Range{r("10.0.0.1", "10.0.0.1"), r("10.0.0.5", "10.0.0.5")}},
		{"touching", []Range{r("10.0.0.1", "10.0.0.1"), r("10.0.0.2", "10.0.0.3")}, []Range{r("10.0.0.1", "10.0.0.3")}},
		{"contained", []Range{r("10.0.0.0", "10.0.0.255"), r("10.0.0.7", "10.0.0.7")}, []Range{r("10.0.0.0", "10.0.0.255")}},
		{"to the top", []Range{r("255.255.255.255", "255.255.255.255"), r("0.0.0.0", "255.255.255.254")},
			[]Range{r("0.0.0.0", "255.255.255.255")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, mergeRanges(tt.in)); diff != "" {
				t.Errorf("mergeRanges (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFormatRange(t *testing.T) {
	tests := []struct {
		k    KeyType
		r    Range
		want string
	}{
		{KeyIPv4, prefixRange(netip.MustParsePrefix("10.0.0.0/8")), "10.0.0.0/8"},
		{KeyIPv4, prefixRange(netip.MustParsePrefix("10.0.0.7/32")), "10.0.0.7"},
		{KeyIPv4, Range{From: []byte{10, 0, 0, 1}, To: []byte{10, 0, 0, 3}}, "10.0.0.1-10.0.0.3"},
		{KeyIPv6, prefixRange(netip.MustParsePrefix("fd00::/64")), "fd00::/64"},
		{KeyPort, Range{From: u16(80), To: u16(80)}, "80"},
		{KeyPort, Range{From: u16(1000), To: u16(2000)}, "1000-2000"},
		{KeyProto, single(u8(6)), "tcp"},
		{KeyProto, single(u8(99)), "99"},
		{KeyIfname, single(ifname("wl1")), `"wl1"`},
	}
	for _, tt := range tests {
		if got := formatRange(tt.k, tt.r); got != tt.want {
			t.Errorf("formatRange(%v, %v) = %q, want %q", tt.k, tt.r, got, tt.want)
		}
	}
}

// bigSet returns n workload endpoints (addresses 10.60.0.0/16, labels app
// app<i%policies>, in namespaces ns<i%10>) and a workload per endpoint, and
// per app a policy allowing TCP 80 to it from the next app, and a
// default deny.
func bigSet(t testing.TB, n, policies int) (*policy.Set, HostInfo) {
	t.Helper()
	var b strings.Builder
	var host HostInfo
	for i := range n {
		addr := netip.AddrFrom4([4]byte{10, 60, byte(i >> 8), byte(i)})
		fmt.Fprintf(&b, "---\napiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\n"+
			"metadata: {name: wl%d, namespace: ns%d, labels: {app: app%d}}\nspec: {node: h, ipNetworks: [%s/32]}\n",
			i, i%10, i%policies, addr)
		host.Workloads = append(host.Workloads, Workload{Interface: fmt.Sprintf("wl%d", i), Addrs: []netip.Addr{addr}})
	}
	for p := range policies {
		fmt.Fprintf(&b, "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n"+
			"metadata: {name: app%d}\nspec:\n  selector: app == 'app%d'\n  ingress:\n"+
			"  - action: Allow\n    protocol: TCP\n    source: {selector: app == 'app%d'}\n    destination: {ports: [80]}\n",
			p, p, (p+1)%policies)
	}
	b.WriteString("---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n" +
		"metadata: {name: default-deny}\nspec: {order: 2000, selector: all(), types: [Ingress, Egress]}\n")
	objs, err := policy.Decode("big.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.NewSet(objs)
	if err != nil {
		t.Fatal(err)
	}
	return set, host
}

// BenchmarkCompile compiles the policies of bigSet for all its workloads
// (the Set is resolved once, outside the timing).
func BenchmarkCompile(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("endpoints=%d/policies=100", n), func(b *testing.B) {
			set, host := bigSet(b, n, 100)
			b.ResetTimer()
			for b.Loop() {
				if _, err := Compile(set, host, policy.Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
