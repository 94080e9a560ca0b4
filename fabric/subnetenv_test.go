package fabric

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// subnetEnvV4 is the subnet.env of the brief's example.
func subnetEnvV4() SubnetEnv {
	return SubnetEnv{
		Network: subnetPrefix("10.244.0.0/16"),
		Subnet:  subnetPrefix("10.244.3.1/24"),
		MTU:     1450,
		IPMasq:  true,
	}
}

func TestGatewayPrefix(t *testing.T) {
	tests := []struct {
		subnet string
		want   string
	}{
		{subnet: "10.244.3.0/24", want: "10.244.3.1/24"},
		{subnet: "10.244.3.7/24", want: "10.244.3.1/24"},
		{subnet: "10.244.3.4/30", want: "10.244.3.5/30"},
		{subnet: "10.244.3.4/32", want: ""},
		{subnet: "255.255.255.255/32", want: ""},
		{subnet: "fd00:10:0:3::/64", want: "fd00:10:0:3::1/64"},
		{subnet: "", want: ""},
	}
	for _, tt := range tests {
		got := GatewayPrefix(subnetPrefix(tt.subnet))
		if diff := cmp.Diff(subnetPrefix(tt.want), got, subnetCmp()); diff != "" {
			t.Errorf("GatewayPrefix(%s) (-want +got):\n%s", tt.subnet, diff)
		}
	}
}

