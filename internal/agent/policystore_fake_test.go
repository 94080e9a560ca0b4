package agent

import (
	"slices"
	"strconv"
	"strings"
	"sync"
)

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
	s.entries[kind][key] = storeEntry{Key: key, Value: slices.Clone(value), Version: strconv.FormatUint(s.rev, 10), Writer: "fake"}
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
