package gossip

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// RecordVersion is the version of the node record encoding that this build
// writes. Decoders accept this version and refuse others with a clear error.
const RecordVersion = 1

// MaxRecordSize is memberlist's limit on node metadata (memberlist.MetaMaxSize).
// Encode refuses records that do not fit.
const MaxRecordSize = 512

// Capability is a bit set of the kernel features a node has, as detected at start.
type Capability uint16

// Capabilities a node can advertise.
const (
	CapVXLAN              Capability = 1 << iota // kernel VXLAN device
	CapIPIPKernel                                // kernel ipip device
	CapIPIPUserspace                             // user-space IP-in-IP (TUN + raw socket)
	CapWireGuardKernel                           // kernel WireGuard
	CapWireGuardUserspace                        // embedded wireguard-go
)

// Location says where a node runs. Every field is optional; empty means unknown.
type Location struct {
	Cloud  string `json:"cloud,omitempty"`
	Region string `json:"region,omitempty"`
	Zone   string `json:"zone,omitempty"`
}

// Record is what a node tells every other node about itself through
// memberlist's node metadata. It is small, versioned and validated on decode.
//
// The node's name is memberlist's node name and is not repeated here.
type Record struct {
	// Cluster is the cluster name; a record of another cluster is refused.
	Cluster string `json:"cluster"`
	// Underlay holds the node's underlay addresses, preferred first (1..4).
	Underlay []netip.Addr `json:"underlay"`
	// Public is the address by which peers outside the node's NAT reach it; invalid when unset.
	Public netip.Addr `json:"public,omitzero"`
	// Location is the node's cloud, region and zone.
	Location Location `json:"location"`
	// Subnets holds the workload subnets the node claims (0..4); empty while it has none yet.
	Subnets []netip.Prefix `json:"subnets"`
	// ClaimedAt is when the node claimed Subnets[0], in Unix milliseconds; conflicts are resolved by it.
	ClaimedAt int64 `json:"claimedAt"`
	// Static reports whether the subnet was configured by hand (it then wins every conflict).
	Static bool `json:"static,omitempty"`
	// VTEPMAC is the MAC address of the node's VXLAN device; nil when it has none.
	VTEPMAC []byte `json:"vtepMAC,omitempty"`
	// WireGuardKey is the node's WireGuard public key (32 bytes); nil when it has none.
	WireGuardKey []byte `json:"wireguardKey,omitempty"`
	// WireGuardPort is the node's WireGuard UDP port; 0 when it has none.
	WireGuardPort uint16 `json:"wireguardPort,omitempty"`
	// Caps is the set of kernel capabilities the node has.
	Caps Capability `json:"caps"`
	// Labels are free-form node labels (Calico label syntax), at most 8.
	Labels map[string]string `json:"labels,omitempty"`
}

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
const knownCaps = CapVXLAN | CapIPIPKernel | CapIPIPUserspace | CapWireGuardKernel | CapWireGuardUserspace

