package health

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/weft-net/weft/fabric"
)

// Probe packets.
//
// A probe is one UDP datagram, to Config.Port:
//
//	0  "WFTH"            magic
//	4  1                 version
//	5  type              1 request, 2 reply, 3 self-test request, 4 self-test echo
//	6  path              the path it tests (PathCode); a reply goes back over the same kind
//	7  n                 length of the sender's node name, 1 to 255
//	8  name              the sender's node name (printable ASCII)
//	8+n    seq           uint64, big endian, chosen by the requester; echoed
//	16+n   sent          int64 Unix nanoseconds of the requester's clock; echoed
//	24+n   p             uint16, big endian: length of the padding
//	26+n   padding       p zero bytes: path MTU probes are padded to the size they test;
//	                     in self-test packets (types 3, 4) p bytes of any value, the test
//	                     pattern, which the echo carries back unchanged
//	26+n+p mac           the first 16 bytes of HMAC-SHA256(key, everything before)
//
// The key is derived from the cluster key (ProbeKey), so only members send
// probes that are answered, and answers cannot be forged. A replayed
// request gets an answer no one waits for; a replayed answer matches no
// waiting probe.

// Probe message types.
const (
	ProbeRequest = 1
	ProbeReply   = 2
	// ProbeTest is an encapsulation self-test packet: its padding is a
	// test pattern (Probe.Payload) that the answer, a ProbeEcho, carries
	// back byte for byte.
	ProbeTest = 3
	ProbeEcho = 4
)

// isProbeType reports whether t is a known probe type.
func isProbeType(t int) bool { return t >= ProbeRequest && t <= ProbeEcho }

// isTestType reports whether probes of type t carry a test pattern.
func isTestType(t int) bool { return t == ProbeTest || t == ProbeEcho }

const (
	probeMagic   = "WFTH"
	probeVersion = 1
	probeMACLen  = 16
	probeFixed   = 8 + 8 + 8 + 2 + probeMACLen // header, seq, sent, padding length, mac
	// MaxPad is the most padding a probe carries: enough for a 9000-byte
	// (jumbo) path MTU probe.
	MaxPad = 9000
	// MaxProbeLen is the longest probe: a 255-byte name and MaxPad.
	MaxProbeLen = probeFixed + 255 + MaxPad
)

// ProbeLen returns the length of the encoding of a probe from a node
// named name with pad bytes of padding.
func ProbeLen(name string, pad int) int { return probeFixed + len(name) + pad }

// pathCodes numbers the path kinds on the wire.
var pathCodes = [...]fabric.PathKind{1: fabric.PathDirect, 2: fabric.PathVXLAN, 3: fabric.PathNative, 4: fabric.PathIPIP, 5: fabric.PathWireGuard}

// Probe is one decoded probe packet.
type Probe struct {
	Type int // ProbeRequest or ProbeReply
	Path fabric.PathKind
	Node string // the sender
	Seq  uint64
	Sent time.Time
	// Pad is the length of the padding (path MTU probes); 0 to MaxPad.
	// Self-test packets (ProbeTest, ProbeEcho) carry Payload instead and
	// leave Pad 0.
	Pad int
	// Payload is the test pattern of a self-test packet, at most MaxPad
	// bytes; AppendProbe does not retain it.
	Payload []byte
}

// ProbeKey derives the probe key from the cluster key and name: HMAC-SHA256
// keyed with the cluster key over a fixed label and the cluster name. With
// no cluster key (insecure: true) the key depends on the cluster name alone
// and keeps out only strays, not attackers.
func ProbeKey(clusterKey []byte, cluster string) []byte {
	m := hmac.New(sha256.New, clusterKey)
	m.Write([]byte("weft path health probe v1\x00"))
	m.Write([]byte(cluster))
	return m.Sum(nil)
}

