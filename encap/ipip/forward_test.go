package ipip_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/weft-net/weft/encap/ipip"
	"github.com/weft-net/weft/encap/ipip/ipiptest"
)

// fakeHost is node n of a fake cluster: underlay 198.18.1.n, subnet
// 10.244.n.0/24, a user-space driver on fakes.
type fakeHost struct {
	n    int
	k    *ipiptest.Kernel
	h    *ipiptest.Host
	d    *ipip.Driver
	want ipip.Want
}

func underlay(n int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 1, byte(n)}) }
func subnet(n int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(n), 0}), 24)
}

// newFakeCluster starts hosts 1..n on one fake underlay, each with all the
// others as peers, converged.
func newFakeCluster(t *testing.T, n int) []*fakeHost {
	t.Helper()
	net := ipiptest.NewNet()
	var hosts []*fakeHost
	for i := 1; i <= n; i++ {
		k := ipiptest.NewKernel(false)
		x := &fakeHost{n: i, k: k, h: net.Host(k)}
		x.d = newFakeDriver(t, ipip.ModeUserspace, k, x.h.Open)
		x.want = ipip.Want{Device: &ipip.Device{Name: ipip.DefaultDevice, Local: underlay(i), MTU: 1480,
			Addr: netip.PrefixFrom(subnet(i).Addr(), 32)}}
		for j := 1; j <= n; j++ {
			if j != i {
				x.want.Peers = append(x.want.Peers, ipip.Peer{Remote: underlay(j), Subnets: []netip.Prefix{subnet(j)}})
			}
		}
		if err := x.d.Apply(context.Background(), x.want); err != nil {
			t.Fatalf("apply on host %d: %v", i, err)
		}
		hosts = append(hosts, x)
	}
	return hosts
}

func newFakeDriver(t *testing.T, mode ipip.Mode, k ipip.Kernel, open ipip.Opener) *ipip.Driver {
	t.Helper()
	d, err := ipip.New(ipip.Config{Mode: mode, Kernel: k, Open: open})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// packet builds an IPv4 packet (IHL 5, TTL 64) with a valid header
// checksum.
func packet(src, dst string, proto byte, flags uint16, payload []byte) []byte {
	p := make([]byte, 20+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[6:], flags)
	p[8], p[9] = 64, proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[10:], ipiptest.Checksum(p[:20]))
	copy(p[20:], payload)
	return p
}

const df = 0x4000

// receive returns the next packet from c within a deadline, or fails t.
func receive(t *testing.T, c <-chan []byte, what string) []byte {
	t.Helper()
	select {
	case p := <-c:
		return p
	case <-time.After(10 * time.Second):
		t.Fatalf("no packet %s within 10s", what)
		return nil
	}
}

// none fails t if c holds a packet now.
func none(t *testing.T, c <-chan []byte, what string) {
	t.Helper()
	select {
	case p := <-c:
		t.Errorf("unexpected packet %s: %x", what, p)
	default:
	}
}

// statsDelta returns after - before, field by field.
func statsDelta(before, after ipip.Stats) ipip.Stats {
	return ipip.Stats{
		TxPackets: after.TxPackets - before.TxPackets, TxBytes: after.TxBytes - before.TxBytes,
		RxPackets: after.RxPackets - before.RxPackets, RxBytes: after.RxBytes - before.RxBytes,
		TxReads: after.TxReads - before.TxReads, RxReads: after.RxReads - before.RxReads,
		FragNeeded:    after.FragNeeded - before.FragNeeded,
		DropMalformed: after.DropMalformed - before.DropMalformed, DropNotIPv4: after.DropNotIPv4 - before.DropNotIPv4,
		DropUnknownPeer: after.DropUnknownPeer - before.DropUnknownPeer, DropNoPeer: after.DropNoPeer - before.DropNoPeer,
		DropTooBig: after.DropTooBig - before.DropTooBig, DropSend: after.DropSend - before.DropSend,
		DropWrite: after.DropWrite - before.DropWrite, ReadErrors: after.ReadErrors - before.ReadErrors,
	}
}

// waitStats polls d's Stats until they are before + want.
func waitStats(t *testing.T, d *ipip.Driver, before, want ipip.Stats) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		if diff := cmp.Diff(want, statsDelta(before, d.Stats())); diff != "" {
			return fmt.Errorf("stats change (-want +got):\n%s", diff)
		}
		return nil
	})
}

