package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Dead members are spread to nodes that never saw them alive, through
// memberlist's push/pull state exchange, so that a node which joins while
// others are dead (a partition, a crash) treats their subnets as reserved
// instead of claiming them, and its reconnect loop looks for them too.
// memberlist itself forgets dead nodes it never knew.

// reservationVersion is the version of the encoding below.
const reservationVersion = 1

// maxReservations bounds one exchange, so a hostile peer cannot make us hold
// an unbounded table.
const maxReservations = 4096

// reservation is one dead member as exchanged: its name, gossip address,
// record and how long it has been dead (an age, not a time, so that clock
// skew between hosts does not matter).
type reservation struct {
	Name   string
	Addr   netip.AddrPort
	Age    time.Duration
	Record Record
}

// encodeReservations renders reservations as:
//
//	version(1) count(uvarint) { nameLen(1) name addr(16) port(2) ageMillis(uvarint) metaLen(uvarint) meta }
func encodeReservations(rs []reservation) ([]byte, error) {
	b := []byte{reservationVersion}
	b = binary.AppendUvarint(b, uint64(len(rs)))
	for _, r := range rs {
		meta, err := r.Record.Encode()
		if err != nil {
			return nil, fmt.Errorf("encode reservation of %s: %w", r.Name, err)
		}
		if len(r.Name) == 0 || len(r.Name) > 255 {
			return nil, fmt.Errorf("encode reservation: name %q: length %d, want 1..255", r.Name, len(r.Name))
		}
		b = append(b, byte(len(r.Name)))
		b = append(b, r.Name...)
		a16 := r.Addr.Addr().As16()
		b = append(b, a16[:]...)
		b = binary.BigEndian.AppendUint16(b, r.Addr.Port())
		b = binary.AppendUvarint(b, uint64(max(r.Age, 0)/time.Millisecond))
		b = binary.AppendUvarint(b, uint64(len(meta)))
		b = append(b, meta...)
	}
	return b, nil
}

var errTruncated = errors.New("truncated")

// decodeReservations parses what encodeReservations wrote; every record is
// validated. It never panics, and on any error returns nothing.
func decodeReservations(b []byte) ([]reservation, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] != reservationVersion {
		return nil, fmt.Errorf("reservations: version %d, want %d", b[0], reservationVersion)
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, fmt.Errorf("reservations: count: %w", errTruncated)
	}
	if n > maxReservations {
		return nil, fmt.Errorf("reservations: count %d, at most %d", n, maxReservations)
	}
	b = b[k:]
	out := make([]reservation, 0, n)
	for i := range int(n) {
		var r reservation
		if len(b) < 1 || len(b) < 1+int(b[0])+18 || b[0] == 0 {
			return nil, fmt.Errorf("reservations[%d]: %w", i, errTruncated)
		}
		nameLen := int(b[0]) // int first: 1+b[0] in byte arithmetic wraps at 255
		r.Name = string(b[1 : 1+nameLen])
		b = b[1+nameLen:]
		a := netip.AddrFrom16([16]byte(b[:16])).Unmap()
		r.Addr = netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[16:18]))
		b = b[18:]
		age, k := binary.Uvarint(b)
		if k <= 0 || age > uint64(365*24*time.Hour/time.Millisecond) {
			return nil, fmt.Errorf("reservations[%d] (%s): age: bad or truncated", i, r.Name)
		}
		r.Age = time.Duration(age) * time.Millisecond
		b = b[k:]
		ml, k := binary.Uvarint(b)
		if k <= 0 || ml > MaxRecordSize || uint64(len(b)-k) < ml {
			return nil, fmt.Errorf("reservations[%d] (%s): record: %w", i, r.Name, errTruncated)
		}
		rec, err := DecodeRecord(b[k : k+int(ml)])
		if err != nil {
			return nil, fmt.Errorf("reservations[%d] (%s): %w", i, r.Name, err)
		}
		r.Record = rec
		b = b[k+int(ml):]
		out = append(out, r)
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("reservations: %d trailing bytes", len(b))
	}
	return out, nil
}

// localReservationsLocked lists the dead members for push/pull; the caller holds m.mu.
func (m *Membership) localReservationsLocked(now time.Time) []reservation {
	var rs []reservation
	for _, mem := range m.members {
		if mem.State == StateDead && len(rs) < maxReservations {
			rs = append(rs, reservation{Name: mem.Name, Addr: mem.Addr, Age: now.Sub(mem.Since), Record: mem.Record})
		}
	}
	return rs
}

// mergeReservationsLocked adds dead members this node has never seen; it
// never overrides what it knows first hand. The caller holds m.mu.
func (m *Membership) mergeReservationsLocked(rs []reservation, now time.Time) {
	for _, r := range rs {
		if r.Name == m.cfg.NodeName || r.Record.Cluster != m.cfg.ClusterName || r.Age > m.cfg.DeadReservation {
			continue
		}
		if _, known := m.members[r.Name]; known {
			continue
		}
		if at, ok := m.left[r.Name]; ok && now.Sub(at) < m.cfg.DeadReservation {
			continue
		}
		mem := &Member{Name: r.Name, Addr: r.Addr, State: StateDead, Since: now.Add(-r.Age), Record: r.Record}
		m.members[r.Name] = mem
		m.log.Info("dead member learned from a peer", "node", r.Name, "dead_for", r.Age.Round(time.Second))
		m.emitLocked(Event{Kind: EventDead, Node: r.Name, Addr: r.Addr, Record: r.Record})
	}
}
