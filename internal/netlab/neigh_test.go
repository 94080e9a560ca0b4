package netlab

import "testing"

func TestNeighLimits(t *testing.T) {
	for _, c := range []struct {
		need, t2, t3 int
		w2, w3       int
		change       bool
	}{
		{need: 20, t2: 512, t3: 1024, w2: 512, w3: 1024},
		{need: 1300, t2: 512, t3: 1024, w2: 2856, w3: 2856, change: true},
		{need: 1300, t2: 8000, t3: 2000, w2: 8000, w3: 2856, change: true},
		{need: 1300, t2: 512, t3: 10000, w2: 512, w3: 10000},
	} {
		g2, g3, ch := neighLimits(c.need, c.t2, c.t3)
		if g2 != c.w2 || g3 != c.w3 || ch != c.change {
			t.Errorf("neighLimits(%d, %d, %d) = %d, %d, %v; want %d, %d, %v", c.need, c.t2, c.t3, g2, g3, ch, c.w2, c.w3, c.change)
		}
	}
}

func TestNeighNeed(t *testing.T) {
	p := Plan{Nodes: []Node{
		{Name: "r", Router: true, Ifaces: []Iface{{Segment: "a"}, {Segment: "b"}}},
		{Name: "h1", Ifaces: []Iface{{Segment: "a"}}},
		{Name: "h2", Ifaces: []Iface{{Segment: "a"}}},
		{Name: "h3", Ifaces: []Iface{{Segment: "b"}}},
	}}
	// a: r, h1, h2 -> 6; b: r, h3 -> 2
	if got := neighNeed(p); got != 8 {
		t.Errorf("neighNeed = %d, want 8", got)
	}
}
