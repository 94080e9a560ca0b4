package agent

import (
	"errors"
	"github.com/weft-net/weft/gossip"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// storeKind is the kind of a replicated store entry; the values are
// gossip's StoreKind values.
type storeKind uint8

const (
	// kindPolicy entries hold one policy resource each, key
	// "<Kind>/<namespace>/<name>".
	kindPolicy storeKind = 1
	// kindEndpoint entries hold one endpoint each, key "<node>/<name>";
	// only that node writes them.
	kindEndpoint storeKind = 2
)

// errStoreNotFound is what policyStore.Delete returns for a key it does
// not hold.
var errStoreNotFound = errors.New("not in the store")

// storeEntry is a live entry of the replicated store.
type storeEntry struct {
	Key   string
	Value []byte
	// Version is the entry's version as text (gossip's hybrid logical clock).
	Version string
}

// policyStore is what the policy engine needs of the replicated store
// (gossip.Membership's store). All methods are safe for concurrent use
// and do not block on the network: writes are local and gossiped after.
type policyStore interface {
	// Put writes value at key; it returns once the local store holds it.
	Put(kind storeKind, key string, value []byte) error
	// Delete removes key, or returns an error wrapping errStoreNotFound.
	Delete(kind storeKind, key string) error
	// Get returns the live entry at key.
	Get(kind storeKind, key string) (storeEntry, bool)
	// List returns the live entries of kind, sorted by key.
	List(kind storeKind) []storeEntry
	// Changed receives after any change, local or remote; several changes
	// may coalesce into one receive.
	Changed() <-chan struct{}
	// Revision grows with every change the local store takes.
	Revision() uint64
}

// memStore is a policyStore in memory, for one agent alone (tests, and an
// agent whose gossip layer has no store).
type memStore struct {
	mu      sync.Mutex
	entries map[storeKind]map[string]storeEntry
	rev     uint64
	changed chan struct{}
}

var _ policyStore = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{entries: map[storeKind]map[string]storeEntry{}, changed: make(chan struct{}, 1)}
}

func (s *memStore) Put(kind storeKind, key string, value []byte) error {
	s.mu.Lock()
	if s.entries[kind] == nil {
		s.entries[kind] = map[string]storeEntry{}
	}
	s.rev++
	s.entries[kind][key] = storeEntry{Key: key, Value: slices.Clone(value), Version: strconv.FormatUint(s.rev, 10)}
	s.mu.Unlock()
	s.notify()
	return nil
}

func (s *memStore) Delete(kind storeKind, key string) error {
	s.mu.Lock()
	if _, ok := s.entries[kind][key]; !ok {
		s.mu.Unlock()
		return errStoreNotFound
	}
	delete(s.entries[kind], key)
	s.rev++
	s.mu.Unlock()
	s.notify()
	return nil
}

func (s *memStore) Get(kind storeKind, key string) (storeEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[kind][key]
	return e, ok
}

func (s *memStore) List(kind storeKind) []storeEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]storeEntry, 0, len(s.entries[kind]))
	for _, e := range s.entries[kind] {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b storeEntry) int { return strings.Compare(a.Key, b.Key) })
	return out
}

func (s *memStore) Changed() <-chan struct{} { return s.changed }

func (s *memStore) Revision() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rev
}

func (s *memStore) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// newPolicyStore returns the store the policy engine uses.
// TODO(wire): the replicated store of gossip (#9) once it lands; until
// then each agent keeps its own in memory.
func (a *Agent) newPolicyStore(ml *gossip.Membership) policyStore {
	return newMemStore()
}
