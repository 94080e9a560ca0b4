package ipip

import "sync/atomic"

// Stats are the user-space forwarder's counters since the Driver was made.
// Packets and bytes are of inner packets (without the outer header).
type Stats struct {
	// TxPackets are the packets sent to peers; TxBytes the bytes of those
	// handed to the raw socket.
	TxPackets, TxBytes uint64
	// RxPackets and RxBytes are the packets from peers written to the TUN.
	RxPackets, RxBytes uint64
	// TxReads and RxReads count the batches read from the TUN and from
	// the raw socket: packets per read is TxPackets/TxReads (one TUN read
	// brings a whole offloaded burst) and RxPackets/RxReads (one
	// recvmmsg).
	TxReads, RxReads uint64
	// FragNeeded counts the ICMP fragmentation-needed messages written back
	// to senders of packets over the tunnel MTU with DF set.
	FragNeeded uint64
	// Drop* count the packets dropped, by reason: not well-formed IPv4;
	// not IPv4 at all (from the TUN); an outer source that is no peer; an
	// inner destination in no peer's subnets; over the MTU with DF (each
	// also answered, see FragNeeded, unless RFC 1122 forbids it); refused
	// by the raw socket; refused by the TUN.
	DropMalformed, DropNotIPv4, DropUnknownPeer, DropNoPeer, DropTooBig, DropSend, DropWrite uint64
	// ReadErrors counts failed reads that the forwarder skipped.
	ReadErrors uint64
}

// counters are the live Stats.
type counters struct {
	txPackets, txBytes, rxPackets, rxBytes, txReads, rxReads, fragNeeded, readErrors atomic.Uint64
	drop                                                                             [numVerdicts]atomic.Uint64
}

// tally is one batch's counts, added to the counters once per batch so
// that the goroutines do not contend on them per packet.
type tally struct {
	packets, bytes, fragNeeded uint64
	drop                       [numVerdicts]uint64
}

func (c *counters) addTx(t *tally) {
	c.txPackets.Add(t.packets)
	c.txBytes.Add(t.bytes)
	c.txReads.Add(1)
	c.fragNeeded.Add(t.fragNeeded)
	c.addDrops(t)
}

func (c *counters) addRx(t *tally) {
	c.rxPackets.Add(t.packets)
	c.rxBytes.Add(t.bytes)
	c.rxReads.Add(1)
	c.addDrops(t)
}

func (c *counters) addDrops(t *tally) {
	for v := pass + 1; v < numVerdicts; v++ {
		if t.drop[v] != 0 {
			c.drop[v].Add(t.drop[v])
		}
	}
}

func (c *counters) snapshot() Stats {
	return Stats{
		TxPackets:       c.txPackets.Load(),
		TxBytes:         c.txBytes.Load(),
		RxPackets:       c.rxPackets.Load(),
		RxBytes:         c.rxBytes.Load(),
		TxReads:         c.txReads.Load(),
		RxReads:         c.rxReads.Load(),
		FragNeeded:      c.fragNeeded.Load(),
		DropMalformed:   c.drop[dropMalformed].Load(),
		DropNotIPv4:     c.drop[dropNotIPv4].Load(),
		DropUnknownPeer: c.drop[dropUnknownPeer].Load(),
		DropNoPeer:      c.drop[dropNoPeer].Load(),
		DropTooBig:      c.drop[dropTooBig].Load(),
		DropSend:        c.drop[dropSend].Load(),
		DropWrite:       c.drop[dropWrite].Load(),
		ReadErrors:      c.readErrors.Load(),
	}
}
