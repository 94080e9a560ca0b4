package main

import (
	"bufio"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseUAPI(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []uapiPeer
		wantErr bool
	}{
		{
			name: "two peers, one with a handshake",
			in: "private_key=aa\nlisten_port=51820\n" +
				"public_key=01\nendpoint=198.18.1.2:51820\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\n" +
				"allowed_ip=10.244.1.0/24\nallowed_ip=10.244.9.0/24\n" +
				"public_key=02\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\nallowed_ip=10.244.2.0/24\n" +
				"errno=0\n\n",
			want: []uapiPeer{
				{PublicKey: "01", AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("10.244.9.0/24")}, Handshake: time.Unix(1700000000, 5)},
				{PublicKey: "02", AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.244.2.0/24")}},
			},
		},
		{name: "no peers", in: "listen_port=1\nerrno=0\n\n"},
		{name: "device error", in: "errno=74\n\n", wantErr: true},
		{name: "cut short", in: "public_key=01\n", wantErr: true},
		{name: "bad prefix", in: "public_key=01\nallowed_ip=nope\nerrno=0\n\n", wantErr: true},
		{name: "allowed ip before any peer", in: "allowed_ip=10.0.0.0/8\nerrno=0\n\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseUAPI(bufio.NewReader(strings.NewReader(tt.in)))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseUAPI err = %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("parseUAPI (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPeerFor(t *testing.T) {
	peers := []uapiPeer{
		{PublicKey: "01", AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}},
		{PublicKey: "02", AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.244.2.0/24")}},
	}
	tests := []struct {
		name   string
		addr   string
		want   string
		wantOK bool
	}{
		{"second", "10.244.2.7", "02", true},
		{"none", "10.244.3.7", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := peerFor(peers, netip.MustParseAddr(tt.addr))
			if diff := cmp.Diff([2]any{tt.want, tt.wantOK}, [2]any{got.PublicKey, ok}); diff != "" {
				t.Errorf("peerFor(%s) (-want +got):\n%s", tt.addr, diff)
			}
		})
	}
}

func TestParsePingReply(t *testing.T) {
	tests := []struct {
		name   string
		line   string
		want   time.Time
		wantOK bool
	}{
		{"reply", "[1732537563.123456] 64 bytes from 10.0.0.2: icmp_seq=5 ttl=62 time=0.5 ms", time.Unix(1732537563, 123456000), true},
		{"unreachable", "[1732537563.123456] From 198.18.1.1 icmp_seq=1 Destination Net Unreachable", time.Time{}, false},
		{"header", "PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.", time.Time{}, false},
		{"no stamp", "64 bytes from 10.0.0.2: icmp_seq=5 ttl=62 time=0.5 ms", time.Time{}, false},
		{"bad stamp", "[17x.1] 64 bytes from 10.0.0.2: icmp_seq=5", time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parsePingReply(tt.line)
			if diff := cmp.Diff([2]any{tt.want, tt.wantOK}, [2]any{got, ok}); diff != "" {
				t.Errorf("parsePingReply (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    procStat
		wantErr bool
	}{
		{
			name: "comm with spaces and parens",
			in:   "42 (a (b) c) S 7 42 42 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 1 0 5 0 0",
			want: procStat{comm: "a (b) c", ppid: 7, cpu: 4 * time.Second},
		},
		{name: "short", in: "42 (x) S 7 1 2", wantErr: true},
		{name: "no comm", in: "42 x S 7", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseStat err = %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(procStat{})); diff != "" {
				t.Errorf("parseStat (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSummarizeThroughput(t *testing.T) {
	samples := []Sample{
		{Path: pathRaw, Streams: 1, Gbps: 10},
		{Path: pathRaw, Streams: 1, Gbps: 12},
		{Path: pathRaw, Streams: 1, Gbps: 1, Noisy: true},
		{Path: pathWGVeth, Streams: 1, Gbps: 2, CPUPerGB: 4},
		{Path: pathWeft, Streams: 1, Gbps: 3, CPUPerGB: 3},
		{Path: pathWeft, Streams: 1, Err: "boom"},
	}
	want := []TputSummary{
		{Path: pathRaw, Streams: 1, Runs: 3, OK: 3, Noisy: 1, Gbps: 11, Min: 10, Max: 12, CPUPerGB: -1, VsRaw: 1, VsWGVeth: 5.5},
		{Path: pathWGVeth, Streams: 1, Runs: 1, OK: 1, Gbps: 2, Min: 2, Max: 2, CPUPerGB: 4, VsRaw: 2.0 / 11, VsWGVeth: 1},
		{Path: pathWeft, Streams: 1, Runs: 2, OK: 1, Gbps: 3, Min: 3, Max: 3, CPUPerGB: 3, VsRaw: 3.0 / 11, VsWGVeth: 1.5},
	}
	if diff := cmp.Diff(want, summarizeThroughput(samples)); diff != "" {
		t.Errorf("summarizeThroughput (-want +got):\n%s", diff)
	}
}

func TestSummarizeLatency(t *testing.T) {
	trials := []Trial{
		{Kind: kindWeft, Configured: 30, Routed: 35, Handshake: 36, FirstReply: 40},
		{Kind: kindStandalone, Configured: 3, Routed: 3, Handshake: 12, FirstReply: 13},
		{Kind: kindWeft, Configured: 20, Routed: 25, Handshake: 26, FirstReply: 50, Noisy: true},
		{Kind: kindWeft, Err: "no reply"},
		{Kind: kindStandalone, Configured: 3, Routed: 3, Handshake: 5000, FirstReply: 5001, ARPFull: true},
	}
	want := []LatSummary{
		{Kind: kindWeft, Trials: 3, OK: 2, Noisy: 1, Configured: 25, Routed: 30, Handshake: 31, FirstReply: 45, MinReply: 40, MaxReply: 50, ReplyAfterRouted: 15},
		{Kind: kindStandalone, Trials: 2, OK: 1, ARPFull: 1, Configured: 3, Routed: 3, Handshake: 12, FirstReply: 13, MinReply: 13, MaxReply: 13, ReplyAfterRouted: 10},
	}
	if diff := cmp.Diff(want, summarizeLatency(trials)); diff != "" {
		t.Errorf("summarizeLatency (-want +got):\n%s", diff)
	}
}

func TestOffloads(t *testing.T) {
	in := "Features for wg0:\nrx-checksumming: off [fixed]\ntx-checksumming: on\ntcp-segmentation-offload: on\n\ttx-tcp-segmentation: on\n" +
		"generic-segmentation-offload: on\ngeneric-receive-offload: on\ntx-udp-segmentation: on\n"
	want := "tx-checksumming on, tcp-segmentation-offload on, generic-segmentation-offload on, generic-receive-offload on, tx-udp-segmentation on"
	if diff := cmp.Diff(want, offloads(in)); diff != "" {
		t.Errorf("offloads (-want +got):\n%s", diff)
	}
}
