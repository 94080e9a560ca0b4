package gossip

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/memberlist"
)

// delegate is memberlist's view of a Membership. memberlist calls its methods
// from its own goroutines, some while holding its node lock: they must not
// block and must not call back into memberlist.
type delegate struct {
	m *Membership
}

var (
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.EventDelegate = (*delegate)(nil)
	_ memberlist.AliveDelegate = (*delegate)(nil)
	_ memberlist.MergeDelegate = (*delegate)(nil)
)

// NodeMeta returns this node's encoded record.
func (d *delegate) NodeMeta(limit int) []byte {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	if len(d.m.meta) > limit {
		// Encode already refuses records over MaxRecordSize; this guards a smaller limit.
		d.m.log.Error("own record too large for memberlist", "size", len(d.m.meta), "limit", limit)
		return nil
	}
	return append([]byte(nil), d.m.meta...)
}

// NotifyMsg receives user messages, by gossip or over TCP. The first byte
// says what they are (see store_wire.go): a leave intent or a store entry.
// Anything else is logged and ignored. memberlist may reuse b afterwards:
// nothing here retains it.
func (d *delegate) NotifyMsg(b []byte) {
	if len(b) == 0 {
		d.m.log.Warn("malformed gossip message ignored", "size", 0)
		return
	}
	switch b[0] {
	case msgLeaveIntent:
		d.leaveIntent(b)
	case msgStoreEntry:
		d.m.receiveStoreMessage(b[1:])
	default:
		d.m.log.Warn("malformed gossip message ignored", "size", len(b), "type", b[0])
	}
}

func (d *delegate) leaveIntent(b []byte) {
	node, ok := decodeLeaveIntent(b)
	if !ok {
		d.m.log.Warn("malformed gossip message ignored", "size", len(b), "type", b[0])
		return
	}
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	mem, known := d.m.members[node]
	switch {
	case !known:
	case mem.State == StateDead:
		// The dead notice overtook the intent: the node left after all.
		d.dropLocked(mem)
	default:
		d.m.leaving[node] = true
	}
}

// GetBroadcasts hands memberlist the store entries queued for gossip (the
// node record travels as metadata).
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.m.bcast.GetBroadcasts(overhead, limit)
}

// LocalState sends the dead members this node keeps, so that the peer
// reserves their subnets too (see reservation.go), and the whole store,
// tombstones included, in one envelope (see store_wire.go).
func (d *delegate) LocalState(join bool) []byte {
	d.m.mu.Lock()
	rs := d.m.localReservationsLocked(d.m.cfg.Now())
	d.m.mu.Unlock()
	b, err := encodeState(rs, d.m.store.all())
	if err != nil {
		d.m.log.Error("encode push/pull state", "err", err)
		return nil
	}
	return b
}

// MergeRemoteState learns the dead members a peer keeps and merges its
// store. A state that does not decode is refused whole.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	st, err := decodeState(buf)
	if err != nil {
		d.m.log.Warn("peer state refused", "size", len(buf), "err", err)
		return
	}
	d.m.mu.Lock()
	d.m.mergeReservationsLocked(st.Reservations, d.m.cfg.Now())
	d.m.mu.Unlock()
	d.m.mergeStoreState(st.Store)
}

// check decodes and validates a peer's record and checks its cluster.
func (d *delegate) check(n *memberlist.Node) (Record, error) {
	r, err := DecodeRecord(n.Meta)
	if err != nil {
		return Record{}, err
	}
	if r.Cluster != d.m.cfg.ClusterName {
		return Record{}, fmt.Errorf("record field cluster: %q, want %q", r.Cluster, d.m.cfg.ClusterName)
	}
	return r, nil
}

// refuseLocked logs a refused record once per distinct error; the caller holds m.mu.
func (d *delegate) refuseLocked(node string, addr netip.AddrPort, err error) {
	if d.m.refused[node] == err.Error() {
		return
	}
	d.m.refused[node] = err.Error()
	d.m.log.Warn("node record refused", "node", node, "addr", addr, "err", err)
}