func TestForwardFromTUN(t *testing.T) {
	hosts := newFakeCluster(t, 3)
	h1 := hosts[0]
	udp := bytes.Repeat([]byte{0x5a}, 100)
	big := packet("10.244.1.2", "10.244.2.2", 6, df, make([]byte, 1480)) // 1500 bytes, over 1480
	for _, c := range []struct {
		name  string
		pkt   []byte
		to    int    // host whose TUN gets pkt; 0: none
		reply string // hex of the ICMP reply into host 1's TUN, checksums zeroed
		want  ipip.Stats
	}{
		{name: "to host 2", pkt: packet("10.244.1.2", "10.244.2.2", 17, df, udp), to: 2,
			want: ipip.Stats{TxPackets: 1, TxBytes: 120, TxReads: 1}},
		{name: "to host 3", pkt: packet("10.244.1.2", "10.244.3.9", 17, 0, udp), to: 3,
			want: ipip.Stats{TxPackets: 1, TxBytes: 120, TxReads: 1}},
		{name: "over the MTU without DF: sent, the underlay fragments", pkt: packet("10.244.1.2", "10.244.2.2", 6, 0, make([]byte, 1480)), to: 2,
			want: ipip.Stats{TxPackets: 1, TxBytes: 1500, TxReads: 1}},
		{name: "over the MTU with DF: frag-needed back", pkt: big,
			reply: "45c00240000000004001" + "0000" + "0af402020af40102" + "0304" + "0000" + "000005c8" + hex.EncodeToString(big[:548]),
			want:  ipip.Stats{FragNeeded: 1, DropTooBig: 1, TxReads: 1}},
		{name: "no peer's subnet", pkt: packet("10.244.1.2", "10.9.9.9", 17, df, udp), want: ipip.Stats{DropNoPeer: 1, TxReads: 1}},
		{name: "IPv6", pkt: append([]byte{0x60}, make([]byte, 47)...), want: ipip.Stats{DropNotIPv4: 1, TxReads: 1}},
		{name: "malformed", pkt: packet("10.244.1.2", "10.244.2.2", 17, df, udp)[:30], want: ipip.Stats{DropMalformed: 1, TxReads: 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := h1.d.Stats()
			h1.h.TUN().Inject(c.pkt)
			if c.to != 0 {
				got := receive(t, hosts[c.to-1].h.TUN().Written(), fmt.Sprintf("at host %d", c.to))
				if !bytes.Equal(got, c.pkt) {
					t.Errorf("host %d got %x, want %x", c.to, got, c.pkt)
				}
			}
			if c.reply != "" {
				got := receive(t, h1.h.TUN().Written(), "back at host 1")
				if ipiptest.Checksum(got[:20]) != 0 || ipiptest.Checksum(got[20:]) != 0 {
					t.Errorf("reply checksums do not add up")
				}
				got[10], got[11], got[22], got[23] = 0, 0, 0, 0
				if diff := cmp.Diff(c.reply, hex.EncodeToString(got)); diff != "" {
					t.Errorf("reply (-want +got):\n%s", diff)
				}
			}
			waitStats(t, h1.d, before, c.want)
			for _, x := range hosts {
				none(t, x.h.TUN().Written(), fmt.Sprintf("at host %d", x.n))
			}
		})
	}

	t.Run("refused by the raw socket", func(t *testing.T) {
		before := h1.d.Stats()
		h1.h.Conn().FailNextWrite(unix.EHOSTUNREACH)
		h1.h.TUN().Inject(packet("10.244.1.2", "10.244.2.2", 17, df, udp))
		waitStats(t, h1.d, before, ipip.Stats{TxBytes: 120, DropSend: 1, TxReads: 1})
	})
}

