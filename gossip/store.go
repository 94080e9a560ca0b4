package gossip

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
)

// The replicated store: versioned records of policies and endpoints that
// every node holds in full. A write is applied locally, then spread by
// memberlist's broadcast queue (or sent over TCP to every live member when
// it is too big for a gossip packet); push/pull carries the whole store for
// anti-entropy. Conflicts are settled by last writer wins on a hybrid
// logical clock, deletions are tombstones kept for Config.TombstoneTTL.
//
// Trade-off of the tombstone TTL: a node that was away (partitioned, or off
// with its snapshot) for longer than the TTL still holds keys that the
// others deleted and purged; when it comes back, its copies are newer than
// anything the others know about those keys, so they come back to life.
// Calico and etcd avoid this with a central, linearisable store; weft has
// none, so keep the TTL longer than any outage you expect (default 24 h)
// and re-apply the policies after a longer one.

// StoreKind says what a store entry holds; each kind is its own key space.
type StoreKind uint8

// Store kinds.
const (
	// StorePolicy is any policy resource: key "<Kind>/<namespace>/<name>",
	// the namespace empty for global resources. Any node may write it.
	StorePolicy StoreKind = 1
	// StoreEndpoint is a workload endpoint: key "<node>/<name>". Only node
	// <node> may write it; entries from other writers are refused.
	StoreEndpoint StoreKind = 2
)

// String returns "policy", "endpoint" or the number.
func (k StoreKind) String() string {
	switch k {
	case StorePolicy:
		return "policy"
	case StoreEndpoint:
		return "endpoint"
	}
	return strconv.Itoa(int(k))
}

// Store limits, checked on local writes and on every entry received.
const (
	MaxStoreKeyLength = 253       // bytes of a key
	MaxStoreValueSize = 64 << 10  // bytes of a value
	MaxStoreNodeName  = 255       // bytes of HLC.Node (a memberlist node name)
	MaxStoreSize      = 16 << 20  // bytes of all entries encoded: push/pull carries the whole store, and memberlist refuses states over 20 MiB
	MaxClockSkew      = time.Hour // a remote entry whose Wall is further ahead of the local clock is refused
)

// ErrNotFound is returned, wrapped, by Delete for a key that has no live
// entry; test for it with errors.Is.
var ErrNotFound = errors.New("not found")

// ErrStoreFull is returned, wrapped, by Put when the store would grow past MaxStoreSize.
var ErrStoreFull = errors.New("store full")

// HLC is a hybrid logical clock reading: the writer's wall clock in unix
// milliseconds, a counter that orders writes within one millisecond (or
// while the wall clock lags a time seen from a peer), and the writer's node
// name, which breaks ties between nodes. Readings are totally ordered by
// Wall, then Logical, then Node (see Compare).
type HLC struct {
	Wall    int64  `json:"wall"`
	Logical uint32 `json:"logical"`
	Node    string `json:"node"`
}

// Compare returns -1, 0 or +1 as h is before, equal to or after o, by
// Wall, then Logical, then Node (byte-wise).
func (h HLC) Compare(o HLC) int {
	return cmp.Or(cmp.Compare(h.Wall, o.Wall), cmp.Compare(h.Logical, o.Logical), strings.Compare(h.Node, o.Node))
}

// String formats h as WALL.LOGICAL@NODE.
func (h HLC) String() string { return fmt.Sprintf("%d.%d@%s", h.Wall, h.Logical, h.Node) }

// StoreEntry is one versioned record. Deleted entries are tombstones: they
// carry no Value and win over older writes until they are purged.
type StoreEntry struct {
	Kind    StoreKind `json:"kind"`
	Key     string    `json:"key"`
	Value   []byte    `json:"value,omitempty"`
	Version HLC       `json:"version"`
	Deleted bool      `json:"deleted,omitempty"`
}

// newer reports whether e wins over o under last writer wins: the later
// version; for equal versions (only possible when a node's clock went back
// and it lost its snapshot) tombstones win, then the greater value, so that
// every node picks the same winner whatever the order it sees them in.
func (e StoreEntry) newer(o StoreEntry) bool {
	if c := e.Version.Compare(o.Version); c != 0 {
		return c > 0
	}
	if e.Deleted != o.Deleted {
		return e.Deleted
	}
	return bytes.Compare(e.Value, o.Value) > 0
}

// EntryError is the error about one field of a store entry. Field is kind,
// key, value or version (with a sub-field), Value the offending value as
// text, Reason what is wrong.
type EntryError struct {
	Field, Value, Reason string
}

