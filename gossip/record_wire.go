package gossip

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// Wire format, version 1:
//
//	record = 'W' version:byte field*
//	field  = type:byte length:uvarint value:[length]byte
//
//	type field         value
//	1    cluster       string
//	2    underlay      4 or 16 address bytes; repeated, in order
//	3    public        4 or 16 address bytes
//	4    cloud         string
//	5    region        string
//	6    zone          string
//	7    subnet, IPv4  prefix length byte, then the (bits+7)/8 leading address bytes;
//	8    subnet, IPv6  repeated: types 7 and 8 together keep the order of Subnets
//	9    claimedAt     zigzag varint (binary.AppendVarint)
//	10   static        empty: present means true
//	11   vtepMAC       6 bytes
//	12   wireguardKey  32 bytes
//	13   wireguardPort 2 bytes, big endian
//	14   caps          uvarint; bits this build does not know are dropped on decode
//	15   label         key prefix code byte (labelKeyPrefixes), uvarint length, rest of the key, value
//	16   instance      string: the cloud instance ID (older decoders skip it)
//
// Encode writes fields in this order (repeated ones in slice order, labels by
// key), omits zero values and uses minimal varints, so its output is
// canonical. DecodeRecord takes fields in any order, refuses non-minimal
// varints and repeated singular fields, and skips types it does not know: a
// change that older decoders may ignore adds a field type; one they must not
// ignore bumps RecordVersion, which they refuse.
//
// Subnets are sent as BGP sends prefixes, and well-known label key prefixes as
// one byte, because the plain form of a full record (4 IPv6 underlay
// addresses, 32-character location fields, 4 IPv6 subnets, a WireGuard key, 8
// Kubernetes node labels) would take about 620 bytes; this one takes 468
// (TestRecordSize), and all fields but the labels at most 367.
const (
	recordMagic        = 'W'
	fieldCluster       = 1
	fieldUnderlay      = 2
	fieldPublic        = 3
	fieldCloud         = 4
	fieldRegion        = 5
	fieldZone          = 6
	fieldSubnet4       = 7
	fieldSubnet6       = 8
	fieldClaimedAt     = 9
	fieldStatic        = 10
	fieldVTEPMAC       = 11
	fieldWireGuardKey  = 12
	fieldWireGuardPort = 13
	fieldCaps          = 14
	fieldLabel         = 15
	fieldInstance      = 16
)

// Limits checked by Validate and DecodeRecord.
const (
	MaxUnderlay      = 4  // underlay addresses; at least 1 is required
	MaxSubnets       = 4  // workload subnets
	MaxLabels        = 8  // node labels
	MaxNameLength    = 32 // characters of cluster, cloud, region and zone
	maxLabelPrefix   = 253
	maxLabelName     = 63
	maxLabelValue    = 63
	wireGuardKeySize = 32
	macSize          = 6
)

// knownCaps holds every Capability bit this build knows. DecodeRecord drops
// the others (a newer node may have features this build cannot use), and
// Validate refuses them (this build cannot mean them).
const knownCaps = CapVXLAN | CapIPIPKernel | CapIPIPUserspace | CapWireGuardKernel | CapWireGuardUserspace | CapBehindNAT

// fieldName returns the name of a field type as in the record's JSON form,
// or "" for types this build does not know.
func fieldName(typ byte) string {
	names := [...]string{fieldCluster: "cluster", fieldUnderlay: "underlay", fieldPublic: "public",
		fieldCloud: "location.cloud", fieldRegion: "location.region", fieldZone: "location.zone",
		fieldSubnet4: "subnets", fieldSubnet6: "subnets", fieldClaimedAt: "claimedAt", fieldStatic: "static",
		fieldVTEPMAC: "vtepMAC", fieldWireGuardKey: "wireguardKey", fieldWireGuardPort: "wireguardPort",
		fieldCaps: "caps", fieldLabel: "labels", fieldInstance: "location.instance"}
	if int(typ) < len(names) {
		return names[typ]
	}
	return ""
}