func TestSubnetEnvRender(t *testing.T) {
	tests := []struct {
		name string
		env  SubnetEnv
		want string
	}{
		{
			name: "ipv4, as flannel writes it",
			env:  subnetEnvV4(),
			want: "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
		},
		{
			name: "ipv6 keys, no masquerade",
			env:  SubnetEnv{Network: subnetPrefix("fd00:10::/48"), Subnet: subnetPrefix("fd00:10:0:3::1/64"), MTU: 1430},
			want: "FLANNEL_IPV6_NETWORK=fd00:10::/48\nFLANNEL_IPV6_SUBNET=fd00:10:0:3::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(tt.env.Render())
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Render (-want +got):\n%s", diff)
			}
			back, err := ParseSubnetEnv([]byte(got))
			if err != nil {
				t.Fatalf("ParseSubnetEnv(Render()): %v", err)
			}
			if diff := cmp.Diff(tt.env, back, subnetCmp()); diff != "" {
				t.Errorf("ParseSubnetEnv(Render()) (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSubnetEnvValidate(t *testing.T) {
	mod := func(f func(*SubnetEnv)) SubnetEnv {
		e := subnetEnvV4()
		f(&e)
		return e
	}
	tests := []struct {
		name string
		env  SubnetEnv
		want string
	}{
		{name: "valid", env: subnetEnvV4()},
		{name: "subnet without gateway address", env: mod(func(e *SubnetEnv) { e.Subnet = subnetPrefix("10.244.3.0/24") })},
		{name: "no network", env: mod(func(e *SubnetEnv) { e.Network = subnetPrefix("") }), want: `network "invalid Prefix": not a valid prefix`},
		{name: "network host bits", env: mod(func(e *SubnetEnv) { e.Network = subnetPrefix("10.244.0.1/16") }), want: "network 10.244.0.1/16: host bits set, want 10.244.0.0/16"},
		{name: "network ipv4-mapped", env: mod(func(e *SubnetEnv) { e.Network = subnetPrefix("::ffff:10.244.0.0/112") }), want: "network ::ffff:10.244.0.0/112: IPv4-mapped IPv6 prefix, write it as IPv4"},
		{name: "no subnet", env: mod(func(e *SubnetEnv) { e.Subnet = subnetPrefix("") }), want: `subnet "invalid Prefix": not a valid prefix`},
		{name: "subnet of another family", env: mod(func(e *SubnetEnv) { e.Subnet = subnetPrefix("fd00::1/64") }), want: "subnet fd00::1/64: other address family than network 10.244.0.0/16"},
		{name: "subnet outside", env: mod(func(e *SubnetEnv) { e.Subnet = subnetPrefix("10.245.3.1/24") }), want: "subnet 10.245.3.1/24: not inside network 10.244.0.0/16"},
		{name: "subnet larger than network", env: mod(func(e *SubnetEnv) { e.Subnet = subnetPrefix("10.244.3.1/8") }), want: "subnet 10.244.3.1/8: not inside network 10.244.0.0/16"},
		{name: "mtu too small", env: mod(func(e *SubnetEnv) { e.MTU = 67 }), want: "mtu 67: not in 68..65535"},
		{name: "mtu too large", env: mod(func(e *SubnetEnv) { e.MTU = 65536 }), want: "mtu 65536: not in 68..65535"},
		{
			name: "ipv6 mtu below 1280",
			env:  SubnetEnv{Network: subnetPrefix("fd00:10::/48"), Subnet: subnetPrefix("fd00:10:0:3::1/64"), MTU: 1279},
			want: "mtu 1279: not in 1280..65535",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, subnetErrString(tt.env.Validate())); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseSubnetEnv(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		want    SubnetEnv
		wantErr string
	}{
		{
			name: "flannel's file",
			data: "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
			want: subnetEnvV4(),
		},
		{
			name: "comments, blank lines, CRLF, spaces, unknown keys, any order",
			data: "# written by hand\r\n\r\nFLANNEL_IPMASQ = true\r\n  FLANNEL_MTU=1450\r\nOTHER=x\r\nFLANNEL_SUBNET=10.244.3.1/24\r\nFLANNEL_NETWORK=10.244.0.0/16",
			want: subnetEnvV4(),
		},
		{
			name: "ipv6",
			data: "FLANNEL_IPV6_NETWORK=fd00:10::/48\nFLANNEL_IPV6_SUBNET=fd00:10:0:3::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n",
			want: SubnetEnv{Network: subnetPrefix("fd00:10::/48"), Subnet: subnetPrefix("fd00:10:0:3::1/64"), MTU: 1430},
		},
		{name: "empty", data: "", wantErr: "parse subnet env: FLANNEL_NETWORK: missing"},
		{name: "not key=value", data: "FLANNEL_MTU 1450\n", wantErr: `parse subnet env: line 1 "FLANNEL_MTU 1450": not KEY=VALUE`},
		{name: "twice", data: "FLANNEL_MTU=1450\n\nFLANNEL_MTU=1400\n", wantErr: "parse subnet env: line 3: FLANNEL_MTU given twice"},
		{
			name:    "dual stack",
			data:    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_IPV6_NETWORK=fd00:10::/48\n",
			wantErr: "parse subnet env: FLANNEL_NETWORK and FLANNEL_IPV6_NETWORK: dual stack is not supported",
		},
		{
			name:    "no subnet",
			data:    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
			wantErr: "parse subnet env: FLANNEL_SUBNET: missing",
		},
		{
			name:    "bad network",
			data:    "FLANNEL_NETWORK=10.244.0.0\n",
			wantErr: `parse subnet env: FLANNEL_NETWORK "10.244.0.0": netip.ParsePrefix("10.244.0.0"): no '/'`,
		},
		{
			name:    "ipv6 under the ipv4 key",
			data:    "FLANNEL_NETWORK=fd00:10::/48\n",
			wantErr: "parse subnet env: FLANNEL_NETWORK fd00:10::/48: wrong address family for the key",
		},
		{
			name:    "ipv4 under the ipv6 key",
			data:    "FLANNEL_IPV6_NETWORK=fd00:10::/48\nFLANNEL_IPV6_SUBNET=10.244.3.1/24\n",
			wantErr: "parse subnet env: FLANNEL_IPV6_SUBNET 10.244.3.1/24: wrong address family for the key",
		},
		{
			name:    "no mtu",
			data:    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_IPMASQ=true\n",
			wantErr: "parse subnet env: FLANNEL_MTU: missing",
		},
		{
			name:    "bad mtu",
			data:    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=big\nFLANNEL_IPMASQ=true\n",
			wantErr: `parse subnet env: FLANNEL_MTU "big": not an integer`,
		},
		{
			name:    "no ipmasq",
			data:    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\n",
			wantErr: "parse subnet env: FLANNEL_IPMASQ: missing",
		},
		{
			name:    "bad ipmasq",
			data:    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=yes\n",
			wantErr: `parse subnet env: FLANNEL_IPMASQ "yes": not true or false`,
		},
		{
			name:    "invalid content",
			data:    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.245.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
			wantErr: "parse subnet env: subnet 10.245.3.1/24: not inside network 10.244.0.0/16",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSubnetEnv([]byte(tt.data))
			if diff := cmp.Diff(tt.wantErr, subnetErrString(err)); diff != "" {
				t.Errorf("ParseSubnetEnv error (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, got, subnetCmp()); diff != "" {
				t.Errorf("ParseSubnetEnv (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteSubnetEnv(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "flannel")
	path := filepath.Join(dir, "subnet.env")
	if err := WriteSubnetEnv(path, subnetEnvV4()); err != nil {
		t.Fatalf("WriteSubnetEnv: %v", err)
	}
	if m := subnetMode(t, path); m != 0o644 {
		t.Errorf("subnet.env mode %v, want 0644", m)
	}
	if m := subnetMode(t, dir); m != 0o755 {
		t.Errorf("subnet.env dir mode %v, want 0755", m)
	}
	next := subnetEnvV4()
	next.Subnet = subnetPrefix("10.244.9.1/24")
	if err := WriteSubnetEnv(path, next); err != nil {
		t.Fatalf("WriteSubnetEnv over an existing file: %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(next.Render()), string(data)); diff != "" {
		t.Errorf("subnet.env (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"subnet.env"}, subnetListDir(t, dir)); diff != "" {
		t.Errorf("dir holds more than subnet.env (-want +got):\n%s", diff)
	}

	bad := next
	bad.MTU = 0
	err = WriteSubnetEnv(path, bad)
	if diff := cmp.Diff("write subnet env "+path+": mtu 0: not in 68..65535", subnetErrString(err)); diff != "" {
		t.Errorf("WriteSubnetEnv of an invalid env (-want +got):\n%s", diff)
	}
	if data2, _ := os.ReadFile(path); string(data2) != string(data) {
		t.Errorf("WriteSubnetEnv of an invalid env changed the file to %q", data2)
	}
	if err := WriteSubnetEnv(filepath.Join(path, "below-a-file"), next); err == nil || !strings.Contains(err.Error(), "write subnet env") {
		t.Errorf("WriteSubnetEnv below a regular file = %v, want an error", err)
	}
}

// FuzzParseSubnetEnv checks that ParseSubnetEnv never panics and that
// whatever it accepts renders to a file that parses back to the same value.
func FuzzParseSubnetEnv(f *testing.F) {
	f.Add([]byte("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"))
	f.Add([]byte("FLANNEL_IPV6_NETWORK=fd00:10::/48\nFLANNEL_IPV6_SUBNET=fd00:10:0:3::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n"))
	f.Add([]byte("# c\r\n FLANNEL_MTU = +01450 \nFLANNEL_IPMASQ=false\nFLANNEL_SUBNET=10.244.3.0/24\nFLANNEL_NETWORK=10.244.0.0/16\nX=Y"))
	f.Add([]byte("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_IPV6_NETWORK=fd00::/8\n"))
	f.Add([]byte("FLANNEL_MTU=1\nFLANNEL_MTU=2\n"))
	f.Add([]byte("="))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := ParseSubnetEnv(data)
		if err != nil {
			if e != (SubnetEnv{}) {
				t.Fatalf("ParseSubnetEnv returned %+v with error %v", e, err)
			}
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("ParseSubnetEnv accepted an invalid %+v: %v", e, err)
		}
		out := e.Render()
		again, err := ParseSubnetEnv(out)
		if err != nil {
			t.Fatalf("rendered %q does not parse: %v", out, err)
		}
		if diff := cmp.Diff(e, again, subnetCmp()); diff != "" {
			t.Fatalf("changed through render and parse (-before +after):\n%s", diff)
		}
		if string(again.Render()) != string(out) {
			t.Fatalf("render is not stable: %q then %q", out, again.Render())
		}
	})
}
