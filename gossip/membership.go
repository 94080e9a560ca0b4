// Package gossip is weft's membership layer: hashicorp/memberlist with
// encryption on by default, the node record every node publishes as its
// memberlist metadata, a typed stream of membership events, and the
// replicated store of policies and endpoints.
//
// Data flow: memberlist's delegates (called on memberlist's goroutines) decode
// and validate every node record, refuse records that are malformed or of
// another cluster, update the member table and queue an Event; Events()
// delivers the queue in order to one consumer (the agent), which feeds the
// fabric. A reconnect loop re-joins dead members so that a healed partition
// merges again, as serf does for consul.
//
// The store (store*.go) holds versioned entries (StoreEntry) of two kinds,
// policies and endpoints. Put and Delete apply a write locally and spread
// it: small entries through memberlist's broadcast queue, which every node
// that learns something new passes on; entries too big for a gossip packet
// over TCP to every live member. Push/pull (on join and every
// PushPullInterval) carries the whole store next to the dead-member
// reservations, so nodes that missed a write, joined late or were
// partitioned converge. Conflicts are settled by last writer wins on a
// hybrid logical clock; deletions are tombstones purged after TombstoneTTL;
// an endpoint is written only by its own node. Remote entries are checked
// (limits, ownership, clock skew, Config.ValidateEntry) before they apply,
// and StoreChanged signals the agent to read the store again. The store is
// saved to StorePath and loaded by New.
package gossip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// State is a member's state as this node sees it.
type State string

// Member states.
const (
	StateAlive State = "alive"
	StateDead  State = "dead"
	StateLeft  State = "left"
)

// EventKind says what happened to a member.
type EventKind string

// Event kinds.
const (
	EventJoined  EventKind = "joined"  // a member appeared or came back from the dead
	EventUpdated EventKind = "updated" // a live member published a new record
	EventDead    EventKind = "dead"    // a member stopped answering probes
	EventLeft    EventKind = "left"    // a member left on purpose (weft leave)
	EventReaped  EventKind = "reaped"  // a dead member was forgotten after the reservation time
)

// Event is one membership change. Record is the member's last valid record.
type Event struct {
	Kind   EventKind
	Node   string
	Addr   netip.AddrPort
	Record Record
}

// Member is one node as this node sees it, itself included.
type Member struct {
	Name   string         `json:"name"`
	Addr   netip.AddrPort `json:"addr"`
	State  State          `json:"state"`
	Since  time.Time      `json:"since"`
	Record Record         `json:"record"`
	Local  bool           `json:"local,omitempty"`
}

