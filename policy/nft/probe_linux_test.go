package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/weft-net/weft/internal/netlab"
	"github.com/weft-net/weft/policy"
)

// prober sends real packets for flows between lab nodes: a TCP connect, a
// UDP datagram answered by an echo server, or an ICMP echo request. A flow
// is allowed when the answer comes back before the timeout.
type prober struct {
	lab    *netlab.Lab
	nodeOf map[netip.Addr]string
	next   atomic.Uint32 // source ports and ICMP ids, never reused in a run
}

// newProber starts, in every node of nodeOf, a TCP listener and a UDP echo
// server on every port of probePorts; t.Cleanup stops them.
func newProber(t *testing.T, lab *netlab.Lab, nodeOf map[netip.Addr]string) *prober {
	t.Helper()
	p := &prober{lab: lab, nodeOf: nodeOf}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // cleanups run last first: after the listeners close
	for _, node := range nodeOf {
		for _, port := range probePorts {
			var ln net.Listener
			var pc *net.UDPConn
			err := lab.Do(node, func() error {
				var err error
				if ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port)); err != nil {
					return err
				}
				pc, err = net.ListenUDP("udp4", &net.UDPAddr{Port: int(port)})
				return err
			})
			if err != nil {
				t.Fatalf("listen on port %d in %s: %v", port, node, err)
			}
			t.Cleanup(func() {
				ln.Close()
				pc.Close()
			})
			wg.Add(2)
			go func() {
				defer wg.Done()
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			go func() {
				defer wg.Done()
				buf := make([]byte, 64)
				for {
					n, from, err := pc.ReadFromUDP(buf)
					if err != nil {
						return
					}
					_, _ = pc.WriteToUDP(buf[:n], from)
				}
			}()
		}
	}
	return p
}

// withSourcePort returns f with a source port never used before in the
// run (20000-59999), for TCP and UDP.
func (p *prober) withSourcePort(f policy.Flow) policy.Flow {
	if f.Protocol == policy.ProtoTCP || f.Protocol == policy.ProtoUDP {
		f.SrcPort = uint16(20000 + p.next.Add(1)%40000)
	}
	return f
}

// probe reports whether f's packets get through within timeout.
func (p *prober) probe(f policy.Flow, timeout time.Duration) (bool, error) {
	node, ok := p.nodeOf[f.Src]
	if !ok {
		return false, fmt.Errorf("no lab node has %s", f.Src)
	}
	var allowed bool
	err := p.lab.Do(node, func() error {
		var err error
		switch f.Protocol {
		case policy.ProtoTCP:
			allowed, err = probeTCP(f, timeout)
		case policy.ProtoUDP:
			allowed, err = probeUDP(f, timeout)
		case policy.ProtoICMP:
			allowed, err = probeICMP(f, uint16(p.next.Add(1)), timeout)
		default:
			err = fmt.Errorf("cannot probe protocol %d", f.Protocol)
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("probe %s from %s: %w", f, node, err)
	}
	return allowed, nil
}

// isDenied reports whether err means the packet was dropped: the
// timeout, or EPERM, which a send gets when the host's own output hook
// drops it.
func isDenied(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, syscall.EPERM)
}

// ignoreDenied returns nil for an error that means the packet was dropped.
func ignoreDenied(err error) error {
	if isDenied(err) {
		return nil
	}
	return err
}

func probeTCP(f policy.Flow, timeout time.Duration) (bool, error) {
	d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: f.Src.AsSlice(), Port: int(f.SrcPort)}}
	c, err := d.Dial("tcp4", netip.AddrPortFrom(f.Dst, f.DstPort).String())
	if isDenied(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, c.Close()
}

func probeUDP(f policy.Flow, timeout time.Duration) (bool, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: f.Src.AsSlice(), Port: int(f.SrcPort)})
	if err != nil {
		return false, err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return false, err
	}
	if _, err := c.WriteToUDPAddrPort([]byte("probe"), netip.AddrPortFrom(f.Dst, f.DstPort)); err != nil {
		return false, ignoreDenied(err)
	}
	buf := make([]byte, 64)
	for {
		_, from, err := c.ReadFromUDPAddrPort(buf)
		if isDenied(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if from.Addr().Unmap() == f.Dst && from.Port() == f.DstPort {
			return true, nil
		}
	}
}

// probeICMP sends an echo request with identifier id from a raw socket
// bound to the source address and waits for the reply.
func probeICMP(f policy.Flow, id uint16, timeout time.Duration) (bool, error) {
	c, err := net.ListenPacket("ip4:icmp", f.Src.String())
	if err != nil {
		return false, err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return false, err
	}
	// RFC 792 echo: type, code, checksum, identifier, sequence, data.
	msg := []byte{8, 0, 0, 0, 0, 0, 0, 1, 'p', 'r', 'o', 'b', 'e'}
	binary.BigEndian.PutUint16(msg[4:], id)
	binary.BigEndian.PutUint16(msg[2:], checksum(msg))
	if _, err := c.WriteTo(msg, &net.IPAddr{IP: f.Dst.AsSlice()}); err != nil {
		return false, ignoreDenied(err)
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if isDenied(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		ip, _ := from.(*net.IPAddr)
		if ip == nil || n < 8 || !ip.IP.Equal(f.Dst.AsSlice()) || buf[0] != 0 || binary.BigEndian.Uint16(buf[4:]) != id {
			continue
		}
		return true, nil
	}
}

// checksum is the Internet checksum (RFC 1071).
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
