package fabric

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// subnetBytes hands out the bytes of a fuzz input; past the end it yields 0.
type subnetBytes struct{ data []byte }

func (b *subnetBytes) byte() byte {
	if len(b.data) == 0 {
		return 0
	}
	v := b.data[0]
	b.data = b.data[1:]
	return v
}

func (b *subnetBytes) uint16() int { return int(b.byte())<<8 | int(b.byte()) }

// subnetScenario decodes a pool, a node's claim, a seed and the claims of
// others from fuzz bytes. The pools are mostly small, so that collisions and
// exhaustion are common, and sometimes invalid or capped at MaxPoolSize.
func subnetScenario(data []byte) (p Pool, self Claim, seed uint64, others []Claim) {
	const maxOthers = 64 // bounds the cost of an input; the rest is ignored
	b := &subnetBytes{data: data}
	shape := b.byte()
	v6 := shape&1 != 0
	base, cidrBits := netip.MustParseAddr("10.244.0.0"), 8+int(b.byte()%21)
	if v6 {
		base, cidrBits = netip.MustParseAddr("fd00:1234:5678:9abc:def0::"), 16+int(b.byte()%100)
	}
	bits := cidrBits + int(shape>>1)%6 // up to 32 subnets
	switch shape >> 4 {
	case 0:
		bits = cidrBits + 40 // capped pool (invalid for IPv4: too long)
	case 1:
		bits = cidrBits - 1 // invalid
	}
	cidr := netip.PrefixFrom(base, cidrBits).Masked()
	if shape>>4 == 2 {
		cidr = netip.PrefixFrom(base.Next(), cidrBits) // host bits set: invalid
	}
	p = Pool{CIDR: cidr, Bits: bits}
	var s [8]byte
	for i := range s {
		s[i] = b.byte()
	}
	seed = binary.LittleEndian.Uint64(s[:])
	names := []string{"", "a", "b", "c", "d", "e", "f", "g"}
	parent := netip.PrefixFrom(cidr.Addr(), max(0, cidrBits-1)).Masked()
	for first := true; first || (len(b.data) > 0 && len(others) < maxOthers); first = false {
		kind, name, idx, flags := b.byte(), b.byte(), b.uint16(), b.byte()
		c := Claim{Node: names[name%8], ClaimedAt: int64(flags % 4), Static: flags&0x70 == 0x70}
		if flags&0x0c == 0x0c {
			c.ClaimedAt = -1
		}
		// Subnet index idx within the parent of the CIDR (half of them outside).
		shift := uint(base.BitLen() - min(max(bits, 0), base.BitLen()))
		addr := addrBits(parent.Addr()).or(u128{lo: uint64(idx)}.shl(shift)).addr(base.Is4())
		switch kind % 8 {
		case 0: // no subnet
		case 6: // misaligned: another length, maybe with host bits
			c.Subnet = netip.PrefixFrom(addr, min(max(bits+int(kind>>3)%5-2, 0), base.BitLen()))
		case 7: // other family
			c.Subnet = netip.PrefixFrom(netip.AddrFrom16(addr.As16()), 96+min(max(bits, 0), 32))
		default:
			c.Subnet = netip.PrefixFrom(addr, min(max(bits, 0), base.BitLen())).Masked()
		}
		if first {
			self = c
			continue
		}
		others = append(others, c)
	}
	return p, self, seed, others
}

// FuzzDecide checks Decide on arbitrary views: it never panics, its decision
// does not depend on the order of others, and the subnet it hands out is in
// the pool and free of every winning claim of another node, unless the
// node's own claim is static.
func FuzzDecide(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x24, 10, 1, 2, 3, 4, 5, 6, 7, 8, 1, 1, 0, 3, 1, 1, 2, 0, 3, 0, 2, 3, 0, 3, 1})
	f.Add([]byte{0x25, 60, 9, 9, 9, 9, 9, 9, 9, 9, 1, 1, 0, 3, 1, 1, 2, 0, 3, 0x70, 6, 3, 0, 3, 1})
	f.Add([]byte{0x2b, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 2, 0, 0, 0, 1, 3, 0, 1, 0, 1, 4, 0, 2, 0, 1, 5, 0, 3, 0})
	f.Add([]byte{0x01, 20, 5, 4, 3, 2, 1, 0, 0, 0, 0x77, 1, 0, 0, 0x74})
	f.Add([]byte{0x10, 16, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0})
	f.Add([]byte{0x20, 16, 0, 0, 0, 0, 0, 0, 0, 0, 6, 1, 0, 0, 0x70, 7, 2, 0, 1, 0})
	f.Fuzz(subnetCheckDecide)
}

