package nft

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// fakeConn models the part of the nftables kernel state Conn reaches:
// tables, their chains and rules, and their named sets with their elements
// (keys and verdicts). Add, Del, FlushChain and Set*Elements calls queue
// operations; Flush applies them to a copy and commits it only when all
// succeed, like a netlink transaction. Like the kernel, each operation
// checks references when it runs: a rule or map element must name chains
// and sets that exist, a chain or set with references cannot be deleted,
// an element cannot be added twice or deleted when absent. fail makes the
// next call of a kind ("list table", "list chains", "get rules", "get
// sets", "flush") return an error.
type fakeConn struct {
	tables []*fakeTable
	queue  []func([]*fakeTable) ([]*fakeTable, error)
	fail   map[string]error
	// failTwice makes the next failure in fail happen twice.
	failTwice bool
	// writes counts Flush calls that sent something.
	writes int
	// batches records the size of every element message queued.
	batches []int
	// anonymous numbers anonymous sets.
	anonymous uint32
	// replaces counts DelTable calls.
	replaces int
}

var _ Conn = (*fakeConn)(nil)

type fakeTable struct {
	t      nftables.Table
	chains []*fakeChain
	sets   map[string]map[string]string // name -> element key -> verdict and comment
}

// elementKey identifies a set element as the kernel does.
func elementKey(e nftables.SetElement) string {
	return fmt.Sprintf("%x-%x end=%v", e.Key, e.KeyEnd, e.IntervalEnd)
}

// elementValue is what an element carries besides its key.
func elementValue(e nftables.SetElement) string {
	v := e.Comment
	if e.VerdictData != nil {
		v += fmt.Sprintf(" : %d %s", e.VerdictData.Kind, e.VerdictData.Chain)
	}
	return v
}

// refersTo reports whether the rules of c, or the elements of a set of t,
// name chain (kind "chain") or set (kind "set") name.
func (t *fakeTable) refersTo(kind, name string, skip *fakeChain) bool {
	for _, c := range t.chains {
		if c == skip {
			continue
		}
		for _, r := range c.rules {
			for _, e := range r.Exprs {
				switch e := e.(type) {
				case *expr.Verdict:
					if kind == "chain" && e.Chain == name {
						return true
					}
				case *expr.Lookup:
					if kind == "set" && e.SetName == name {
						return true
					}
				}
			}
		}
	}
	if kind == "chain" {
		for _, els := range t.sets {
			for _, v := range els {
				if strings.HasSuffix(v, " "+name) {
					return true
				}
			}
		}
	}
	return false
}

type fakeChain struct {
	c     nftables.Chain
	rules []*nftables.Rule
}

func newFakeConn() *fakeConn { return &fakeConn{fail: map[string]error{}} }

func (f *fakeConn) failNext(kind string) error {
	err := f.fail[kind]
	if f.failTwice && err != nil {
		f.failTwice = false
		return err
	}
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
	for _, name := range sortedKeys(ft.sets) {
		out = append(out, &nftables.Set{Name: name, Table: t})
	}
	return out, nil
}

func (f *fakeConn) AddTable(t *nftables.Table) *nftables.Table {
	tt := *t
	f.queue = append(f.queue, func(ts []*fakeTable) ([]*fakeTable, error) {
		if findTable(ts, tt.Name, tt.Family) == nil {
			ts = append(ts, &fakeTable{t: tt, sets: map[string]map[string]string{}})
		}
		return ts, nil
	})
	return t
}

func (f *fakeConn) DelTable(t *nftables.Table) {
	f.replaces++
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
		for _, e := range rr.Exprs {
			switch e := e.(type) {
			case *expr.Verdict:
				if (e.Kind == expr.VerdictJump || e.Kind == expr.VerdictGoto) && ft.chain(e.Chain) == nil {
					return nil, fmt.Errorf("fake add rule to %s: jump to %s: %w", rr.Chain.Name, e.Chain, unix.ENOENT)
				}
			case *expr.Lookup:
				if _, ok := ft.sets[e.SetName]; !ok && e.SetID == 0 {
					return nil, fmt.Errorf("fake add rule to %s: lookup in %s: %w", rr.Chain.Name, e.SetName, unix.ENOENT)
				}
			}
		}
		fc := ft.chain(rr.Chain.Name)
		fc.rules = append(fc.rules, &rr)
		return ts, nil
	})
	return r
}

func (f *fakeConn) FlushChain(c *nftables.Chain) {
	name, table := c.Name, *c.Table
	f.queue = append(f.queue, func(ts []*fakeTable) ([]*fakeTable, error) {
		ft := findTable(ts, table.Name, table.Family)
		if ft == nil || ft.chain(name) == nil {
			return nil, fmt.Errorf("fake flush chain %s: %w", name, unix.ENOENT)
		}
		ft.chain(name).rules = nil
		return ts, nil
	})
}

func (f *fakeConn) DelChain(c *nftables.Chain) {
	name, table := c.Name, *c.Table
	f.queue = append(f.queue, func(ts []*fakeTable) ([]*fakeTable, error) {
		ft := findTable(ts, table.Name, table.Family)
		if ft == nil || ft.chain(name) == nil {
			return nil, fmt.Errorf("fake delete chain %s: %w", name, unix.ENOENT)
		}
		fc := ft.chain(name)
		if ft.refersTo("chain", name, fc) {
			return nil, fmt.Errorf("fake delete chain %s: %w", name, unix.EBUSY)
		}
		ft.chains = slices.DeleteFunc(ft.chains, func(x *fakeChain) bool { return x == fc })
		return ts, nil
	})
}

