package ipip_test

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// kernelIPIP is an IP-in-IP packet byte for byte as Linux's ipip module
// sends it from 198.18.1.1 to 198.18.1.2 (a tunnel with "ttl inherit" and
// pmtudisc: outer TTL = inner TTL, outer DF set, TOS 0), carrying a UDP
// datagram from workload 10.244.1.2:40001 to 10.244.2.2:9998 that its host
// forwarded once (TTL 63). Every checksum was worked out by hand (RFC 1071)
// and is checked again by TestKernelVector.
const kernelIPIP = "" +
	// outer IPv4 header, RFC 2003
	"4500003c" + // version 4, IHL 5; TOS 0; total length 60
	"12344000" + // ID 0x1234; flags DF, fragment offset 0
	"3f049b62" + // TTL 63 (inherited); protocol 4 (IP-in-IP); header checksum
	"c6120101" + // source 198.18.1.1
	"c6120102" + // destination 198.18.1.2
	// inner IPv4 header: nothing between it and the outer one
	"45000028" + // version 4, IHL 5; TOS 0; total length 40
	"00014000" + // ID 1; flags DF
	"3f1122d9" + // TTL 63; protocol 17 (UDP); header checksum
	"0af40102" + // source 10.244.1.2
	"0af40202" + // destination 10.244.2.2
	// UDP
	"9c41270e" + // ports 40001 -> 9998
	"0014d256" + // length 20; checksum
	"6b65726e656c2d6970697021" // "kernel-ipip!"

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sum16 returns the Internet checksum of b; 0 over a header with its
// checksum in place means the checksum is right.
func sum16(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// udpSum16 checks the UDP checksum of the IPv4 packet p (0 when right).
func udpSum16(p []byte) uint16 {
	ihl := int(p[0]&0xf) * 4
	udp := p[ihl:binary.BigEndian.Uint16(p[2:])]
	pseudo := append(append([]byte{}, p[12:20]...), 0, 17, byte(len(udp)>>8), byte(len(udp)))
	return sum16(append(pseudo, udp...))
}

func TestKernelVector(t *testing.T) {
	p := mustHex(t, kernelIPIP)
	for _, c := range []struct {
		name string
		sum  uint16
	}{
		{"outer header", sum16(p[:20])},
		{"inner header", sum16(p[20:40])},
		{"udp", udpSum16(p[20:])},
	} {
		if c.sum != 0 {
			t.Errorf("%s checksum does not add up (%#04x)", c.name, c.sum)
		}
	}
}

// TestWire checks the user-space path on the wire against the kernel's
// format, both ways: what it sends, captured on the underlay, byte by byte;
// and that it takes what a kernel ipip peer sends, as long as the peer is
// known.
func TestWire(t *testing.T) {
	requireRoot(t)
	a, b := newLab(t)

	t.Run("sent", func(t *testing.T) {
		// Inner UDP (ip[29] is the inner protocol) between underlay
		// addresses, outer protocol 4.
		wait := captureOne(t, b.ns, "ul", "ip proto 4 and src host 198.18.1.1 and dst host 198.18.1.2 and ip[29] = 17")
		var c *net.UDPConn
		inNamespace(t, a.wlh, func() (err error) {
			c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 244, 1, 2), Port: 40000})
			return err
		})
		defer c.Close()
		if _, err := c.WriteToUDP([]byte("weft-ipip-wire"), &net.UDPAddr{IP: net.IPv4(10, 244, 2, 2), Port: 9999}); err != nil {
			t.Fatal(err)
		}
		got := wait()
		if len(got) < 40 {
			t.Fatalf("captured %d bytes: %x", len(got), got)
		}
		for _, c := range []struct {
			name string
			sum  uint16
		}{{"outer header", sum16(got[:20])}, {"inner header", sum16(got[20:40])}, {"udp", udpSum16(got[20:])}} {
			if c.sum != 0 {
				t.Errorf("captured %s checksum does not add up", c.name)
			}
		}
		// The IDs and checksums vary (the checksums were checked above).
		for _, i := range []int{4, 5, 10, 11, 24, 25, 30, 31, 46, 47} {
			got[i] = 0
		}
		want := mustHex(t, ""+
			"4500003e"+"00004000"+"40040000"+"c6120101"+"c6120102"+ // outer: 62 bytes, DF, TTL 64 (raw socket default), protocol 4
			"4500002a"+"00004000"+"3f110000"+"0af40102"+"0af40202"+ // inner as the workload sent it, TTL 63 after its host
			"9c40270f"+"00160000"+hex.EncodeToString([]byte("weft-ipip-wire")))
		if diff := cmp.Diff(hexLines(want), hexLines(got)); diff != "" {
			t.Errorf("captured packet (-want +got, IDs and checksums zeroed):\n%s", diff)
		}
	})

	t.Run("received from a kernel peer", func(t *testing.T) {
		var l *net.UDPConn
		inNamespace(t, b.wlh, func() (err error) {
			l, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 244, 2, 2), Port: 9998})
			return err
		})
		defer l.Close()
		// A raw IPPROTO_RAW socket sends the packet as it is (IP_HDRINCL),
		// past host 1's driver: as a kernel ipip peer at 198.18.1.1 would.
		var fd int
		inNamespace(t, a.nsh, func() (err error) {
			fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
			return err
		})
		defer unix.Close(fd)
		to := &unix.SockaddrInet4{Addr: [4]byte{198, 18, 1, 2}}

		// First from an underlay address that is no peer: dropped.
		spoofed := mustHex(t, kernelIPIP)
		copy(spoofed[48:], "spoofed-ipip")
		spoofed[15] = 99 // outer source 198.18.1.99
		fixChecksums(spoofed)
		before := b.d.Stats().DropUnknownPeer
		if err := unix.Sendto(fd, spoofed, 0, to); err != nil {
			t.Fatalf("send spoofed: %v", err)
		}
		eventually(t, 10*time.Second, func() error {
			if got := b.d.Stats().DropUnknownPeer; got <= before {
				return fmt.Errorf("DropUnknownPeer %d, want more than %d", got, before)
			}
			return nil
		})
		if err := unix.Sendto(fd, mustHex(t, kernelIPIP), 0, to); err != nil {
			t.Fatalf("send: %v", err)
		}
		buf := make([]byte, 100)
		l.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, from, err := l.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("receive on workload 2: %v", err)
		}
		if got, want := fmt.Sprintf("%q from %s", buf[:n], from), fmt.Sprintf("%q from %s", "kernel-ipip!",
			netip.MustParseAddrPort("10.244.1.2:40001")); got != want {
			t.Errorf("workload 2 got %s, want %s", got, want)
		}
	})
}

// fixChecksums recomputes the outer and inner header checksums and the
// UDP checksum of an IP-in-IP packet of UDP.
func fixChecksums(p []byte) {
	p[10], p[11] = 0, 0
	binary.BigEndian.PutUint16(p[10:], sum16(p[:20]))
	in := p[20:]
	in[10], in[11] = 0, 0
	binary.BigEndian.PutUint16(in[10:], sum16(in[:20]))
	in[26], in[27] = 0, 0
	binary.BigEndian.PutUint16(in[26:], udpSum16(in))
}
