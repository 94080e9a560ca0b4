package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/weft-net/weft/policy/nft"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/weft-net/weft/encap/ipip"
	"github.com/weft-net/weft/encap/vxlan"
	"github.com/weft-net/weft/encap/wireguard"
	"github.com/weft-net/weft/fabric"
	"github.com/weft-net/weft/fabric/masq"
	"github.com/weft-net/weft/fabric/routing"
	"github.com/weft-net/weft/internal/api"
	"github.com/weft-net/weft/internal/config"
)

// driftSettle is how long the data plane waits after a netlink event before
// it re-reads the kernel, so a burst of events (ours, or an operator's
// script) costs one pass.
const driftSettle = 50 * time.Millisecond

// kernelDataPlane is the DataPlane on the real kernel of the agent's own
// network namespace: a fabric.Reconciler over the forwarding sysctl, the
// VXLAN driver, the route applier and masquerade.
type kernelDataPlane struct {
	*fabric.Reconciler
	log   *slog.Logger
	vx    *vxlan.Driver
	rt    *routing.Applier
	nat   *masq.Applier
	wg    *wireguard.Driver
	ipip  *ipip.Driver
	drift chan struct{}

	stateDir string
	keyMu    sync.Mutex
	key      wireguard.PrivateKey
}

// kernelParts opens the appliers on the current network namespace.
func kernelParts(log *slog.Logger) (*vxlan.Driver, *routing.Applier, *masq.Applier, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open netlink: %w", err)
	}
	conn, err := nftables.New()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open nftables: %w", err)
	}
	return vxlan.New(vxlan.Config{Kernel: vxlan.NewNetlinkKernel(h), Logger: log}),
		routing.New(routing.Config{Kernel: routing.NewNetlinkKernel(h), Logger: log}),
		masq.New(masq.Config{Conn: conn, Logger: log}), nil
}

// NewKernelDataPlane returns the data plane that programs this host's kernel.
func NewKernelDataPlane(cfg config.Config, log *slog.Logger) (DataPlane, error) {
	vx, rt, nat, err := kernelParts(log)
	if err != nil {
		return nil, err
	}
	d := &kernelDataPlane{log: log.With("component", "dataplane"), vx: vx, rt: rt, nat: nat, drift: make(chan struct{}, 1), stateDir: cfg.StateDir}
	key, err := wireguard.LoadOrCreateKey(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("wireguard key: %w", err)
	}
	d.key = key
	// wg(8) finds user-space devices in /var/run/wireguard; agents sharing
	// one file system (the lab) each keep theirs in their run dir.
	sockets := wireguard.DefaultSocketDir
	if cfg.RunDir != config.Default().RunDir {
		sockets = filepath.Join(cfg.RunDir, "wireguard")
	}
	if d.wg, err = wireguard.Open(wireguard.Options{SocketDir: sockets, Logger: log}); err != nil {
		return nil, fmt.Errorf("open wireguard: %w", err)
	}
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	ik := ipip.NewNetlinkKernel(h)
	mode, err := ipip.Detect(ik)
	if err != nil {
		return nil, fmt.Errorf("detect ipip: %w", err)
	}
	if d.ipip, err = ipip.New(ipip.Config{Mode: mode, Kernel: ik, Open: ipip.OpenLinux(netns.None()), Logger: log}); err != nil {
		return nil, fmt.Errorf("start ipip: %w", err)
	}
	d.Reconciler = fabric.NewReconciler(fabric.ReconcilerConfig{
		Stages: []fabric.Stage{
			{Name: "forwarding", Apply: func(context.Context, fabric.Plan) error { return enableForwarding() }},
			{Name: "vxlan", Apply: func(ctx context.Context, p fabric.Plan) error { return vx.Apply(ctx, vxlanWant(p)) }},
			{Name: "ipip", Apply: func(ctx context.Context, p fabric.Plan) error { return d.ipip.Apply(ctx, ipipWant(p)) }},
			{Name: "wireguard", Apply: d.applyWireGuard},
			{Name: "routes", Apply: func(ctx context.Context, p fabric.Plan) error { return rt.Apply(ctx, p.Routes) }},
			{Name: "masquerade", Apply: func(ctx context.Context, p fabric.Plan) error { return nat.Apply(ctx, p.Masquerade) }},
		},
		Drift:  d.drift,
		Resync: cfg.ResyncPeriod.Duration,
		Logger: log,
	})
	return d, nil
}

// wireGuardWant turns the plan's WireGuard part into the driver's, adding
// the private key, which plans never carry.
func (d *kernelDataPlane) wireGuardWant(p fabric.Plan) wireguard.Want {
	var w wireguard.Want
	if p.WireGuard == nil {
		return w
	}
	d.keyMu.Lock()
	key := d.key
	d.keyMu.Unlock()
	w.Device = &wireguard.Device{Name: p.WireGuard.Name, ListenPort: p.WireGuard.Port, PrivateKey: key, MTU: p.WireGuard.MTU}
	for _, wp := range p.WireGuardPeers {
		if len(wp.PublicKey) != len(wireguard.PublicKey{}) {
			continue
		}
		w.Peers = append(w.Peers, wireguard.Peer{
			PublicKey:           wireguard.PublicKey(wp.PublicKey),
			Endpoint:            wp.Endpoint,
			AllowedIPs:          wp.AllowedIPs,
			PersistentKeepalive: wp.Keepalive,
		})
	}
	return w
}