// Error formats e as `store entry field FIELD: "VALUE": REASON`.
func (e *EntryError) Error() string {
	return fmt.Sprintf("store entry field %s: %q: %s", e.Field, e.Value, e.Reason)
}

func entryErr(field, value, reason string, args ...any) error {
	return &EntryError{Field: field, Value: value, Reason: fmt.Sprintf(reason, args...)}
}

// validateKey checks a key's shape for its kind.
func validateKey(kind StoreKind, key string) error {
	switch {
	case kind != StorePolicy && kind != StoreEndpoint:
		return entryErr("kind", strconv.Itoa(int(kind)), "unknown kind, want 1 (policy) or 2 (endpoint)")
	case key == "":
		return entryErr("key", key, "empty")
	case len(key) > MaxStoreKeyLength:
		return entryErr("key", key[:32]+"...", "%d bytes, at most %d", len(key), MaxStoreKeyLength)
	case !utf8.ValidString(key):
		return entryErr("key", key, "not valid UTF-8")
	case strings.IndexFunc(key, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0:
		return entryErr("key", key, "contains white space or a control character")
	}
	parts := strings.Split(key, "/")
	switch kind {
	case StorePolicy:
		if len(parts) != 3 || parts[0] == "" || parts[2] == "" {
			return entryErr("key", key, "a policy key is <Kind>/<namespace>/<name> (namespace empty for global resources)")
		}
	case StoreEndpoint:
		if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
			return entryErr("key", key, "an endpoint key is <node>/<name>")
		}
	}
	return nil
}

// endpointNode returns the node part of an endpoint key.
func endpointNode(key string) string {
	node, _, _ := strings.Cut(key, "/")
	return node
}

// validateEntry checks everything about e that does not depend on the
// local node or clock: kind, key, value, version, and that an endpoint
// was written by its own node.
func validateEntry(e StoreEntry) error {
	if err := validateKey(e.Kind, e.Key); err != nil {
		return err
	}
	switch {
	case len(e.Value) > MaxStoreValueSize:
		return entryErr("value", fmt.Sprintf("%d bytes", len(e.Value)), "at most %d bytes", MaxStoreValueSize)
	case e.Deleted && len(e.Value) != 0:
		return entryErr("value", fmt.Sprintf("%d bytes", len(e.Value)), "a tombstone (deleted) carries no value")
	case e.Version.Wall <= 0:
		return entryErr("version.wall", strconv.FormatInt(e.Version.Wall, 10), "not after 1970")
	case e.Version.Node == "" || len(e.Version.Node) > MaxStoreNodeName:
		return entryErr("version.node", e.Version.Node, "length %d, want 1..%d", len(e.Version.Node), MaxStoreNodeName)
	case e.Kind == StoreEndpoint && endpointNode(e.Key) != e.Version.Node:
		return entryErr("version.node", e.Version.Node, "endpoint %s may be written only by node %s", e.Key, endpointNode(e.Key))
	}
	return nil
}

// storeID identifies an entry: its kind and key.
type storeID struct {
	kind StoreKind
	key  string
}

func idOf(e StoreEntry) storeID { return storeID{e.Kind, e.Key} }

// compareEntries orders entries by kind, then key.
func compareEntries(a, b StoreEntry) int {
	return cmp.Or(cmp.Compare(a.Kind, b.Kind), strings.Compare(a.Key, b.Key))
}

// maxRefusedLogged bounds the memory of refusals already logged.
const maxRefusedLogged = 4096

// store is the replicated store's state on one node, without the network:
// the Membership feeds it local writes and remote entries, and spreads
// what it returns. Its methods are safe for concurrent use; none blocks
// for long, and none calls the validator while holding mu.
type store struct {
	self     string
	ttl      time.Duration
	now      func() time.Time
	validate func(StoreEntry) error // nil: everything valid
	log      *slog.Logger
	// publish, if set, spreads an entry that was just applied: written
	// here (local) or received by gossip and to be passed on. It is called
	// with mu held, so that the order in which entries of one key are
	// queued is the order in which they won; it must not block or call
	// back into the store.
	publish func(e StoreEntry, local bool)

	mu      sync.Mutex
	entries map[storeID]StoreEntry
	size    int // sum of entrySize over entries
	clock   HLC // the latest reading issued or seen; Node unused
	refused map[storeID]HLC

	rev     atomic.Uint64
	changed chan struct{} // to the consumer, cap 1
	dirty   chan struct{} // to the snapshot saver, cap 1
}

