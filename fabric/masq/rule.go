package masq

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
)

// TableName is the nftables table (family ip) that weft owns entirely for
// masquerade: Apply replaces its whole content and Remove deletes it.
const TableName = "weft-nat"

// chainName is the one base chain in TableName. It is not an nft keyword
// (nft 1.0.6 cannot parse a chain named `fwd`), so `nft list chain ip
// weft-nat cluster-masq` works.
const chainName = "cluster-masq"

// ruleVersion is written into the rule's comment. Bump it whenever
// ruleExprs changes shape, so that agents running the new code replace the
// rules written by the old one (the comment is what Apply compares).
const ruleVersion = 1

// IPv4 header offsets (RFC 791) read by the rule.
const (
	ipv4SaddrOffset = 12
	ipv4DaddrOffset = 16
	ipv4AddrLen     = 4
)

// multicast is 224.0.0.0/4 (RFC 5771): multicast leaving the node keeps its
// workload source, as flannel's ipMasq rules do.
var multicast = netip.MustParsePrefix("224.0.0.0/4")

// reg is the register the rule loads addresses into (NFT_REG_1).
const reg = 1

// table returns weft's table. A new value each call: the library keeps
// pointers to it in queued messages.
func table() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
}

// chain returns weft's base chain in t: type nat, hook postrouting, priority
// srcnat (100), policy accept. Policy accept matters: a nat chain only
// decides the NAT binding; it must never drop.
func chain(t *nftables.Table) *nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return &nftables.Chain{
		Name:     chainName,
		Table:    t,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookPostrouting,
		Priority: nftables.ChainPriorityNATSource,
		Policy:   &accept,
	}
}

// comment returns the rule comment for cluster, which identifies the rule
// Apply wrote: `weft masquerade v1 cluster 10.244.0.0/16`. cluster must be
// masked.
func comment(cluster netip.Prefix) string {
	return fmt.Sprintf("weft masquerade v%d cluster %s", ruleVersion, cluster)
}

// userData returns the rule's UserData: comment(cluster) in the TLV form
// that `nft` shows as `comment "..."`.
func userData(cluster netip.Prefix) []byte {
	return userdata.AppendString(nil, userdata.TypeComment, comment(cluster))
}

// ruleExprs returns the expressions of the masquerade rule for cluster
// (IPv4, masked):
//
//	ip saddr CLUSTER ip daddr != CLUSTER ip daddr != 224.0.0.0/4 counter masquerade fully-random
//
// fully-random picks source ports randomly for every new connection, which
// avoids the port collisions flannel hit with sequential allocation
// (flannel passes --random-fully to iptables for the same reason).
func ruleExprs(cluster netip.Prefix) []expr.Any {
	var out []expr.Any
	out = append(out, matchPrefix(ipv4SaddrOffset, cluster, expr.CmpOpEq)...)
	out = append(out, matchPrefix(ipv4DaddrOffset, cluster, expr.CmpOpNeq)...)
	out = append(out, matchPrefix(ipv4DaddrOffset, multicast, expr.CmpOpNeq)...)
	return append(out,
		&expr.Counter{},
		&expr.Masq{FullyRandom: true},
	)
}

// matchPrefix returns the expressions comparing the IPv4 address at offset
// in the network header with p (masked) using op: load, mask, compare, as
// nft compiles `ip saddr 10.244.0.0/16`.
func matchPrefix(offset uint32, p netip.Prefix, op expr.CmpOp) []expr.Any {
	m := prefixMask(p.Bits())
	addr := p.Masked().Addr().As4()
	return []expr.Any{
		&expr.Payload{
			DestRegister: reg,
			Base:         expr.PayloadBaseNetworkHeader,
			Offset:       offset,
			Len:          ipv4AddrLen,
		},
		&expr.Bitwise{
			SourceRegister: reg,
			DestRegister:   reg,
			Len:            ipv4AddrLen,
			Mask:           m[:],
			Xor:            make([]byte, ipv4AddrLen),
		},
		&expr.Cmp{Op: op, Register: reg, Data: addr[:]},
	}
}

// prefixMask returns the IPv4 netmask of a prefix with bits leading ones.
func prefixMask(bits int) [4]byte {
	var m [4]byte
	for i := range m {
		switch {
		case bits >= 8:
			m[i] = 0xff
		case bits > 0:
			m[i] = byte(0xff << (8 - bits))
		}
		bits -= 8
	}
	return m
}
