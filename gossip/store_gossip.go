package gossip

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
)

// The store's side of Membership: the public API, and the way entries
// travel. A local write is applied, then queued in memberlist's broadcast
// queue (piggybacked on gossip and probe packets, retransmitted
// RetransmitMult*log(N+1) times, an older queued write of the same key
// replaced by the newer); a node that applies a broadcast entry queues it
// again, so that it spreads as an epidemic. An entry too big for a gossip
// packet is sent over TCP (SendReliable) to every live member instead.
// Whatever a node misses, push/pull repairs: the whole store travels in
// LocalState and MergeRemoteState on join and every PushPullInterval.

// errClosed is returned by store writes after Shutdown.
var errClosed = errors.New("membership shut down")

// Put writes value under key as this node, applies it locally and spreads
// it. value is copied; it may be empty, not larger than MaxStoreValueSize.
// The key must have its kind's shape (see StoreKind), and an endpoint key
// must name this node. Config.ValidateEntry, if set, sees the entry first.
// Errors name the field and value and change nothing. Put does not block
// on the network; it returns the entry as written, with its version. A
// value equal to the live one is not written again (no new version, no
// broadcast, no change signalled): Put returns the entry in force, so
// applying the same thing twice is idempotent.
func (m *Membership) Put(kind StoreKind, key string, value []byte) (StoreEntry, error) {
	if m.isClosed() {
		return StoreEntry{}, fmt.Errorf("put %s %s: %w", kind, key, errClosed)
	}
	e, _, err := m.store.put(kind, key, value)
	if err != nil {
		return StoreEntry{}, err
	}
	return e, nil
}

// Delete replaces the live entry under key by a tombstone written by this
// node, and spreads it. A key without a live entry is an error wrapping
// ErrNotFound; an endpoint of another node is refused. It does not block on
// the network and returns the tombstone.
func (m *Membership) Delete(kind StoreKind, key string) (StoreEntry, error) {
	if m.isClosed() {
		return StoreEntry{}, fmt.Errorf("delete %s %s: %w", kind, key, errClosed)
	}
	e, err := m.store.del(kind, key)
	if err != nil {
		return StoreEntry{}, err
	}
	return e, nil
}

// Get returns the live entry under key; tombstones are not returned. The
// entry is a copy.
func (m *Membership) Get(kind StoreKind, key string) (StoreEntry, bool) {
	return m.store.get(kind, key)
}

// List returns the live entries of kind sorted by key, as copies.
func (m *Membership) List(kind StoreKind) []StoreEntry { return m.store.list(kind) }

// StoreChanged returns a channel that receives a value after the store
// changed (a local write, or an entry from a peer that won). Signals
// coalesce (capacity 1): on a receive, read the whole state again
// (List, StoreRevision). When New loaded entries from the snapshot, a
// signal is already waiting. The channel is never closed.
func (m *Membership) StoreChanged() <-chan struct{} { return m.store.changed }

// StoreRevision returns a counter that grows by one with every change
// applied to the store, local or remote, tombstones included. It starts at
// the number of entries loaded from the snapshot.
func (m *Membership) StoreRevision() uint64 { return m.store.rev.Load() }

func (m *Membership) isClosed() bool {
	select {
	case <-m.stop:
		return true
	default:
		return false
	}
}

// storeBroadcast is one entry in memberlist's broadcast queue. Its name is
// the entry's kind and key, so a newer write of the key replaces an older
// one still queued.
type storeBroadcast struct {
	name string
	msg  []byte
}

var _ memberlist.NamedBroadcast = (*storeBroadcast)(nil)

func (b *storeBroadcast) Name() string    { return b.name }
func (b *storeBroadcast) Message() []byte { return b.msg }
func (b *storeBroadcast) Finished()       {}
func (b *storeBroadcast) Invalidates(o memberlist.Broadcast) bool {
	nb, ok := o.(memberlist.NamedBroadcast)
	return ok && nb.Name() == b.name
}

