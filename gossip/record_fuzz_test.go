package gossip

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// FuzzDecodeRecord checks that DecodeRecord never panics and that whatever it
// accepts re-encodes, in no more bytes, to a record that decodes the same and
// encodes to the same bytes again.
func FuzzDecodeRecord(f *testing.F) {
	for _, r := range []Record{recMinimal(), recFull(), recIPv6(), recMaxPlausible(), recGolden()} {
		b, err := r.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)-3])                             // truncated
		f.Add(append(bytes.Clone(b), 200, 2, 0, 0))     // an unknown field
		f.Add(append(bytes.Clone(b), b[2:2+2+b[3]]...)) // the cluster field again
	}
	f.Add([]byte{})
	f.Add([]byte{'W', 2})
	f.Add(recWire(wCluster, wUnderlay, recField(fieldCaps, 0xff, 0x7f)))
	f.Add(recWire(wCluster, wUnderlay, recField(fieldSubnet4, 20, 10, 244, 17)))
	f.Add(recWire(wCluster, wUnderlay, recField(fieldLabel, recLabel(0, "kubernetes.io/os", "linux")...)))
	f.Add(recWire(wUnderlay, recField(fieldClaimedAt, 0x80, 0x00), wCluster))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := DecodeRecord(in)
		if err != nil {
			if !r.Equal(Record{}) {
				t.Fatalf("DecodeRecord(%x) returned %+v with error %v", in, r, err)
			}
			return
		}
		b, err := r.Encode()
		if err != nil {
			t.Fatalf("Encode of decoded %x: %v", in, err)
		}
		if len(b) > len(in) {
			t.Fatalf("Encode of decoded %x grew to %x", in, b)
		}
		r2, err := DecodeRecord(b)
		if err != nil {
			t.Fatalf("DecodeRecord(Encode(DecodeRecord(%x))): %v", in, err)
		}
		if !r2.Equal(r) {
			t.Fatalf("decoded %+v, after a round trip %+v", r, r2)
		}
		if b2, err := r2.Encode(); err != nil || !bytes.Equal(b2, b) {
			t.Fatalf("Encode not canonical: %x then %x, %v", b, b2, err)
		}
	})
}

// FuzzRecordRoundTrip builds a record from fuzz inputs and checks that Encode
// and Validate agree, and that whatever Encode accepts decodes to an equal
// record.
func FuzzRecordRoundTrip(f *testing.F) {
	f.Add("prod", []byte{198, 18, 0, 1}, []byte{203, 0, 113, 7}, "aws,eu-west-1,eu-west-1a", []byte{10, 244, 3, 0}, uint8(24),
		int64(1764064800123), true, []byte{2, 0, 0, 0, 0, 1}, recWGKey(), uint16(51820), uint16(CapVXLAN), "kubernetes.io/os", "linux")
	f.Add("v6", recAddr("2001:db8::1").AsSlice(), []byte{}, "", recAddr("fd00::").AsSlice(), uint8(64),
		int64(0), false, []byte{}, []byte{}, uint16(0), uint16(0), "", "")
	f.Add("Bad", make([]byte, 20), []byte{255, 255, 255, 255}, "a,,b", []byte{10, 0, 0, 1}, uint8(8),
		int64(-1), false, []byte{1, 2, 3}, []byte{1}, uint16(1), uint16(0xffff), "a/b/c", "-")
	f.Fuzz(func(t *testing.T, cluster string, underlay, public []byte, location string, subnet []byte, bits uint8,
		claimedAt int64, static bool, mac, key []byte, port, caps uint16, labelKey, labelValue string) {
		r := Record{Cluster: cluster, ClaimedAt: claimedAt, Static: static, VTEPMAC: mac,
			WireGuardKey: key, WireGuardPort: port, Caps: Capability(caps)}
		size := 4
		if len(underlay)%16 == 0 {
			size = 16
		}
		for ; len(underlay) >= size; underlay = underlay[size:] {
			a, _ := netip.AddrFromSlice(underlay[:size])
			r.Underlay = append(r.Underlay, a)
		}
		r.Public, _ = netip.AddrFromSlice(public)
		loc := strings.SplitN(location, ",", 3)
		r.Location.Cloud = loc[0]
		if len(loc) == 3 {
			r.Location.Region, r.Location.Zone = loc[1], loc[2]
		}
		if a, ok := netip.AddrFromSlice(subnet); ok {
			r.Subnets = append(r.Subnets, netip.PrefixFrom(a, int(bits)))
		}
		if labelKey != "" {
			r.Labels = map[string]string{labelKey: labelValue, "kubernetes.io/" + labelKey: labelValue}
		}

		b, err := r.Encode()
		if verr := r.Validate(); verr != nil || err != nil {
			if verr == nil && !errors.Is(err, ErrRecordTooLarge) {
				t.Fatalf("Encode of a valid record: %v", err)
			}
			if verr != nil && err == nil {
				t.Fatalf("Encode accepted a record Validate refuses: %v", verr)
			}
			return
		}
		got, err := DecodeRecord(b)
		if err != nil {
			t.Fatalf("DecodeRecord(Encode(%+v)): %v", r, err)
		}
		if !got.Equal(r) {
			t.Fatalf("round trip of %+v gave %+v", r, got)
		}
	})
}
