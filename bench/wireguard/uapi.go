package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// uapiPeer is what a wireguard-go device reports of one peer.
type uapiPeer struct {
	PublicKey  string // hex
	AllowedIPs []netip.Prefix
	// Handshake is the last completed handshake (zero: none yet).
	Handshake time.Time
}

// uapiGet asks the wireguard-go device behind the UAPI socket at path for
// its peers (the "get=1" operation of wireguard-go's cross-platform
// interface, as wg(8) does). It blocks for at most a second.
func uapiGet(path string) ([]uapiPeer, error) {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial uapi %s: %w", path, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "get=1\n\n"); err != nil {
		return nil, fmt.Errorf("write uapi get to %s: %w", path, err)
	}
	peers, err := parseUAPI(bufio.NewReader(c))
	if err != nil {
		return nil, fmt.Errorf("uapi get %s: %w", path, err)
	}
	return peers, nil
}

// parseUAPI reads a "get=1" answer up to its blank line: key=value lines,
// each peer starting at its public_key, ending with errno=N.
func parseUAPI(r *bufio.Reader) ([]uapiPeer, error) {
	var peers []uapiPeer
	var sec, nsec int64
	flush := func() {
		if len(peers) > 0 && (sec != 0 || nsec != 0) {
			peers[len(peers)-1].Handshake = time.Unix(sec, nsec)
		}
		sec, nsec = 0, 0
	}
	for {
		line, err := r.ReadString('\n')
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("read answer: %w", err)
			}
			if err != nil {
				return nil, errors.New("answer ends without errno")
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %q: no key=value", line)
		}
		switch k {
		case "public_key":
			flush()
			peers = append(peers, uapiPeer{PublicKey: v})
		case "allowed_ip":
			p, perr := netip.ParsePrefix(v)
			if perr != nil || len(peers) == 0 {
				return nil, fmt.Errorf("line %q: not a prefix of a peer", line)
			}
			peers[len(peers)-1].AllowedIPs = append(peers[len(peers)-1].AllowedIPs, p)
		case "last_handshake_time_sec", "last_handshake_time_nsec":
			n, perr := strconv.ParseInt(v, 10, 64)
			if perr != nil {
				return nil, fmt.Errorf("line %q: not a number", line)
			}
			if k == "last_handshake_time_sec" {
				sec = n
			} else {
				nsec = n
			}
		case "errno":
			flush()
			if v != "0" {
				return nil, fmt.Errorf("errno %s", v)
			}
			return peers, nil
		}
		if err != nil {
			return nil, errors.New("answer ends without errno")
		}
	}
}

// peerFor returns the peer whose allowed IPs hold addr.
func peerFor(peers []uapiPeer, addr netip.Addr) (uapiPeer, bool) {
	for _, p := range peers {
		for _, a := range p.AllowedIPs {
			if a.Contains(addr) {
				return p, true
			}
		}
	}
	return uapiPeer{}, false
}

// pinger is a `ping -D -i 0.01` running in a namespace; FirstReply gets
// the (kernel-stamped, wall clock) time of its first answer.
type pinger struct {
	cmd        *exec.Cmd
	FirstReply chan time.Time
	waited     chan struct{}
}

// pingInterval is the pinger's interval: the resolution of first-reply times.
const pingInterval = "0.01"

// startPinger starts pinging to from inside ns (for at most 60 s) and
// returns once ping runs. The caller must Close it.
func startPinger(ctx context.Context, ns string, to netip.Addr) (*pinger, error) {
	// stdbuf: ping's stdout is a pipe, which it would block-buffer.
	cmd := nsCommand(ctx, ns, "stdbuf", "-oL", "ping", "-D", "-n", "-i", pingInterval, "-W", "1", "-w", "60", to.String())
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("pipe of ping %s in %s: %w", to, ns, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start ping %s in %s: %w", to, ns, err)
	}
	p := &pinger{cmd: cmd, FirstReply: make(chan time.Time, 1), waited: make(chan struct{})}
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "PING ") && started != nil {
				close(started)
				started = nil
			}
			if t, ok := parsePingReply(line); ok && !sent {
				p.FirstReply <- t
				sent = true
			}
		}
		if started != nil {
			close(started)
		}
		_ = cmd.Wait()
		close(p.waited)
	}()
	select {
	case <-started:
		return p, nil
	case <-time.After(5 * time.Second):
		p.Close()
		return nil, fmt.Errorf("ping %s in %s printed no header in 5s", to, ns)
	}
}

// Close stops ping and waits for it; it is idempotent.
func (p *pinger) Close() {
	_ = p.cmd.Process.Kill()
	<-p.waited
}

// parsePingReply reads the timestamp of a `ping -D` reply line:
// "[1732537563.123456] 64 bytes from 10.0.0.2: icmp_seq=5 ttl=62 time=0.5 ms".
func parsePingReply(line string) (time.Time, bool) {
	if !strings.HasPrefix(line, "[") || !strings.Contains(line, " bytes from ") {
		return time.Time{}, false
	}
	stamp, _, ok := strings.Cut(line[1:], "]")
	if !ok {
		return time.Time{}, false
	}
	secs, frac, _ := strings.Cut(stamp, ".")
	s, err := strconv.ParseInt(secs, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	var ns int64
	if frac != "" {
		f, err := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
		if err != nil {
			return time.Time{}, false
		}
		ns = f
	}
	return time.Unix(s, ns), true
}
