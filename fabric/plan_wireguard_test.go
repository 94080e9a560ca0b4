package fabric

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func wgKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// wgLocal is h1 of the lab, region r1, with a WireGuard key.
func wgLocal() Local {
	return Local{
		Name:         "h1",
		Subnets:      []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")},
		UnderlayDev:  "eth0",
		UnderlayAddr: netip.MustParseAddr("198.18.1.2"),
		UnderlayMTU:  1500,
		Connected:    []netip.Prefix{netip.MustParsePrefix("198.18.1.2/24")},
		Location:     Location{Cloud: "lab", Region: "r1"},
		VTEPMAC:      net.HardwareAddr{0x0a, 0, 0, 0, 0, 1},
		WireGuardKey: wgKey(1),
	}
}

func wgPeer(name, addr, subnet, region string, key byte) Peer {
	p := Peer{
		Name:     name,
		Underlay: []netip.Addr{netip.MustParseAddr(addr)},
		Location: Location{Cloud: "lab", Region: region},
		Subnets:  []netip.Prefix{netip.MustParsePrefix(subnet)},
		VTEPMAC:  net.HardwareAddr{0x0a, 0, 0, 0, 0, key},
	}
	if key != 0 {
		p.WireGuardKey, p.WireGuardPort = wgKey(key), 51820
	}
	return p
}

func TestComputeWireGuard(t *testing.T) {
	same := wgPeer("h2", "198.18.1.3", "10.244.2.0/24", "r1", 2)
	far := wgPeer("h4", "198.19.1.2", "10.244.4.0/24", "r2", 4)
	farNoKey := wgPeer("h5", "198.19.1.3", "10.244.5.0/24", "r2", 0)
	natted := wgPeer("h6", "198.19.2.2", "10.244.6.0/24", "r2", 6)
	natted.BehindNAT = true
	public := wgPeer("h7", "10.0.0.7", "10.244.7.0/24", "r3", 7)
	public.Public = netip.MustParseAddr("198.19.9.7")

	k := func(b byte) string { return base64.StdEncoding.EncodeToString(wgKey(b)) }
	tests := []struct {
		name       string
		local      func(*Local)
		opts       func(*Options)
		peers      []Peer
		wantPeers  []string
		wantWG     []string
		wantRoutes []string
	}{
		{
			name:  "cross-region pairs go over WireGuard, same region stays plain",
			peers: []Peer{same, far, farNoKey},
			wantPeers: []string{
				"h2 direct via 198.18.1.3 dev eth0 mtu 1500 (same L2 segment)",
				"h4 wireguard dev weft.wg remote 198.19.1.2 mtu 1420 (other cloud or region (encryption cross-region))",
				"h5 none remote 198.19.1.3 (other cloud or region (encryption cross-region); needs WireGuard, and the peer has no WireGuard key; never plaintext)",
			},
			wantWG: []string{
				"weft.wg listen-port 51820 mtu 1420",
				// h2's fallback: configured, no route.
				"peer h2 " + k(2) + " endpoint 198.18.1.3:51820 allowed-ips 10.244.2.0/24",
				"peer h4 " + k(4) + " endpoint 198.19.1.2:51820 allowed-ips 10.244.4.0/24",
			},
			wantRoutes: []string{"blackhole 10.244.1.0/24 proto 87", "10.244.2.0/24 via 198.18.1.3 dev eth0 proto 87", "10.244.4.0/24 dev weft.wg proto 87"},
		},
		{
			name:  "always: the same-segment pair is encrypted too",
			opts:  func(o *Options) { o.Encryption = EncryptionAlways },
			peers: []Peer{same},
			wantPeers: []string{
				"h2 wireguard dev weft.wg remote 198.18.1.3 mtu 1420 (encryption always)",
			},
			wantWG: []string{"weft.wg listen-port 51820 mtu 1420", "peer h2 " + k(2) + " endpoint 198.18.1.3:51820 allowed-ips 10.244.2.0/24"},
		},
		{
			name:  "a peer behind NAT: no endpoint, even with encryption never",
			opts:  func(o *Options) { o.Encryption = EncryptionNever },
			peers: []Peer{same, natted},
			wantPeers: []string{
				"h2 direct via 198.18.1.3 dev eth0 mtu 1500 (same L2 segment)",
				"h6 wireguard dev weft.wg remote 198.19.2.2 mtu 1420 (behind NAT: only WireGuard crosses it)",
			},
			wantWG: []string{"weft.wg listen-port 51820 mtu 1420", "peer h6 " + k(6) + " endpoint (learnt) allowed-ips 10.244.6.0/24"},
		},
		{
			name:  "this node behind NAT: keepalive to every peer; both behind NAT: no path",
			local: func(l *Local) { l.BehindNAT = true },
			peers: []Peer{far, natted},
			wantPeers: []string{
				"h4 wireguard dev weft.wg remote 198.19.1.2 mtu 1420 (behind NAT: only WireGuard crosses it)",
				"h6 none remote 198.19.2.2 (both nodes are behind NAT: neither can reach the other)",
			},
			wantWG: []string{"weft.wg listen-port 51820 mtu 1420", "peer h4 " + k(4) + " endpoint 198.19.1.2:51820 allowed-ips 10.244.4.0/24 keepalive 25s"},
		},
		{
			name:      "the public address is the endpoint",
			peers:     []Peer{public},
			wantPeers: []string{"h7 wireguard dev weft.wg remote 198.19.9.7 mtu 1420 (other cloud or region (encryption cross-region))"},
			wantWG:    []string{"weft.wg listen-port 51820 mtu 1420", "peer h7 " + k(7) + " endpoint 198.19.9.7:51820 allowed-ips 10.244.7.0/24"},
		},
		{
			name:      "WireGuard off on this node: no path, never plaintext",
			local:     func(l *Local) { l.WireGuardKey = nil },
			peers:     []Peer{far},
			wantPeers: []string{"h4 none remote 198.19.1.2 (other cloud or region (encryption cross-region); needs WireGuard, which is off on this node; never plaintext)"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := wgLocal()
			if tc.local != nil {
				tc.local(&l)
			}
			o := DefaultOptions()
			if tc.opts != nil {
				tc.opts(&o)
			}
			p := Compute(l, tc.peers, o)
			var peers, wg []string
			for _, pp := range p.Peers {
				peers = append(peers, pp.String())
			}
			if p.WireGuard != nil {
				d := p.WireGuard
				wg = append(wg, fmt.Sprintf("%s listen-port %d mtu %d", d.Name, d.Port, d.MTU))
			}
			for _, wp := range p.WireGuardPeers {
				wg = append(wg, wp.String())
			}
			if diff := cmp.Diff(tc.wantPeers, peers); diff != "" {
				t.Errorf("peers (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantWG, wg); diff != "" {
				t.Errorf("wireguard (-want +got):\n%s", diff)
			}
			if tc.wantRoutes != nil {
				var routes []string
				for _, r := range p.Routes {
					routes = append(routes, r.String())
				}
				if diff := cmp.Diff(tc.wantRoutes, routes); diff != "" {
					t.Errorf("routes (-want +got):\n%s", diff)
				}
			}
		})
	}
}
