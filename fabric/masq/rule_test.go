package masq

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
)

// load, mask and compare, as nft compiles `ip daddr != 10.244.0.0/16`.
func wantMatch(offset uint32, mask, addr []byte, op expr.CmpOp) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: op, Register: 1, Data: addr},
	}
}

func wantRule(mask, addr []byte) []expr.Any {
	var out []expr.Any
	out = append(out, wantMatch(12, mask, addr, expr.CmpOpEq)...)
	out = append(out, wantMatch(16, mask, addr, expr.CmpOpNeq)...)
	out = append(out, wantMatch(16, []byte{240, 0, 0, 0}, []byte{224, 0, 0, 0}, expr.CmpOpNeq)...)
	return append(out, &expr.Counter{}, &expr.Masq{FullyRandom: true})
}

func TestRuleExprs(t *testing.T) {
	tests := []struct {
		name    string
		cluster string
		want    []expr.Any
	}{
		{"slash 16", "10.244.0.0/16", wantRule([]byte{255, 255, 0, 0}, []byte{10, 244, 0, 0})},
		{"slash 8", "10.0.0.0/8", wantRule([]byte{255, 0, 0, 0}, []byte{10, 0, 0, 0})},
		{"slash 12 masked", "172.31.5.9/12", wantRule([]byte{255, 240, 0, 0}, []byte{172, 16, 0, 0})},
		{"slash 22", "100.64.7.0/22", wantRule([]byte{255, 255, 252, 0}, []byte{100, 64, 4, 0})},
		{"slash 32", "198.18.0.1/32", wantRule([]byte{255, 255, 255, 255}, []byte{198, 18, 0, 1})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ruleExprs(netip.MustParsePrefix(tt.cluster))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ruleExprs(%s) (-want +got):\n%s", tt.cluster, diff)
			}
		})
	}
}

func TestPrefixMask(t *testing.T) {
	tests := []struct {
		bits int
		want [4]byte
	}{
		{0, [4]byte{0, 0, 0, 0}},
		{1, [4]byte{128, 0, 0, 0}},
		{4, [4]byte{240, 0, 0, 0}},
		{8, [4]byte{255, 0, 0, 0}},
		{9, [4]byte{255, 128, 0, 0}},
		{17, [4]byte{255, 255, 128, 0}},
		{31, [4]byte{255, 255, 255, 254}},
		{32, [4]byte{255, 255, 255, 255}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, prefixMask(tt.bits)); diff != "" {
			t.Errorf("prefixMask(%d) (-want +got):\n%s", tt.bits, diff)
		}
	}
}

func TestUserData(t *testing.T) {
	tests := []struct {
		cluster string
		want    string
	}{
		{"10.244.0.0/16", "weft masquerade v1 cluster 10.244.0.0/16"},
		{"10.0.0.0/8", "weft masquerade v1 cluster 10.0.0.0/8"},
	}
	for _, tt := range tests {
		got, ok := userdata.GetString(userData(netip.MustParsePrefix(tt.cluster)), userdata.TypeComment)
		if !ok {
			t.Errorf("userData(%s) has no comment", tt.cluster)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("userData(%s) comment (-want +got):\n%s", tt.cluster, diff)
		}
	}
}
