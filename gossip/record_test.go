package gossip

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var updateRecordGolden = flag.Bool("update-record-golden", false, "rewrite testdata/record.golden")

// recPlain is Record without its Equal method, so that cmp diffs it field by field.
type recPlain Record

// recCmpOpts makes cmp.Diff compare Records field by field, semantically.
var recCmpOpts = cmp.Options{
	cmp.Transformer("fields", func(r Record) recPlain { return recPlain(r) }),
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmpopts.EquateEmpty(),
}

var (
	recAddr   = netip.MustParseAddr
	recPrefix = netip.MustParsePrefix
)

func recWGKey() []byte { return bytes.Repeat([]byte{0xab}, 32) }

func recMinimal() Record {
	return Record{Cluster: "c", Underlay: []netip.Addr{recAddr("198.18.0.1")}}
}

func recFull() Record {
	return Record{
		Cluster:       "prod-eu",
		Underlay:      []netip.Addr{recAddr("198.18.1.10"), recAddr("198.19.0.10")},
		Public:        recAddr("203.0.113.7"),
		Location:      Location{Cloud: "aws", Region: "eu-west-1", Zone: "eu-west-1a"},
		Subnets:       []netip.Prefix{recPrefix("10.244.3.0/24")},
		ClaimedAt:     1764064800123,
		Static:        true,
		VTEPMAC:       []byte{0x02, 0x42, 0xac, 0x11, 0x00, 0x02},
		WireGuardKey:  recWGKey(),
		WireGuardPort: 51820,
		Caps:          CapVXLAN | CapIPIPUserspace | CapWireGuardUserspace,
		Labels:        map[string]string{"topology.kubernetes.io/zone": "eu-west-1a", "team": "net", "edge": ""},
	}
}

func recIPv6() Record {
	return Record{
		Cluster:  "v6",
		Underlay: []netip.Addr{recAddr("2001:db8::1"), recAddr("198.18.0.2")},
		Public:   recAddr("2001:db8:ffff::7"),
		Subnets:  []netip.Prefix{recPrefix("fd00:10:244:3::/64"), recPrefix("10.244.3.0/24"), recPrefix("fd00:1::/52")},
	}
}

// recMaxPlausible is the largest record a real node is likely to send.
func recMaxPlausible() Record {
	r := recFull()
	r.Cluster = strings.Repeat("c", 32)
	r.Underlay = []netip.Addr{recAddr("2001:db8:1::10"), recAddr("2001:db8:2::10"), recAddr("2001:db8:3::10"), recAddr("2001:db8:4::10")}
	r.Public = recAddr("2001:db8:ffff::10")
	r.Location = Location{Cloud: strings.Repeat("a", 32), Region: strings.Repeat("b", 32), Zone: strings.Repeat("z", 32)}
	r.Subnets = []netip.Prefix{recPrefix("fd00:10:244:1::/64"), recPrefix("fd00:10:244:2::/64"),
		recPrefix("fd00:10:245:1::/64"), recPrefix("fd00:10:245:2::/64")}
	r.Labels = map[string]string{
		"topology.kubernetes.io/region":    "eu-west-1",
		"topology.kubernetes.io/zone":      "eu-west-1a",
		"kubernetes.io/os":                 "linux",
		"kubernetes.io/arch":               "amd64",
		"kubernetes.io/hostname":           "ip-10-0-1-23",
		"node.kubernetes.io/instance-type": "m5.xlarge",
		"node-role.kubernetes.io/worker":   "",
		"team":                             "payments",
	}
	return r
}

func TestRecordRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		rec  Record
	}{
		{"minimal", recMinimal()},
		{"full", recFull()},
		{"ipv6", recIPv6()},
		{"max plausible", recMaxPlausible()},
		{"loopback underlay", Record{Cluster: "lab", Underlay: []netip.Addr{recAddr("127.0.0.1"), recAddr("::1")}}},
		{"cloud instance", Record{Cluster: "c", Underlay: []netip.Addr{recAddr("198.18.0.1")},
			Location: Location{Cloud: "aws", Region: "eu-west-1", Zone: "eu-west-1a", Instance: "i-0123456789abcdef0"}}},
		{"empty label value", Record{Cluster: "c", Underlay: []netip.Addr{recAddr("198.18.0.1")},
			Labels: map[string]string{"projectcalico.org/x": "", "beta.kubernetes.io/os": "linux"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.rec.Encode()
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			got, err := DecodeRecord(b)
			if err != nil {
				t.Fatalf("DecodeRecord: %v", err)
			}
			if diff := cmp.Diff(tt.rec, got, recCmpOpts); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
			if !got.Equal(tt.rec) {
				t.Errorf("Equal = false after round trip")
			}
			again, err := got.Encode()
			if err != nil || !bytes.Equal(again, b) {
				t.Errorf("re-encode = %x, %v; want %x", again, err, b)
			}
		})
	}
}

// field builds one wire field: type, length, value.
func recField(typ byte, v ...byte) []byte {
	return append(binary.AppendUvarint([]byte{typ}, uint64(len(v))), v...)
}

// wire builds a record: magic, version, then the fields.
func recWire(fields ...[]byte) []byte {
	return append([]byte{'W', RecordVersion}, bytes.Join(fields, nil)...)
}

// label builds a label field value.
func recLabel(code byte, key, value string) []byte {
	v := binary.AppendUvarint([]byte{code}, uint64(len(key)))
	return append(append(v, key...), value...)
}

var (
	wCluster  = recField(fieldCluster, 'c')
	wUnderlay = recField(fieldUnderlay, 198, 18, 0, 1)
	wPort     = recField(fieldWireGuardPort, 0xca, 0x6c)
	wKey      = recField(fieldWireGuardKey, recWGKey()...)
)

