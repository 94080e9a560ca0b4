package wireguard

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

const (
	// rejectAfter is WireGuard's Reject-After-Time: a session whose
	// handshake is older is dead. A learned endpoint with a younger
	// handshake works, and is not overwritten.
	rejectAfter = 180 * time.Second
	// kickKeepalive is the keepalive a new peer is created with when none
	// is wanted, and turned off again in the same call: turning keepalive
	// on sends a keepalive, and so a handshake initiation, at once.
	kickKeepalive = time.Second
	// kickRetry is how often a peer with a keepalive that has never
	// completed a handshake is kicked again. A node behind NAT must open
	// every session itself; its first kick is lost when the peer does not
	// know its key yet, and WireGuard would wait for the next keepalive.
	kickRetry = 5 * time.Second
)

// peers compares the device's WireGuard configuration with want and sends
// the difference in one ConfigureDevice call, or none.
func (s *session) peers(want Want) {
	dev := want.Device
	cur, err := s.d.client.Device(dev.Name)
	if err != nil {
		s.fail(fmt.Errorf("read wireguard device %s: %w", dev.Name, err))
		return
	}
	var cfg wgtypes.Config
	if k := wgtypes.Key(dev.PrivateKey); cur.PrivateKey != k {
		s.record(fmt.Sprintf("device %s private key differs", dev.Name))
		cfg.PrivateKey = &k
	}
	if cur.ListenPort != dev.ListenPort {
		s.record(fmt.Sprintf("device %s listen port %d, want %d", dev.Name, cur.ListenPort, dev.ListenPort))
		port := dev.ListenPort
		cfg.ListenPort = &port
	}

	have := map[wgtypes.Key]*wgtypes.Peer{}
	for i := range cur.Peers {
		have[cur.Peers[i].PublicKey] = &cur.Peers[i]
	}
	wanted := slices.Clone(want.Peers)
	slices.SortFunc(wanted, func(a, b Peer) int { return strings.Compare(a.PublicKey.String(), b.PublicKey.String()) })
	for _, p := range wanted {
		k := wgtypes.Key(p.PublicKey)
		c, ok := have[k]
		delete(have, k)
		if !ok {
			s.record(fmt.Sprintf("peer %s missing", p.PublicKey))
			cfg.Peers = append(cfg.Peers, newPeer(p)...)
			s.kicked(k)
			continue
		}
		if p.Endpoint.IsValid() && p.PersistentKeepalive > 0 && c.LastHandshakeTime.IsZero() && s.apply {
			// Not a configuration difference (Check does not report it):
			// a retry of the first handshake, at most every kickRetry.
			last, seen := s.d.kicks[k]
			switch {
			case !seen:
				s.kicked(k) // first sight (a restart): wait one period
			case s.d.now().Sub(last) >= kickRetry:
				s.d.log.Debug("peer has not completed a handshake, kicking again", "peer", p.PublicKey.String())
				kick, ka := kickKeepalive, p.PersistentKeepalive
				cfg.Peers = append(cfg.Peers,
					wgtypes.PeerConfig{PublicKey: k, UpdateOnly: true, PersistentKeepaliveInterval: &kick},
					wgtypes.PeerConfig{PublicKey: k, UpdateOnly: true, PersistentKeepaliveInterval: &ka})
				s.kicked(k)
			}
		}
		if pc, changed := s.updatePeer(p, c); changed {
			cfg.Peers = append(cfg.Peers, pc)
		}
	}
	// Removals go last: a prefix moving to a new key (a peer's key
	// rotation) is inserted for the new peer before the old one goes, so
	// it is never without a peer.
	var stale []wgtypes.Key
	for k := range have {
		stale = append(stale, k)
	}
	slices.SortFunc(stale, func(a, b wgtypes.Key) int { return strings.Compare(a.String(), b.String()) })
	for _, k := range stale {
		s.record(fmt.Sprintf("peer %s unwanted", k))
		cfg.Peers = append(cfg.Peers, wgtypes.PeerConfig{PublicKey: k, Remove: true})
	}

	if cfg.PrivateKey == nil && cfg.ListenPort == nil && len(cfg.Peers) == 0 {
		return // nothing differs: no reconfiguration
	}
	s.do("configure wireguard device "+dev.Name, func() error { return s.d.client.ConfigureDevice(dev.Name, cfg) })
}