// applyWireGuard applies the WireGuard part of p. Behind NAT, a session
// this node must open and that has not answered yet counts as unfinished,
// so the reconciler retries soon (and kicks again) instead of waiting for
// the next resync, and status says which peer is waited for.
func (d *kernelDataPlane) applyWireGuard(ctx context.Context, p fabric.Plan) error {
	want := d.wireGuardWant(p)
	if err := d.wg.Apply(ctx, want); err != nil {
		return err
	}
	waiting, err := d.wg.Waiting(want)
	if err != nil {
		return err
	}
	if len(waiting) > 0 {
		var names []string
		for _, wp := range p.WireGuardPeers {
			for _, k := range waiting {
				if bytes.Equal(wp.PublicKey, k[:]) {
					names = append(names, wp.Name)
				}
			}
		}
		return fmt.Errorf("waiting for the first WireGuard handshake with %s (this node is behind NAT and must open the sessions)", strings.Join(names, ", "))
	}
	return nil
}

// WireGuard implements DataPlane.
func (d *kernelDataPlane) WireGuard() WireGuardInfo {
	d.keyMu.Lock()
	pub := d.key.PublicKey()
	d.keyMu.Unlock()
	return WireGuardInfo{Mode: d.wg.Mode(), PublicKey: pub[:], Offload: d.wg.Offload()}
}

// RotateWireGuardKey implements DataPlane: the new key is saved, then put
// on the device at once (before peers learn it, so their first handshake
// with the new key finds it in force), and the caller gossips it.
func (d *kernelDataPlane) RotateWireGuardKey(ctx context.Context) ([]byte, error) {
	key, err := wireguard.Rotate(d.stateDir)
	if err != nil {
		return nil, fmt.Errorf("rotate wireguard key: %w", err)
	}
	d.keyMu.Lock()
	d.key = key
	d.keyMu.Unlock()
	if p, ok := d.Plan(); ok && p.WireGuard != nil {
		if err := d.wg.Apply(ctx, d.wireGuardWant(p)); err != nil {
			return nil, fmt.Errorf("apply rotated wireguard key: %w", err)
		}
	}
	pub := key.PublicKey()
	return pub[:], nil
}

// ipipWant turns the plan's IP-in-IP part into the driver's.
func ipipWant(p fabric.Plan) ipip.Want {
	var w ipip.Want
	if p.IPIP == nil {
		return w
	}
	w.Device = &ipip.Device{Name: p.IPIP.Name, Local: p.IPIP.Local, MTU: p.IPIP.MTU, Addr: p.IPIP.Addr}
	for _, pp := range p.IPIPPeers {
		w.Peers = append(w.Peers, ipip.Peer{Remote: pp.Remote, Subnets: pp.Subnets})
	}
	return w
}

// IPIPMode implements DataPlane.
func (d *kernelDataPlane) IPIPMode() string { return string(d.ipip.Mode()) }

func vxlanWant(p fabric.Plan) vxlan.Want {
	return vxlan.Want{Device: p.VXLAN, Neighbors: p.Neighbors, FDB: p.FDB}
}

// enableForwarding turns on IPv4 forwarding: workload traffic is routed
// through the host. Writing only when needed keeps the pass free of changes.
func enableForwarding() error {
	const path = "/proc/sys/net/ipv4/ip_forward"
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if bytes.Equal(bytes.TrimSpace(b), []byte("1")) {
		return nil
	}
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("enable ip forwarding: %w", err)
	}
	return nil
}

// Run watches netlink for drift and runs the reconciler until ctx is done.
func (d *kernelDataPlane) Run(ctx context.Context) error {
	events, err := routing.Watch(ctx, netns.None(), d.log)
	if err != nil {
		return fmt.Errorf("watch netlink: %w", err)
	}
	go func() {
		for range events {
			// Let the burst settle, dropping what arrives meanwhile.
			t := time.NewTimer(driftSettle)
		settle:
			for {
				select {
				case _, ok := <-events:
					if !ok {
						t.Stop()
						return
					}
				case <-t.C:
					break settle
				}
			}
			select {
			case d.drift <- struct{}{}:
			default:
			}
		}
	}()
	err = d.Reconciler.Run(ctx)
	// A kernel WireGuard device stays; a user-space one cannot outlive the
	// agent: close it cleanly (it comes back in milliseconds on restart).
	return errors.Join(err, d.wg.Close(), d.ipip.Close())
}

