package netlab

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
)

// natRuleset renders the nftables ruleset of a NAT router: masquerade what
// leaves the inside segments through another interface, and drop what comes
// from outside to the inside unless it belongs to a connection opened from
// inside. Chain names avoid nft keywords (FACTS.md).
func natRuleset(n Node, forwards []natForward) string {
	var ifaces, prefixes []string
	for _, i := range n.NAT {
		ifaces = append(ifaces, `"`+i.Name+`"`)
		prefixes = append(prefixes, i.Addr.Masked().String())
	}
	in := "{ " + strings.Join(ifaces, ", ") + " }"
	src := "{ " + strings.Join(prefixes, ", ") + " }"
	var dnat strings.Builder
	for _, f := range forwards {
		for _, proto := range []string{"tcp", "udp"} {
			fmt.Fprintf(&dnat, "\t\tiifname != %s %s dport %d dnat to %s\n", in, proto, f.port, f.to)
		}
	}
	return fmt.Sprintf(`table ip labnat {
	chain portfwd {
		type nat hook prerouting priority dstnat; policy accept;
%s	}
	chain masq {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr %s oifname != %s masquerade
	}
	chain inbound {
		type filter hook forward priority filter; policy accept;
		ct state established,related accept
		ct status dnat accept
		oifname %s iifname != %s drop
	}
}
`, dnat.String(), src, in, in, in)
}

// natForward is a port forward resolved to the inside host's address.
type natForward struct {
	port int
	to   string
}

// applyNAT loads n's NAT ruleset in its namespace with nft.
func (l *Lab) applyNAT(n Node) error {
	if len(n.NAT) == 0 {
		return nil
	}
	cmd := l.Command(context.Background(), n.Name, "nft", "-f", "-")
	var fw []natForward
	for _, r := range l.topo.Routers {
		if r.Name != n.Name {
			continue
		}
		for _, f := range r.Forward {
			fw = append(fw, natForward{port: f.Port, to: l.HostAddr(f.Host).String()})
		}
	}
	cmd.Stdin = strings.NewReader(natRuleset(n, fw))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("load NAT rules on %s (needs the nft command: apt-get install nftables): %w: %s", n.Name, err, out)
	}
	return nil
}

// NATGateway returns the outside address of the NAT router that host sits
// behind, and whether it sits behind one.
func (l *Lab) NATGateway(host string) (netip.Addr, bool) {
	n, ok := l.plan.Node(host)
	if !ok || n.Router || len(n.Ifaces) == 0 {
		return netip.Addr{}, false
	}
	seg := n.Ifaces[0].Segment
	for _, r := range l.plan.Nodes {
		for _, in := range r.NAT {
			if in.Segment != seg {
				continue
			}
			for _, i := range r.Ifaces {
				if i.Segment != seg {
					return i.Addr.Addr(), true
				}
			}
		}
	}
	return netip.Addr{}, false
}
