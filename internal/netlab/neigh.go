package netlab

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// The kernel keeps one IPv4 neighbour (ARP) table for all network
// namespaces, with one set of limits (net.ipv4.neigh.default.gc_thresh1-3,
// writable in the root namespace only; 128/512/1024 by default). A lab
// whose hosts all talk to each other needs about k*(k-1) entries for a
// segment of k nodes: a 50-host lab on two segments fills 1,024, after
// which the kernel logs "neighbor table overflow" and new neighbours fail
// (TCP connects time out, first packets are dropped). On a real network
// each host has its own table; only the lab shares one. So Build raises the
// two upper limits when the lab would need more, and says so: the only
// change it makes outside its own namespaces. It never lowers them.

const neighPath = "/proc/sys/net/ipv4/neigh/default/"

// neighNeed returns how many neighbour entries the plan's nodes need when
// every node of a segment talks to every other.
func neighNeed(p Plan) int {
	per := map[string]int{}
	for _, n := range p.Nodes {
		for _, i := range n.Ifaces {
			per[i.Segment]++
		}
	}
	need := 0
	for _, k := range per {
		need += k * (k - 1)
	}
	return need
}

// neighLimits returns the target gc_thresh2 and gc_thresh3 for a lab that
// needs need entries on a machine whose limits are now thresh2 and thresh3,
// and whether they must change: room for this lab and as much again for
// other labs and the machine itself, never below the current values.
func neighLimits(need, thresh2, thresh3 int) (int, int, bool) {
	want := 2*need + 256
	if want <= thresh3 {
		return thresh2, thresh3, false
	}
	return max(thresh2, want), want, true
}

func readSysctlInt(name string) (int, error) {
	b, err := os.ReadFile(neighPath + name)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// raiseNeighLimits raises the shared neighbour table's limits when the plan
// needs more than they allow; it logs what it changed.
func (l *Lab) raiseNeighLimits() error {
	t2, err := readSysctlInt("gc_thresh2")
	if err != nil {
		return fmt.Errorf("read neighbour table limit: %w", err)
	}
	t3, err := readSysctlInt("gc_thresh3")
	if err != nil {
		return fmt.Errorf("read neighbour table limit: %w", err)
	}
	need := neighNeed(l.plan)
	n2, n3, change := neighLimits(need, t2, t3)
	if !change {
		return nil
	}
	// thresh3 first: the kernel does not require thresh2 <= thresh3, but
	// keeping that order at every moment avoids a soft limit above the hard one.
	for _, s := range []struct {
		name     string
		from, to int
	}{{"gc_thresh3", t3, n3}, {"gc_thresh2", t2, n2}} {
		if s.from == s.to {
			continue
		}
		if err := os.WriteFile(neighPath+s.name, []byte(strconv.Itoa(s.to)), 0o644); err != nil {
			return fmt.Errorf("raise net.ipv4.neigh.default.%s from %d to %d: %w", s.name, s.from, s.to, err)
		}
	}
	l.log.Warn("raised the machine's neighbour table limits: all namespaces share one table",
		"need", need, "gc_thresh2", fmt.Sprintf("%d -> %d", t2, n2), "gc_thresh3", fmt.Sprintf("%d -> %d", t3, n3))
	return nil
}