// fieldName returns the name of a field type as in the record's JSON form,
// or "" for types this build does not know.
func fieldName(typ byte) string {
	names := [...]string{fieldCluster: "cluster", fieldUnderlay: "underlay", fieldPublic: "public",
		fieldCloud: "location.cloud", fieldRegion: "location.region", fieldZone: "location.zone",
		fieldSubnet4: "subnets", fieldSubnet6: "subnets", fieldClaimedAt: "claimedAt", fieldStatic: "static",
		fieldVTEPMAC: "vtepMAC", fieldWireGuardKey: "wireguardKey", fieldWireGuardPort: "wireguardPort",
		fieldCaps: "caps", fieldLabel: "labels"}
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

// Validate checks every field of r and returns nil or all problems joined,
// each a *FieldError. It does not check the encoded size (Encode does), nor
// modify r. The rules: cluster is required; cluster, cloud, region and zone
// are 1 to 32 of [a-z0-9-] when set; 1 to 4 distinct underlay addresses and an
// optional public address, none unspecified, multicast, broadcast,
// IPv4-mapped or with a zone (loopback is allowed, for tests); 0 to 4
// non-overlapping subnets with no bits set beyond the prefix length;
// claimedAt not negative; a unicast, non-zero 6-byte vtepMAC if any; a
// 32-byte wireguardKey and a non-zero wireguardPort together or neither; only
// known caps bits; 0 to 8 labels in Kubernetes label syntax.
func (r Record) Validate() error {
	var errs []error
	add := func(field, value, reason string, args ...any) {
		errs = append(errs, fieldErr(field, value, fmt.Sprintf(reason, args...)))
	}
	if r.Cluster == "" {
		add("cluster", "", "required")
	}
	for _, f := range [...]struct{ name, s string }{{"cluster", r.Cluster}, {"location.cloud", r.Location.Cloud},
		{"location.region", r.Location.Region}, {"location.zone", r.Location.Zone}} {
		if len(f.s) > MaxNameLength {
			add(f.name, f.s, "longer than %d characters", MaxNameLength)
		} else if strings.Trim(f.s, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			add(f.name, f.s, "not [a-z0-9-]")
		}
	}
	if len(r.Underlay) == 0 || len(r.Underlay) > MaxUnderlay {
		add("underlay", fmt.Sprint(r.Underlay), "%d addresses, want 1 to %d", len(r.Underlay), MaxUnderlay)
	}
	for i, a := range r.Underlay {
		if reason := addrProblem(a); reason != "" {
			add(fmt.Sprintf("underlay[%d]", i), a.String(), "%s", reason)
		} else if j := slices.Index(r.Underlay, a); j < i {
			add(fmt.Sprintf("underlay[%d]", i), a.String(), "same as underlay[%d]", j)
		}
	}
	if reason := addrProblem(r.Public); r.Public.IsValid() && reason != "" {
		add("public", r.Public.String(), "%s", reason)
	}
	if len(r.Subnets) > MaxSubnets {
		add("subnets", fmt.Sprint(r.Subnets), "%d subnets, at most %d", len(r.Subnets), MaxSubnets)
	}
	for i, p := range r.Subnets {
		if reason := prefixProblem(p); reason != "" {
			add(fmt.Sprintf("subnets[%d]", i), p.String(), "%s", reason)
		} else if j := slices.IndexFunc(r.Subnets[:i], p.Overlaps); j >= 0 {
			add(fmt.Sprintf("subnets[%d]", i), p.String(), "overlaps subnets[%d] %s", j, r.Subnets[j])
		}
	}
	if r.ClaimedAt < 0 {
		add("claimedAt", fmt.Sprint(r.ClaimedAt), "negative")
	}
	switch mac := net.HardwareAddr(r.VTEPMAC); {
	case len(mac) != 0 && len(mac) != macSize:
		add("vtepMAC", hex.EncodeToString(mac), "%d bytes, want %d", len(mac), macSize)
	case len(mac) != 0 && mac[0]&1 != 0:
		add("vtepMAC", mac.String(), "multicast MAC address")
	case len(mac) != 0 && bytes.Equal(mac, make([]byte, macSize)):
		add("vtepMAC", mac.String(), "zero MAC address")
	}
	switch key := r.WireGuardKey; {
	case len(key) != 0 && len(key) != wireGuardKeySize:
		add("wireguardKey", base64.StdEncoding.EncodeToString(key), "%d bytes, want %d", len(key), wireGuardKeySize)
	case len(key) != 0 && r.WireGuardPort == 0:
		add("wireguardPort", "0", "required with wireguardKey")
	case len(key) == 0 && r.WireGuardPort != 0:
		add("wireguardPort", fmt.Sprint(r.WireGuardPort), "set without wireguardKey")
	}
	if unknown := r.Caps &^ knownCaps; unknown != 0 {
		add("caps", fmt.Sprintf("%#x", uint16(r.Caps)), "unknown capability bits %#x", uint16(unknown))
	}
	if len(r.Labels) > MaxLabels {
		add("labels", fmt.Sprintf("%d labels", len(r.Labels)), "at most %d", MaxLabels)
	}
	for _, k := range slices.Sorted(maps.Keys(r.Labels)) {
		if reason := labelKeyProblem(k); reason != "" {
			add("labels", k, "%s", reason)
		}
		if v := r.Labels[k]; len(v) > maxLabelValue {
			add(fmt.Sprintf("labels[%q]", k), v, "longer than %d characters", maxLabelValue)
		} else if v != "" && !isLabelToken(v) {
			add(fmt.Sprintf("labels[%q]", k), v, "not [A-Za-z0-9._-] beginning and ending with a letter or digit")
		}
	}
	return errors.Join(errs...)
}

func addrProblem(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "invalid address"
	case a.Zone() != "":
		return "address with a zone"
	case a.Is4In6():
		return "IPv4-mapped IPv6 address, use the IPv4 form"
	case a.IsUnspecified():
		return "unspecified address"
	case a.IsMulticast():
		return "multicast address"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "broadcast address"
	}
	return ""
}

