package agent

import (
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/weft-net/weft/fabric"
	"github.com/weft-net/weft/fabric/health"
)

func TestMetricsHealth(t *testing.T) {
	a := &Agent{health: newPathHealth(noGrace())}
	h := a.health
	now := time.Unix(1000, 0)
	var plans []fabric.PeerPlan
	for i := range maxPeerSeries + 5 {
		plans = append(plans, fabric.PeerPlan{Name: fmt.Sprintf("p%03d", i), Path: fabric.PathDirect,
			Candidates: []fabric.PathKind{fabric.PathDirect, fabric.PathVXLAN}})
	}
	h.tr.SetPlan(plans, now)
	// p000 answers once (up, 2 ms); p001 misses three times (down).
	seq := h.tr.Sent(health.Target{Peer: "p000", Path: fabric.PathDirect, Route: true}, now)
	h.tr.Reply(seq, "p000", fabric.PathDirect, now.Add(2*time.Millisecond))
	for range 3 {
		seq := h.tr.Sent(health.Target{Peer: "p001", Path: fabric.PathDirect, Route: true}, now)
		h.tr.Failed(seq, now)
	}
	h.count.sent.Add(4)

	handler, err := a.metricsHandler()
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	text := string(body)
	for _, want := range []string{
		`weft_health_peer_up{path="direct",peer="p000"} 1`,
		`weft_health_peer_up{path="direct",peer="p001"} 0`,
		`weft_health_peer_up{path="direct",peer="p002"} -1`,
		`weft_health_peer_rtt_seconds{peer="p000"} 0.002`,
		`weft_health_peer_loss_ratio{peer="p001"} 1`,
		`weft_health_peer_paths_down{peer="p001"} 1`,
		`weft_health_paths{path="direct",state="down"} 1`,
		`weft_health_paths{path="direct",state="up"} 1`,
		fmt.Sprintf(`weft_health_paths{path="direct",state="unknown"} %d`, maxPeerSeries+3),
		fmt.Sprintf(`weft_health_peers{path="direct"} %d`, maxPeerSeries+5),
		`weft_health_peer_series_dropped 5`,
		`weft_health_probes_sent_total 4`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	if !strings.Contains(text, "go_goroutines ") {
		t.Errorf("metrics lack the Go runtime's")
	}
	// Bounded: no per-peer series past the limit.
	if strings.Contains(text, fmt.Sprintf(`peer="p%03d"`, maxPeerSeries)) {
		t.Errorf("per-peer series beyond %d peers", maxPeerSeries)
	}
}

func TestHealthProblems(t *testing.T) {
	a := &Agent{health: newPathHealth(noGrace())}
	h := a.health
	now := time.Unix(1000, 0)
	cands := []fabric.PathKind{fabric.PathDirect, fabric.PathVXLAN}
	h.tr.SetPlan([]fabric.PeerPlan{
		{Name: "h2", Path: fabric.PathDirect, Candidates: cands},
		{Name: "h3", Path: fabric.PathDirect, Candidates: cands},
	}, now)
	for range 3 {
		for _, p := range []string{"h2", "h3"} {
			seq := h.tr.Sent(health.Target{Peer: p, Path: fabric.PathDirect, Route: true}, now)
			h.tr.Failed(seq, now)
		}
	}
	// The planner moved h3 to the overlay; h2 has nowhere else (as if).
	h.tr.SetPlan([]fabric.PeerPlan{
		{Name: "h2", Path: fabric.PathDirect, Candidates: cands},
		{Name: "h3", Path: fabric.PathVXLAN, Candidates: cands},
	}, now)
	got := a.healthProblems()
	want := []string{
		"path health: h2: direct in use is down",
		"path health: h3: on fallback vxlan, direct is down",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func noGrace() health.Config {
	c := health.DefaultConfig()
	c.StartGrace = 0
	return c
}