// Config configures a Membership. Zero durations take the defaults below.
type Config struct {
	NodeName    string
	ClusterName string
	BindAddr    netip.Addr
	BindPort    int
	// AdvertiseAddr is the address peers reach this node by; invalid means memberlist picks one.
	AdvertiseAddr netip.Addr
	// Key is the cluster key (16, 24 or 32 bytes). Nil is refused unless Insecure is set.
	Key      []byte
	Insecure bool
	// Record is the node's initial record; SetRecord replaces it.
	Record Record

	ProbeInterval    time.Duration // default 500ms
	ProbeTimeout     time.Duration // default 250ms
	SuspicionMult    int           // default 3
	GossipInterval   time.Duration // default 200ms
	PushPullInterval time.Duration // default 15s
	// ReconnectInterval is how often one dead member is asked to re-join (default 5s, jittered).
	ReconnectInterval time.Duration
	// DeadReservation is how long a dead member stays in the table (its subnet reserved); default 24h.
	DeadReservation time.Duration

	// StorePath is the file the replicated store is saved to and loaded
	// from at New; "" keeps the store in memory only.
	StorePath string
	// TombstoneTTL is how long a deletion is remembered before it is
	// purged (default 24h). A node away for longer can bring deleted keys
	// back (see store.go).
	TombstoneTTL time.Duration
	// ValidateEntry, if set, checks every entry received from a peer
	// (tombstones included: Deleted set, Value empty) before it is applied,
	// every entry loaded from the snapshot, and every local Put (not
	// Delete). An entry it refuses is dropped and logged once, never
	// applied; a refused Put returns its error. It runs on memberlist's
	// goroutines: it must be fast and safe for concurrent use, and must not
	// call the Membership.
	ValidateEntry func(StoreEntry) error

	// storeGossipOnly turns off the writer's TCP send of small store
	// entries, storeTCPOnly the broadcast queue, so that tests can check
	// each path alone.
	storeGossipOnly, storeTCPOnly bool

	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.ProbeInterval == 0 {
		c.ProbeInterval = 500 * time.Millisecond
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = 250 * time.Millisecond
	}
	if c.SuspicionMult == 0 {
		c.SuspicionMult = 3
	}
	if c.GossipInterval == 0 {
		c.GossipInterval = 200 * time.Millisecond
	}
	if c.PushPullInterval == 0 {
		c.PushPullInterval = 15 * time.Second
	}
	if c.ReconnectInterval == 0 {
		c.ReconnectInterval = 5 * time.Second
	}
	if c.DeadReservation == 0 {
		c.DeadReservation = 24 * time.Hour
	}
	if c.TombstoneTTL == 0 {
		c.TombstoneTTL = 24 * time.Hour
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Membership is this node's view of the cluster. Its methods are safe for
// concurrent use.
type Membership struct {
	cfg  Config
	log  *slog.Logger
	list *memberlist.Memberlist

	mu      sync.Mutex
	meta    []byte
	record  Record
	members map[string]*Member
	refused map[string]string    // node -> last refusal logged, to log each refusal once
	leaving map[string]bool      // nodes that announced they are leaving
	left    map[string]time.Time // nodes that left, so peers' stale reservations do not bring them back
	queue   []Event
	wake    chan struct{}

	store      *store
	bcast      *memberlist.TransmitLimitedQueue
	bcastLimit int            // largest store message that goes through bcast
	alive      atomic.Int64   // live members, this one included, for bcast's retransmit count
	sendMu     sync.Mutex     // orders sends.Add against Shutdown's sends.Wait
	sends      sync.WaitGroup // goroutines sending big entries over TCP

	events chan Event
	stop   chan struct{}
	// echo asks echoLoop to re-announce the record on its schedule (SetRecord).
	echo   chan struct{}
	done   sync.WaitGroup
	closed sync.Once
}

// New starts memberlist on the configured address with the given record.
// It does not join anyone: call Join. The caller must call Shutdown.
func New(cfg Config) (*Membership, error) {
	cfg.setDefaults()
	if cfg.Key == nil && !cfg.Insecure {
		return nil, errors.New("gossip: no cluster key (encryption is required unless insecure is set)")
	}
	if cfg.Record.Cluster != cfg.ClusterName {
		return nil, fmt.Errorf("gossip: record cluster %q differs from cluster name %q", cfg.Record.Cluster, cfg.ClusterName)
	}
	meta, err := cfg.Record.Encode()
	if err != nil {
		return nil, fmt.Errorf("gossip: encode own record: %w", err)
	}
	if cfg.TombstoneTTL < 0 {
		return nil, fmt.Errorf("gossip: tombstone TTL %s is negative", cfg.TombstoneTTL)
	}
	m := &Membership{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "gossip"),
		meta:    meta,
		record:  cfg.Record,
		members: map[string]*Member{},
		refused: map[string]string{},
		leaving: map[string]bool{},
		left:    map[string]time.Time{},
		wake:    make(chan struct{}, 1),
		events:  make(chan Event),
		stop:    make(chan struct{}),
		echo:    make(chan struct{}, 1),
	}
	m.store = newStore(cfg.NodeName, cfg.TombstoneTTL, cfg.Now, cfg.ValidateEntry, m.log.With("subsystem", "store"))
	if err := m.loadSnapshot(); err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeName
	// The label is authenticated (GCM additional data) when encryption is on,
	// and checked on every packet and stream: two clusters on one network never merge.
	mc.Label = "weft/" + cfg.ClusterName
	if cfg.BindAddr.IsValid() {
		mc.BindAddr = cfg.BindAddr.String()
	}
	mc.BindPort = cfg.BindPort
	mc.AdvertisePort = cfg.BindPort
	if cfg.AdvertiseAddr.IsValid() {
		mc.AdvertiseAddr = cfg.AdvertiseAddr.String()
	}
	if cfg.Key != nil {
		kr, err := memberlist.NewKeyring(nil, cfg.Key)
		if err != nil {
			return nil, fmt.Errorf("gossip: keyring: %w", err)
		}
		mc.Keyring = kr
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	mc.ProbeInterval = cfg.ProbeInterval
	mc.ProbeTimeout = cfg.ProbeTimeout
	mc.SuspicionMult = cfg.SuspicionMult
	mc.GossipInterval = cfg.GossipInterval
	mc.PushPullInterval = cfg.PushPullInterval
	d := &delegate{m: m}
	mc.Delegate = d
	mc.Events = d
	mc.Alive = d
	mc.Merge = d
	mc.Logger = newMemberlistLogger(m.log)
	m.alive.Store(1)
	m.bcast = &memberlist.TransmitLimitedQueue{
		// An atomic, as memberlist's own queue does: it may ask while
		// holding its node lock, and the count need not be exact.
		NumNodes:       func() int { return int(m.alive.Load()) },
		RetransmitMult: mc.RetransmitMult,
	}
	m.bcastLimit = broadcastLimit(mc)
	list, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("gossip: start memberlist on %s:%d: %w", mc.BindAddr, mc.BindPort, err)
	}
	m.list = list
	// Only now: publishing needs the list, and the snapshot loaded above
	// is not news to anyone.
	m.store.mu.Lock()
	m.store.publish = m.publish
	m.store.mu.Unlock()
	m.done.Add(5)
	go m.echoLoop()
	go m.pump()
	go m.reconnectLoop()
	go m.purgeLoop()
	go m.saveLoop()
	return m, nil
}

// LocalAddr returns the address and port this node advertises.
func (m *Membership) LocalAddr() netip.AddrPort {
	n := m.list.LocalNode()
	a, _ := netip.AddrFromSlice(n.Addr)
	return netip.AddrPortFrom(a.Unmap(), n.Port)
}

// Events returns the stream of membership events, in the order they happened.
// There must be one consumer; the channel is closed by Shutdown. Events are
// queued without bound, so a slow consumer never stalls memberlist.
func (m *Membership) Events() <-chan Event { return m.events }

// Join contacts the seeds (host or host:port; the gossip port is the default)
// until at least one answers, retrying with exponential backoff up to
// maxBackoff and jitter, so that a fabric whose nodes all start at once
// converges. It blocks until success or ctx is done and returns how many
// seeds answered in the successful attempt. Seeds that are this node's own
// address are skipped; with no other seed it returns 0, nil at once.
func (m *Membership) Join(ctx context.Context, seeds []string, maxBackoff time.Duration) (int, error) {
	self := m.LocalAddr()
	var others []string
	for _, s := range seeds {
		if isSelf(s, self) {
			continue
		}
		others = append(others, s)
	}
	if len(others) == 0 {
		return 0, nil
	}
	if maxBackoff <= 0 {
		maxBackoff = 5 * time.Second
	}
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		order := slices.Clone(others)
		rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		n, err := m.list.Join(order)
		if n > 0 {
			m.log.Info("joined cluster", "seeds", order, "answered", n, "attempt", attempt)
			return n, nil
		}
		// Half the backoff plus up to one backoff of jitter.
		wait := backoff/2 + rand.N(backoff)
		m.log.Warn("join failed, retrying", "seeds", order, "attempt", attempt, "retry_in", wait.Round(time.Millisecond), "err", err)
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("join %v: %w (last error: %v)", others, ctx.Err(), err)
		case <-time.After(wait):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

func isSelf(seed string, self netip.AddrPort) bool {
	host, port := seed, strconv.Itoa(int(self.Port()))
	if h, p, err := net.SplitHostPort(seed); err == nil {
		host, port = h, p
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap() == self.Addr() && port == strconv.Itoa(int(self.Port()))
}

// SetRecord publishes a new record for this node and waits up to timeout
// for memberlist to finish broadcasting it; timeout <= 0 does not wait (the
// record is in force locally and queued for gossip when it returns). An
// invalid record is refused and the old one stays in force.
func (m *Membership) SetRecord(r Record, timeout time.Duration) error {
	if r.Cluster != m.cfg.ClusterName {
		return fmt.Errorf("set record: cluster %q differs from %q", r.Cluster, m.cfg.ClusterName)
	}
	meta, err := r.Encode()
	if err != nil {
		return fmt.Errorf("set record: %w", err)
	}
	m.mu.Lock()
	m.meta, m.record = meta, r
	m.mu.Unlock()
	if timeout <= 0 {
		// memberlist's UpdateNode waits for the broadcast without any
		// limit when its timeout is 0, and the broadcast may never signal
		// (a refute or a newer update can supersede it in the queue): an
		// agent blocked here for good in the 20-agent benchmark. Give it
		// the shortest timeout instead; running out of it is expected.
		if err := m.list.UpdateNode(time.Nanosecond); err != nil && !isBroadcastTimeout(err) {
			return fmt.Errorf("broadcast record: %w", err)
		}
		m.armEcho()
		return nil
	}
	if err := m.list.UpdateNode(timeout); err != nil {
		return fmt.Errorf("broadcast record: %w", err)
	}
	m.armEcho()
	return nil
}

// republishPeriod is how often a node re-announces its record (one gossip
// message per node per period): anti-entropy for a peer that missed an
// update (seen in the 20-50 agent benchmark: a subnet claim that one peer
// never learnt, leaving a conflict unresolved).
const republishPeriod = 30 * time.Second

// echoDelays are when a node re-announces its record after a change,
// counted from the change. memberlist gossips an update to the members
// known at that moment only: a node that joins a moment later through a
// seed that had not yet heard of it learns the old record, and memberlist
// repairs that only at the next push/pull (15 s, scaled up with the
// cluster: 30 s at 50 nodes). That kept "h22 has no subnet yet" for 30 s
// in the 50-agent benchmark. A few echoes after each change close the
// window at the cost of four small broadcasts per change.
var echoDelays = [...]time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}

// armEcho restarts the echo schedule (it never blocks).
func (m *Membership) armEcho() {
	select {
	case m.echo <- struct{}{}:
	default:
	}
}

// echoLoop re-announces the record, with a new incarnation, echoDelays
// after each change (and after start) and every republishPeriod.
func (m *Membership) echoLoop() {
	defer m.done.Done()
	echo := time.NewTimer(echoDelays[0])
	defer echo.Stop()
	step := 0
	periodic := time.NewTicker(republishPeriod)
	defer periodic.Stop()
	republish := func(why string) {
		if err := m.list.UpdateNode(time.Nanosecond); err != nil && !isBroadcastTimeout(err) {
			m.log.Warn("republish record", "why", why, "err", err)
		}
	}
	for {
		select {
		case <-m.stop:
			return
		case <-m.echo:
			step = 0
			echo.Reset(echoDelays[0])
		case <-echo.C:
			republish("echo")
			if step++; step < len(echoDelays) {
				echo.Reset(echoDelays[step] - echoDelays[step-1])
			}
		case <-periodic.C:
			republish("periodic")
		}
	}
}

// isBroadcastTimeout reports whether err is UpdateNode's "timeout waiting
// for update broadcast". memberlist returns it as a plain fmt error, so the
// text is all there is to go by.
func isBroadcastTimeout(err error) bool {
	return strings.Contains(err.Error(), "timeout waiting for update broadcast")
}

// Record returns this node's current record.
func (m *Membership) Record() Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.record
}

// Members returns every member this node knows, itself included, sorted by
// name: live ones, dead ones still within their reservation, and none that left.
// The slice is the caller's.
func (m *Membership) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.members))
	for _, mem := range m.members {
		out = append(out, *mem)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// NumAlive returns how many members, itself included, memberlist sees alive.
func (m *Membership) NumAlive() int { return m.list.NumMembers() }

// Leave tells the cluster this node is leaving for good, so peers drop it at
// once, and waits up to timeout for the message to spread. Call Shutdown after.
func (m *Membership) Leave(timeout time.Duration) error {
	// Tell every live member first, over TCP, that the coming death notice is a
	// leave: memberlist's own notice does not say so.
	intent := encodeLeaveIntent(m.cfg.NodeName)
	for _, n := range m.list.Members() {
		if n.Name == m.cfg.NodeName {
			continue
		}
		if err := m.list.SendReliable(n, intent); err != nil {
			m.log.Warn("send leave intent", "node", n.Name, "err", err)
		}
	}
	if err := m.list.Leave(timeout); err != nil {
		return fmt.Errorf("leave cluster: %w", err)
	}
	return nil
}

// Shutdown stops memberlist without telling anyone: peers will see this node
// die, and it keeps its place (and subnet) when it comes back. Idempotent.
func (m *Membership) Shutdown() error {
	var err error
	m.closed.Do(func() {
		m.sendMu.Lock()
		close(m.stop)
		m.sendMu.Unlock()
		err = m.list.Shutdown()
		m.done.Wait()
		m.sends.Wait()
		select {
		case <-m.store.dirty:
			if m.cfg.StorePath == "" {
				break
			}
			if serr := m.saveSnapshot(); serr != nil {
				m.log.Error("save store snapshot", "err", serr)
				err = errors.Join(err, serr)
			}
		default:
		}
		close(m.events)
	})
	if err != nil {
		return fmt.Errorf("shutdown memberlist: %w", err)
	}
	return nil
}

// pump moves queued events to the Events channel in order.
func (m *Membership) pump() {
	defer m.done.Done()
	for {
		m.mu.Lock()
		var ev Event
		have := len(m.queue) > 0
		if have {
			ev = m.queue[0]
			m.queue = m.queue[1:]
		}
		m.mu.Unlock()
		if !have {
			select {
			case <-m.wake:
				continue
			case <-m.stop:
				return
			}
		}
		select {
		case m.events <- ev:
		case <-m.stop:
			return
		}
	}
}

// emitLocked queues an event and recounts the live members (every change
// to the member table comes with an event); the caller holds m.mu.
func (m *Membership) emitLocked(ev Event) {
	alive := 0
	for _, mem := range m.members {
		if mem.State == StateAlive {
			alive++
		}
	}
	m.alive.Store(int64(max(alive, 1)))
	m.queue = append(m.queue, ev)
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// reconnectLoop asks one random dead member to re-join now and then, so a
// partition that lasted longer than memberlist's gossip-to-the-dead time
// still heals, and forgets dead members after their reservation.
func (m *Membership) reconnectLoop() {
	defer m.done.Done()
	for {
		wait := m.cfg.ReconnectInterval/2 + rand.N(m.cfg.ReconnectInterval)
		select {
		case <-m.stop:
			return
		case <-time.After(wait):
		}
		now := m.cfg.Now()
		var dead []Member
		m.mu.Lock()
		for name, mem := range m.members {
			if mem.State != StateDead {
				continue
			}
			if now.Sub(mem.Since) > m.cfg.DeadReservation {
				delete(m.members, name)
				m.emitLocked(Event{Kind: EventReaped, Node: name, Addr: mem.Addr, Record: mem.Record})
				m.log.Info("dead member forgotten", "node", name, "dead_since", mem.Since)
				continue
			}
			dead = append(dead, *mem)
		}
		m.mu.Unlock()
		if len(dead) == 0 {
			continue
		}
		target := dead[rand.N(len(dead))]
		if n, err := m.list.Join([]string{target.Addr.String()}); n > 0 {
			m.log.Info("reconnected to dead member", "node", target.Name, "addr", target.Addr)
		} else {
			m.log.Debug("reconnect failed", "node", target.Name, "addr", target.Addr, "err", err)
		}
	}
}
