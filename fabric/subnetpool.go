package fabric

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// MaxPoolSize is the largest number of subnets a Pool hands out. A pool that
// could be cut into more (an IPv6 /48 cut into /112s, say) is treated as its
// first MaxPoolSize subnets: Size reports MaxPoolSize and the allocator only
// picks among those. Contains still accepts every aligned subnet of the CIDR,
// so claims beyond the cap (static ones) stay valid. 2^30 keeps Size within a
// 32-bit int.
const MaxPoolSize = 1 << maxPoolBits

// maxPoolBits is log2(MaxPoolSize).
const maxPoolBits = 30

// Default pool parameters, as flannel and kubeadm use them.
const (
	// DefaultClusterCIDR is the cluster CIDR when none is configured.
	DefaultClusterCIDR = "10.244.0.0/16"
	// DefaultSubnetBits is the per-node prefix length when none is configured.
	DefaultSubnetBits = 24
)

// Pool is the address space that per-node subnets are cut from: CIDR cut into
// aligned subnets of prefix length Bits. It is a value; the zero Pool is
// invalid (see Validate).
type Pool struct {
	// CIDR is the cluster CIDR, e.g. 10.244.0.0/16; host bits must be zero.
	CIDR netip.Prefix
	// Bits is the prefix length of each node's subnet, e.g. 24.
	Bits int
}

// DefaultPool returns the pool used when nothing is configured:
// 10.244.0.0/16 cut into /24s.
func DefaultPool() Pool {
	return Pool{CIDR: netip.MustParsePrefix(DefaultClusterCIDR), Bits: DefaultSubnetBits}
}

// String renders the pool as "10.244.0.0/16 cut into /24s".
func (p Pool) String() string {
	return fmt.Sprintf("%s cut into /%ds", p.CIDR, p.Bits)
}

// Validate reports whether the pool can be allocated from: CIDR is a valid
// prefix with no host bits set (IPv4, or IPv6 that is not IPv4-mapped), and
// Bits lies between CIDR's length and the address length minus 2, so that
// every subnet holds a gateway address and at least one workload address.
// The error names the field and its value.
func (p Pool) Validate() error {
	if !p.CIDR.IsValid() {
		return fmt.Errorf("pool cidr %q: not a valid prefix", p.CIDR.String())
	}
	if p.CIDR.Addr().Is4In6() {
		return fmt.Errorf("pool cidr %s: IPv4-mapped IPv6 prefix, write it as IPv4", p.CIDR)
	}
	if m := p.CIDR.Masked(); m != p.CIDR {
		return fmt.Errorf("pool cidr %s: host bits set, want %s", p.CIDR, m)
	}
	maxBits := p.CIDR.Addr().BitLen() - 2
	if p.Bits < p.CIDR.Bits() || p.Bits > maxBits {
		return fmt.Errorf("pool bits %d: not in %d..%d for cidr %s", p.Bits, p.CIDR.Bits(), maxBits, p.CIDR)
	}
	return nil
}

// Contains reports whether s is one of the pool's subnets: a valid prefix of
// length Bits, with no host bits set, inside CIDR and of the same address
// family. It reports false for every s when the pool is invalid.
func (p Pool) Contains(s netip.Prefix) bool {
	return p.Validate() == nil && p.containsValid(s)
}

// containsValid is Contains for a pool already known to be valid.
func (p Pool) containsValid(s netip.Prefix) bool {
	return s.IsValid() && s.Bits() == p.Bits && s.Masked() == s && p.CIDR.Contains(s.Addr())
}

// Size returns the number of subnets the allocator picks from:
// 2^(Bits-CIDR.Bits()), capped at MaxPoolSize. It is 0 for an invalid pool.
func (p Pool) Size() int {
	if p.Validate() != nil {
		return 0
	}
	return p.sizeValid()
}

// sizeValid is Size for a pool already known to be valid.
func (p Pool) sizeValid() int {
	n := p.Bits - p.CIDR.Bits()
	if n >= maxPoolBits {
		return MaxPoolSize
	}
	return 1 << n
}

// Subnet returns the pool's i-th subnet, counting from the start of CIDR,
// and whether i is in 0..Size()-1.
func (p Pool) Subnet(i int) (netip.Prefix, bool) {
	if i < 0 || i >= p.Size() {
		return netip.Prefix{}, false
	}
	return p.at(uint64(i)), true
}

// at returns subnet i of a valid pool; i < sizeValid().
func (p Pool) at(i uint64) netip.Prefix {
	shift := uint(p.CIDR.Addr().BitLen() - p.Bits)
	a := addrBits(p.CIDR.Addr()).or(u128{lo: i}.shl(shift))
	return netip.PrefixFrom(a.addr(p.CIDR.Addr().Is4()), p.Bits)
}

// indexOf returns the index of the pool subnet holding a, and false when a is
// outside CIDR or its subnet lies beyond MaxPoolSize. The pool must be valid.
func (p Pool) indexOf(a netip.Addr) (uint64, bool) {
	if !p.CIDR.Contains(a) {
		return 0, false
	}
	// a and the network address differ only in CIDR's host bits, so XOR is
	// the offset from the start of CIDR.
	off := addrBits(a).xor(addrBits(p.CIDR.Addr()))
	idx := off.shr(uint(p.CIDR.Addr().BitLen() - p.Bits))
	if idx.hi != 0 || idx.lo >= uint64(p.sizeValid()) {
		return 0, false
	}
	return idx.lo, true
}

// span returns the half-open range of subnet indexes that prefix s overlaps,
// clipped to the pool, and false when it overlaps none. The pool must be valid.
func (p Pool) span(s netip.Prefix) (span, bool) {
	if !s.IsValid() {
		return span{}, false
	}
	s = s.Masked()
	if !s.Overlaps(p.CIDR) {
		return span{}, false
	}
	size := uint64(p.sizeValid())
	if s.Bits() <= p.CIDR.Bits() {
		return span{0, size}, true // s covers the whole pool
	}
	lo, ok := p.indexOf(s.Addr())
	if !ok {
		return span{}, false // beyond MaxPoolSize
	}
	n := p.Bits - s.Bits() // s covers 2^n subnets, or part of one when n <= 0
	if n <= 0 {
		return span{lo, lo + 1}, true
	}
	if n >= maxPoolBits || size-lo <= 1<<n {
		return span{lo, size}, true
	}
	return span{lo, lo + 1<<n}, true
}

// u128 is an address as a 128-bit unsigned number; IPv4 sits in the low 32 bits.
type u128 struct{ hi, lo uint64 }

// addrBits returns a as a number.
func addrBits(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}
}

// addr returns u as an address of the given family.
func (u u128) addr(is4 bool) netip.Addr {
	if is4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(u.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], u.hi)
	binary.BigEndian.PutUint64(b[8:], u.lo)
	return netip.AddrFrom16(b)
}

func (u u128) xor(v u128) u128 { return u128{u.hi ^ v.hi, u.lo ^ v.lo} }
func (u u128) or(v u128) u128  { return u128{u.hi | v.hi, u.lo | v.lo} }

// shr shifts right by n bits; Go defines shifts of n >= 64 as 0.
func (u u128) shr(n uint) u128 {
	if n >= 64 {
		return u128{lo: u.hi >> (n - 64)}
	}
	return u128{hi: u.hi >> n, lo: u.lo>>n | u.hi<<(64-n)}
}

// shl shifts left by n bits.
func (u u128) shl(n uint) u128 {
	if n >= 64 {
		return u128{hi: u.lo << (n - 64)}
	}
	return u128{hi: u.hi<<n | u.lo>>(64-n), lo: u.lo << n}
}