// labelKeyPrefixes returns the label key prefixes that the label field sends
// as a one-byte code, the index; code 0 is no prefix. The table is part of
// wire format version 1: never change or reorder it. More prefixes need a new
// field type, since older decoders refuse codes they do not know.
func labelKeyPrefixes() [8]string {
	return [...]string{"", "kubernetes.io/", "node.kubernetes.io/", "node-role.kubernetes.io/",
		"topology.kubernetes.io/", "beta.kubernetes.io/", "failure-domain.beta.kubernetes.io/",
		"projectcalico.org/"}
}

// ErrRecordTooLarge is returned, wrapped, by Encode when a valid record does
// not fit in MaxRecordSize bytes; test for it with errors.Is.
var ErrRecordTooLarge = errors.New("too large for memberlist node metadata")

// FieldError is the error Validate and DecodeRecord return about one field.
// Field names it as in the record's JSON form, with an index or key for
// repeated fields (underlay[1], labels["zone"]); Value is the offending value
// as text (raw bytes from the wire in hex); Reason says what is wrong.
type FieldError struct {
	Field, Value, Reason string
}

// Error formats e as `record field FIELD: "VALUE": REASON`.
func (e *FieldError) Error() string {
	return fmt.Sprintf("record field %s: %q: %s", e.Field, e.Value, e.Reason)
}

func fieldErr(field, value, reason string) error {
	return &FieldError{Field: field, Value: value, Reason: reason}
}

// Encode validates r and returns its canonical wire form (see the table
// above) in a new slice of at most MaxRecordSize bytes: records that are
// Equal encode to the same bytes. It returns Validate's errors, or one that
// wraps ErrRecordTooLarge and states the size. It does not modify r.
func (r Record) Encode() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	b := make([]byte, 0, MaxRecordSize)
	b = append(b, recordMagic, RecordVersion)
	b = appendField(b, fieldCluster, []byte(r.Cluster))
	for _, a := range r.Underlay {
		b = appendField(b, fieldUnderlay, a.AsSlice())
	}
	if r.Public.IsValid() {
		b = appendField(b, fieldPublic, r.Public.AsSlice())
	}
	for typ, s := range []string{fieldCloud: r.Location.Cloud, fieldRegion: r.Location.Region, fieldZone: r.Location.Zone} {
		if s != "" {
			b = appendField(b, byte(typ), []byte(s))
		}
	}
	if r.Location.Instance != "" {
		b = appendField(b, fieldInstance, []byte(r.Location.Instance))
	}
	for _, p := range r.Subnets {
		typ := byte(fieldSubnet6)
		if p.Addr().Is4() {
			typ = fieldSubnet4
		}
		b = appendField(b, typ, append([]byte{byte(p.Bits())}, p.Addr().AsSlice()[:(p.Bits()+7)/8]...))
	}
	if r.ClaimedAt != 0 {
		b = appendField(b, fieldClaimedAt, binary.AppendVarint(nil, r.ClaimedAt))
	}
	if r.Static {
		b = appendField(b, fieldStatic, nil)
	}
	if len(r.VTEPMAC) > 0 {
		b = appendField(b, fieldVTEPMAC, r.VTEPMAC)
	}
	if len(r.WireGuardKey) > 0 {
		b = appendField(b, fieldWireGuardKey, r.WireGuardKey)
		b = appendField(b, fieldWireGuardPort, binary.BigEndian.AppendUint16(nil, r.WireGuardPort))
	}
	if r.Caps != 0 {
		b = appendField(b, fieldCaps, binary.AppendUvarint(nil, uint64(r.Caps)))
	}
	labelsStart := len(b)
	for _, k := range slices.Sorted(maps.Keys(r.Labels)) {
		b = appendField(b, fieldLabel, encodeLabel(k, r.Labels[k]))
	}
	if len(b) > MaxRecordSize {
		return nil, fmt.Errorf("encode record: %w: %d bytes, limit %d (labels take %d)",
			ErrRecordTooLarge, len(b), MaxRecordSize, len(b)-labelsStart)
	}
	return b, nil
}