// NotifyAlive refuses nodes whose record is malformed or of another cluster:
// memberlist then ignores the alive message, so a bad record never enters the
// member table and a live node's bad update leaves its last good record in force.
func (d *delegate) NotifyAlive(n *memberlist.Node) error {
	if n.Name == d.m.cfg.NodeName {
		return nil
	}
	if _, err := d.check(n); err != nil {
		d.m.mu.Lock()
		d.refuseLocked(n.Name, addrOf(n), err)
		d.m.mu.Unlock()
		return err
	}
	return nil
}

// NotifyMerge refuses to merge with a cluster any of whose members is not ours.
func (d *delegate) NotifyMerge(peers []*memberlist.Node) error {
	var errs []error
	for _, n := range peers {
		if n.Name == d.m.cfg.NodeName {
			continue
		}
		if _, err := d.check(n); err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", n.Name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		d.m.log.Warn("merge refused", "err", err)
		return err
	}
	return nil
}

// NotifyJoin records a new (or returning) member.
func (d *delegate) NotifyJoin(n *memberlist.Node) { d.upsert(n, EventJoined) }

// NotifyUpdate records a member's new record.
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.upsert(n, EventUpdated) }

func (d *delegate) upsert(n *memberlist.Node, kind EventKind) {
	local := n.Name == d.m.cfg.NodeName
	var r Record
	var err error
	if local {
		d.m.mu.Lock()
		r = d.m.record
		d.m.mu.Unlock()
	} else {
		r, err = d.check(n)
	}
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	if err != nil {
		d.refuseLocked(n.Name, addrOf(n), err)
		return
	}
	delete(d.m.refused, n.Name)
	if kind == EventJoined {
		delete(d.m.leaving, n.Name)
		delete(d.m.left, n.Name)
	}
	now := d.m.cfg.Now()
	mem, ok := d.m.members[n.Name]
	if !ok {
		mem = &Member{Name: n.Name, Local: local}
		d.m.members[n.Name] = mem
	}
	if kind == EventJoined || mem.State != StateAlive {
		kind = EventJoined
		mem.State, mem.Since = StateAlive, now
		d.m.log.Info("member joined", "node", n.Name, "addr", addrOf(n))
	} else {
		d.m.log.Debug("member updated", "node", n.Name)
	}
	mem.Addr, mem.Record = addrOf(n), r
	d.m.emitLocked(Event{Kind: kind, Node: n.Name, Addr: mem.Addr, Record: r})
}

// NotifyLeave marks a member dead, or drops it when it left on purpose.
func (d *delegate) NotifyLeave(n *memberlist.Node) {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	mem, ok := d.m.members[n.Name]
	if !ok {
		return
	}
	// memberlist does not tell a leave from a death here (the Node's State
	// field is never set): the leave intent, sent before leaving, does.
	if d.m.leaving[n.Name] {
		d.dropLocked(mem)
		return
	}
	mem.State, mem.Since = StateDead, d.m.cfg.Now()
	d.m.log.Info("member dead", "node", n.Name)
	d.m.emitLocked(Event{Kind: EventDead, Node: n.Name, Addr: mem.Addr, Record: mem.Record})
}

func addrOf(n *memberlist.Node) netip.AddrPort {
	a, _ := netip.AddrFromSlice(n.Addr)
	return netip.AddrPortFrom(a.Unmap(), n.Port)
}

// dropLocked removes a member that left; the caller holds m.mu.
func (d *delegate) dropLocked(mem *Member) {
	delete(d.m.members, mem.Name)
	delete(d.m.leaving, mem.Name)
	d.m.left[mem.Name] = d.m.cfg.Now()
	d.m.log.Info("member left", "node", mem.Name)
	d.m.emitLocked(Event{Kind: EventLeft, Node: mem.Name, Addr: mem.Addr, Record: mem.Record})
}

// encodeLeaveIntent returns a leave intent message: the type 'L', then the node name.
func encodeLeaveIntent(node string) []byte { return append([]byte{msgLeaveIntent}, node...) }

// decodeLeaveIntent reads a leave intent: 'L', then a node name of 1..255
// bytes of UTF-8 without control characters.
func decodeLeaveIntent(b []byte) (string, bool) {
	if len(b) < 2 || len(b) > 1+255 || b[0] != msgLeaveIntent {
		return "", false
	}
	name := string(b[1:])
	if !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl) {
		return "", false
	}
	return name, true
}
