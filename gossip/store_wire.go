package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Wire formats of the store, version 1. All integers are minimal uvarints
// unless a size is given; decoders refuse anything else.
//
//	entry   = kind:byte flags:byte keyLen key wall logical nodeLen node [valueLen value]
//	          flags bit 0: deleted (a tombstone has no value field); other bits must be 0
//	message = type:byte body                      (memberlist user messages, NotifyMsg)
//	          type 'L': leave intent, body = node name (1..255 bytes)
//	          type 'S': store entry, body = storeWireVersion:byte entry
//	store   = storeWireVersion:byte count entry*  (entries strictly ascending by kind, then key)
//	state   = 'P' stateVersion:byte section*      (push/pull LocalState / MergeRemoteState)
//	section = type:byte length body
//	          type 1: dead-member reservations (reservation.go), type 2: store
//
// A section of a type this build does not know is skipped, so a later
// version can add one; a known section twice, truncation, trailing bytes or
// another magic or version are refused. A peer of the version before the
// envelope sent the bare reservations (first byte 1): that is still read.
// Framing limits (key, node and value lengths, entry count) are checked
// while decoding; the meaning of an entry (kind, key shape, owner, clock) is
// checked per entry when it is merged, so that one bad entry does not stop
// anti-entropy for all the others.
const (
	storeWireVersion = 1
	stateMagic       = 'P'
	stateVersion     = 1

	msgLeaveIntent = 'L'
	msgStoreEntry  = 'S'

	sectionReservations = 1
	sectionStore        = 2

	flagDeleted = 1

	// maxStateEntries bounds the entries of one store section, so that a
	// hostile count cannot make the decoder allocate much: a minimal entry
	// takes 7 bytes, so MaxStoreSize holds fewer.
	maxStateEntries = MaxStoreSize / 7
)

// appendEntry appends e's wire form to b.
func appendEntry(b []byte, e StoreEntry) []byte {
	var flags byte
	if e.Deleted {
		flags |= flagDeleted
	}
	b = append(b, byte(e.Kind), flags)
	b = binary.AppendUvarint(b, uint64(len(e.Key)))
	b = append(b, e.Key...)
	b = binary.AppendUvarint(b, uint64(max(e.Version.Wall, 0)))
	b = binary.AppendUvarint(b, uint64(e.Version.Logical))
	b = binary.AppendUvarint(b, uint64(len(e.Version.Node)))
	b = append(b, e.Version.Node...)
	if !e.Deleted {
		b = binary.AppendUvarint(b, uint64(len(e.Value)))
		b = append(b, e.Value...)
	}
	return b
}

// entrySize is the size of e's wire form; 0 for the zero entry.
func entrySize(e StoreEntry) int {
	if e.Key == "" && e.Version.Node == "" {
		return 0
	}
	return len(appendEntry(nil, e))
}

// decodeEntry reads one entry from the start of b and returns it and the
// bytes it took. It checks framing only (see above); the value is copied.
func decodeEntry(b []byte) (StoreEntry, int, error) {
	var e StoreEntry
	if len(b) < 2 {
		return e, 0, errTruncated
	}
	e.Kind = StoreKind(b[0])
	flags := b[1]
	if flags&^flagDeleted != 0 {
		return e, 0, fmt.Errorf("flags %#02x: unknown bits", flags)
	}
	e.Deleted = flags&flagDeleted != 0
	off := 2
	str := func(field string, limit int) (string, error) {
		n, w, err := uvarint(b[off:])
		if err != nil {
			return "", fmt.Errorf("%s length: %w", field, err)
		}
		if n > uint64(limit) {
			return "", fmt.Errorf("%s length %d, at most %d", field, n, limit)
		}
		if n > uint64(len(b)-off-w) {
			return "", fmt.Errorf("%s: %w", field, errTruncated)
		}
		s := b[off+w : off+w+int(n)]
		off += w + int(n)
		return string(s), nil
	}
	num := func(field string, limit uint64) (uint64, error) {
		v, w, err := uvarint(b[off:])
		if err != nil {
			return 0, fmt.Errorf("%s: %w", field, err)
		}
		if v > limit {
			return 0, fmt.Errorf("%s %d, at most %d", field, v, limit)
		}
		off += w
		return v, nil
	}
	var err error
	if e.Key, err = str("key", MaxStoreKeyLength); err != nil {
		return StoreEntry{}, 0, err
	}
	wall, err := num("version.wall", math.MaxInt64)
	if err != nil {
		return StoreEntry{}, 0, err
	}
	logical, err := num("version.logical", math.MaxUint32)
	if err != nil {
		return StoreEntry{}, 0, err
	}
	e.Version.Wall, e.Version.Logical = int64(wall), uint32(logical)
	if e.Version.Node, err = str("version.node", MaxStoreNodeName); err != nil {
		return StoreEntry{}, 0, err
	}
	if !e.Deleted {
		v, err := str("value", MaxStoreValueSize)
		if err != nil {
			return StoreEntry{}, 0, err
		}
		e.Value = []byte(v)
	}
	return e, off, nil
}

// encodeStoreMessage returns the user message that carries one entry.
func encodeStoreMessage(e StoreEntry) []byte {
	return appendEntry([]byte{msgStoreEntry, storeWireVersion}, e)
}