func appendField(b []byte, typ byte, v []byte) []byte {
	b = append(b, typ)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func encodeLabel(key, value string) []byte {
	code, rest := 0, key
	for c, p := range labelKeyPrefixes() {
		if after, ok := strings.CutPrefix(key, p); ok && p != "" {
			code, rest = c, after
			break // no prefix in the table is a prefix of another
		}
	}
	v := binary.AppendUvarint([]byte{byte(code)}, uint64(len(rest)))
	return append(append(v, rest...), value...)
}

// DecodeRecord parses a record in the wire format (see the table above) and
// validates it. It takes at most MaxRecordSize bytes, never panics and does
// not retain b. Unknown field types are skipped and unknown capability bits
// dropped. Anything else irregular is an error, most of them naming the field
// in a *FieldError: another magic byte or version, truncation, a length past
// the end, a repeated singular field, a value of the wrong length, a
// non-minimal varint, too many repeated fields, and whatever Validate refuses.
func DecodeRecord(b []byte) (Record, error) {
	r, err := decodeRecord(b)
	if err != nil {
		return Record{}, fmt.Errorf("decode record: %w", err)
	}
	return r, nil
}

func decodeRecord(b []byte) (Record, error) {
	var r Record
	switch {
	case len(b) > MaxRecordSize:
		return r, fmt.Errorf("%d bytes, limit %d", len(b), MaxRecordSize)
	case len(b) < 2:
		return r, fmt.Errorf("truncated header: %d bytes", len(b))
	case b[0] != recordMagic:
		return r, fmt.Errorf("magic byte %#02x, want %#02x ('W'): not a weft node record", b[0], recordMagic)
	case b[1] != RecordVersion:
		return r, fmt.Errorf("version %d, this build reads only version %d", b[1], RecordVersion)
	}
	var seen uint16 // one bit per singular field type decoded
	for off := 2; off < len(b); {
		typ, name := b[off], fieldName(b[off])
		n, w, err := uvarint(b[off+1:])
		if err != nil {
			return r, fmt.Errorf("field type %d (%s) at offset %d: length: %w", typ, cmp.Or(name, "unknown"), off, err)
		}
		start := off + 1 + w
		if n > uint64(len(b)-start) {
			return r, fmt.Errorf("field type %d (%s) at offset %d: length %d past the end (%d bytes left)",
				typ, cmp.Or(name, "unknown"), off, n, len(b)-start)
		}
		off = start + int(n)
		if name == "" {
			continue // a field of a later version
		}
		if err := r.decodeField(typ, name, b[start:off], &seen); err != nil {
			return r, err
		}
	}
	return r, r.Validate()
}

// decodeField decodes value v of a known field type into r. It checks the
// value's shape; Validate checks its meaning afterwards.
func (r *Record) decodeField(typ byte, name string, v []byte, seen *uint16) error {
	bad := func(reason string, args ...any) error {
		return fieldErr(name, hex.EncodeToString(v), fmt.Sprintf(reason, args...))
	}
	wantLen := func(n int) error {
		if len(v) != n {
			return bad("length %d, want %d", len(v), n)
		}
		return nil
	}
	switch typ {
	case fieldUnderlay, fieldSubnet4, fieldSubnet6, fieldLabel:
	default:
		if *seen&(1<<typ) != 0 {
			return bad("field repeated")
		}
		*seen |= 1 << typ
	}
	var err error
	switch typ {
	case fieldCluster:
		r.Cluster = string(v)
	case fieldUnderlay, fieldPublic:
		if typ == fieldUnderlay {
			if name = fmt.Sprintf("underlay[%d]", len(r.Underlay)); len(r.Underlay) == MaxUnderlay {
				return bad("more than %d addresses", MaxUnderlay)
			}
		}
		a, ok := netip.AddrFromSlice(v)
		if !ok {
			return bad("length %d, want 4 or 16", len(v))
		}
		if typ == fieldUnderlay {
			r.Underlay = append(r.Underlay, a)
		} else {
			r.Public = a
		}
	case fieldCloud:
		r.Location.Cloud = string(v)
	case fieldRegion:
		r.Location.Region = string(v)
	case fieldZone:
		r.Location.Zone = string(v)
	case fieldInstance:
		r.Location.Instance = string(v)
	case fieldSubnet4, fieldSubnet6:
		if name = fmt.Sprintf("subnets[%d]", len(r.Subnets)); len(r.Subnets) == MaxSubnets {
			return bad("more than %d subnets", MaxSubnets)
		}
		size := 4
		if typ == fieldSubnet6 {
			size = 16
		}
		if len(v) == 0 || int(v[0]) > size*8 {
			return bad("prefix length missing or over %d", size*8)
		}
		if bits := int(v[0]); len(v) != 1+(bits+7)/8 {
			return bad("length %d, want %d for a /%d", len(v), 1+(bits+7)/8, bits)
		}
		var a [16]byte
		copy(a[:], v[1:])
		addr, _ := netip.AddrFromSlice(a[:size])
		// Bits set beyond the prefix length are kept for Validate to refuse.
		r.Subnets = append(r.Subnets, netip.PrefixFrom(addr, int(v[0])))
	case fieldClaimedAt:
		u, n, err := uvarint(v)
		if err != nil || n != len(v) {
			return bad("not one minimal varint")
		}
		r.ClaimedAt = int64(u>>1) ^ -int64(u&1) // zigzag, as binary.Varint
	case fieldStatic:
		r.Static, err = true, wantLen(0)
	case fieldVTEPMAC:
		r.VTEPMAC, err = bytes.Clone(v), wantLen(macSize)
	case fieldWireGuardKey:
		r.WireGuardKey, err = bytes.Clone(v), wantLen(wireGuardKeySize)
	case fieldWireGuardPort:
		if err = wantLen(2); err == nil {
			r.WireGuardPort = binary.BigEndian.Uint16(v)
		}
	case fieldCaps:
		u, n, err := uvarint(v)
		if err != nil || n != len(v) {
			return bad("not one minimal varint")
		}
		r.Caps = Capability(u) & knownCaps
	case fieldLabel:
		return r.decodeLabel(v, bad)
	}
	return err
}

func (r *Record) decodeLabel(v []byte, bad func(string, ...any) error) error {
	if len(r.Labels) == MaxLabels {
		return bad("more than %d labels", MaxLabels)
	}
	if len(v) == 0 {
		return bad("empty")
	}
	if int(v[0]) >= len(labelKeyPrefixes()) {
		return bad("unknown key prefix code %d", v[0])
	}
	n, w, err := uvarint(v[1:])
	if err != nil || n > uint64(len(v)-1-w) {
		return bad("key length not a minimal varint within the field")
	}
	key := labelKeyPrefixes()[v[0]] + string(v[1+w:1+w+int(n)])
	if _, dup := r.Labels[key]; dup {
		return fieldErr("labels", key, "key repeated")
	}
	if r.Labels == nil {
		r.Labels = make(map[string]string)
	}
	r.Labels[key] = string(v[1+w+int(n):])
	return nil
}

// uvarint reads a minimal uvarint from the start of b and returns it and its length.
func uvarint(b []byte) (uint64, int, error) {
	v, n := binary.Uvarint(b)
	switch {
	case n == 0:
		return 0, 0, errors.New("truncated varint")
	case n < 0:
		return 0, 0, errors.New("varint overflows 64 bits")
	case n > 1 && b[n-1] == 0: // a last byte of 0 adds nothing: another form of the same number
		return 0, 0, errors.New("non-minimal varint")
	}
	return v, n, nil
}
