package fabric

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Test helpers of the subnet files carry a "subnet" prefix so they do not
// clash with helpers of other files in this package.

// subnetPrefix parses a prefix, or returns the zero Prefix for "".
func subnetPrefix(s string) netip.Prefix {
	if s == "" {
		return netip.Prefix{}
	}
	return netip.MustParsePrefix(s)
}

// subnetPool returns the pool of cidr cut into /bits.
func subnetPool(cidr string, bits int) Pool {
	return Pool{CIDR: subnetPrefix(cidr), Bits: bits}
}

// subnetCmp returns the cmp options for the subnet types (netip values
// compare with ==).
func subnetCmp() cmp.Options {
	return cmp.Options{
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	}
}

// subnetErrString returns err's text, or "" for nil.
func subnetErrString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestPoolValidate(t *testing.T) {
	tests := []struct {
		name string
		pool Pool
		want string
	}{
		{name: "default", pool: DefaultPool()},
		{name: "one subnet", pool: subnetPool("10.244.0.0/24", 24)},
		{name: "smallest subnets", pool: subnetPool("10.0.0.0/8", 30)},
		{name: "ipv6", pool: subnetPool("fd00:10::/48", 64)},
		{name: "ipv6 smallest subnets", pool: subnetPool("fd00::/64", 126)},
		{name: "zero", pool: Pool{}, want: `pool cidr "invalid Prefix": not a valid prefix`},
		{name: "host bits", pool: subnetPool("10.244.1.0/16", 24), want: "pool cidr 10.244.1.0/16: host bits set, want 10.244.0.0/16"},
		{name: "ipv4-mapped", pool: subnetPool("::ffff:10.244.0.0/112", 120), want: "pool cidr ::ffff:10.244.0.0/112: IPv4-mapped IPv6 prefix, write it as IPv4"},
		{name: "bits shorter than cidr", pool: subnetPool("10.244.0.0/16", 15), want: "pool bits 15: not in 16..30 for cidr 10.244.0.0/16"},
		{name: "bits leave no workload address", pool: subnetPool("10.244.0.0/16", 31), want: "pool bits 31: not in 16..30 for cidr 10.244.0.0/16"},
		{name: "bits zero", pool: subnetPool("10.244.0.0/16", 0), want: "pool bits 0: not in 16..30 for cidr 10.244.0.0/16"},
		{name: "ipv6 bits too long", pool: subnetPool("fd00::/64", 127), want: "pool bits 127: not in 64..126 for cidr fd00::/64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, subnetErrString(tt.pool.Validate())); diff != "" {
				t.Errorf("Validate() error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPoolContains(t *testing.T) {
	tests := []struct {
		name   string
		pool   Pool
		subnet string
		want   bool
	}{
		{name: "first", pool: DefaultPool(), subnet: "10.244.0.0/24", want: true},
		{name: "last", pool: DefaultPool(), subnet: "10.244.255.0/24", want: true},
		{name: "zero", pool: DefaultPool(), subnet: ""},
		{name: "outside", pool: DefaultPool(), subnet: "10.245.0.0/24"},
		{name: "below", pool: DefaultPool(), subnet: "10.243.255.0/24"},
		{name: "longer", pool: DefaultPool(), subnet: "10.244.3.0/25"},
		{name: "shorter", pool: DefaultPool(), subnet: "10.244.2.0/23"},
		{name: "host bits", pool: DefaultPool(), subnet: "10.244.3.1/24"},
		{name: "ipv4-mapped", pool: DefaultPool(), subnet: "::ffff:10.244.3.0/120"},
		{name: "ipv6 in ipv4 pool", pool: DefaultPool(), subnet: "fd00::/24"},
		{name: "ipv6", pool: subnetPool("fd00:10::/48", 64), subnet: "fd00:10:0:ff::/64", want: true},
		{name: "ipv6 outside", pool: subnetPool("fd00:10::/48", 64), subnet: "fd00:11::/64"},
		{name: "invalid pool", pool: subnetPool("10.244.0.0/16", 8), subnet: "10.244.3.0/8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.pool.Contains(subnetPrefix(tt.subnet)); got != tt.want {
				t.Errorf("%v.Contains(%s) = %t, want %t", tt.pool, tt.subnet, got, tt.want)
			}
		})
	}
}

func TestPoolSize(t *testing.T) {
	tests := []struct {
		name string
		pool Pool
		want int
	}{
		{name: "default", pool: DefaultPool(), want: 256},
		{name: "one", pool: subnetPool("10.244.0.0/24", 24), want: 1},
		{name: "slash 8 into slash 28", pool: subnetPool("10.0.0.0/8", 28), want: 1 << 20},
		{name: "just below the cap", pool: subnetPool("fd00::/64", 64+29), want: 1 << 29},
		{name: "at the cap", pool: subnetPool("fd00::/64", 64+30), want: MaxPoolSize},
		{name: "ipv6 huge is capped", pool: subnetPool("fd00::/16", 120), want: MaxPoolSize},
		{name: "invalid", pool: Pool{}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.pool.Size(); got != tt.want {
				t.Errorf("%v.Size() = %d, want %d", tt.pool, got, tt.want)
			}
		})
	}
}