func broadcastName(e StoreEntry) string { return "store/" + strconv.Itoa(int(e.Kind)) + "/" + e.Key }

// broadcastLimit returns the largest user message that fits in one gossip
// packet with this configuration: memberlist gives GetBroadcasts
// UDPBufferSize less its compound header (2), the label (2+len), the
// encryption overhead (45 bytes for version 0, 29 for 1: take the larger),
// the compound entry overhead (2) and the user message type byte (1).
func broadcastLimit(mc *memberlist.Config) int {
	limit := mc.UDPBufferSize - 2 - 2 - 2 - 1
	if mc.Label != "" {
		limit -= 2 + len(mc.Label)
	}
	if mc.Keyring != nil {
		limit -= 45
	}
	return limit
}

// publish spreads an entry written here (local) or newly learned by
// gossip: through the broadcast queue when it fits a gossip packet, else,
// for a local write, over TCP to every live member in the background. An
// entry that came over TCP because it is too big for gossip was sent to
// everyone already: it is not passed on. The store calls it with its lock
// held: it must not block.
func (m *Membership) publish(e StoreEntry, local bool) {
	msg := encodeStoreMessage(e)
	switch {
	case len(msg) <= m.bcastLimit:
		m.bcast.QueueBroadcast(&storeBroadcast{name: broadcastName(e), msg: msg})
	case local:
		m.sendAll(e, msg)
	}
}

// sendAll sends msg over TCP to every live member but this one, from a
// goroutine per write (SendReliable dials and may take a while); Shutdown
// waits for them. A member that misses it gets it by push/pull.
func (m *Membership) sendAll(e StoreEntry, msg []byte) {
	m.sendMu.Lock()
	defer m.sendMu.Unlock()
	if m.isClosed() {
		return
	}
	m.sends.Add(1)
	go func() {
		defer m.sends.Done()
		var failed int
		for _, n := range m.list.Members() {
			if n.Name == m.cfg.NodeName || m.isClosed() {
				continue
			}
			if err := m.list.SendReliable(n, msg); err != nil {
				failed++
				m.log.Warn("send store entry", "node", n.Name, "kind", e.Kind.String(), "key", e.Key, "size", len(msg), "err", err)
			}
		}
		m.log.Debug("store entry sent over tcp", "kind", e.Kind.String(), "key", e.Key, "size", len(msg), "failed", failed)
	}()
}

// receiveStoreMessage handles a message of type 'S' (b without the type
// byte). It runs on memberlist's goroutine: it must not block.
func (m *Membership) receiveStoreMessage(b []byte) {
	e, err := decodeStoreMessage(b)
	if err != nil {
		m.log.Warn("malformed store message ignored", "size", len(b)+1, "err", err)
		return
	}
	// Applied entries are passed on, as an epidemic (see publish).
	for _, a := range m.store.merge([]StoreEntry{e}, "gossip", true) {
		m.log.Debug("store entry applied", "kind", a.Kind.String(), "key", a.Key, "version", a.Version.String(), "deleted", a.Deleted)
	}
}

// mergeStoreState applies the store section of a peer's push/pull state.
func (m *Membership) mergeStoreState(entries []StoreEntry) {
	if applied := m.store.merge(entries, "push/pull", false); len(applied) > 0 {
		m.log.Info("store entries learned by push/pull", "count", len(applied), "received", len(entries))
	}
}

// purgeLoop drops expired tombstones now and then.
func (m *Membership) purgeLoop() {
	defer m.done.Done()
	every := min(max(m.cfg.TombstoneTTL/4, 10*time.Millisecond), time.Minute)
	for {
		select {
		case <-m.stop:
			return
		case <-time.After(every/2 + rand.N(every)):
		}
		if n := m.store.purge(); n > 0 {
			m.log.Debug("store tombstones purged", "count", n)
		}
	}
}
