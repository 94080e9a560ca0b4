package nft

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/weft-net/weft/policy"
)

// protoNames are the protocol names nft knows that rules may use.
var protoNames = map[byte]string{
	policy.ProtoICMP: "icmp", policy.ProtoTCP: "tcp", policy.ProtoUDP: "udp",
	policy.ProtoICMPv6: "ipv6-icmp", policy.ProtoSCTP: "sctp", policy.ProtoUDPLite: "udplite",
}

// formatValue renders one value of a key type as nft does.
func formatValue(k KeyType, v []byte) string {
	switch k {
	case KeyIfname:
		return quote(string(bytes.TrimRight(v, "\x00")))
	case KeyIPv4, KeyIPv6:
		a, _ := netip.AddrFromSlice(v)
		return a.String()
	case KeyProto:
		if n, ok := protoNames[v[0]]; ok {
			return n
		}
		return strconv.Itoa(int(v[0]))
	case KeyPort:
		return strconv.Itoa(int(binary.BigEndian.Uint16(v)))
	}
	return strconv.Itoa(int(v[0]))
}

// formatRange renders a range: a value, an address prefix, or "from-to".
func formatRange(k KeyType, r Range) string {
	if bytes.Equal(r.From, r.To) {
		return formatValue(k, r.From)
	}
	if k == KeyIPv4 || k == KeyIPv6 {
		if p, ok := rangePrefix(r); ok {
			return p.String()
		}
	}
	return formatValue(k, r.From) + "-" + formatValue(k, r.To)
}

// rangePrefix returns the prefix that covers exactly r, if there is one.
func rangePrefix(r Range) (netip.Prefix, bool) {
	from, _ := netip.AddrFromSlice(r.From)
	for bits := 0; bits <= from.BitLen(); bits++ {
		p := netip.PrefixFrom(from, bits)
		if p.Masked().Addr() != from {
			continue
		}
		if last := lastAddr(p); bytes.Equal(last.AsSlice(), r.To) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// lastAddr returns the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// prefixRange returns the addresses of p as a range.
func prefixRange(p netip.Prefix) Range {
	return Range{From: p.Masked().Addr().AsSlice(), To: lastAddr(p).AsSlice()}
}

// single returns the range holding v alone.
func single(v []byte) Range { return Range{From: v, To: v} }

func u8(v uint8) []byte { return []byte{v} }

func u16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

// ifname returns an interface name as nft stores it: 16 bytes, zero padded.
func ifname(s string) []byte {
	b := make([]byte, 16)
	copy(b, s)
	return b
}

// addrFamily returns 4 or 6.
func addrFamily(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// prefixesOf returns the prefixes of family fam (4 or 6), unmapped.
func prefixesOf(ps []netip.Prefix, fam int) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		if addrFamily(p.Addr()) == fam {
			out = append(out, p.Masked())
		}
	}
	return out
}

// hasFamily reports whether any of ps is of family fam.
func hasFamily(ps []netip.Prefix, fam int) bool { return len(prefixesOf(ps, fam)) > 0 }

// mergeRanges sorts ranges of equal-length values and merges those that
// overlap or touch, as an interval set requires.
func mergeRanges(rs []Range) []Range {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b Range) int {
		if c := bytes.Compare(a.From, b.From); c != 0 {
			return c
		}
		return bytes.Compare(a.To, b.To)
	})
	var out []Range
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if next, ok := increment(last.To); !ok || bytes.Compare(r.From, next) <= 0 {
				if bytes.Compare(r.To, last.To) > 0 {
					last.To = r.To
				}
				continue
			}
		}
		out = append(out, Range{From: slices.Clone(r.From), To: slices.Clone(r.To)})
	}
	return out
}

// increment returns v+1 as a big-endian number of the same length, and
// false when v is all ones.
func increment(v []byte) ([]byte, bool) {
	out := slices.Clone(v)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]++
		if out[i] != 0 {
			return out, true
		}
	}
	return out, false
}

// addrSet returns the elements of an interval set of addresses of family
// fam holding ps.
func addrElements(ps []netip.Prefix, fam int) []Element {
	var rs []Range
	for _, p := range prefixesOf(ps, fam) {
		rs = append(rs, prefixRange(p))
	}
	return rangeElements(mergeRanges(rs))
}

func rangeElements(rs []Range) []Element {
	out := make([]Element, len(rs))
	for i, r := range rs {
		out[i] = Element{Key: []Range{r}}
	}
	return out
}

// portElements returns the elements of an interval set of the numeric
// ports among ps.
func portElements(ps []policy.Port) []Element {
	var rs []Range
	for _, p := range ps {
		if p.Name == "" {
			rs = append(rs, Range{From: u16(p.Min), To: u16(p.Max)})
		}
	}
	return rangeElements(mergeRanges(rs))
}

// sanitize keeps the characters nft accepts in an identifier and a quoted
// string alike, replacing others with '_'.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("-_./", r):
			return r
		}
		return '_'
	}, s)
}