func TestPoolSubnet(t *testing.T) {
	tests := []struct {
		name  string
		pool  Pool
		index int
		want  string // "" when out of range
	}{
		{name: "first", pool: DefaultPool(), index: 0, want: "10.244.0.0/24"},
		{name: "third", pool: DefaultPool(), index: 3, want: "10.244.3.0/24"},
		{name: "last", pool: DefaultPool(), index: 255, want: "10.244.255.0/24"},
		{name: "past the end", pool: DefaultPool(), index: 256},
		{name: "negative", pool: DefaultPool(), index: -1},
		{name: "slash 28", pool: subnetPool("10.0.0.0/8", 28), index: 1<<20 - 1, want: "10.255.255.240/28"},
		{name: "ipv6", pool: subnetPool("fd00:10::/48", 64), index: 0x1234, want: "fd00:10:0:1234::/64"},
		{name: "ipv6 across the 64-bit boundary", pool: subnetPool("fd00::/56", 72), index: 0xffff, want: "fd00:0:0:ff:ff00::/72"},
		{name: "ipv6 capped, last", pool: subnetPool("fd00::/16", 120), index: MaxPoolSize - 1, want: "fd00::3f:ffff:ff00/120"},
		{name: "invalid pool", pool: Pool{}, index: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.pool.Subnet(tt.index)
			if diff := cmp.Diff(subnetPrefix(tt.want), got, subnetCmp()); diff != "" {
				t.Errorf("Subnet(%d) (-want +got):\n%s", tt.index, diff)
			}
			if ok != (tt.want != "") {
				t.Errorf("Subnet(%d) ok = %t, want %t", tt.index, ok, tt.want != "")
			}
			if !ok {
				return
			}
			if !tt.pool.Contains(got) {
				t.Errorf("Contains(Subnet(%d) = %s) = false", tt.index, got)
			}
			i, ok := tt.pool.indexOf(got.Addr())
			if !ok || i != uint64(tt.index) {
				t.Errorf("indexOf(%s) = %d, %t, want %d, true", got.Addr(), i, ok, tt.index)
			}
		})
	}
}

func TestPoolSpan(t *testing.T) {
	tests := []struct {
		name   string
		pool   Pool
		prefix string
		want   span
		wantOK bool
	}{
		{name: "aligned", pool: DefaultPool(), prefix: "10.244.3.0/24", want: span{3, 4}, wantOK: true},
		{name: "host bits", pool: DefaultPool(), prefix: "10.244.3.7/24", want: span{3, 4}, wantOK: true},
		{name: "longer", pool: DefaultPool(), prefix: "10.244.3.128/25", want: span{3, 4}, wantOK: true},
		{name: "shorter", pool: DefaultPool(), prefix: "10.244.4.0/22", want: span{4, 8}, wantOK: true},
		{name: "whole pool", pool: DefaultPool(), prefix: "10.244.0.0/16", want: span{0, 256}, wantOK: true},
		{name: "covers pool", pool: DefaultPool(), prefix: "10.0.0.0/8", want: span{0, 256}, wantOK: true},
		{name: "outside", pool: DefaultPool(), prefix: "10.245.0.0/24"},
		{name: "zero", pool: DefaultPool(), prefix: ""},
		{name: "other family", pool: DefaultPool(), prefix: "::ffff:10.244.3.0/120"},
		{name: "beyond the cap", pool: subnetPool("fd00::/16", 120), prefix: "fd00::1:0:0:0/120"},
		{name: "clipped at the cap", pool: subnetPool("fd00::/16", 120), prefix: "fd00::/64", want: span{0, MaxPoolSize}, wantOK: true},
		{name: "ipv6 shorter", pool: subnetPool("fd00::/48", 64), prefix: "fd00:0:0:100::/56", want: span{0x100, 0x200}, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.pool.span(subnetPrefix(tt.prefix))
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(span{})); diff != "" || ok != tt.wantOK {
				t.Errorf("span(%s) = %v, %t, want %v, %t", tt.prefix, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestFirstFree(t *testing.T) {
	tests := []struct {
		name   string
		spans  []span
		start  uint64
		size   uint64
		want   uint64
		wantOK bool
	}{
		{name: "empty", start: 5, size: 8, want: 5, wantOK: true},
		{name: "start free", spans: []span{{0, 2}, {6, 8}}, start: 3, size: 8, want: 3, wantOK: true},
		{name: "start taken", spans: []span{{2, 5}}, start: 3, size: 8, want: 5, wantOK: true},
		{name: "start at span end is free", spans: []span{{2, 5}}, start: 5, size: 8, want: 5, wantOK: true},
		{name: "start at span start", spans: []span{{2, 5}}, start: 2, size: 8, want: 5, wantOK: true},
		{name: "wrap to zero", spans: []span{{4, 8}}, start: 6, size: 8, want: 0, wantOK: true},
		{name: "wrap past first span", spans: []span{{0, 2}, {4, 8}}, start: 6, size: 8, want: 2, wantOK: true},
		{name: "full", spans: []span{{0, 8}}, start: 3, size: 8},
		{name: "one left", spans: []span{{0, 7}}, start: 0, size: 8, want: 7, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := firstFree(tt.spans, tt.start, tt.size)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("firstFree(%v, %d, %d) = %d, %t, want %d, %t", tt.spans, tt.start, tt.size, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestMergeSpans(t *testing.T) {
	tests := []struct {
		name  string
		spans []span
		want  []span
	}{
		{name: "empty", spans: nil, want: nil},
		{name: "unsorted, overlapping, touching", spans: []span{{6, 8}, {0, 2}, {1, 3}, {3, 4}, {10, 11}}, want: []span{{0, 4}, {6, 8}, {10, 11}}},
		{name: "duplicates", spans: []span{{3, 4}, {3, 4}}, want: []span{{3, 4}}},
		{name: "nested", spans: []span{{0, 10}, {2, 3}}, want: []span{{0, 10}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mergeSpans(tt.spans)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(span{})); diff != "" {
				t.Errorf("mergeSpans (-want +got):\n%s", diff)
			}
		})
	}
}