func TestForwardFromConn(t *testing.T) {
	hosts := newFakeCluster(t, 2)
	h2 := hosts[1]
	inner := packet("10.244.1.2", "10.244.2.2", 17, df, []byte("hello"))
	notIPIP := ipiptest.Encapsulate(underlay(1), underlay(2), inner)
	notIPIP[9] = 17
	// A TCP packet of 3000 bytes of payload, as GRO on the underlay merges
	// segments: the TUN must get segments that fit its MTU.
	tcp := make([]byte, 20+3000)
	binary.BigEndian.PutUint32(tcp[4:], 1000) // sequence number
	tcp[12], tcp[13] = 5<<4, 0x18             // header length 20; ACK, PSH
	merged := packet("10.244.1.2", "10.244.2.2", 6, df, tcp)
	for _, c := range []struct {
		name     string
		datagram []byte
		inner    []int // sizes of the packets the TUN gets
		want     ipip.Stats
	}{
		{"from a peer", ipiptest.Encapsulate(underlay(1), underlay(2), inner), []int{25}, ipip.Stats{RxPackets: 1, RxBytes: 25, RxReads: 1}},
		{"from no peer", ipiptest.Encapsulate(netip.MustParseAddr("198.18.1.99"), underlay(2), inner), nil, ipip.Stats{DropUnknownPeer: 1, RxReads: 1}},
		{"not protocol 4", notIPIP, nil, ipip.Stats{DropMalformed: 1, RxReads: 1}},
		{"cut short", ipiptest.Encapsulate(underlay(1), underlay(2), inner)[:30], nil, ipip.Stats{DropMalformed: 1, RxReads: 1}},
		{"merged by GRO", ipiptest.Encapsulate(underlay(1), underlay(2), merged), []int{1480, 1480, 160}, ipip.Stats{RxPackets: 3, RxBytes: 3120, RxReads: 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := h2.d.Stats()
			h2.h.Conn().Receive(c.datagram)
			var seq []uint32
			for i, size := range c.inner {
				got := receive(t, h2.h.TUN().Written(), fmt.Sprintf("%d at host 2", i))
				if len(got) != size || ipiptest.Checksum(got[:20]) != 0 {
					t.Errorf("packet %d: %d bytes, header checksum %#x; want %d bytes, 0", i, len(got), ipiptest.Checksum(got[:20]), size)
				}
				if got[9] == 6 {
					seq = append(seq, binary.BigEndian.Uint32(got[24:]))
				}
			}
			if c.name == "merged by GRO" {
				if diff := cmp.Diff([]uint32{1000, 2440, 3880}, seq); diff != "" {
					t.Errorf("sequence numbers (-want +got):\n%s", diff)
				}
			}
			waitStats(t, h2.d, before, c.want)
			none(t, h2.h.TUN().Written(), "at host 2")
		})
	}
}

// TestForwardPeersChange checks that Apply with other peers changes where
// packets go at once, with no kernel call and no reopening.
func TestForwardPeersChange(t *testing.T) {
	hosts := newFakeCluster(t, 3)
	h1 := hosts[0]
	pkt := packet("10.244.1.2", "10.244.2.2", 17, df, []byte("x"))
	h1.h.TUN().Inject(pkt)
	receive(t, hosts[1].h.TUN().Written(), "at host 2")

	// Host 3 takes over 10.244.2.0/24.
	want := h1.want
	want.Peers = []ipip.Peer{{Remote: underlay(3), Subnets: []netip.Prefix{subnet(2), subnet(3)}}}
	lines, err := h1.d.Check(context.Background(), want)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{
		"peer 198.18.1.3 10.244.2.0/24,10.244.3.0/24 missing",
		"peer 198.18.1.2 10.244.2.0/24 unwanted",
		"peer 198.18.1.3 10.244.3.0/24 unwanted",
	}, lines); diff != "" {
		t.Errorf("Check (-want +got):\n%s", diff)
	}
	h1.k.ResetMutations()
	if err := h1.d.Apply(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	if m := h1.k.Mutations(); len(m) != 0 || h1.h.Opens() != 1 {
		t.Errorf("peers change made kernel calls %v, opened %d times; want none, 1", m, h1.h.Opens())
	}
	h1.h.TUN().Inject(pkt)
	if got := receive(t, hosts[2].h.TUN().Written(), "at host 3"); !bytes.Equal(got, pkt) {
		t.Errorf("host 3 got %x", got)
	}
	// Host 2 is no peer now: what it sends is dropped.
	hosts[1].h.TUN().Inject(packet("10.244.2.2", "10.244.1.2", 17, df, []byte("y")))
	eventually(t, 10*time.Second, func() error {
		if h1.d.Stats().DropUnknownPeer == 0 {
			return errors.New("host 1 has not dropped host 2's packet")
		}
		return nil
	})
	none(t, h1.h.TUN().Written(), "at host 1")
}
