// Package agent wires weft's parts together into the long-running `weft
// agent`: configuration in, gossip membership, subnet allocation, the local
// API. Decisions live in fabric (pure); this package observes, decides through
// fabric and applies the result (record, state file, subnet.env).
package agent

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/weft-net/weft/fabric"
	"github.com/weft-net/weft/fabric/health/probe"
	"github.com/weft-net/weft/gossip"
	"github.com/weft-net/weft/internal/api"
	"github.com/weft-net/weft/internal/config"
)

// SubnetEnvName is the flannel-compatible file the agent writes in its run dir.
const SubnetEnvName = "subnet.env"

// StoreFile is where, in the state dir, the replicated policy store is
// saved, so that a restarted agent enforces what it knew at once.
const StoreFile = "store.snapshot"

// recordTimeout is how long publishing a new record waits for memberlist to
// finish broadcasting it: not at all. The loop must not stall on a busy
// cluster; gossip spreads the record anyway, and push/pull repairs misses.
const recordTimeout = 0

// firstClaimWait is how long a node without a subnet waits to hear from its
// seeds before it claims one on what it knows: long enough for a join and a
// push/pull on a busy machine, short enough that a node whose seeds are all
// down still gets a subnet (conflicts are resolved later anyway).
const firstClaimWait = 10 * time.Second

// Options configures an Agent.
type Options struct {
	Config  config.Config
	Logger  *slog.Logger
	Version string
	// Host is the kernel seam; nil means the real kernel through netlink.
	Host Host
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// DataPlane puts plans into the kernel; nil runs the agent without one
	// (membership and subnets only).
	DataPlane DataPlane
	// Policy puts the policy ruleset into the kernel (NewKernelPolicy);
	// nil enforces no policy (the store and the policy API still work).
	Policy PolicyApplier
	// OpenProber opens the prober of path health; nil means the real one
	// (fabric/health/probe). Path health runs only with a data plane.
	OpenProber func(probe.Config) (Prober, error)
}

// Agent is one running weft agent. Create it with New, run it with Run.
type Agent struct {
	cfg     config.Config
	log     *slog.Logger
	version string
	host    Host
	now     func() time.Time
	pool    fabric.Pool
	seed    uint64

	started  time.Time
	underlay Underlay
	advert   netip.Addr
	key      []byte
	ml       *gossip.Membership
	dp       DataPlane
	dpOpts   fabric.Options
	vtepMAC  net.HardwareAddr
	caps     gossip.Capability
	gateway  netip.Addr

	leave  chan chan error
	rotate chan chan error

	polApplier PolicyApplier
	pe         *policyEngine // set by Run before the API serves

	mu       sync.Mutex
	claim    fabric.Claim // this node's claim; zero Subnet when it has none
	subState string       // see api.Status.SubnetState
	problems map[string]string
	// ready is set once the node has heard from the cluster (or given up
	// waiting): only then does it plan its data plane.
	ready bool
	// location is the configured one, completed by cloud discovery.
	location gossip.Location
	cloud    cloudState

	// health is path health; nil when off (config, or no data plane).
	health *pathHealth
	// openProber opens the prober of path health.
	openProber func(probe.Config) (Prober, error)
	// setTxCsum replaces setTxChecksum in tests; nil: the real ioctl.
	setTxCsum func(dev string, on bool) error
}

