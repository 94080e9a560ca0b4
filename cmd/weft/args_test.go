package main

import (
	"strings"
	"testing"
)

func TestFlagsFirst(t *testing.T) {
	app := newApp()
	tests := []struct{ in, want string }{
		{"weft endpoint add w1 --iface wlw1 --ip 10.0.0.1 -l app=web", "weft endpoint add --iface wlw1 --ip 10.0.0.1 -l app=web w1"},
		{"weft endpoint add --run-dir /r w1 --iface=wlw1", "weft endpoint add --run-dir /r --iface=wlw1 w1"},
		{"weft policy get gnp/x -o yaml", "weft policy get -o yaml gnp/x"},
		{"weft policy delete gnp/a np/b --run-dir /r", "weft policy delete --run-dir /r gnp/a np/b"},
		{"weft policy check --batch --explain", "weft policy check --batch --explain"},
		{"weft policy trace --from 1.1.1.1 extra --default-deny-workloads", "weft policy trace --from 1.1.1.1 --default-deny-workloads extra"},
		{"weft endpoint del w1 -- --odd", "weft endpoint del w1 -- --odd"},
		{"weft status", "weft status"},
		{"weft nosuch a --b", "weft nosuch a --b"},
	}
	for _, tt := range tests {
		got := strings.Join(flagsFirst(app, strings.Fields(tt.in)), " ")
		if got != tt.want {
			t.Errorf("flagsFirst(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
