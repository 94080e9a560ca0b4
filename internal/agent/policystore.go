package agent

import (
	"errors"
	"fmt"
	"time"

	"github.com/weft-net/weft/gossip"
)

// storeKind is the kind of a replicated store entry (gossip's StoreKind;
// the engine's tests run on a fake store without gossip).
type storeKind uint8

const (
	// kindPolicy entries hold one policy resource each, key
	// "<Kind>/<namespace>/<name>".
	kindPolicy = storeKind(gossip.StorePolicy)
	// kindEndpoint entries hold one endpoint each, key "<node>/<name>";
	// only that node writes them.
	kindEndpoint = storeKind(gossip.StoreEndpoint)
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
	// Writer is the node that wrote the entry, Written when (its clock).
	Writer  string
	Written time.Time
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

// gossipStore is the policyStore of gossip's replicated store.
type gossipStore struct{ m *gossip.Membership }

var _ policyStore = gossipStore{}

func (g gossipStore) Put(kind storeKind, key string, value []byte) error {
	_, err := g.m.Put(gossip.StoreKind(kind), key, value)
	return err
}

func (g gossipStore) Delete(kind storeKind, key string) error {
	_, err := g.m.Delete(gossip.StoreKind(kind), key)
	if errors.Is(err, gossip.ErrNotFound) {
		return fmt.Errorf("%w: %w", errStoreNotFound, err)
	}
	return err
}

func (g gossipStore) Get(kind storeKind, key string) (storeEntry, bool) {
	e, ok := g.m.Get(gossip.StoreKind(kind), key)
	return toStoreEntry(e), ok
}

func (g gossipStore) List(kind storeKind) []storeEntry {
	es := g.m.List(gossip.StoreKind(kind))
	out := make([]storeEntry, len(es))
	for i, e := range es {
		out[i] = toStoreEntry(e)
	}
	return out
}

func (g gossipStore) Changed() <-chan struct{} { return g.m.StoreChanged() }
func (g gossipStore) Revision() uint64         { return g.m.StoreRevision() }

func toStoreEntry(e gossip.StoreEntry) storeEntry {
	return storeEntry{Key: e.Key, Value: e.Value, Version: e.Version.String(), Writer: e.Version.Node, Written: time.UnixMilli(e.Version.Wall)}
}

// validateGossipEntry is gossip's Config.ValidateEntry: live entries must
// decode as what their kind holds; tombstones carry nothing to check.
func validateGossipEntry(e gossip.StoreEntry) error {
	if e.Deleted {
		return nil
	}
	return validateStoreEntry(storeKind(e.Kind), e.Key, e.Value)
}
