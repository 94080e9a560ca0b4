package fabric

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Fallback between paths.
//
// For every peer the planner lists the paths it allows, cheapest first
// (PeerPlan.Candidates): direct or native, then the overlay, then WireGuard
// where both nodes can do it and encryption is not never. A peer whose
// fallback is WireGuard stays configured on the WireGuard device (without a
// route), so that whichever end falls back first is answered. A peer that needs encryption has WireGuard
// alone: an encrypted path never falls back to a plaintext one. Path health
// (fabric/health) marks paths down per peer and hands them back as
// Peer.Avoid; the planner then takes the first candidate not avoided, so
// that Compute stays pure and every fallback follows one order.

// reasonAllDown is added to the reason of a peer whose every allowed path is
// avoided: it keeps the cheapest, which is the first to work again.
const reasonAllDown = "every allowed path is down"

// candidate is one allowed path and why it is chosen when it is the first.
type candidate struct {
	kind   PathKind
	reason string
}

// peerCandidates returns the paths allowed for p, cheapest first, or none
// and the reason. It does not change plan or usedMACs.
func peerCandidates(plan *Plan, local Local, p *Peer, opts Options, onLink bool, encReason string,
	own []netip.Prefix, usedMACs map[[macLen]byte]string) ([]candidate, string) {
	wgOK := plan.WireGuard != nil && len(p.WireGuardKey) == wgKeyLen && p.WireGuardPort >= 1 && p.WireGuardPort <= 65535
	if encReason != "" {
		switch {
		case plan.WireGuard == nil:
			return nil, encReason + "; " + reasonLocalNoWG
		case !wgOK:
			return nil, encReason + "; " + reasonPeerNoWG
		}
		return []candidate{{PathWireGuard, encReason}}, ""
	}
	var out []candidate
	overlayReason := reasonOverlayAlways
	if opts.OverlayMode != OverlayAlways {
		overlayReason = reasonOtherSegment
		switch {
		case onLink:
			out = append(out, candidate{PathDirect, reasonSameSegment})
		case nativeReady(local, p.Subnets):
			// The VPC's route table carries the peer's subnet to its
			// instance: hand the packets to the VPC router as they are.
			out = append(out, candidate{PathNative, reasonNative})
		}
	}
	if opts.OverlayMode == OverlayNever {
		if len(out) == 0 {
			return nil, reasonNeverOffLink
		}
	} else {
		kind, why := overlayFeasible(plan, p, opts, own, usedMACs)
		switch {
		case why == "":
			out = append(out, candidate{kind, overlayReason})
		case len(out) == 0:
			return nil, why
		}
	}
	// WireGuard is a fallback for a plaintext path, never the first choice
	// of a pair that needs no encryption, and none with encryption never
	// (the device may exist for a peer behind NAT).
	if wgOK && opts.Encryption != EncryptionNever {
		out = append(out, candidate{PathWireGuard, "fallback to WireGuard"})
	}
	return out, ""
}

// overlayFeasible returns the overlay path for p, or why there is none.
func overlayFeasible(plan *Plan, p *Peer, opts Options, own []netip.Prefix, usedMACs map[[macLen]byte]string) (PathKind, string) {
	if opts.Overlay == OverlayIPIP {
		switch {
		case plan.IPIP == nil && len(own) == 0:
			return PathNone, reasonLocalNoSubnet
		case plan.IPIP == nil:
			return PathNone, reasonIPIPv6
		}
		return PathIPIP, ""
	}
	switch {
	case plan.VXLAN == nil:
		return PathNone, reasonLocalNoSubnet
	case len(p.VTEPMAC) != macLen:
		return PathNone, reasonNoVTEPMAC
	}
	if other, ok := usedMACs[[macLen]byte(p.VTEPMAC)]; ok {
		return PathNone, fmt.Sprintf("VTEP MAC %s also used by %s", p.VTEPMAC, other)
	}
	return PathVXLAN, ""
}

