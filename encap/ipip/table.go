package ipip

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// table is what the user-space forwarder needs of a Want: where each
// inner destination goes, which outer sources are peers, and the tunnel
// MTU. It is immutable once built; Apply swaps in a new one whole, so the
// forwarding goroutines read it without locks.
type table struct {
	mtu int
	// lens are the distinct prefix lengths of the peers' subnets, longest
	// first: a lookup tries one map probe per length, so a cluster whose
	// subnets all have one size costs one probe.
	lens   []int
	routes map[route][4]byte // (length, masked destination) -> peer underlay address
	peers  map[[4]byte]bool  // underlay addresses that may send to us
	// key renders the peers, sorted, for Check to compare.
	key string
}

type route struct {
	bits int
	dst  uint32
}

// newTable builds the table of peers, which Want.Validate accepted, for a
// tunnel of the given MTU.
func newTable(peers []Peer, mtu int) *table {
	t := &table{mtu: mtu, routes: map[route][4]byte{}, peers: map[[4]byte]bool{}, key: peersKey(peers)}
	for _, p := range peers {
		remote := p.Remote.As4()
		t.peers[remote] = true
		for _, s := range p.Subnets {
			s = s.Masked()
			t.routes[route{s.Bits(), be32(s.Addr().As4())}] = remote
			if !slices.Contains(t.lens, s.Bits()) {
				t.lens = append(t.lens, s.Bits())
			}
		}
	}
	slices.SortFunc(t.lens, func(a, b int) int { return cmp.Compare(b, a) })
	return t
}

// lookup returns the underlay address of the peer whose subnet holds dst
// (the longest such subnet), and false if none does.
func (t *table) lookup(dst [4]byte) (remote [4]byte, ok bool) {
	d := be32(dst)
	for _, bits := range t.lens {
		mask := ^uint32(0)
		if bits < 32 {
			mask = ^(mask >> bits)
		}
		if r, ok := t.routes[route{bits, d & mask}]; ok {
			return r, true
		}
	}
	return remote, false
}

// isPeer reports whether src is the underlay address of a peer.
func (t *table) isPeer(src [4]byte) bool { return t.peers[src] }

// peersKey renders peers as sorted lines "remote subnet,subnet".
func peersKey(peers []Peer) string {
	lines := make([]string, 0, len(peers))
	for _, p := range peers {
		subnets := make([]string, 0, len(p.Subnets))
		for _, s := range p.Subnets {
			subnets = append(subnets, s.Masked().String())
		}
		slices.Sort(subnets)
		lines = append(lines, p.Remote.String()+" "+strings.Join(subnets, ","))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// validatePeers reports the first peer that the forwarder cannot use, by
// its index: an underlay address that is not a unicast IPv4 address, a
// subnet that is not IPv4, or a subnet (or underlay address) that two
// peers claim.
func validatePeers(peers []Peer) error {
	owner := map[netip.Prefix]netip.Addr{}
	remotes := map[netip.Addr]int{}
	for i, p := range peers {
		if !p.Remote.Is4() || !isUnicast(p.Remote.As4()) {
			return fmt.Errorf("Peers[%d].Remote %s: not a unicast IPv4 address", i, p.Remote)
		}
		if j, ok := remotes[p.Remote]; ok {
			return fmt.Errorf("Peers[%d].Remote %s: also Peers[%d].Remote", i, p.Remote, j)
		}
		remotes[p.Remote] = i
		for j, s := range p.Subnets {
			if !s.IsValid() || !s.Addr().Is4() {
				return fmt.Errorf("Peers[%d].Subnets[%d] %s: not an IPv4 prefix", i, j, s)
			}
			s = s.Masked()
			if o, ok := owner[s]; ok && o != p.Remote {
				return fmt.Errorf("Peers[%d].Subnets[%d] %s: also routed to %s", i, j, s, o)
			}
			owner[s] = p.Remote
		}
	}
	return nil
}

func be32(a [4]byte) uint32 { return binary.BigEndian.Uint32(a[:]) }
