package netlab

import (
	"context"
	"fmt"
	"strings"
)

// natRuleset renders the nftables ruleset of a NAT router: masquerade what
// leaves the inside segments through another interface, and drop what comes
// from outside to the inside unless it belongs to a connection opened from
// inside. Chain names avoid nft keywords (FACTS.md).
func natRuleset(n Node) string {
	var ifaces, prefixes []string
	for _, i := range n.NAT {
		ifaces = append(ifaces, `"`+i.Name+`"`)
		prefixes = append(prefixes, i.Addr.Masked().String())
	}
	in := "{ " + strings.Join(ifaces, ", ") + " }"
	src := "{ " + strings.Join(prefixes, ", ") + " }"
	return fmt.Sprintf(`table ip labnat {
	chain masq {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr %s oifname != %s masquerade
	}
	chain inbound {
		type filter hook forward priority filter; policy accept;
		ct state established,related accept
		oifname %s iifname != %s drop
	}
}
`, src, in, in, in)
}

// applyNAT loads n's NAT ruleset in its namespace with nft.
func (l *Lab) applyNAT(n Node) error {
	if len(n.NAT) == 0 {
		return nil
	}
	cmd := l.Command(context.Background(), n.Name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(natRuleset(n))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("load NAT rules on %s (needs the nft command: apt-get install nftables): %w: %s", n.Name, err, out)
	}
	return nil
}