// pickCandidate returns the first of cands (not empty) not in avoid, its
// reason saying which cheaper ones are down; when all are avoided, the
// first, with reasonAllDown.
func pickCandidate(cands []candidate, avoid []PathKind) candidate {
	var down []string
	for _, c := range cands {
		if !slices.Contains(avoid, c.kind) {
			if len(down) > 0 {
				c.reason = "fallback: " + strings.Join(down, ", ") + " down"
			}
			return c
		}
		down = append(down, string(c.kind))
	}
	c := cands[0]
	c.reason += "; " + reasonAllDown
	return c
}

// emitPath puts p on the path c: the PeerPlan's fields and what the path
// needs in plan (routes, VXLAN entries, tunnel peers).
func emitPath(plan *Plan, pp *PeerPlan, local Local, p *Peer, remote netip.Addr, c candidate, opts Options,
	usedMACs map[[macLen]byte]string) {
	pp.Path, pp.Reason = c.kind, c.reason
	first := len(plan.Routes)
	defer func() {
		// A path MTU found below the path's own goes on the peer's routes.
		pp.MaxMTU = pp.MTU
		if m := p.PathMTU[c.kind]; m > 0 && pp.MTU > 0 && m < pp.MTU {
			pp.MTU = m
			for i := first; i < len(plan.Routes); i++ {
				plan.Routes[i].MTU = m
			}
		}
	}()
	switch c.kind {
	case PathDirect:
		pp.Dev, pp.Via, pp.MTU = local.UnderlayDev, remote, local.UnderlayMTU
		for _, s := range p.Subnets {
			plan.Routes = append(plan.Routes, Route{Dst: s, Via: remote, Dev: local.UnderlayDev})
		}
	case PathNative:
		pp.Dev, pp.Via, pp.MTU = local.UnderlayDev, local.Gateway, local.UnderlayMTU
		for _, s := range p.Subnets {
			plan.Routes = append(plan.Routes, Route{Dst: s, Via: local.Gateway, Dev: local.UnderlayDev})
		}
	case PathIPIP:
		// Calico's layout: a route per peer subnet via the peer's
		// underlay address, onlink, on the tunnel device; the device (or
		// the user-space driver) encapsulates to the next hop.
		pp.Dev, pp.Via, pp.MTU = plan.IPIP.Name, remote, plan.IPIP.MTU
		for _, s := range p.Subnets {
			plan.Routes = append(plan.Routes, Route{Dst: s, Via: remote, Dev: plan.IPIP.Name, OnLink: true})
		}
		plan.IPIPPeers = append(plan.IPIPPeers, IPIPPeer{Name: p.Name, Remote: remote, Subnets: slices.Clone(p.Subnets)})
	case PathVXLAN:
		usedMACs[[macLen]byte(p.VTEPMAC)] = "peer " + p.Name
		// flannel's layout: the peer's VTEP address is the network address
		// of its first subnet; the onlink route makes the kernel resolve it
		// on the VXLAN device without a connected route, the static
		// neighbour entry gives its MAC, the FDB entry the underlay address
		// behind that MAC (learning is off: nothing is flooded).
		vtep := p.Subnets[0].Addr()
		pp.Dev, pp.Via, pp.MTU = opts.VXLANDevice, vtep, plan.VXLAN.MTU
		for _, s := range p.Subnets {
			plan.Routes = append(plan.Routes, Route{Dst: s, Via: vtep, Dev: opts.VXLANDevice, OnLink: true})
		}
		plan.Neighbors = append(plan.Neighbors, Neighbor{Dev: opts.VXLANDevice, IP: vtep, MAC: slices.Clone(p.VTEPMAC)})
		plan.FDB = append(plan.FDB, FDBEntry{Dev: opts.VXLANDevice, MAC: slices.Clone(p.VTEPMAC), Dst: remote})
	case PathWireGuard:
		wireGuardPath(plan, pp, local, p, remote, c.reason, opts)
	}
}