func (f *fakeConn) AddSet(s *nftables.Set, vals []nftables.SetElement) error {
	if s.Anonymous {
		// The kernel binds anonymous sets to their rule; the library
		// gives them an ID and a name pattern, as here.
		f.anonymous++
		s.ID, s.Name = f.anonymous, "__set%d"
		return nil
	}
	name, table := s.Name, *s.Table
	f.queue = append(f.queue, func(ts []*fakeTable) ([]*fakeTable, error) {
		ft := findTable(ts, table.Name, table.Family)
		if ft == nil {
			return nil, fmt.Errorf("fake add set %s: %w", name, unix.ENOENT)
		}
		if ft.sets[name] == nil {
			ft.sets[name] = map[string]string{}
		}
		return ts, nil
	})
	if len(vals) > 0 {
		return f.SetAddElements(s, vals)
	}
	return nil
}

func (f *fakeConn) DelSet(s *nftables.Set) {
	name, table := s.Name, *s.Table
	f.queue = append(f.queue, func(ts []*fakeTable) ([]*fakeTable, error) {
		ft := findTable(ts, table.Name, table.Family)
		if ft == nil || ft.sets[name] == nil {
			return nil, fmt.Errorf("fake delete set %s: %w", name, unix.ENOENT)
		}
		if ft.refersTo("set", name, nil) {
			return nil, fmt.Errorf("fake delete set %s: %w", name, unix.EBUSY)
		}
		delete(ft.sets, name)
		return ts, nil
	})
}

func (f *fakeConn) SetAddElements(s *nftables.Set, vals []nftables.SetElement) error {
	return f.elements(s, vals, true)
}

func (f *fakeConn) SetDeleteElements(s *nftables.Set, vals []nftables.SetElement) error {
	return f.elements(s, vals, false)
}

func (f *fakeConn) elements(s *nftables.Set, vals []nftables.SetElement, add bool) error {
	name, table := s.Name, *s.Table
	vals = slices.Clone(vals)
	f.batches = append(f.batches, len(vals))
	verb := map[bool]string{true: "add", false: "delete"}[add]
	f.queue = append(f.queue, func(ts []*fakeTable) ([]*fakeTable, error) {
		ft := findTable(ts, table.Name, table.Family)
		if ft == nil || ft.sets[name] == nil {
			return nil, fmt.Errorf("fake %s elements of %s: %w", verb, name, unix.ENOENT)
		}
		els := ft.sets[name]
		for _, v := range vals {
			k := elementKey(v)
			_, ok := els[k]
			switch {
			case add && ok:
				return nil, fmt.Errorf("fake add element %s to %s: %w", k, name, unix.EEXIST)
			case add && v.VerdictData != nil && v.VerdictData.Chain != "" && ft.chain(v.VerdictData.Chain) == nil:
				return nil, fmt.Errorf("fake add element %s to %s: goto %s: %w", k, name, v.VerdictData.Chain, unix.ENOENT)
			case add:
				els[k] = elementValue(v)
			case !ok:
				return nil, fmt.Errorf("fake delete element %s of %s: %w", k, name, unix.ENOENT)
			default:
				delete(els, k)
			}
		}
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
		nt := &fakeTable{t: t.t, sets: map[string]map[string]string{}}
		for _, c := range t.chains {
			nt.chains = append(nt.chains, &fakeChain{c: c.c, rules: slices.Clone(c.rules)})
		}
		for k, v := range t.sets {
			nt.sets[k] = maps.Clone(v)
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
			lines = append(lines, fmt.Sprintf("  set %s elements %d", name, len(t.sets[name])))
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

// dump renders the whole state: every element of every set and every
// rule's expressions (anonymous sets by their elements' absence: they are
// not modelled), for comparing two ways of reaching a state.
func (f *fakeConn) dump() string {
	var b strings.Builder
	for _, t := range f.tables {
		fmt.Fprintf(&b, "table %s\n", t.t.Name)
		for _, name := range sortedKeys(t.sets) {
			fmt.Fprintf(&b, "  set %s\n", name)
			for _, k := range sortedKeys(t.sets[name]) {
				fmt.Fprintf(&b, "    %s%s\n", k, t.sets[name][k])
			}
		}
		cs := slices.Clone(t.chains)
		slices.SortFunc(cs, func(a, b *fakeChain) int { return strings.Compare(a.c.Name, b.c.Name) })
		for _, c := range cs {
			fmt.Fprintf(&b, "  chain %s\n", c.c.Name)
			for _, r := range c.rules {
				s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
				fmt.Fprintf(&b, "    %q", s)
				for _, e := range r.Exprs {
					if l, ok := e.(*expr.Lookup); ok && l.SetID != 0 {
						fmt.Fprintf(&b, " lookup-anonymous")
						continue
					}
					fmt.Fprintf(&b, " %T%+v", e, e)
				}
				b.WriteString("\n")
			}
		}
	}
	return b.String()
}