// subnetCheckDecide is FuzzDecide's property check for one input.
func subnetCheckDecide(t *testing.T, data []byte) {
	{
		p, self, seed, others := subnetScenario(data)
		in := slices.Clone(others)
		d := Decide(p, self, seed, in)
		// Plain == here: cmp.Diff would dominate the fuzzer's time; it only
		// renders a failure.
		if !slices.Equal(others, in) {
			t.Fatalf("Decide modified others (-before +after):\n%s", cmp.Diff(others, in, subnetCmp()))
		}
		slices.Reverse(in)
		if rev := Decide(p, self, seed, in); rev != d {
			t.Fatalf("Decide depends on the order of others (-forward +reversed):\n%s", cmp.Diff(d, rev, subnetCmp()))
		}
		if d.Reason == "" {
			t.Errorf("decision %+v has no reason", d)
		}
		poolErr := p.Validate()
		staticBad := self.Static && (!self.Subnet.IsValid() || self.Subnet.Masked() != self.Subnet)
		if (d.Action == ActionWait) != (poolErr != nil || staticBad) {
			t.Fatalf("pool %v (validate: %v), self %+v: decision %+v", p, poolErr, self, d)
		}
		if d.Action == ActionWait {
			return
		}
		var rivals []Claim // others' claims that count: not the node's own
		for _, o := range others {
			if o.Node != self.Node {
				rivals = append(rivals, o)
			}
		}
		owners, _ := Owners(p, rivals)
		switch d.Action {
		case ActionKeep:
			if d.Subnet != self.Subnet {
				t.Fatalf("keep of %s, but self holds %s", d.Subnet, self.Subnet)
			}
			if self.Static {
				return
			}
			if !p.Contains(d.Subnet) {
				t.Fatalf("kept %s outside pool %v", d.Subnet, p)
			}
			if o, ok := owners[d.Subnet]; ok && Beats(o, self) {
				t.Fatalf("kept %s that %+v wins from %+v", d.Subnet, o, self)
			}
			for _, o := range rivals {
				if o.Static && o.Subnet.IsValid() && o.Subnet.Overlaps(d.Subnet) {
					t.Fatalf("kept %s that static claim %+v overlaps", d.Subnet, o)
				}
			}
		case ActionClaim, ActionMove:
			if self.Static || (d.Action == ActionClaim) == self.Subnet.IsValid() {
				t.Fatalf("self %+v: decision %+v", self, d)
			}
			if !p.Contains(d.Subnet) {
				t.Fatalf("handed out %s outside pool %v", d.Subnet, p)
			}
			if o, ok := owners[d.Subnet]; ok {
				t.Fatalf("handed out %s that %+v owns", d.Subnet, o)
			}
			for _, o := range rivals {
				if o.Subnet.IsValid() && o.Subnet.Overlaps(d.Subnet) {
					t.Fatalf("handed out %s that %+v overlaps", d.Subnet, o)
				}
			}
		case ActionExhausted:
			if self.Static || d.Subnet.IsValid() {
				t.Fatalf("self %+v: decision %+v", self, d)
			}
			if p.Size() > 1<<12 {
				return
			}
			for i := range p.Size() {
				s, _ := p.Subnet(i)
				if !slices.ContainsFunc(rivals, func(o Claim) bool { return o.Subnet.IsValid() && o.Subnet.Overlaps(s) }) {
					t.Fatalf("exhausted, but %s of pool %v is free", s, p)
				}
			}
		default:
			t.Fatalf("unknown action in %+v", d)
		}
	}
}