func prefixProblem(p netip.Prefix) string {
	switch {
	case !p.IsValid():
		return "invalid prefix"
	case p.Addr().Is4In6():
		return "IPv4-mapped IPv6 prefix, use the IPv4 form"
	case p.Bits() == 0:
		return "prefix length 0"
	case p != p.Masked():
		return fmt.Sprintf("bits set beyond the prefix length (want %s)", p.Masked())
	case p.Addr().IsMulticast():
		return "multicast prefix"
	}
	return ""
}

// labelKeyProblem checks a label key as Kubernetes does: an optional DNS
// subdomain of at most 253 characters and '/', then a name.
func labelKeyProblem(k string) string {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		name = k
	}
	switch {
	case hasPrefix && len(prefix) > maxLabelPrefix:
		return fmt.Sprintf("key prefix longer than %d characters", maxLabelPrefix)
	case hasPrefix && !isDNSSubdomain(prefix):
		return "key prefix not a lower-case DNS subdomain"
	case name == "":
		return "empty key name"
	case len(name) > maxLabelName:
		return fmt.Sprintf("key name longer than %d characters", maxLabelName)
	case !isLabelToken(name):
		return "key name not [A-Za-z0-9._-] beginning and ending with a letter or digit"
	}
	return ""
}

func isDNSSubdomain(s string) bool {
	for part := range strings.SplitSeq(s, ".") {
		if !isAlnumAtEnds(part, false) || strings.Trim(part, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return false
		}
	}
	return true
}

// isLabelToken reports whether s is a valid, non-empty Kubernetes label name or value.
func isLabelToken(s string) bool {
	return isAlnumAtEnds(s, true) &&
		strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") == ""
}

// isAlnumAtEnds reports whether s begins and ends with a lower-case letter (or
// upper-case too if upper) or a digit.
func isAlnumAtEnds(s string, upper bool) bool {
	ok := func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || upper && c >= 'A' && c <= 'Z'
	}
	return s != "" && ok(s[0]) && ok(s[len(s)-1])
}

// Equal reports whether r and o mean the same, which is also whether they
// encode to the same bytes: nil and empty slices and maps are equal; Underlay
// and Subnets are compared in order.
func (r Record) Equal(o Record) bool {
	return r.Cluster == o.Cluster && slices.Equal(r.Underlay, o.Underlay) && r.Public == o.Public &&
		r.Location == o.Location && slices.Equal(r.Subnets, o.Subnets) && r.ClaimedAt == o.ClaimedAt &&
		r.Static == o.Static && bytes.Equal(r.VTEPMAC, o.VTEPMAC) &&
		bytes.Equal(r.WireGuardKey, o.WireGuardKey) && r.WireGuardPort == o.WireGuardPort &&
		r.Caps == o.Caps && maps.Equal(r.Labels, o.Labels)
}
