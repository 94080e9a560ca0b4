package agent

import (
	"context"
	"net"
	"net/netip"

	"github.com/weft-net/weft/fabric"
	"github.com/weft-net/weft/gossip"
)

// DataPlane puts plans into the kernel. The real one (NewKernelDataPlane) is
// a fabric.Reconciler over the VXLAN, route and masquerade appliers; tests of
// the agent alone run without one.
type DataPlane interface {
	// Set hands over a new desired plan. It never blocks.
	Set(p fabric.Plan)
	// Run keeps the kernel equal to the latest plan until ctx is done, and
	// leaves the kernel as it is then.
	Run(ctx context.Context) error
	// Check compares p with the kernel without changing anything.
	Check(ctx context.Context, p fabric.Plan) (Check, error)
	// Status says what the last reconcile pass did.
	Status() fabric.ReconcileStatus
	// Plan returns the latest plan and whether there is one.
	Plan() (fabric.Plan, bool)
	// IPIPMode says how this node does IP-in-IP: "kernel" or "userspace".
	IPIPMode() string
	// WireGuard says how this node does WireGuard; a zero value: not at all.
	WireGuard() WireGuardInfo
	// RotateWireGuardKey makes a new key pair, puts it in force on the
	// device and returns the new public key.
	RotateWireGuardKey(ctx context.Context) ([]byte, error)
}

// WireGuardInfo is what the agent gossips and shows of its WireGuard.
type WireGuardInfo struct {
	Mode      string // "kernel" or "userspace"; "" when off
	PublicKey []byte
	Offload   bool // the user-space TUN uses offloads
}

// Check is what differs between a plan and the kernel: per peer, and what
// no peer explains.
type Check struct {
	Peers map[string][]string
	Extra []string
}

// local returns this node as the planner sees it.
func (a *Agent) local() fabric.Local {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := fabric.Local{
		Name:         a.cfg.NodeName,
		UnderlayDev:  a.underlay.Interface,
		UnderlayAddr: a.advert,
		UnderlayMTU:  a.underlay.MTU,
		Connected:    a.underlay.Prefixes,
		Location:     fabric.Location{Cloud: a.location.Cloud, Region: a.location.Region, Zone: a.location.Zone},
		Native:       a.nativeLocked(),
		Gateway:      a.gateway,
		VTEPMAC:      a.vtepMAC,
		Caps:         uint16(a.caps),
		BehindNAT:    a.cfg.WireGuard.BehindNAT,
	}
	if a.dp != nil {
		l.WireGuardKey = a.dp.WireGuard().PublicKey
	}
	if a.claim.Subnet.IsValid() {
		l.Subnets = []netip.Prefix{a.claim.Subnet}
	}
	return l
}

// planPeers returns the live peers whose subnet claims are honoured.
func (a *Agent) planPeers(members []gossip.Member) []fabric.Peer {
	var claims []fabric.Claim
	for _, m := range members {
		if len(m.Record.Subnets) > 0 {
			claims = append(claims, fabric.Claim{Node: m.Name, Subnet: m.Record.Subnets[0], ClaimedAt: m.Record.ClaimedAt, Static: m.Record.Static})
		}
	}
	owners, _ := fabric.Owners(a.pool, claims)
	var out []fabric.Peer
	for _, m := range members {
		if m.Local || m.Name == a.cfg.NodeName || m.State != gossip.StateAlive {
			continue
		}
		r := m.Record
		p := fabric.Peer{
			Name:     m.Name,
			Underlay: r.Underlay,
			Public:   r.Public,
			Location: fabric.Location{Cloud: r.Location.Cloud, Region: r.Location.Region, Zone: r.Location.Zone},
			Caps:     uint16(r.Caps),
		}
		if len(r.VTEPMAC) == 6 {
			p.VTEPMAC = net.HardwareAddr(r.VTEPMAC)
		}
		p.WireGuardKey, p.WireGuardPort = r.WireGuardKey, int(r.WireGuardPort)
		p.CloudInstance = r.Location.Instance
		p.BehindNAT = r.Caps&gossip.CapBehindNAT != 0
		for _, s := range r.Subnets {
			if w, ok := owners[s]; ok && w.Node == m.Name {
				p.Subnets = append(p.Subnets, s)
			}
		}
		out = append(out, p)
	}
	return out
}

// replan computes the plan from the current view and hands it to the data
// plane, once the node knows the cluster (so a restart never applies a plan
// without its peers, which would delete their routes).
func (a *Agent) replan() {
	if a.dp == nil {
		return
	}
	a.mu.Lock()
	ready := a.ready
	a.mu.Unlock()
	if !ready {
		return
	}
	local, peers := a.local(), a.planPeers(a.ml.Members())
	a.health.avoid(peers)
	p := fabric.Compute(local, peers, a.dpOpts)
	a.healthPlanned(local, peers, p)
	a.dp.Set(p)
	a.kickCloud()
}
