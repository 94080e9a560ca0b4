package masq

import (
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// fakeConn models the part of the nftables kernel state Conn reaches:
// tables, chains and rules of every family. Add and Del calls queue
// operations; Flush applies them to a copy and commits it only when all
// succeed, like a netlink transaction. fail makes the next call of a kind
// ("list table", "list chains", "get rules", "flush") return an error.
type fakeConn struct {
	tables     []*fakeTable
	queue      []func([]*fakeTable) ([]*fakeTable, error)
	nextHandle uint64
	fail       map[string]error
	// writes counts Flush calls that sent something.
	writes int
}

var _ Conn = (*fakeConn)(nil)

type fakeTable struct {
	t      nftables.Table
	chains []*fakeChain
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

func (f *fakeConn) AddTable(t *nftables.Table) *nftables.Table {
	tt := *t
	f.queue = append(f.queue, func(ts []*fakeTable) ([]*fakeTable, error) {
		if findTable(ts, tt.Name, tt.Family) == nil {
			ts = append(ts, &fakeTable{t: tt})
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
		if fc := ft.chain(cc.Name); fc != nil {
			fc.c = cc
			return ts, nil
		}
		ft.chains = append(ft.chains, &fakeChain{c: cc})
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
		f.nextHandle++
		rr.Handle = f.nextHandle
		fc := ft.chain(rr.Chain.Name)
		fc.rules = append(fc.rules, &rr)
		return ts, nil
	})
	return r
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

// cloneTables copies tables and chains deeply; rules are never changed in
// place, so their pointers are shared.
func cloneTables(ts []*fakeTable) []*fakeTable {
	var out []*fakeTable
	for _, t := range ts {
		nt := &fakeTable{t: t.t}
		for _, c := range t.chains {
			nt.chains = append(nt.chains, &fakeChain{c: c.c, rules: slices.Clone(c.rules)})
		}
		out = append(out, nt)
	}
	return out
}

// String renders the state as sorted text, one line per object:
//
//	table ip weft-nat flags 0
//	  chain cluster-masq type nat hook 4 priority 100
//	    rule "weft masquerade v1 cluster 10.244.0.0/16" exprs 11
func (f *fakeConn) String() string {
	var lines []string
	ts := slices.Clone(f.tables)
	slices.SortFunc(ts, func(a, b *fakeTable) int {
		if c := strings.Compare(a.t.Name, b.t.Name); c != 0 {
			return c
		}
		return int(a.t.Family) - int(b.t.Family)
	})
	for _, t := range ts {
		fam := map[nftables.TableFamily]string{nftables.TableFamilyIPv4: "ip", nftables.TableFamilyINet: "inet"}[t.t.Family]
		lines = append(lines, fmt.Sprintf("table %s %s flags %d", fam, t.t.Name, t.t.Flags))
		cs := slices.Clone(t.chains)
		slices.SortFunc(cs, func(a, b *fakeChain) int { return strings.Compare(a.c.Name, b.c.Name) })
		for _, c := range cs {
			lines = append(lines, fmt.Sprintf("  chain %s type %s hook %s priority %s",
				c.c.Name, c.c.Type, hookString(c.c.Hooknum), priorityString(c.c.Priority)))
			for _, r := range c.rules {
				s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
				lines = append(lines, fmt.Sprintf("    rule %q exprs %d", s, len(r.Exprs)))
			}
		}
	}
	return strings.Join(lines, "\n")
}
