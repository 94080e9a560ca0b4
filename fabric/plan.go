package fabric

import (
	"bytes"
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Planning.
//
// Compute is the pure planner: this node (Local), the live peers (Peer, from
// gossip) and the cluster's Options in, the desired data plane (Plan) out.
// The appliers compare the Plan with the kernel and change only the delta;
// the planner never touches the kernel, so table tests cover every decision.
// The path for each pair follows DESIGN.md's path table.

// vxlanOverheadIPv6 is VXLANOverhead over an IPv6 underlay: the outer IPv6
// header is 40 bytes, not 20.
const vxlanOverheadIPv6 = VXLANOverhead + 20

// macLen is the length of an Ethernet (VTEP) MAC address.
const macLen = 6

// Reasons for PathNone that do not depend on the peer. Constant strings keep
// Compute cheap for thousands of peers.
const (
	reasonNoSubnet       = "no subnet yet"
	reasonNoUnderlay     = "no underlay address"
	reasonLocalNoAddr    = "this node has no underlay address"
	reasonLocalNoSubnet  = "this node has no subnet yet (the VXLAN device needs its address)"
	reasonSameName       = "same name as this node"
	reasonDuplicateName  = "duplicate peer name"
	reasonNoVTEPMAC      = "no VTEP MAC (VXLAN needs one)"
	reasonNeverOffLink   = "not on-link and overlayMode is never"
	reasonIPIPv6         = "IP-in-IP needs an IPv4 underlay"
	reasonEncryptAlways  = "encryption always"
	reasonEncryptRegion  = "other cloud or region (encryption cross-region)"
	reasonNAT            = "behind NAT: only WireGuard crosses it"
	reasonBothNAT        = "both nodes are behind NAT: neither can reach the other"
	reasonLocalNoWG      = "needs WireGuard, which is off on this node; never plaintext"
	reasonPeerNoWG       = "needs WireGuard, and the peer has no WireGuard key; never plaintext"
	reasonSameSegment    = "same L2 segment"
	reasonNative         = "same VPC, cloud route in place"
	reasonOtherSegment   = "different L2 segment"
	reasonOverlayAlways  = "overlayMode always"
	reasonNoIPv4Underlay = "no IPv4 underlay address"
	reasonNoIPv6Underlay = "no IPv6 underlay address"
)

// Compute computes the desired data plane of local given its live peers and
// opts. It is pure (no kernel, clock, randomness or logging), deterministic
// (peers in any order give an equal Plan; peers with equal names are ordered
// by their other fields) and safe for concurrent use. It neither modifies nor
// retains its inputs: the Plan owns all its slices.
//
// Every peer gets one PeerPlan; the first rule that applies decides:
//
//  1. A peer named like this node or like a peer before it, with no subnet,
//     with an invalid subnet, or with a subnet overlapping one of this node's
//     or of a peer earlier by name that kept its own, gets PathNone (a peer
//     that loses claims nothing). The caller filters conflicts out; this is
//     the defence.
//  2. Invalid opts (see Validate) or no local.UnderlayAddr: PathNone.
//  3. Remote is the peer's first underlay address of local.UnderlayAddr's
//     family that is on-link (inside a local.Connected prefix), else the
//     first of that family; none: PathNone.
//  4. Encryption always, or cross-region for a peer in another cloud or
//     region (exact string compare: two unknown ("") locations match) needs
//     WireGuard, not implemented yet (#5): PathNone. Never plaintext.
//  5. overlayMode never: on-link peers direct, others PathNone; cross-subnet:
//     on-link peers direct, others the overlay (Calico's CrossSubnet,
//     flannel's DirectRouting); always: the overlay.
//  6. Overlay ipip is not implemented yet (#6): PathNone. VXLAN needs this
//     node to have a subnet and the peer a 6-byte VTEP MAC not used by this
//     node or by a VXLAN peer earlier by name; else PathNone.
//
// Rules 4 to 6 give the paths allowed for the peer, cheapest first
// (PeerPlan.Candidates, plan_fallback.go): direct or native, the overlay, then
// WireGuard where both nodes have it (a fallback, never a first choice, and
// never from an encrypted path to a plaintext one). The first candidate not
// in Peer.Avoid is taken; when every one is avoided, the first.
//
// Direct: a route per peer subnet via Remote on local.UnderlayDev, MTU
// local.UnderlayMTU. VXLAN (flannel's layout): the peer's VTEP address is the
// network address of its first subnet; a route per peer subnet via it, onlink,
// on opts.VXLANDevice, a static neighbour entry (VTEP address -> MAC) and FDB
// entry (MAC -> Remote); MTU local.UnderlayMTU less VXLANOverhead (70 over an
// IPv6 underlay), or 0 when the underlay MTU is unknown.
//
// Plan.VXLAN is set whenever the overlay is VXLAN, overlayMode is not never
// and this node has a subnet, even if no peer uses VXLAN now: peers may send
// to this node over VXLAN while it routes to them directly. Each own subnet
// gets a blackhole route. Masquerade is opts.ClusterCIDR when opts.IPMasq.
func Compute(local Local, peers []Peer, opts Options) Plan {
	var plan Plan
	if opts.IPMasq && opts.ClusterCIDR.IsValid() {
		plan.Masquerade = opts.ClusterCIDR.Masked()
	}
	var own []netip.Prefix
	for _, s := range local.Subnets {
		if s.IsValid() {
			own = append(own, s.Masked())
		}
	}
	nRoutes := len(own)
	for i := range peers {
		nRoutes += len(peers[i].Subnets)
	}
	if nRoutes > 0 {
		plan.Routes = make([]Route, 0, nRoutes)
	}
	// Blackhole the own subnets, as Calico does for its blocks: traffic to an
	// unassigned workload address is dropped here instead of following the
	// default route out. Workload /32 routes are more specific and win.
	for _, s := range own {
		plan.Routes = append(plan.Routes, Route{Dst: s, Blackhole: true})
	}

	optsErr := opts.Validate()
	globalReason := ""
	switch {
	case optsErr != nil:
		globalReason = "invalid options: " + strings.ReplaceAll(optsErr.Error(), "\n", "; ")
	case !local.UnderlayAddr.IsValid():
		globalReason = reasonLocalNoAddr
	}
	vxlanOverhead := VXLANOverhead
	if local.UnderlayAddr.Unmap().Is6() {
		vxlanOverhead = vxlanOverheadIPv6
	}
	if globalReason == "" && opts.Overlay == OverlayIPIP && opts.OverlayMode != OverlayNever && len(own) > 0 &&
		local.UnderlayAddr.Unmap().Is4() {
		// Present whether or not a peer uses it now, as for VXLAN.
		plan.IPIP = &IPIPDevice{
			Name:  DefaultIPIPDevice,
			Local: sourceAddr(local),
			MTU:   mtuLess(local.UnderlayMTU, IPIPOverhead),
			Addr:  netip.PrefixFrom(own[0].Addr(), own[0].Addr().BitLen()),
		}
	}
	if globalReason == "" && opts.Overlay == OverlayVXLAN && opts.OverlayMode != OverlayNever && len(own) > 0 {
		// Present whether or not a peer uses VXLAN now: peers may send to
		// this node over VXLAN while it routes to them directly.
		plan.VXLAN = &VXLANDevice{
			Name:  opts.VXLANDevice,
			VNI:   opts.VXLANVNI,
			Port:  opts.VXLANPort,
			Local: sourceAddr(local),
			Dev:   local.UnderlayDev,
			MAC:   slices.Clone(local.VTEPMAC),
			MTU:   mtuLess(local.UnderlayMTU, vxlanOverhead),
			Addr:  netip.PrefixFrom(own[0].Addr(), own[0].Addr().BitLen()),
		}
	}

	if globalReason == "" && opts.WireGuardDevice != "" && len(local.WireGuardKey) == wgKeyLen &&
		(opts.Encryption != EncryptionNever || local.BehindNAT || anyBehindNAT(peers)) {
		plan.WireGuard = &WireGuardDevice{
			Name: opts.WireGuardDevice,
			Port: opts.WireGuardPort,
			MTU:  mtuLess(local.UnderlayMTU, WireGuardOverhead),
		}
	}

	order := make([]*Peer, len(peers))
	for i := range peers {
		order[i] = &peers[i]
	}
	slices.SortFunc(order, comparePeers)
	if len(order) > 0 {
		plan.Peers = make([]PeerPlan, len(order))
	}
	for i, p := range order {
		pp := &plan.Peers[i]
		pp.Name = p.Name
		pp.Subnets = slices.Clone(p.Subnets)
		switch {
		case p.Name == local.Name:
			pp.Reason = reasonSameName
		case i > 0 && p.Name == order[i-1].Name:
			pp.Reason = reasonDuplicateName
		case len(p.Subnets) == 0:
			pp.Reason = reasonNoSubnet
		default:
			for _, s := range p.Subnets {
				if !s.IsValid() || s != s.Masked() {
					pp.Reason = fmt.Sprintf("invalid subnet %s", s)
					break
				}
			}
		}
		if pp.Reason != "" {
			pp.Path = PathNone
		}
	}
	resolveOverlaps(plan.Peers, own)

	// usedMACs holds the VTEP MACs already in the FDB: one MAC can point at
	// one remote only.
	usedMACs := make(map[[macLen]byte]string)
	if len(local.VTEPMAC) == macLen {
		usedMACs[[macLen]byte(local.VTEPMAC)] = "this node"
	}
	for i, p := range order {
		pp := &plan.Peers[i]
		if pp.Path == PathNone {
			continue
		}
		if globalReason != "" {
			pp.Path, pp.Reason = PathNone, globalReason
			continue
		}
		remote, onLink, reason := pickRemote(local, p.Underlay)
		pp.Remote = remote
		if reason != "" {
			pp.Path, pp.Reason = PathNone, reason
			continue
		}
		crossRegion := p.Location.Cloud != local.Location.Cloud || p.Location.Region != local.Location.Region
		encReason := ""
		switch {
		case local.BehindNAT && p.BehindNAT:
			pp.Path, pp.Reason = PathNone, reasonBothNAT
			continue
		case local.BehindNAT || p.BehindNAT:
			encReason = reasonNAT
		case opts.Encryption == EncryptionAlways:
			encReason = reasonEncryptAlways
		case opts.Encryption == EncryptionCrossRegion && crossRegion:
			encReason = reasonEncryptRegion
		}
		cands, noneReason := peerCandidates(&plan, local, p, opts, onLink, encReason, own, usedMACs)
		if len(cands) == 0 {
			pp.Path, pp.Reason = PathNone, noneReason
			continue
		}
		pp.Candidates = make([]PathKind, len(cands))
		for k, c := range cands {
			pp.Candidates[k] = c.kind
		}
		pick := pickCandidate(cands, p.Avoid)
		emitPath(&plan, pp, local, p, remote, pick, opts, usedMACs)
		if pick.kind != PathWireGuard && slices.Contains(pp.Candidates, PathWireGuard) {
			// WireGuard is this pair's fallback: keep the peer configured
			// (no route), so that whichever end falls back first finds the
			// other ready to answer its handshake.
			wireGuardPeer(&plan, local, p, remote, opts)
		}
	}

	slices.SortFunc(plan.Routes, compareRoutes)
	slices.SortFunc(plan.WireGuardPeers, func(a, b WireGuardPeer) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(plan.IPIPPeers, func(a, b IPIPPeer) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(plan.Neighbors, func(a, b Neighbor) int {
		return cmp.Or(a.IP.Compare(b.IP), strings.Compare(a.Dev, b.Dev), bytes.Compare(a.MAC, b.MAC))
	})
	slices.SortFunc(plan.FDB, func(a, b FDBEntry) int {
		return cmp.Or(bytes.Compare(a.MAC, b.MAC), strings.Compare(a.Dev, b.Dev), a.Dst.Compare(b.Dst))
	})
	return plan
}

// sourceAddr returns the address tunnels are sourced from: the advertised
// underlay address when it is this node's own, else (behind a NAT that
// forwards to this node, the advertised address is the NAT's) this node's
// first address of the same family on the underlay.
func sourceAddr(local Local) netip.Addr {
	adv := local.UnderlayAddr.Unmap()
	for _, c := range local.Connected {
		if c.Addr().Unmap() == adv {
			return adv
		}
	}
	// Connected prefixes carry the node's own address (198.18.1.2/24); a
	// masked one (198.18.1.0/24) says nothing about it.
	for _, c := range local.Connected {
		if a := c.Addr().Unmap(); a.Is4() == adv.Is4() && c != c.Masked() {
			return a
		}
	}
	return adv
}

// nativeReady reports whether the cloud carries every one of subnets to
// its node, and there is a gateway to hand the packets to.
func nativeReady(local Local, subnets []netip.Prefix) bool {
	if !local.Gateway.IsValid() || len(local.Native) == 0 {
		return false
	}
	for _, s := range subnets {
		if !local.Native[s] {
			return false
		}
	}
	return true
}

// wgKeyLen is the length of a WireGuard public key.
const wgKeyLen = 32

// anyBehindNAT reports whether a peer is behind NAT (it can only be reached
// over WireGuard).
func anyBehindNAT(peers []Peer) bool {
	for i := range peers {
		if peers[i].BehindNAT {
			return true
		}
	}
	return false
}

// wireGuardPath puts p on WireGuard: a device route per peer subnet, and a
// WireGuard peer whose AllowedIPs are its subnets. Its endpoint is its public
// address where it has one, else the underlay address this node reaches it
// by; none for a peer behind NAT (learnt from its handshakes). A node behind
// NAT keeps its mappings open with a persistent keepalive.
func wireGuardPath(plan *Plan, pp *PeerPlan, local Local, p *Peer, remote netip.Addr, reason string, opts Options) {
	dev := plan.WireGuard
	pp.Path, pp.Reason = PathWireGuard, reason
	pp.Dev, pp.Via, pp.MTU = dev.Name, netip.Addr{}, dev.MTU
	if at := wireGuardPeer(plan, local, p, remote, opts); at.IsValid() {
		pp.Remote = at
	}
	for _, s := range p.Subnets {
		plan.Routes = append(plan.Routes, Route{Dst: s, Dev: dev.Name})
	}
}

// wireGuardPeer adds p as a WireGuard peer of plan and returns its
// endpoint address (invalid for a peer behind NAT).
func wireGuardPeer(plan *Plan, local Local, p *Peer, remote netip.Addr, opts Options) netip.Addr {
	peer := WireGuardPeer{Name: p.Name, PublicKey: slices.Clone(p.WireGuardKey), AllowedIPs: slices.Clone(p.Subnets)}
	var at netip.Addr
	if !p.BehindNAT {
		at = remote
		if p.Public.IsValid() {
			at = p.Public.Unmap()
		}
		peer.Endpoint = netip.AddrPortFrom(at, uint16(p.WireGuardPort))
	}
	if local.BehindNAT {
		peer.Keepalive = opts.WireGuardKeepalive
	}
	plan.WireGuardPeers = append(plan.WireGuardPeers, peer)
	return at
}

// mtuLess returns mtu less overhead, or 0 (the device's own) when mtu is
// unknown or too small to subtract from.
func mtuLess(mtu, overhead int) int {
	if mtu <= overhead {
		return 0
	}
	return mtu - overhead
}

// pickRemote returns the address of underlay to send to: the first one of
// local's underlay family that is on-link (inside local.Connected), else the
// first one of that family. reason is non-empty when there is none.
func pickRemote(local Local, underlay []netip.Addr) (remote netip.Addr, onLink bool, reason string) {
	if len(underlay) == 0 {
		return netip.Addr{}, false, reasonNoUnderlay
	}
	want4 := local.UnderlayAddr.Unmap().Is4()
	for _, a := range underlay {
		a = a.Unmap()
		if !a.IsValid() || a.Is4() != want4 {
			continue
		}
		if !remote.IsValid() {
			remote = a
		}
		for _, c := range local.Connected {
			if c.Contains(a) {
				return a, true, ""
			}
		}
	}
	if !remote.IsValid() {
		if want4 {
			return remote, false, reasonNoIPv4Underlay
		}
		return remote, false, reasonNoIPv6Underlay
	}
	return remote, false, ""
}

// subnetOwner is one subnet and the index of the PeerPlan that holds it (-1:
// this node).
type subnetOwner struct {
	subnet netip.Prefix
	last   netip.Addr
	owner  int
}

// resolveOverlaps gives PathNone to every peer in plans (sorted by name) with
// a subnet that overlaps one of own or one of a peer earlier by name that
// kept its subnets; peers that already have PathNone are left out. A sweep
// over the sorted subnets finds the few that overlap anything (normally none)
// in O(n log n); only those are then resolved pairwise, in name order.
func resolveOverlaps(plans []PeerPlan, own []netip.Prefix) {
	var all []subnetOwner
	for _, s := range own {
		all = append(all, subnetOwner{s, lastAddr(s), -1})
	}
	for i := range plans {
		if plans[i].Path == PathNone {
			continue
		}
		for _, s := range plans[i].Subnets {
			all = append(all, subnetOwner{s, lastAddr(s), i})
		}
	}
	slices.SortFunc(all, func(a, b subnetOwner) int { return comparePrefixes(a.subnet, b.subnet) })
	suspect := make(map[int]bool)
	for start := 0; start < len(all); {
		// A run of subnets whose ranges chain into one another: every
		// overlapping pair lies inside one run.
		end, maxLast := start+1, all[start].last
		for end < len(all) && all[end].subnet.Addr().Compare(maxLast) <= 0 {
			if all[end].last.Compare(maxLast) > 0 {
				maxLast = all[end].last
			}
			end++
		}
		if end-start > 1 {
			for _, so := range all[start:end] {
				if so.owner >= 0 {
					suspect[so.owner] = true
				}
			}
		}
		start = end
	}
	if len(suspect) == 0 {
		return
	}
	idx := make([]int, 0, len(suspect))
	for i := range suspect {
		idx = append(idx, i)
	}
	slices.Sort(idx) // plans are in name order
	kept := make([]subnetOwner, 0, len(own))
	for _, s := range own {
		kept = append(kept, subnetOwner{subnet: s, owner: -1})
	}
	for _, i := range idx {
		pp := &plans[i]
		mine := len(kept)
	check:
		for _, s := range pp.Subnets {
			for k, o := range kept {
				if !s.Overlaps(o.subnet) {
					continue
				}
				switch {
				case o.owner < 0:
					pp.Reason = fmt.Sprintf("subnet %s overlaps %s of this node", s, o.subnet)
				case k >= mine:
					pp.Reason = fmt.Sprintf("subnet %s overlaps its subnet %s", s, o.subnet)
				default:
					pp.Reason = fmt.Sprintf("subnet %s overlaps %s of peer %s", s, o.subnet, plans[o.owner].Name)
				}
				break check
			}
			kept = append(kept, subnetOwner{subnet: s, owner: i})
		}
		if pp.Reason != "" {
			pp.Path = PathNone
			kept = kept[:mine]
		}
	}
}

// lastAddr returns the last address of the valid prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	b := a.As16()
	first := 16 - a.BitLen()/8 // As16 puts an IPv4 address in the last 4 bytes
	for bit := p.Bits(); bit < a.BitLen(); bit++ {
		b[first+bit/8] |= 0x80 >> (bit % 8)
	}
	if a.Is4() {
		return netip.AddrFrom4([4]byte(b[12:]))
	}
	return netip.AddrFrom16(b)
}

// comparePrefixes orders prefixes as `ip route` lists them: by address (IPv4
// first), then the shorter (wider) prefix first.
func comparePrefixes(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

// compareRoutes orders routes by Dst, then by every other field.
func compareRoutes(a, b Route) int {
	return cmp.Or(comparePrefixes(a.Dst, b.Dst), compareBool(a.Blackhole, b.Blackhole),
		a.Via.Compare(b.Via), strings.Compare(a.Dev, b.Dev), compareBool(a.OnLink, b.OnLink),
		cmp.Compare(a.MTU, b.MTU))
}

// comparePeers orders peers by name, then by every other field, so that
// sorting gives one order whatever the input order.
func comparePeers(a, b *Peer) int {
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return cmp.Or(
		slices.CompareFunc(a.Underlay, b.Underlay, netip.Addr.Compare),
		a.Public.Compare(b.Public),
		strings.Compare(a.Location.Cloud, b.Location.Cloud),
		strings.Compare(a.Location.Region, b.Location.Region),
		strings.Compare(a.Location.Zone, b.Location.Zone),
		slices.CompareFunc(a.Subnets, b.Subnets, comparePrefixes),
		bytes.Compare(a.VTEPMAC, b.VTEPMAC),
		cmp.Compare(a.Caps, b.Caps),
	)
}

// compareBool orders false before true.
func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}