// New checks what can be checked before start: the cluster key and the underlay.
func New(o Options) (*Agent, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Host == nil {
		o.Host = netlinkHost{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	cfg := o.Config
	a := &Agent{
		cfg:        cfg,
		log:        o.Logger.With("component", "agent"),
		version:    o.Version,
		host:       o.Host,
		now:        o.Now,
		pool:       fabric.Pool{CIDR: cfg.ClusterCIDR, Bits: cfg.SubnetSize},
		seed:       fabric.NodeSeed(cfg.NodeName),
		leave:      make(chan chan error),
		rotate:     make(chan chan error),
		problems:   map[string]string{},
		subState:   "waiting",
		dp:         o.DataPlane,
		polApplier: o.Policy,
		dpOpts:     cfg.DataPlane(),
		vtepMAC:    fabric.VTEPMAC(cfg.NodeName),
		location:   gossip.Location{Cloud: cfg.Location.Cloud, Region: cfg.Location.Region, Zone: cfg.Location.Zone},
	}
	if o.DataPlane != nil {
		// VXLAN is in every Linux kernel weft supports; the data plane
		// refuses to start when the device cannot be made.
		a.caps |= gossip.CapVXLAN
		switch o.DataPlane.WireGuard().Mode {
		case "kernel":
			a.caps |= gossip.CapWireGuardKernel
		case "userspace":
			a.caps |= gossip.CapWireGuardUserspace
		}
	}
	if cfg.WireGuard.BehindNAT {
		a.caps |= gossip.CapBehindNAT
	}
	if o.DataPlane != nil && cfg.Health.Enabled {
		a.health = newPathHealth(cfg.HealthConfig())
		a.openProber = o.OpenProber
		if a.openProber == nil {
			a.openProber = openProber
		}
	}
	if !cfg.Insecure {
		k, err := gossip.LoadKeyFile(cfg.ClusterKeyFile)
		if err != nil {
			return nil, fmt.Errorf("clusterKeyFile: %w", err)
		}
		a.key = k
	} else {
		a.log.Warn("gossip encryption is off (insecure: true): anyone on the network can join")
	}
	ifname := cfg.UnderlayInterface
	if ifname == "" {
		n, err := a.host.DefaultRouteInterface()
		if err != nil {
			return nil, fmt.Errorf("detect underlay interface: %w", err)
		}
		ifname = n
	}
	u, err := a.host.Interface(ifname)
	if err != nil {
		return nil, fmt.Errorf("underlayInterface %q: %w", ifname, err)
	}
	a.underlay = u
	a.gateway = a.host.DefaultGateway()
	a.advert = cfg.AdvertiseAddress
	if !a.advert.IsValid() {
		if len(u.Addrs) == 0 {
			return nil, fmt.Errorf("underlayInterface %q: has no global unicast address; set advertiseAddress", ifname)
		}
		a.advert = u.Addrs[0]
	}
	return a, nil
}

// staticConflict says which other claims overlap a static claim, or "".
func staticConflict(self fabric.Claim, others []fabric.Claim) string {
	if !self.Static {
		return ""
	}
	var names []string
	for _, o := range others {
		if o.Subnet.Overlaps(self.Subnet) {
			names = append(names, o.Node)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return fmt.Sprintf("static subnet %s is also claimed by %v", self.Subnet, names)
}

// Run runs the agent until ctx is done (the data plane and the node's place in
// the cluster stay: peers see it die and it comes back with the same subnet)
// or until `weft leave` takes it out of the cluster for good.
func (a *Agent) Run(ctx context.Context) error {
	a.started = a.now()
	if err := a.loadClaim(); err != nil {
		return err
	}
	a.startCloud(ctx)
	ml, err := gossip.New(gossip.Config{
		NodeName:         a.cfg.NodeName,
		ClusterName:      a.cfg.ClusterName,
		BindAddr:         a.cfg.BindAddress,
		BindPort:         a.cfg.BindPort,
		AdvertiseAddr:    a.advert,
		Key:              a.key,
		Insecure:         a.cfg.Insecure,
		Record:           a.recordLocked(),
		ProbeInterval:    a.cfg.Gossip.ProbeInterval.Duration,
		ProbeTimeout:     a.cfg.Gossip.ProbeTimeout.Duration,
		SuspicionMult:    a.cfg.Gossip.SuspicionMult,
		GossipInterval:   a.cfg.Gossip.GossipInterval.Duration,
		PushPullInterval: a.cfg.Gossip.PushPullInterval.Duration,
		DeadReservation:  a.cfg.Gossip.DeadReservation.Duration,
		StorePath:        filepath.Join(a.cfg.StateDir, StoreFile),
		ValidateEntry:    validateGossipEntry,
		Logger:           a.log,
		Now:              a.now,
	})
	if err != nil {
		return err
	}
	a.ml = ml
	defer ml.Shutdown()
	a.pe = newPolicyEngine(policyEngineConfig{Store: gossipStore{ml}, Applier: a.polApplier, Node: a.cfg.NodeName,
		Options: a.cfg.PolicyOptions(), Resync: a.cfg.ResyncPeriod.Duration, Logger: a.log, Now: a.now,
		Members: func() []string {
			var names []string
			for _, m := range ml.Members() {
				names = append(names, m.Name)
			}
			return names
		}})

	srv, err := api.Listen(a.cfg.RunDir, (*backend)(a), a.log)
	if err != nil {
		return err
	}
	defer srv.Close()
	go func() {
		if err := srv.Serve(); err != nil {
			a.log.Error("api stopped", "err", err)
		}
	}()
	a.log.Info("agent started", "node", a.cfg.NodeName, "cluster", a.cfg.ClusterName,
		"gossip", ml.LocalAddr(), "underlay", a.underlay.Interface, "encrypted", a.key != nil, "api", srv.Path())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if addr := a.cfg.Metrics.Listen; addr != "" {
		if err := a.serveMetrics(ctx, addr); err != nil {
			return err
		}
	}
	joined := make(chan struct{})
	go func() {
		defer close(joined)
		if len(a.cfg.Join) == 0 {
			return
		}
		a.setProblem("join", fmt.Sprintf("not yet joined any of %v", a.cfg.Join))
		if _, err := ml.Join(ctx, a.cfg.Join, a.cfg.Gossip.JoinRetryMax.Duration); err != nil {
			return
		}
		a.setProblem("join", "")
	}()

	go a.runCloud(ctx)
	if a.dp != nil {
		go func() {
			if err := a.dp.Run(ctx); err != nil {
				a.log.Error("data plane stopped", "err", err)
			}
		}()
	}
	// Wait to hear from the cluster before claiming a subnet or planning
	// routes: a plan made before knowing the peers would delete their routes.
	select {
	case <-joined:
	case <-time.After(firstClaimWait):
		a.log.Warn("no seed answered yet, going on with what is known")
	case <-ctx.Done():
		return nil
	}
	a.mu.Lock()
	a.ready = true
	a.mu.Unlock()
	a.decide()
	// Policy too waits for the cluster: the ruleset a restarted agent left
	// stays in force until the store is known.
	go a.pe.run(ctx)
	if a.health != nil {
		go a.runHealth(ctx, a.openProber)
	}

	resync := time.NewTicker(5 * time.Second)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			a.log.Info("agent stopping; data plane and cluster place kept")
			return nil
		case ev, ok := <-ml.Events():
			if !ok {
				return errors.New("gossip stopped")
			}
			a.log.Debug("membership event", "kind", ev.Kind, "node", ev.Node)
			a.decide()
			if ev.Kind == gossip.EventJoined || ev.Kind == gossip.EventLeft || ev.Kind == gossip.EventReaped {
				a.pe.Kick() // whose endpoints count changed
			}
		case <-resync.C:
			a.decide()
		case reply := <-a.rotate:
			reply <- a.rotateKey(ctx)
		case reply := <-a.leave:
			err := a.doLeave()
			reply <- err
			if err == nil {
				return nil
			}
		}
	}
}

// loadClaim sets the node's starting claim: a static subnet from the config,
// else the subnet kept in the state dir, else none.
func (a *Agent) loadClaim() error {
	st, ok, err := fabric.LoadState(a.cfg.StateDir)
	if err != nil {
		return fmt.Errorf("stateDir: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.cfg.Subnet.IsValid():
		at := a.now().UnixMilli()
		if ok && st.Subnet == a.cfg.Subnet {
			at = st.ClaimedAt
		}
		a.claim = fabric.Claim{Node: a.cfg.NodeName, Subnet: a.cfg.Subnet, ClaimedAt: at, Static: true}
		a.subState = "static"
	case ok && a.pool.Contains(st.Subnet):
		a.claim = fabric.Claim{Node: a.cfg.NodeName, Subnet: st.Subnet, ClaimedAt: st.ClaimedAt}
		a.subState = "claimed"
		a.log.Info("subnet kept from state dir", "subnet", st.Subnet)
	case ok:
		a.log.Warn("subnet in state dir is outside the cluster pool, claiming a new one", "subnet", st.Subnet, "pool", a.pool.CIDR)
	}
	return nil
}

func (a *Agent) currentClaim() fabric.Claim {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.claim
}

// recordLocked builds this node's gossip record from its state.
func (a *Agent) recordLocked() gossip.Record {
	r := gossip.Record{
		Cluster:  a.cfg.ClusterName,
		Underlay: []netip.Addr{a.advert},
		Public:   a.cfg.PublicAddress,
		Location: a.location,
		Labels:   a.cfg.Labels,
		VTEPMAC:  a.vtepMAC,
		Caps:     a.caps,
	}
	if a.dp != nil {
		if k := a.dp.WireGuard().PublicKey; len(k) > 0 {
			r.WireGuardKey, r.WireGuardPort = k, uint16(a.cfg.WireGuard.Port)
		}
	}
	for _, ad := range a.underlay.Addrs {
		if ad != a.advert && len(r.Underlay) < 4 {
			r.Underlay = append(r.Underlay, ad)
		}
	}
	if a.claim.Subnet.IsValid() {
		r.Subnets = []netip.Prefix{a.claim.Subnet}
		r.ClaimedAt = a.claim.ClaimedAt
		r.Static = a.claim.Static
	}
	return r
}

// others returns the subnet claims of every other member, alive or dead
// within its reservation.
func (a *Agent) others() []fabric.Claim {
	var out []fabric.Claim
	for _, m := range a.ml.Members() {
		if m.Name == a.cfg.NodeName || len(m.Record.Subnets) == 0 {
			continue
		}
		out = append(out, fabric.Claim{Node: m.Name, Subnet: m.Record.Subnets[0], ClaimedAt: m.Record.ClaimedAt, Static: m.Record.Static})
	}
	return out
}

// decide runs the allocator on the current view and applies its decision,
// then replans the data plane. Events and the periodic resync share it.
func (a *Agent) decide() {
	a.decideSubnet()
	a.replan()
}

// decideSubnet runs the allocator and applies its decision.
func (a *Agent) decideSubnet() {
	self := a.currentClaim()
	self.Node = a.cfg.NodeName
	others := a.others()
	d := fabric.Decide(a.pool, self, a.seed, others)
	switch d.Action {
	case fabric.ActionKeep:
		a.setProblem("subnet", staticConflict(self, others))
		a.ensureFiles(self)
		return
	case fabric.ActionWait:
		a.setProblem("subnet", d.Reason)
		return
	case fabric.ActionExhausted:
		a.log.Error("no free subnet", "pool", a.pool.CIDR, "reason", d.Reason)
		a.setProblem("subnet", d.Reason)
		a.mu.Lock()
		a.subState = "exhausted"
		changed := a.claim.Subnet.IsValid()
		a.claim = fabric.Claim{}
		rec := a.recordLocked()
		a.mu.Unlock()
		if changed {
			a.publish(rec)
		}
		return
	}
	nc := fabric.Claim{Node: a.cfg.NodeName, Subnet: d.Subnet, ClaimedAt: a.now().UnixMilli()}
	a.log.Info("subnet claimed", "action", d.Action, "subnet", d.Subnet, "previous", self.Subnet, "reason", d.Reason)
	if err := fabric.SaveState(a.cfg.StateDir, fabric.State{Subnet: nc.Subnet, ClaimedAt: nc.ClaimedAt}); err != nil {
		a.log.Error("save subnet state", "err", err)
		a.setProblem("state", err.Error())
	} else {
		a.setProblem("state", "")
	}
	a.mu.Lock()
	a.claim = nc
	a.subState = "claimed"
	rec := a.recordLocked()
	a.mu.Unlock()
	a.setProblem("subnet", "")
	a.ensureFiles(nc)
	a.publish(rec)
}

// publish announces a changed record; gossip re-announces it on its own
// schedule afterwards (see gossip's echoDelays).
func (a *Agent) publish(rec gossip.Record) {
	if err := a.ml.SetRecord(rec, recordTimeout); err != nil {
		a.log.Error("publish record", "err", err)
	}
}

// ensureFiles writes subnet.env when its content would change.
func (a *Agent) ensureFiles(c fabric.Claim) {
	if !c.Subnet.IsValid() {
		return
	}
	// flannel writes the subnet's first address (the CNI bridge gateway) with
	// the subnet's length. The MTU is the underlay's until the data plane adds
	// encapsulation (#3); masquerade is not done yet, so IPMASQ says false.
	gw := netip.PrefixFrom(c.Subnet.Addr().Next(), c.Subnet.Bits())
	env := fabric.SubnetEnv{Network: a.pool.CIDR, Subnet: gw, MTU: a.underlay.MTU, IPMasq: false}
	path := filepath.Join(a.cfg.RunDir, SubnetEnvName)
	want := env.Render()
	if have, err := os.ReadFile(path); err == nil && string(have) == string(want) {
		return
	}
	if err := fabric.WriteSubnetEnv(path, env); err != nil {
		a.log.Error("write subnet.env", "path", path, "err", err)
		a.setProblem("subnet.env", err.Error())
		return
	}
	a.setProblem("subnet.env", "")
}

func (a *Agent) setProblem(key, msg string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if msg == "" {
		delete(a.problems, key)
		return
	}
	a.problems[key] = msg
}

// doLeave takes the node out of the cluster and releases its subnet: the
// state file goes, so a later start claims afresh instead of evicting whoever
// took the subnet meanwhile.
func (a *Agent) doLeave() error {
	// The host's workloads go with it: only this node may delete its
	// endpoints, so it does so before it leaves (their tombstones travel
	// with the leave's gossip; push/pull would carry them later, but a
	// node that left never comes back to do it).
	if a.pe != nil {
		a.pe.removeOwnEndpoints()
	}
	if err := a.ml.Leave(5 * time.Second); err != nil {
		return err
	}
	var errs []error
	for _, p := range []string{filepath.Join(a.cfg.StateDir, fabric.StateFile), filepath.Join(a.cfg.RunDir, SubnetEnvName)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
		}
	}
	a.log.Info("left the cluster; subnet released")
	return errors.Join(errs...)
}

// rotateKey puts a new WireGuard key pair in force and gossips its public
// key; peers switch their entry for this node as soon as the record arrives.
func (a *Agent) rotateKey(ctx context.Context) error {
	if a.dp == nil || a.dp.WireGuard().Mode == "" {
		return errors.New("WireGuard is not running on this node")
	}
	pub, err := a.dp.RotateWireGuardKey(ctx)
	if err != nil {
		return err
	}
	a.mu.Lock()
	rec := a.recordLocked()
	a.mu.Unlock()
	if err := a.ml.SetRecord(rec, recordTimeout); err != nil {
		return fmt.Errorf("publish rotated key: %w", err)
	}
	a.log.Info("wireguard key rotated", "public_key", base64.StdEncoding.EncodeToString(pub))
	a.replan()
	return nil
}
