package config

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-net/weft/policy"
)

func TestParseFailsafe(t *testing.T) {
	tests := []struct {
		in      string
		want    policy.Failsafe
		wantErr string
	}{
		{in: "tcp:22", want: policy.Failsafe{Protocol: policy.ProtoTCP, Port: 22}},
		{in: "udp:7946", want: policy.Failsafe{Protocol: policy.ProtoUDP, Port: 7946}},
		{in: "sctp:10.0.0.7/8:9", want: policy.Failsafe{Protocol: policy.ProtoSCTP, Port: 9, Net: netip.MustParsePrefix("10.0.0.0/8")}},
		{in: "tcp:2001:db8::/32:443", want: policy.Failsafe{Protocol: policy.ProtoTCP, Port: 443, Net: netip.MustParsePrefix("2001:db8::/32")}},
		{in: "22", wantErr: "want PROTO:PORT"},
		{in: "icmp:8", wantErr: `protocol "icmp"`},
		{in: "tcp:0", wantErr: `port "0"`},
		{in: "tcp:65536", wantErr: `port "65536"`},
		{in: "tcp:10.0.0.0:22", wantErr: `network "10.0.0.0"`},
		{in: "tcp:", wantErr: `port ""`},
	}
	for _, tt := range tests {
		got, err := ParseFailsafe(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseFailsafe(%q) = %v, want an error with %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseFailsafe(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got, cmpOpts...); diff != "" {
			t.Errorf("ParseFailsafe(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestPolicyValidateAndOptions(t *testing.T) {
	c := Default()
	c.NodeName = "n1"
	c.Policy.FailsafeOutbound = []string{"udp:53", "tcp:x"}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), `policy.failsafeOutbound[1]: "tcp:x": port "x"`) {
		t.Fatalf("Validate = %v, want an error naming policy.failsafeOutbound[1]", err)
	}
	o := Default().PolicyOptions()
	want := []string{"tcp:22", "tcp:7946", "udp:7946", "udp:51820", "udp:7947"}
	var got []string
	for _, f := range o.FailsafeInbound {
		got = append(got, f.String())
	}
	if diff := cmp.Diff(want, got); diff != "" || len(o.FailsafeOutbound) != 5 || o.DefaultDenyWorkloads {
		t.Errorf("default options: %+v (-want +got inbound):\n%s", o, diff)
	}

	// The default lists follow weft's own ports; a list set by hand does not.
	c = Default()
	c.BindPort, c.WireGuard.Port, c.Health.Port = 8000, 9000, 9100
	c.Policy.FailsafeOutbound = []string{"udp:53"}
	o = c.PolicyOptions()
	got, want = nil, []string{"tcp:22", "tcp:8000", "udp:8000", "udp:9000", "udp:9100"}
	for _, f := range o.FailsafeInbound {
		got = append(got, f.String())
	}
	if diff := cmp.Diff(want, got); diff != "" || len(o.FailsafeOutbound) != 1 || o.FailsafeOutbound[0].String() != "udp:53" {
		t.Errorf("options with bindPort 8000, wireguard.port 9000: %+v (-want +got inbound):\n%s", o, diff)
	}
}

func FuzzParseFailsafe(f *testing.F) {
	for _, s := range []string{"tcp:22", "udp:10.0.0.0/8:53", "sctp:2001:db8::/32:1", "x", "tcp::", ":"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fs, err := ParseFailsafe(s)
		if err != nil {
			return
		}
		back, err := ParseFailsafe(fs.String())
		if err != nil || back != fs {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, fs, fs.String(), back, err)
		}
	})
}