// kicked notes that a handshake with k was just kicked off (Apply only).
func (s *session) kicked(k wgtypes.Key) {
	if !s.apply {
		return
	}
	if s.d.kicks == nil {
		s.d.kicks = map[wgtypes.Key]time.Time{}
	}
	s.d.kicks[k] = s.d.now()
}

// newPeer returns the entries that create p. Where p has an endpoint, a
// handshake is kicked off at once: through p's own keepalive, or through a
// short one that a second entry turns off again.
func newPeer(p Peer) []wgtypes.PeerConfig {
	pc := wgtypes.PeerConfig{
		PublicKey:         wgtypes.Key(p.PublicKey),
		ReplaceAllowedIPs: true,
		AllowedIPs:        ipNets(maskedSet(p.AllowedIPs)),
	}
	ka := p.PersistentKeepalive
	if !p.Endpoint.IsValid() || ka != 0 {
		pc.Endpoint = udpAddr(p.Endpoint)
		pc.PersistentKeepaliveInterval = &ka
		return []wgtypes.PeerConfig{pc}
	}
	kick := kickKeepalive
	pc.Endpoint = udpAddr(p.Endpoint)
	pc.PersistentKeepaliveInterval = &kick
	return []wgtypes.PeerConfig{pc, {PublicKey: pc.PublicKey, UpdateOnly: true, PersistentKeepaliveInterval: &ka}}
}

// updatePeer returns the entry that changes c into p, and whether anything
// differs.
func (s *session) updatePeer(p Peer, c *wgtypes.Peer) (wgtypes.PeerConfig, bool) {
	pc := wgtypes.PeerConfig{PublicKey: c.PublicKey, UpdateOnly: true}
	changed := false
	if ep := addrPort(c.Endpoint); p.Endpoint.IsValid() && ep != p.Endpoint && !s.roamed(c) {
		s.record(fmt.Sprintf("peer %s endpoint %s, want %s", p.PublicKey, showAddrPort(ep), p.Endpoint))
		pc.Endpoint = udpAddr(p.Endpoint)
		changed = true
	}
	if c.PersistentKeepaliveInterval != p.PersistentKeepalive {
		s.record(fmt.Sprintf("peer %s keepalive %s, want %s", p.PublicKey, c.PersistentKeepaliveInterval, p.PersistentKeepalive))
		ka := p.PersistentKeepalive
		pc.PersistentKeepaliveInterval = &ka
		changed = true
	}
	haveIPs, wantIPs := prefixSet(c.AllowedIPs), maskedSet(p.AllowedIPs)
	if !slices.Equal(haveIPs, wantIPs) {
		s.record(fmt.Sprintf("peer %s allowed ips %s, want %s", p.PublicKey, showPrefixes(haveIPs), showPrefixes(wantIPs)))
		pc.ReplaceAllowedIPs = true
		pc.AllowedIPs = ipNets(wantIPs)
		changed = true
	}
	return pc, changed
}

// roamed reports whether c has an endpoint and a live session: the peer
// reached us from that endpoint (roaming, or a NAT that rewrote its port),
// so it works and is kept.
func (s *session) roamed(c *wgtypes.Peer) bool {
	return c.Endpoint != nil && !c.LastHandshakeTime.IsZero() && s.d.now().Sub(c.LastHandshakeTime) < rejectAfter
}

func addrPort(u *net.UDPAddr) netip.AddrPort {
	if u == nil {
		return netip.AddrPort{}
	}
	ap := u.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func udpAddr(ap netip.AddrPort) *net.UDPAddr {
	if !ap.IsValid() {
		return nil
	}
	return net.UDPAddrFromAddrPort(ap)
}

func showAddrPort(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return "none"
	}
	return ap.String()
}

// prefixSet returns ns as sorted, masked, distinct prefixes.
func prefixSet(ns []net.IPNet) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ns))
	for _, n := range ns {
		if p, ok := prefixOf(&n); ok {
			out = append(out, p)
		}
	}
	return maskedSet(out)
}

// maskedSet returns ps masked, sorted and distinct, in a new slice.
func maskedSet(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Masked())
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}

func ipNets(ps []netip.Prefix) []net.IPNet {
	out := make([]net.IPNet, 0, len(ps))
	for _, p := range ps {
		out = append(out, *ipNet(p.Masked()))
	}
	return out
}

func showPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return "[" + strings.Join(s, " ") + "]"
}