func newStore(self string, ttl time.Duration, now func() time.Time, validate func(StoreEntry) error, log *slog.Logger) *store {
	return &store{
		self: self, ttl: ttl, now: now, validate: validate, log: log,
		entries: map[storeID]StoreEntry{},
		refused: map[storeID]HLC{},
		changed: make(chan struct{}, 1),
		dirty:   make(chan struct{}, 1),
	}
}

// tickLocked returns a new reading for a local write: the wall clock if it
// is ahead of every reading issued or seen, else the latest reading plus one
// logical tick. The caller holds mu.
func (s *store) tickLocked() HLC {
	wall := s.now().UnixMilli()
	switch {
	case wall > s.clock.Wall:
		s.clock = HLC{Wall: wall}
	case s.clock.Logical == ^uint32(0):
		s.clock = HLC{Wall: s.clock.Wall + 1} // 4 billion writes in one millisecond: borrow the next one
	default:
		s.clock.Logical++
	}
	return HLC{Wall: s.clock.Wall, Logical: s.clock.Logical, Node: s.self}
}

// observeLocked advances the clock to a reading seen from a peer, so that
// the next local write is after it. The caller holds mu.
func (s *store) observeLocked(v HLC) {
	if v.Wall > s.clock.Wall || v.Wall == s.clock.Wall && v.Logical > s.clock.Logical {
		s.clock = HLC{Wall: v.Wall, Logical: v.Logical}
	}
}

