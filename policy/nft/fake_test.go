package nft

import (
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// fakeConn models the part of the nftables kernel state Conn reaches:
// tables, their chains and rules, and their named sets with an element
// count. Add, Del and SetAddElements calls queue operations; Flush applies
// them to a copy and commits it only when all succeed, like a netlink
// transaction. fail makes the next call of a kind ("list table", "list
// chains", "get rules", "get sets", "flush") return an error.
type fakeConn struct {
	tables []*fakeTable
	queue  []func([]*fakeTable) ([]*fakeTable, error)
	fail   map[string]error
	// writes counts Flush calls that sent something.
	writes int
	// batches records the size of every element message queued.
	batches []int
}

var _ Conn = (*fakeConn)(nil)

type fakeTable struct {
	t      nftables.Table
	chains []*fakeChain
	sets   map[string]int // name -> number of elements
}

type fakeChain struct {
	c     nftables.Chain
	rules []*nftables.Rule
}

func newFakeConn() *fakeConn { return &fakeConn{fail: map[string]error{}} }

func (f *fakeConn) failNext(kind string) error {
	err := f.fail[kind]
	delete(f.fail, kind)
	return err
}

func findTable(ts []*fakeTable, name string, fam nftables.TableFamily) *fakeTable {
	for _, t := range ts {
		if t.t.Name == name && t.t.Family == fam {
			return t
		}
	}
	return nil
}

func (t *fakeTable) chain(name string) *fakeChain {
	for _, c := range t.chains {
		if c.c.Name == name {
			return c
		}
	}
	return nil
}

func (f *fakeConn) ListTableOfFamily(name string, fam nftables.TableFamily) (*nftables.Table, error) {
	if err := f.failNext("list table"); err != nil {
		return nil, err
	}
	t := findTable(f.tables, name, fam)
	if t == nil {
		return nil, fmt.Errorf("fake get table %s: %w", name, unix.ENOENT)
	}
	out := t.t
	return &out, nil
}

func (f *fakeConn) ListChainsOfTableFamily(fam nftables.TableFamily) ([]*nftables.Chain, error) {
	if err := f.failNext("list chains"); err != nil {
		return nil, err
	}
	var out []*nftables.Chain
	for _, t := range f.tables {
		if t.t.Family != fam {
			continue
		}
		for _, c := range t.chains {
			cc := c.c
			cc.Table = &nftables.Table{Name: t.t.Name, Family: t.t.Family}
			out = append(out, &cc)
		}
	}
	return out, nil
}

func (f *fakeConn) GetRules(t *nftables.Table, c *nftables.Chain) ([]*nftables.Rule, error) {
	if err := f.failNext("get rules"); err != nil {
		return nil, err
	}
	ft := findTable(f.tables, t.Name, t.Family)
	if ft == nil || ft.chain(c.Name) == nil {
		return nil, fmt.Errorf("fake get rules %s %s: %w", t.Name, c.Name, unix.ENOENT)
	}
	return slices.Clone(ft.chain(c.Name).rules), nil
}

func (f *fakeConn) GetSets(t *nftables.Table) ([]*nftables.Set, error) {
	if err := f.failNext("get sets"); err != nil {
		return nil, err
	}
	ft := findTable(f.tables, t.Name, t.Family)
	if ft == nil {
		return nil, fmt.Errorf("fake get sets %s: %w", t.Name, unix.ENOENT)
	}
	var out []*nftables.Set
	for name := range ft.sets {
		out = append(out, &nftables.Set{Name: name, Table: t})
	}
	return out, nil
}

func (f *fakeConn) AddTable(t *nftables.Table) *nftables.Table {
	tt := *t
	f.queue = append(f.queue, func(ts []*fakeTable) ([]*fakeTable, error) {
		if findTable(ts, tt.Name, tt.Family) == nil {
			ts = append(ts, &fakeTable{t: tt, sets: map[string]int{}})
		}
		return ts, nil
	})
	return t
}

func (f *fakeConn) DelTable(t *nftables.Table) {
	tt := *t
	f.queue = append(f.queue, func(ts []*fakeTable) ([]*fakeTable, error) {
		ft := findTable(ts, tt.Name, tt.Family)
		if ft == nil {
			return nil, fmt.Errorf("fake delete table %s: %w", tt.Name, unix.ENOENT)
		}
		return slices.DeleteFunc(ts, func(x *fakeTable) bool { return x == ft }), nil
	})
}

func (f *fakeConn) AddChain(c *nftables.Chain) *nftables.Chain {
	cc := *c
	f.queue = append(f.queue, func(ts []*fakeTable) ([]*fakeTable, error) {
		ft := findTable(ts, cc.Table.Name, cc.Table.Family)
		if ft == nil {
			return nil, fmt.Errorf("fake add chain %s: %w", cc.Name, unix.ENOENT)
		}
		if ft.chain(cc.Name) == nil {
			ft.chains = append(ft.chains, &fakeChain{c: cc})
		}
		return ts, nil
	})
	return c
}

func (f *fakeConn) AddRule(r *nftables.Rule) *nftables.Rule {
	rr := *r
	f.queue = append(f.queue, func(ts []*fakeTable) ([]*fakeTable, error) {
		ft := findTable(ts, rr.Table.Name, rr.Table.Family)
		if ft == nil || ft.chain(rr.Chain.Name) == nil {
			return nil, fmt.Errorf("fake add rule to %s: %w", rr.Chain.Name, unix.ENOENT)
		}
		fc := ft.chain(rr.Chain.Name)
		fc.rules = append(fc.rules, &rr)
		return ts, nil
	})
	return r
}

func (f *fakeConn) AddSet(s *nftables.Set, vals []nftables.SetElement) error {
	if s.Anonymous {
		return nil // the kernel binds anonymous sets to their rule
	}
	name, table := s.Name, *s.Table
	f.batches = append(f.batches, len(vals))
	f.queue = append(f.queue, func(ts []*fakeTable) ([]*fakeTable, error) {
		ft := findTable(ts, table.Name, table.Family)
		if ft == nil {
			return nil, fmt.Errorf("fake add set %s: %w", name, unix.ENOENT)
		}
		ft.sets[name] += len(vals)
		return ts, nil
	})
	return nil
}

func (f *fakeConn) SetAddElements(s *nftables.Set, vals []nftables.SetElement) error {
	name, table := s.Name, *s.Table
	f.batches = append(f.batches, len(vals))
	f.queue = append(f.queue, func(ts []*fakeTable) ([]*fakeTable, error) {
		ft := findTable(ts, table.Name, table.Family)
		if ft == nil {
			return nil, fmt.Errorf("fake add elements to %s: %w", name, unix.ENOENT)
		}
		if _, ok := ft.sets[name]; !ok {
			return nil, fmt.Errorf("fake add elements to %s: %w", name, unix.ENOENT)
		}
		ft.sets[name] += len(vals)
		return ts, nil
	})
	return nil
}

func (f *fakeConn) Flush() error {
	queue := f.queue
	f.queue = nil
	if len(queue) == 0 {
		return nil
	}
	f.writes++
	if err := f.failNext("flush"); err != nil {
		return err
	}
	ts := cloneTables(f.tables)
	for _, op := range queue {
		var err error
		if ts, err = op(ts); err != nil {
			return err
		}
	}
	f.tables = ts
	return nil
}

// cloneTables copies tables, chains and sets deeply; rules are never
// changed in place, so their pointers are shared.
func cloneTables(ts []*fakeTable) []*fakeTable {
	var out []*fakeTable
	for _, t := range ts {
		nt := &fakeTable{t: t.t, sets: map[string]int{}}
		for _, c := range t.chains {
			nt.chains = append(nt.chains, &fakeChain{c: c.c, rules: slices.Clone(c.rules)})
		}
		for k, v := range t.sets {
			nt.sets[k] = v
		}
		out = append(out, nt)
	}
	return out
}

// String renders the state as sorted text, one line per object:
//
//	table inet weft
//	  set wl-egress4 elements 3
//	  chain forward-egress hook 2 rules 4 first "weft policy v1 …"
func (f *fakeConn) String() string {
	var lines []string
	ts := slices.Clone(f.tables)
	slices.SortFunc(ts, func(a, b *fakeTable) int { return strings.Compare(a.t.Name, b.t.Name) })
	for _, t := range ts {
		fam := map[nftables.TableFamily]string{nftables.TableFamilyIPv4: "ip", nftables.TableFamilyINet: "inet"}[t.t.Family]
		lines = append(lines, fmt.Sprintf("table %s %s", fam, t.t.Name))
		for _, name := range sortedKeys(t.sets) {
			lines = append(lines, fmt.Sprintf("  set %s elements %d", name, t.sets[name]))
		}
		cs := slices.Clone(t.chains)
		slices.SortFunc(cs, func(a, b *fakeChain) int { return strings.Compare(a.c.Name, b.c.Name) })
		for _, c := range cs {
			line := fmt.Sprintf("  chain %s", c.c.Name)
			if c.c.Hooknum != nil {
				line += fmt.Sprintf(" hook %d priority %d", *c.c.Hooknum, *c.c.Priority)
			}
			line += fmt.Sprintf(" rules %d", len(c.rules))
			if len(c.rules) > 0 {
				s, _ := userdata.GetString(c.rules[0].UserData, userdata.TypeComment)
				line += fmt.Sprintf(" first %q", s)
			}
			lines = append(lines, line)
		}
	}
	return strings.Join(lines, "\n")
}