// Check compares p with the kernel, attributing each difference to the peer
// it concerns where it can.
func (d *kernelDataPlane) Check(ctx context.Context, p fabric.Plan) (Check, error) {
	out := Check{Peers: map[string][]string{}}
	rep, err := d.rt.Check(ctx, p.Routes)
	if err != nil {
		return out, err
	}
	owner := map[netip.Prefix]string{}
	for _, pp := range p.Peers {
		for _, s := range pp.Subnets {
			owner[s] = pp.Name
		}
	}
	for _, rs := range rep.Routes {
		if rs.InKernel {
			continue
		}
		line := "route " + routing.Format(rs.Route) + " missing"
		if name, ok := owner[rs.Route.Dst]; ok {
			out.Peers[name] = append(out.Peers[name], line)
		} else {
			out.Extra = append(out.Extra, line)
		}
	}
	for _, r := range rep.Stale {
		out.Extra = append(out.Extra, "stale route "+routing.Format(r))
	}
	ipLines, err := d.ipip.Check(ctx, ipipWant(p))
	if err != nil {
		return out, err
	}
	out.Extra = append(out.Extra, ipLines...)
	lines, err := d.vx.Check(ctx, vxlanWant(p))
	if err != nil {
		return out, err
	}
	for _, line := range lines {
		if name := peerOfLine(p, line); name != "" {
			out.Peers[name] = append(out.Peers[name], line)
		} else {
			out.Extra = append(out.Extra, line)
		}
	}
	wgLines, err := d.wg.Check(ctx, d.wireGuardWant(p))
	if err != nil {
		return out, err
	}
	for _, line := range wgLines {
		if name := peerOfWireGuardLine(p, line); name != "" {
			out.Peers[name] = append(out.Peers[name], line)
		} else {
			out.Extra = append(out.Extra, line)
		}
	}
	ok, why, err := d.nat.Check(ctx, p.Masquerade)
	if err != nil {
		return out, err
	}
	if !ok {
		out.Extra = append(out.Extra, "masquerade: "+why)
	}
	return out, nil
}

// peerOfLine returns the peer whose VTEP or underlay address a VXLAN
// difference line names, or "".
func peerOfLine(p fabric.Plan, line string) string {
	for _, pp := range p.Peers {
		if pp.Path != fabric.PathVXLAN {
			continue
		}
		for _, a := range []netip.Addr{pp.Via, pp.Remote} {
			if a.IsValid() && strings.Contains(line, " "+a.String()) {
				return pp.Name
			}
		}
	}
	return ""
}

// peerOfWireGuardLine returns the peer whose public key a WireGuard
// difference line names, or "".
func peerOfWireGuardLine(p fabric.Plan, line string) string {
	for _, wp := range p.WireGuardPeers {
		if k := base64.StdEncoding.EncodeToString(wp.PublicKey); strings.Contains(line, k) {
			return wp.Name
		}
	}
	return ""
}

// Cleanup removes everything weft made on this host: its routes (by route
// protocol), its VXLAN devices (by name prefix), its nftables table and the
// files in the run dir. It touches nothing else, and refuses while an agent
// is running (the agent would put it all back).
func Cleanup(ctx context.Context, cfg config.Config, log *slog.Logger) ([]string, error) {
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := api.NewClient(cfg.RunDir).Status(qctx); err == nil {
		return nil, errors.New("an agent is running: stop it first (systemctl stop weft, or kill it), or it puts everything back")
	}
	vx, rt, nat, err := kernelParts(log)
	if err != nil {
		return nil, err
	}
	var done []string
	var errs []error
	step := func(what string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
			return
		}
		done = append(done, what)
	}
	step("remove weft routes (protocol 87)", rt.Sweep(ctx))
	step("remove weft VXLAN devices ("+vxlan.LinkPrefix+"*) with their neighbour and FDB entries", vx.Apply(ctx, vxlan.Want{}))
	step("remove nftables table ip "+masq.TableName, nat.Remove(ctx))
	step("remove nftables table inet "+nft.TableName+" (policy)", removePolicyTable(ctx, log))
	if h, err := netlink.NewHandle(); err != nil {
		step("open netlink", err)
	} else {
		ik := ipip.NewNetlinkKernel(h)
		if mode, err := ipip.Detect(ik); err != nil {
			step("detect ipip", err)
		} else if drv, err := ipip.New(ipip.Config{Mode: mode, Kernel: ik, Open: ipip.OpenLinux(netns.None()), Logger: log}); err != nil {
			step("open ipip", err)
		} else {
			step("remove weft IP-in-IP devices ("+ipip.LinkPrefix+"*)", drv.Apply(ctx, ipip.Want{}))
			drv.Close()
		}
	}
	// A user-space WireGuard device died with the agent; a kernel one stays
	// until removed here.
	wg, err := wireguard.Open(wireguard.Options{Logger: log})
	if err != nil {
		step("open wireguard", err)
	} else {
		step("remove weft WireGuard devices ("+wireguard.LinkPrefix+"*)", wg.Apply(ctx, wireguard.Want{}))
		wg.Close()
	}
	for _, name := range []string{SubnetEnvName, api.SocketName} {
		p := filepath.Join(cfg.RunDir, name)
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			step("remove "+p, err)
			continue
		}
		done = append(done, "remove "+p)
	}
	return done, errors.Join(errs...)
}