// decodeStoreMessage parses the body of a message of type 'S' (after the
// type byte). It never panics and does not retain b.
func decodeStoreMessage(b []byte) (StoreEntry, error) {
	if len(b) < 1 {
		return StoreEntry{}, fmt.Errorf("store message: %w", errTruncated)
	}
	if b[0] != storeWireVersion {
		return StoreEntry{}, fmt.Errorf("store message: version %d, this build reads only version %d", b[0], storeWireVersion)
	}
	e, n, err := decodeEntry(b[1:])
	if err != nil {
		return StoreEntry{}, fmt.Errorf("store message: %w", err)
	}
	if n != len(b)-1 {
		return StoreEntry{}, fmt.Errorf("store message: %d trailing bytes", len(b)-1-n)
	}
	return e, nil
}

// encodeStore renders entries, which must be sorted by kind and key with no
// key twice, as a store section body (also the snapshot's body).
func encodeStore(entries []StoreEntry) []byte {
	size := 1 + binary.MaxVarintLen64
	for _, e := range entries {
		size += 32 + len(e.Key) + len(e.Version.Node) + len(e.Value)
	}
	b := make([]byte, 0, size)
	b = append(b, storeWireVersion)
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for _, e := range entries {
		b = appendEntry(b, e)
	}
	return b
}

// decodeStore parses what encodeStore wrote. It never panics, does not
// retain b, and on any error returns nothing.
func decodeStore(b []byte) ([]StoreEntry, error) {
	if len(b) < 1 {
		return nil, fmt.Errorf("store: %w", errTruncated)
	}
	if b[0] != storeWireVersion {
		return nil, fmt.Errorf("store: version %d, this build reads only version %d", b[0], storeWireVersion)
	}
	n, w, err := uvarint(b[1:])
	if err != nil {
		return nil, fmt.Errorf("store: count: %w", err)
	}
	if n > maxStateEntries || n > uint64(len(b)) {
		return nil, fmt.Errorf("store: count %d, more than the %d bytes can hold", n, len(b))
	}
	b = b[1+w:]
	out := make([]StoreEntry, 0, n)
	for i := range int(n) {
		e, k, err := decodeEntry(b)
		if err != nil {
			return nil, fmt.Errorf("store: entry %d: %w", i, err)
		}
		if i > 0 && compareEntries(out[i-1], e) >= 0 {
			return nil, fmt.Errorf("store: entry %d (%s %q): not after the one before", i, e.Kind, e.Key)
		}
		out = append(out, e)
		b = b[k:]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("store: %d trailing bytes", len(b))
	}
	return out, nil
}

// pushState is what one node sends another in push/pull.
type pushState struct {
	Reservations []reservation
	Store        []StoreEntry
	HasStore     bool // false when the peer sent no store section (an older build)
}

// encodeState renders the push/pull envelope.
func encodeState(rs []reservation, entries []StoreEntry) ([]byte, error) {
	rb, err := encodeReservations(rs)
	if err != nil {
		return nil, err
	}
	sb := encodeStore(entries)
	b := make([]byte, 0, 2+2*binary.MaxVarintLen64+len(rb)+len(sb)+2)
	b = append(b, stateMagic, stateVersion)
	for _, s := range []struct {
		typ  byte
		body []byte
	}{{sectionReservations, rb}, {sectionStore, sb}} {
		b = append(b, s.typ)
		b = binary.AppendUvarint(b, uint64(len(s.body)))
		b = append(b, s.body...)
	}
	return b, nil
}

// decodeState parses a peer's push/pull state. It never panics and on any
// error returns nothing.
func decodeState(b []byte) (pushState, error) {
	var st pushState
	switch {
	case len(b) == 0:
		return st, nil
	case b[0] == reservationVersion:
		rs, err := decodeReservations(b)
		if err != nil {
			return pushState{}, fmt.Errorf("state (bare reservations of an older build): %w", err)
		}
		return pushState{Reservations: rs}, nil
	case b[0] != stateMagic:
		return st, fmt.Errorf("state: magic byte %#02x, want %#02x ('P')", b[0], stateMagic)
	case len(b) < 2:
		return st, fmt.Errorf("state: %w", errTruncated)
	case b[1] != stateVersion:
		return st, fmt.Errorf("state: version %d, this build reads only version %d", b[1], stateVersion)
	}
	var seen [256]bool
	for off := 2; off < len(b); {
		typ := b[off]
		n, w, err := uvarint(b[off+1:])
		if err != nil {
			return pushState{}, fmt.Errorf("state: section %d at offset %d: length: %w", typ, off, err)
		}
		start := off + 1 + w
		if n > uint64(len(b)-start) {
			return pushState{}, fmt.Errorf("state: section %d at offset %d: length %d past the end (%d bytes left)", typ, off, n, len(b)-start)
		}
		body := b[start : start+int(n)]
		off = start + int(n)
		if seen[typ] {
			return pushState{}, fmt.Errorf("state: section %d repeated", typ)
		}
		seen[typ] = true
		switch typ {
		case sectionReservations:
			if st.Reservations, err = decodeReservations(body); err != nil {
				return pushState{}, fmt.Errorf("state: %w", err)
			}
			if len(body) == 0 {
				return pushState{}, errors.New("state: reservations section empty")
			}
		case sectionStore:
			if st.Store, err = decodeStore(body); err != nil {
				return pushState{}, fmt.Errorf("state: %w", err)
			}
			st.HasStore = true
		}
	}
	return st, nil
}