// put writes value under key as this node and reports whether it wrote:
// a value equal to the live one is not written again, and the entry in
// force is returned. The value is copied.
func (s *store) put(kind StoreKind, key string, value []byte) (StoreEntry, bool, error) {
	e := StoreEntry{Kind: kind, Key: key, Value: bytes.Clone(value)}
	if e.Value == nil {
		e.Value = []byte{}
	}
	if err := validateKey(kind, key); err != nil {
		return StoreEntry{}, false, fmt.Errorf("put %s %s: %w", kind, key, err)
	}
	if kind == StoreEndpoint && endpointNode(key) != s.self {
		return StoreEntry{}, false, fmt.Errorf("put %s %s: %w", kind, key,
			entryErr("key", key, "endpoint of node %s, this node is %s: an endpoint is written only by its own node", endpointNode(key), s.self))
	}
	s.mu.Lock()
	if old, ok := s.entries[idOf(e)]; ok && !old.Deleted && bytes.Equal(old.Value, e.Value) {
		s.mu.Unlock()
		old.Value = bytes.Clone(old.Value)
		return old, false, nil
	}
	e.Version = s.tickLocked()
	s.mu.Unlock()
	if err := validateEntry(e); err != nil {
		return StoreEntry{}, false, fmt.Errorf("put %s %s: %w", kind, key, err)
	}
	if s.validate != nil {
		if err := s.validate(e); err != nil {
			return StoreEntry{}, false, fmt.Errorf("put %s %s: refused by validator: %w", kind, key, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.entries[idOf(e)]
	if grow := entrySize(e) - entrySize(old); s.size+grow > MaxStoreSize {
		return StoreEntry{}, false, fmt.Errorf("put %s %s: %w: %d bytes in use, this entry takes %d, limit %d",
			kind, key, ErrStoreFull, s.size, entrySize(e), MaxStoreSize)
	}
	// It loses only to a newer write that arrived meanwhile, which is
	// then the one in force and spread by its writer.
	wrote := s.applyLocked(e)
	if wrote && s.publish != nil {
		s.publish(e, true)
	}
	return e, wrote, nil
}

// del writes a tombstone for a live key as this node.
func (s *store) del(kind StoreKind, key string) (StoreEntry, error) {
	if err := validateKey(kind, key); err != nil {
		return StoreEntry{}, fmt.Errorf("delete %s %s: %w", kind, key, err)
	}
	if kind == StoreEndpoint && endpointNode(key) != s.self {
		return StoreEntry{}, fmt.Errorf("delete %s %s: %w", kind, key,
			entryErr("key", key, "endpoint of node %s, this node is %s: an endpoint is deleted only by its own node", endpointNode(key), s.self))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.entries[storeID{kind, key}]; !ok || old.Deleted {
		return StoreEntry{}, fmt.Errorf("delete %s %s: %w", kind, key, ErrNotFound)
	}
	e := StoreEntry{Kind: kind, Key: key, Version: s.tickLocked(), Deleted: true}
	if s.applyLocked(e) && s.publish != nil {
		s.publish(e, true)
	}
	return e, nil
}

// applyLocked stores e if it wins over what is there and reports whether
// it did; e must be valid. The caller holds mu.
func (s *store) applyLocked(e StoreEntry) bool {
	id := idOf(e)
	old, had := s.entries[id]
	if had && !e.newer(old) {
		return false
	}
	s.entries[id] = e
	s.size += entrySize(e) - entrySize(old)
	s.rev.Add(1)
	for _, c := range []chan struct{}{s.changed, s.dirty} {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	return true
}

// merge validates and applies entries received from a peer (from says
// which, for the log) and returns those that changed the store; with relay
// set, it publishes them too. An entry that fails validation, the
// ownership rule, the clock-skew bound or the validator is dropped and
// logged once. The slice is not retained.
func (s *store) merge(in []StoreEntry, from string, relay bool) []StoreEntry {
	now := s.now()
	accepted := make([]StoreEntry, 0, len(in))
	for _, e := range in {
		if err := s.check(e, now); err != nil {
			s.refuse(e, from, err)
			continue
		}
		accepted = append(accepted, e)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var applied []StoreEntry
	for _, e := range accepted {
		s.observeLocked(e.Version)
		if e.Deleted && s.expired(e, now) {
			if _, had := s.entries[idOf(e)]; !had {
				continue // purged here already, or never seen: keep it that way
			}
		}
		if s.applyLocked(e) {
			applied = append(applied, e)
			if relay && s.publish != nil {
				s.publish(e, false)
			}
		}
	}
	return applied
}

// check validates a remote entry, validator included; it does not lock.
func (s *store) check(e StoreEntry, now time.Time) error {
	if err := validateEntry(e); err != nil {
		return err
	}
	if limit := now.Add(MaxClockSkew).UnixMilli(); e.Version.Wall > limit {
		return entryErr("version.wall", strconv.FormatInt(e.Version.Wall, 10),
			"%s ahead of this node's clock, more than the %s allowed", time.Duration(e.Version.Wall-now.UnixMilli())*time.Millisecond, MaxClockSkew)
	}
	if s.validate != nil {
		if err := s.validate(e); err != nil {
			return fmt.Errorf("refused by validator: %w", err)
		}
	}
	return nil
}

// refuse logs a refused entry once per key and version.
func (s *store) refuse(e StoreEntry, from string, err error) {
	s.mu.Lock()
	id := idOf(e)
	if v, ok := s.refused[id]; ok && v == e.Version {
		s.mu.Unlock()
		return
	}
	if len(s.refused) >= maxRefusedLogged {
		clear(s.refused)
	}
	s.refused[id] = e.Version
	s.mu.Unlock()
	s.log.Warn("store entry refused", "kind", e.Kind.String(), "key", e.Key, "version", e.Version.String(), "from", from, "err", err)
}

func (s *store) expired(e StoreEntry, now time.Time) bool {
	return now.Sub(time.UnixMilli(e.Version.Wall)) > s.ttl
}

// purge drops tombstones older than the TTL and returns how many.
func (s *store) purge() int {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, e := range s.entries {
		if e.Deleted && s.expired(e, now) {
			delete(s.entries, id)
			s.size -= entrySize(e)
			n++
		}
	}
	if n > 0 {
		select {
		case s.dirty <- struct{}{}:
		default:
		}
	}
	return n
}

// get returns a copy of the live entry under key.
func (s *store) get(kind StoreKind, key string) (StoreEntry, bool) {
	s.mu.Lock()
	e, ok := s.entries[storeID{kind, key}]
	s.mu.Unlock()
	if !ok || e.Deleted {
		return StoreEntry{}, false
	}
	e.Value = bytes.Clone(e.Value)
	return e, true
}

// list returns copies of the live entries of kind, sorted by key.
func (s *store) list(kind StoreKind) []StoreEntry {
	s.mu.Lock()
	out := make([]StoreEntry, 0, len(s.entries))
	for _, e := range s.entries {
		if e.Kind == kind && !e.Deleted {
			out = append(out, e)
		}
	}
	s.mu.Unlock()
	for i := range out {
		out[i].Value = bytes.Clone(out[i].Value)
	}
	slices.SortFunc(out, compareEntries)
	return out
}

// all returns every entry, tombstones included, sorted by kind and key.
// The values are shared: entries are never modified in place.
func (s *store) all() []StoreEntry {
	s.mu.Lock()
	out := make([]StoreEntry, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, e)
	}
	s.mu.Unlock()
	slices.SortFunc(out, compareEntries)
	return out
}

// load puts entries read from a snapshot into an empty store, as merge
// does (validated, expired tombstones dropped), and returns how many it kept.
func (s *store) load(in []StoreEntry) int {
	applied := s.merge(in, "snapshot", false)
	return len(applied)
}