func TestDecodeRecordMalformed(t *testing.T) {
	nineLabels := [][]byte{wCluster, wUnderlay}
	for i := range 9 {
		nineLabels = append(nineLabels, recField(fieldLabel, recLabel(0, fmt.Sprint("k", i), "v")...))
	}
	full, err := recFull().Encode()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "decode record: truncated header: 0 bytes"},
		{"truncated", full[:len(full)-3], "decode record: field type 15 (labels) at offset 141: length 16 past the end (13 bytes left)"},
		{"truncated in a length", recWire(wCluster, []byte{fieldUnderlay, 0x80}), "field type 2 (underlay) at offset 5: length: truncated varint"},
		{"magic only", []byte{'W'}, "truncated header: 1 bytes"},
		{"bad magic", []byte{'X', 1}, "magic byte 0x58, want 0x57 ('W')"},
		{"version 2", []byte{'W', 2}, "version 2, this build reads only version 1"},
		{"version 0", []byte{'W', 0}, "version 0,"},
		{"over 512 bytes", recWire(wCluster, wUnderlay, recField(200, make([]byte, 510)...)), "decode record: 524 bytes, limit 512"},
		{"no fields", recWire(), `record field cluster: "": required`},
		{"no length", recWire([]byte{fieldCluster}), "field type 1 (cluster) at offset 2: length: truncated varint"},
		{"length past end", recWire([]byte{fieldCluster, 5, 'c'}), "field type 1 (cluster) at offset 2: length 5 past the end (1 bytes left)"},
		{"unknown field past end", recWire(wCluster, wUnderlay, []byte{99, 3, 0}), "field type 99 (unknown) at offset 11: length 3 past the end (1 bytes left)"},
		{"non-minimal length", recWire([]byte{fieldCluster, 0x81, 0x00, 'c'}), "non-minimal varint"},
		{"length overflows", recWire(append(append([]byte{fieldCluster}, bytes.Repeat([]byte{0xff}, 9)...), 0x02)), "overflows 64 bits"},
		{"cluster twice", recWire(wCluster, wUnderlay, wCluster), `record field cluster: "63": field repeated`},
		{"caps twice", recWire(wCluster, wUnderlay, recField(fieldCaps, 1), recField(fieldCaps, 1)), "record field caps"},
		{"no underlay", recWire(wCluster), `record field underlay: "[]": 0 addresses, want 1 to 4`},
		{"underlay of 5 bytes", recWire(wCluster, recField(fieldUnderlay, 1, 2, 3, 4, 5)), `record field underlay[0]: "0102030405": length 5, want 4 or 16`},
		{"five underlay", recWire(wCluster, wUnderlay, wUnderlay, wUnderlay, wUnderlay, wUnderlay), "record field underlay[4]: \"c6120001\": more than 4 addresses"},
		{"duplicate underlay", recWire(wCluster, wUnderlay, wUnderlay), `record field underlay[1]: "198.18.0.1": same as underlay[0]`},
		{"unspecified underlay", recWire(wCluster, wUnderlay, recField(fieldUnderlay, make([]byte, 16)...)), `record field underlay[1]: "::": unspecified address`},
		{"multicast underlay", recWire(wCluster, recField(fieldUnderlay, 224, 0, 0, 1)), `underlay[0]: "224.0.0.1": multicast address`},
		{"broadcast underlay", recWire(wCluster, recField(fieldUnderlay, 255, 255, 255, 255)), `underlay[0]: "255.255.255.255": broadcast address`},
		{"v4-mapped underlay", recWire(wCluster, recField(fieldUnderlay, recAddr("::ffff:198.18.0.1").AsSlice()...)), `IPv4-mapped IPv6 address`},
		{"public of 3 bytes", recWire(wCluster, wUnderlay, recField(fieldPublic, 1, 2, 3)), `record field public: "010203": length 3, want 4 or 16`},
		{"multicast public", recWire(wCluster, wUnderlay, recField(fieldPublic, recAddr("ff02::1").AsSlice()...)), `record field public: "ff02::1": multicast address`},
		{"public twice", recWire(wCluster, wUnderlay, recField(fieldPublic, 1, 2, 3, 4), recField(fieldPublic, 1, 2, 3, 4)), `record field public: "01020304": field repeated`},
		{"upper-case cluster", recWire(recField(fieldCluster, 'P'), wUnderlay), `record field cluster: "P": not [a-z0-9-]`},
		{"long region", recWire(wCluster, wUnderlay, recField(fieldRegion, bytes.Repeat([]byte{'r'}, 33)...)), "record field location.region: \"rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr\": longer than 32 characters"},
		{"zone not utf-8", recWire(wCluster, wUnderlay, recField(fieldZone, 0xff)), `record field location.zone: "\xff": not [a-z0-9-]`},
		{"subnet without length", recWire(wCluster, wUnderlay, recField(fieldSubnet4)), `record field subnets[0]: "": prefix length missing or over 32`},
		{"subnet /33", recWire(wCluster, wUnderlay, recField(fieldSubnet4, 33, 1, 2, 3, 4, 5)), "prefix length missing or over 32"},
		{"ipv6 subnet /129", recWire(wCluster, wUnderlay, recField(fieldSubnet6, 129)), "prefix length missing or over 128"},
		{"subnet bytes missing", recWire(wCluster, wUnderlay, recField(fieldSubnet4, 24, 10, 244)), `record field subnets[0]: "180af4": length 3, want 4 for a /24`},
		{"subnet bytes extra", recWire(wCluster, wUnderlay, recField(fieldSubnet4, 24, 10, 244, 3, 0)), "length 5, want 4 for a /24"},
		{"subnet not masked", recWire(wCluster, wUnderlay, recField(fieldSubnet4, 20, 10, 244, 17)), `record field subnets[0]: "10.244.17.0/20": bits set beyond the prefix length (want 10.244.16.0/20)`},
		{"subnet /0", recWire(wCluster, wUnderlay, recField(fieldSubnet6, 0)), `record field subnets[0]: "::/0": prefix length 0`},
		{"multicast subnet", recWire(wCluster, wUnderlay, recField(fieldSubnet4, 8, 239)), `"239.0.0.0/8": multicast prefix`},
		{"overlapping subnets", recWire(wCluster, wUnderlay, recField(fieldSubnet4, 24, 10, 244, 3), recField(fieldSubnet4, 16, 10, 244)), `record field subnets[1]: "10.244.0.0/16": overlaps subnets[0] 10.244.3.0/24`},
		{"five subnets", recWire(wCluster, wUnderlay, recField(fieldSubnet4, 32, 10, 0, 0, 1), recField(fieldSubnet4, 32, 10, 0, 0, 2),
			recField(fieldSubnet4, 32, 10, 0, 0, 3), recField(fieldSubnet4, 32, 10, 0, 0, 4), recField(fieldSubnet4, 32, 10, 0, 0, 5)), "record field subnets[4]: \"200a000005\": more than 4 subnets"},
		{"negative claimedAt", recWire(wCluster, wUnderlay, recField(fieldClaimedAt, 0x01)), `record field claimedAt: "-1": negative`},
		{"non-minimal claimedAt", recWire(wCluster, wUnderlay, recField(fieldClaimedAt, 0x82, 0x00)), `record field claimedAt: "8200": not one minimal varint`},
		{"claimedAt trailing byte", recWire(wCluster, wUnderlay, recField(fieldClaimedAt, 0x02, 0x00)), "record field claimedAt: \"0200\": not one minimal varint"},
		{"empty claimedAt", recWire(wCluster, wUnderlay, recField(fieldClaimedAt)), "record field claimedAt: \"\": not one minimal varint"},
		{"static with a value", recWire(wCluster, wUnderlay, recField(fieldStatic, 1)), `record field static: "01": length 1, want 0`},
		{"mac of 5 bytes", recWire(wCluster, wUnderlay, recField(fieldVTEPMAC, 2, 0, 0, 0, 1)), `record field vtepMAC: "0200000001": length 5, want 6`},
		{"multicast mac", recWire(wCluster, wUnderlay, recField(fieldVTEPMAC, 1, 0, 0x5e, 0, 0, 1)), `record field vtepMAC: "01:00:5e:00:00:01": multicast MAC address`},
		{"zero mac", recWire(wCluster, wUnderlay, recField(fieldVTEPMAC, 0, 0, 0, 0, 0, 0)), `record field vtepMAC: "00:00:00:00:00:00": zero MAC address`},
		{"short key", recWire(wCluster, wUnderlay, recField(fieldWireGuardKey, make([]byte, 31)...), wPort), "record field wireguardKey: \"" + strings.Repeat("00", 31) + "\": length 31, want 32"},
		{"key without port", recWire(wCluster, wUnderlay, wKey), `record field wireguardPort: "0": required with wireguardKey`},
		{"key with port 0", recWire(wCluster, wUnderlay, wKey, recField(fieldWireGuardPort, 0, 0)), `record field wireguardPort: "0": required with wireguardKey`},
		{"port without key", recWire(wCluster, wUnderlay, wPort), `record field wireguardPort: "51820": set without wireguardKey`},
		{"port of 3 bytes", recWire(wCluster, wUnderlay, wKey, recField(fieldWireGuardPort, 0, 1, 2)), `record field wireguardPort: "000102": length 3, want 2`},
		{"caps non-minimal", recWire(wCluster, wUnderlay, recField(fieldCaps, 0x81, 0x00)), `record field caps: "8100": not one minimal varint`},
		{"empty label", recWire(wCluster, wUnderlay, recField(fieldLabel)), `record field labels: "": empty`},
		{"label prefix code 8", recWire(wCluster, wUnderlay, recField(fieldLabel, recLabel(8, "a", "b")...)), `record field labels: "08016162": unknown key prefix code 8`},
		{"label key past end", recWire(wCluster, wUnderlay, recField(fieldLabel, 0, 5, 'a')), `record field labels: "000561": key length not a minimal varint within the field`},
		{"label key repeated", recWire(wCluster, wUnderlay, recField(fieldLabel, recLabel(1, "os", "linux")...), recField(fieldLabel, recLabel(0, "kubernetes.io/os", "linux")...)), `record field labels: "kubernetes.io/os": key repeated`},
		{"nine labels", recWire(nineLabels...), "record field labels: \"00026b3876\": more than 8 labels"},
		{"label key prefix only", recWire(wCluster, wUnderlay, recField(fieldLabel, recLabel(4, "", "x")...)), `record field labels: "topology.kubernetes.io/": empty key name`},
		{"label key bad prefix", recWire(wCluster, wUnderlay, recField(fieldLabel, recLabel(0, "Example.com/a", "x")...)), `record field labels: "Example.com/a": key prefix not a lower-case DNS subdomain`},
		{"label key bad name", recWire(wCluster, wUnderlay, recField(fieldLabel, recLabel(1, "-os", "x")...)), `record field labels: "kubernetes.io/-os": key name not [A-Za-z0-9._-]`},
		{"label key two slashes", recWire(wCluster, wUnderlay, recField(fieldLabel, recLabel(1, "a/b", "x")...)), `record field labels: "kubernetes.io/a/b": key name not`},
		{"label bad value", recWire(wCluster, wUnderlay, recField(fieldLabel, recLabel(0, "team", "a b")...)), `record field labels["team"]: "a b": not [A-Za-z0-9._-]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeRecord(tt.in)
			if err == nil {
				t.Fatalf("DecodeRecord(%x) = %+v, want error containing %q", tt.in, got, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "decode record: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("DecodeRecord(%x) error:\n  %v\nwant it to contain:\n  %s", tt.in, err, tt.want)
			}
			if diff := cmp.Diff(Record{}, got, recCmpOpts); diff != "" {
				t.Errorf("DecodeRecord returned a record with its error (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecodeRecordLenient covers what the decoder accepts from newer or
// non-canonical encoders: it must not refuse these records.
func TestDecodeRecordLenient(t *testing.T) {
	want := recMinimal()
	tests := []struct {
		name string
		in   []byte
		want Record
	}{
		{"unknown field skipped", recWire(wCluster, recField(0), recField(17, 1, 2), recField(255, make([]byte, 300)...), wUnderlay), want},
		{"fields in any order", recWire(wUnderlay, wCluster), want},
		{"unknown caps bits dropped", recWire(wCluster, wUnderlay, recField(fieldCaps, 0x81, 0x80, 0x01)), Record{Cluster: "c", Underlay: want.Underlay, Caps: CapVXLAN}},
		{"explicit zero values", recWire(wCluster, wUnderlay, recField(fieldClaimedAt, 0), recField(fieldCaps, 0), recField(fieldCloud)), want},
		{"label key prefix not abbreviated", recWire(wCluster, wUnderlay, recField(fieldLabel, recLabel(0, "kubernetes.io/os", "linux")...)),
			Record{Cluster: "c", Underlay: want.Underlay, Labels: map[string]string{"kubernetes.io/os": "linux"}}},
		{"mixed subnets keep order", recWire(wCluster, wUnderlay, recField(fieldSubnet6, 64, 0xfd, 0, 0, 0x10, 2, 0x44, 0, 3), recField(fieldSubnet4, 24, 10, 244, 3)),
			Record{Cluster: "c", Underlay: want.Underlay, Subnets: []netip.Prefix{recPrefix("fd00:10:244:3::/64"), recPrefix("10.244.3.0/24")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeRecord(tt.in)
			if err != nil {
				t.Fatalf("DecodeRecord(%x): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got, recCmpOpts); diff != "" {
				t.Errorf("DecodeRecord (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRecordValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(r *Record)
		want   string // the whole error; "" for none
	}{
		{"full record", func(r *Record) {}, ""},
		{"no cluster", func(r *Record) { r.Cluster = "" }, `record field cluster: "": required`},
		{"cluster with dot", func(r *Record) { r.Cluster = "prod.eu" }, `record field cluster: "prod.eu": not [a-z0-9-]`},
		{"cloud too long", func(r *Record) { r.Location.Cloud = strings.Repeat("x", 33) },
			`record field location.cloud: "` + strings.Repeat("x", 33) + `": longer than 32 characters`},
		{"zone upper case", func(r *Record) { r.Location.Zone = "EU" }, `record field location.zone: "EU": not [a-z0-9-]`},
		{"no underlay", func(r *Record) { r.Underlay = nil }, `record field underlay: "[]": 0 addresses, want 1 to 4`},
		{"five underlay", func(r *Record) {
			r.Underlay = []netip.Addr{recAddr("10.0.0.1"), recAddr("10.0.0.2"), recAddr("10.0.0.3"), recAddr("10.0.0.4"), recAddr("10.0.0.5")}
		}, `record field underlay: "[10.0.0.1 10.0.0.2 10.0.0.3 10.0.0.4 10.0.0.5]": 5 addresses, want 1 to 4`},
		{"unspecified underlay", func(r *Record) { r.Underlay[1] = netip.IPv6Unspecified() }, `record field underlay[1]: "::": unspecified address`},
		{"zero underlay", func(r *Record) { r.Underlay[0] = netip.Addr{} }, `record field underlay[0]: "invalid IP": invalid address`},
		{"underlay with zone", func(r *Record) { r.Underlay[0] = recAddr("fe80::1%eth0") }, `record field underlay[0]: "fe80::1%eth0": address with a zone`},
		{"v4-mapped public", func(r *Record) { r.Public = recAddr("::ffff:203.0.113.7") },
			`record field public: "::ffff:203.0.113.7": IPv4-mapped IPv6 address, use the IPv4 form`},
		{"unmasked subnet", func(r *Record) { r.Subnets[0] = recPrefix("10.244.3.1/24") },
			`record field subnets[0]: "10.244.3.1/24": bits set beyond the prefix length (want 10.244.3.0/24)`},
		{"invalid subnet", func(r *Record) { r.Subnets[0] = netip.Prefix{} }, `record field subnets[0]: "invalid Prefix": invalid prefix`},
		{"v4-mapped subnet", func(r *Record) { r.Subnets[0] = recPrefix("::ffff:10.244.3.0/120") },
			`record field subnets[0]: "::ffff:10.244.3.0/120": IPv4-mapped IPv6 prefix, use the IPv4 form`},
		{"duplicate subnet", func(r *Record) { r.Subnets = append(r.Subnets, r.Subnets[0]) },
			`record field subnets[1]: "10.244.3.0/24": overlaps subnets[0] 10.244.3.0/24`},
		{"five subnets", func(r *Record) {
			r.Subnets = []netip.Prefix{recPrefix("10.0.1.0/24"), recPrefix("10.0.2.0/24"), recPrefix("10.0.3.0/24"), recPrefix("10.0.4.0/24"), recPrefix("10.0.5.0/24")}
		}, `record field subnets: "[10.0.1.0/24 10.0.2.0/24 10.0.3.0/24 10.0.4.0/24 10.0.5.0/24]": 5 subnets, at most 4`},
		{"negative claimedAt", func(r *Record) { r.ClaimedAt = -5 }, `record field claimedAt: "-5": negative`},
		{"mac too long", func(r *Record) { r.VTEPMAC = make([]byte, 8) }, `record field vtepMAC: "0000000000000000": 8 bytes, want 6`},
		{"broadcast mac", func(r *Record) { r.VTEPMAC = bytes.Repeat([]byte{0xff}, 6) }, `record field vtepMAC: "ff:ff:ff:ff:ff:ff": multicast MAC address`},
		{"short key", func(r *Record) { r.WireGuardKey = []byte{1, 2, 3} }, `record field wireguardKey: "AQID": 3 bytes, want 32`},
		{"key without port", func(r *Record) { r.WireGuardPort = 0 }, `record field wireguardPort: "0": required with wireguardKey`},
		{"port without key", func(r *Record) { r.WireGuardKey = nil }, `record field wireguardPort: "51820": set without wireguardKey`},
		{"unknown caps", func(r *Record) { r.Caps |= 1 << 9 }, `record field caps: "0x215": unknown capability bits 0x200`},
		{"nine labels", func(r *Record) {
			for i := range 6 {
				r.Labels[fmt.Sprint("k", i)] = ""
			}
		}, `record field labels: "9 labels": at most 8`},
		{"label key prefix too long", func(r *Record) { r.Labels[strings.Repeat("a.", 127)+"/x"] = "" },
			`record field labels: "` + strings.Repeat("a.", 127) + `/x": key prefix longer than 253 characters`},
		{"label key prefix with empty part", func(r *Record) { r.Labels["a..b/x"] = "" }, `record field labels: "a..b/x": key prefix not a lower-case DNS subdomain`},
		{"label key empty prefix", func(r *Record) { r.Labels["/x"] = "" }, `record field labels: "/x": key prefix not a lower-case DNS subdomain`},
		{"label key name too long", func(r *Record) { r.Labels[strings.Repeat("n", 64)] = "" },
			`record field labels: "` + strings.Repeat("n", 64) + `": key name longer than 63 characters`},
		{"label key empty", func(r *Record) { r.Labels[""] = "" }, `record field labels: "": empty key name`},
		{"label key ends with dot", func(r *Record) { r.Labels["a."] = "" },
			`record field labels: "a.": key name not [A-Za-z0-9._-] beginning and ending with a letter or digit`},
		{"label value too long", func(r *Record) { r.Labels["team"] = strings.Repeat("v", 64) },
			`record field labels["team"]: "` + strings.Repeat("v", 64) + `": longer than 63 characters`},
		{"label value with slash", func(r *Record) { r.Labels["team"] = "a/b" },
			`record field labels["team"]: "a/b": not [A-Za-z0-9._-] beginning and ending with a letter or digit`},
		{"several problems", func(r *Record) { r.Cluster, r.ClaimedAt = "", -1 },
			"record field cluster: \"\": required\nrecord field claimedAt: \"-1\": negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := recFull()
			tt.change(&r)
			err := r.Validate()
			got := ""
			if err != nil {
				got = err.Error()
				var fe *FieldError
				if !errors.As(err, &fe) {
					t.Errorf("Validate error %v is not a *FieldError", err)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
			if _, encErr := r.Encode(); (encErr != nil) != (err != nil) {
				t.Errorf("Encode error %v, Validate error %v: want both or neither", encErr, err)
			}
		})
	}
}

func TestRecordEqual(t *testing.T) {
	tests := []struct {
		name   string
		change func(r *Record)
		want   bool
	}{
		{"same", func(r *Record) {}, true},
		{"empty vs nil mac", func(r *Record) { r.VTEPMAC = []byte{} }, true},
		{"empty vs nil labels", func(r *Record) { r.Labels = map[string]string{} }, true},
		{"empty vs nil subnets", func(r *Record) { r.Subnets = []netip.Prefix{} }, true},
		{"cluster", func(r *Record) { r.Cluster = "d" }, false},
		{"underlay order", func(r *Record) { r.Underlay = append(r.Underlay, recAddr("198.18.0.9")) }, false},
		{"public", func(r *Record) { r.Public = recAddr("203.0.113.1") }, false},
		{"zone", func(r *Record) { r.Location.Zone = "b" }, false},
		{"subnet", func(r *Record) { r.Subnets = []netip.Prefix{recPrefix("10.0.0.0/24")} }, false},
		{"claimedAt", func(r *Record) { r.ClaimedAt = 1 }, false},
		{"static", func(r *Record) { r.Static = true }, false},
		{"mac", func(r *Record) { r.VTEPMAC = []byte{2, 0, 0, 0, 0, 1} }, false},
		{"key", func(r *Record) { r.WireGuardKey = recWGKey() }, false},
		{"port", func(r *Record) { r.WireGuardPort = 1 }, false},
		{"caps", func(r *Record) { r.Caps = CapVXLAN }, false},
		{"label value", func(r *Record) { r.Labels = map[string]string{"a": ""} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := recMinimal(), recMinimal()
			tt.change(&b)
			if got := a.Equal(b); got != tt.want {
				t.Errorf("Equal = %v, want %v", got, tt.want)
			}
			if got := b.Equal(a); got != tt.want {
				t.Errorf("Equal reversed = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRecordSize shows that the largest plausible record fits in memberlist's
// metadata, that every field but the labels together always fits, and that
// labels that do not fit are refused with a clear error.
func TestRecordSize(t *testing.T) {
	r := recMaxPlausible()
	b, err := r.Encode()
	if err != nil {
		t.Fatalf("Encode of the largest plausible record: %v", err)
	}
	t.Logf("largest plausible record: %d of %d bytes", len(b), MaxRecordSize)

	r.Labels = nil
	r.ClaimedAt = math.MaxInt64
	for i := range r.Subnets {
		r.Subnets[i] = netip.PrefixFrom(r.Underlay[i], 128)
	}
	b, err = r.Encode()
	if err != nil {
		t.Fatalf("Encode of the largest record without labels: %v", err)
	}
	t.Logf("largest record without labels: %d bytes, which leaves %d for labels", len(b), MaxRecordSize-len(b))

	r = recMaxPlausible()
	r.Labels["kubernetes.io/hostname"] = "ip-10-0-1-23.eu-west-1.compute.internal"
	r.Labels["team"] = "payments-platform-and-billing-infrastructure"
	_, err = r.Encode()
	if !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("Encode of a record with too many label bytes: error %v, want ErrRecordTooLarge", err)
	}
	want := "encode record: too large for memberlist node metadata: 531 bytes, limit 512 (labels take 200)"
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("Encode error (-want +got):\n%s", diff)
	}
}

// recGolden is the record in testdata/record.golden.
func recGolden() Record {
	r := recFull()
	r.Underlay = append(r.Underlay, recAddr("2001:db8::a"))
	r.Subnets = append(r.Subnets, recPrefix("fd00:10:244:3::/64"))
	return r
}

// TestRecordGolden pins the wire format: a change to testdata/record.golden
// is a change to what every node in a cluster must understand.
func TestRecordGolden(t *testing.T) {
	path := filepath.Join("testdata", "record.golden")
	b, err := recGolden().Encode()
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if *updateRecordGolden {
		if err := os.WriteFile(path, []byte(annotateRecord(b)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden record (run go test -run TestRecordGolden -update-record-golden to write it): %v", err)
	}
	var hexText strings.Builder
	for line := range strings.Lines(string(text)) {
		data, _, _ := strings.Cut(line, "#")
		hexText.WriteString(strings.Join(strings.Fields(data), ""))
	}
	want, err := hex.DecodeString(hexText.String())
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	if !bytes.Equal(b, want) {
		t.Errorf("Encode differs from %s; the wire format changed. Got:\n%s", path, annotateRecord(b))
	}
	got, err := DecodeRecord(want)
	if err != nil {
		t.Fatalf("DecodeRecord(golden): %v", err)
	}
	if diff := cmp.Diff(recGolden(), got, recCmpOpts); diff != "" {
		t.Errorf("DecodeRecord(golden) (-want +got):\n%s", diff)
	}
}

// annotateRecord renders an encoded record as hex, one field a line, each
// with its name, for a reviewer to read.
func annotateRecord(b []byte) string {
	var s strings.Builder
	s.WriteString("# A node record in wire format version 1, one field a line:\n# type, length, value in hex, then what it is. See record.go.\n")
	fmt.Fprintf(&s, "%x # magic %q, version %d\n", b[:2], b[0], b[1])
	for rest := b[2:]; len(rest) > 0; {
		n, w := binary.Uvarint(rest[1:])
		v := rest[1+w : 1+w+int(n)]
		fmt.Fprintf(&s, "%02x %x %x # %s%s\n", rest[0], rest[1:1+w], v, fieldName(rest[0]), describeField(rest[0], v))
		rest = rest[1+w+int(n):]
	}
	return s.String()
}

// describeField returns the value of some fields as text for annotateRecord.
func describeField(typ byte, v []byte) string {
	switch typ {
	case fieldCluster, fieldCloud, fieldRegion, fieldZone:
		return fmt.Sprintf(" %q", v)
	case fieldUnderlay, fieldPublic:
		a, _ := netip.AddrFromSlice(v)
		return " " + a.String()
	case fieldSubnet4, fieldSubnet6:
		a := make([]byte, map[byte]int{fieldSubnet4: 4, fieldSubnet6: 16}[typ])
		copy(a, v[1:])
		ip, _ := netip.AddrFromSlice(a)
		return fmt.Sprintf(" %s/%d", ip, v[0])
	case fieldClaimedAt:
		x, _ := binary.Varint(v)
		return fmt.Sprint(" ", x)
	case fieldWireGuardPort:
		return fmt.Sprint(" ", binary.BigEndian.Uint16(v))
	case fieldCaps:
		return fmt.Sprintf(" %#x", v[0])
	case fieldLabel:
		n, w := binary.Uvarint(v[1:])
		return fmt.Sprintf(" %s%s=%s", labelKeyPrefixes()[v[0]], v[1+w:1+w+int(n)], v[1+w+int(n):])
	}
	return ""
}