// AppendProbe appends the encoding of p, authenticated with key, to b.
// It fails, appending nothing, on an unknown type or path or a name that
// is empty, longer than 255 bytes or not printable ASCII.
func AppendProbe(b []byte, p Probe, key []byte) ([]byte, error) {
	if !isProbeType(p.Type) {
		return b, fmt.Errorf("probe type %d: want %d to %d", p.Type, ProbeRequest, ProbeEcho)
	}
	code := pathCode(p.Path)
	if code == 0 {
		return b, fmt.Errorf("probe path %q: not a path kind probes test", p.Path)
	}
	if err := checkName(p.Node); err != nil {
		return b, err
	}
	if p.Pad < 0 || p.Pad > MaxPad {
		return b, fmt.Errorf("probe padding %d: want 0 to %d", p.Pad, MaxPad)
	}
	if isTestType(p.Type) && p.Pad != 0 {
		return b, fmt.Errorf("probe padding %d: a self-test packet carries a payload instead", p.Pad)
	}
	if !isTestType(p.Type) && len(p.Payload) != 0 {
		return b, fmt.Errorf("probe payload of %d bytes: only self-test packets carry one", len(p.Payload))
	}
	if len(p.Payload) > MaxPad {
		return b, fmt.Errorf("probe payload of %d bytes: want at most %d", len(p.Payload), MaxPad)
	}
	start := len(b)
	b = append(b, probeMagic...)
	b = append(b, probeVersion, byte(p.Type), code, byte(len(p.Node)))
	b = append(b, p.Node...)
	b = binary.BigEndian.AppendUint64(b, p.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(p.Sent.UnixNano()))
	if isTestType(p.Type) {
		b = binary.BigEndian.AppendUint16(b, uint16(len(p.Payload)))
		b = append(b, p.Payload...)
	} else {
		b = binary.BigEndian.AppendUint16(b, uint16(p.Pad))
		b = append(b, make([]byte, p.Pad)...)
	}
	m := hmac.New(sha256.New, key)
	m.Write(b[start:])
	return append(b, m.Sum(nil)[:probeMACLen]...), nil
}

// Errors of DecodeProbe that callers may count apart.
var (
	ErrNotProbe = errors.New("not a weft probe")
	ErrBadMAC   = errors.New("probe authentication failed")
)

// DecodeProbe decodes one probe packet and checks its authentication with
// key. It is strict: the length must be exact, every field valid. It does
// not retain b.
func DecodeProbe(b []byte, key []byte) (Probe, error) {
	var p Probe
	if len(b) < probeFixed+1 || string(b[:4]) != probeMagic {
		return p, ErrNotProbe
	}
	if b[4] != probeVersion {
		return p, fmt.Errorf("probe version %d: want %d", b[4], probeVersion)
	}
	n := int(b[7])
	if len(b) < probeFixed+n {
		return p, fmt.Errorf("probe length %d: want at least %d for a %d-byte name", len(b), probeFixed+n, n)
	}
	pad := int(binary.BigEndian.Uint16(b[24+n:]))
	if len(b) != probeFixed+n+pad {
		return p, fmt.Errorf("probe length %d: want %d for a %d-byte name and %d bytes of padding", len(b), probeFixed+n+pad, n, pad)
	}
	body, mac := b[:len(b)-probeMACLen], b[len(b)-probeMACLen:]
	m := hmac.New(sha256.New, key)
	m.Write(body)
	if !hmac.Equal(m.Sum(nil)[:probeMACLen], mac) {
		return p, ErrBadMAC
	}
	p.Type = int(b[5])
	if !isProbeType(p.Type) {
		return p, fmt.Errorf("probe type %d: want %d to %d", p.Type, ProbeRequest, ProbeEcho)
	}
	if int(b[6]) >= len(pathCodes) || pathCodes[b[6]] == "" {
		return p, fmt.Errorf("probe path code %d: unknown", b[6])
	}
	p.Path = pathCodes[b[6]]
	p.Node = string(b[8 : 8+n])
	if err := checkName(p.Node); err != nil {
		return p, err
	}
	p.Seq = binary.BigEndian.Uint64(b[8+n:])
	p.Sent = time.Unix(0, int64(binary.BigEndian.Uint64(b[16+n:])))
	if pad > MaxPad {
		return p, fmt.Errorf("probe padding %d: want 0 to %d", pad, MaxPad)
	}
	if isTestType(p.Type) {
		p.Payload = append([]byte{}, b[26+n:26+n+pad]...)
		return p, nil
	}
	for _, c := range b[26+n : 26+n+pad] {
		if c != 0 {
			return p, errors.New("probe padding not zero")
		}
	}
	p.Pad = pad
	return p, nil
}

func pathCode(k fabric.PathKind) byte {
	for i, c := range pathCodes {
		if c == k && c != "" {
			return byte(i)
		}
	}
	return 0
}

func checkName(name string) error {
	if name == "" || len(name) > 255 {
		return fmt.Errorf("probe node name %q: want 1 to 255 bytes", name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("probe node name %q: byte %#x not allowed", name, c)
		}
	}
	return nil
}

// appendMAC appends the probe MAC of body to body (tests sign edited packets).
func appendMAC(body, key []byte) ([]byte, error) {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return append(body, m.Sum(nil)[:probeMACLen]...), nil
}
