package routing_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/weft-net/weft/fabric"
	"github.com/weft-net/weft/fabric/routing"
	"github.com/weft-net/weft/fabric/routing/routingtest"
)

var (
	via5 = fabric.Route{Dst: netip.MustParsePrefix("10.244.5.0/24"), Via: netip.MustParseAddr("198.18.0.5"), Dev: "eth0"}
	vx6  = fabric.Route{Dst: netip.MustParsePrefix("10.244.6.0/24"), Via: netip.MustParseAddr("10.244.6.0"), Dev: "weft.vxlan", OnLink: true, MTU: 1450}
	bh   = fabric.Route{Dst: netip.MustParsePrefix("10.244.0.0/16"), Blackhole: true}
	v6   = fabric.Route{Dst: netip.MustParsePrefix("fd00:244:7::/64"), Via: netip.MustParseAddr("fe80::7"), Dev: "eth0"}
	wl   = fabric.Route{Dst: netip.MustParsePrefix("10.244.3.4/32"), Dev: "wl1234"}

	// Foreign routes: the node's own, which weft must never touch.
	defRoute  = fabric.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: netip.MustParseAddr("198.18.0.1"), Dev: "eth0"}
	connected = fabric.Route{Dst: netip.MustParsePrefix("198.18.0.0/24"), Dev: "eth0"}
	static9   = fabric.Route{Dst: netip.MustParsePrefix("10.244.9.0/24"), Via: netip.MustParseAddr("198.18.0.9"), Dev: "eth0"}

	errInjected = errors.New("injected")

	addrCmp   = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	prefixCmp = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })
)

// protoRoute is a route seeded into the fake with its protocol.
type protoRoute struct {
	route    fabric.Route
	protocol int
}

// foreign is the messy node's own routes.
var foreign = []protoRoute{
	{defRoute, unix.RTPROT_DHCP},
	{connected, unix.RTPROT_KERNEL},
	{static9, unix.RTPROT_STATIC},
}

// withWeft adds weft's routes to seeded routes.
func withWeft(seed []protoRoute, rs ...fabric.Route) []protoRoute {
	out := append([]protoRoute(nil), seed...)
	for _, r := range rs {
		out = append(out, protoRoute{r, fabric.RouteProtocol})
	}
	return out
}

func newKernel(seed []protoRoute) *routingtest.Kernel {
	k := routingtest.NewKernel()
	for _, s := range seed {
		k.AddRoute(s.route, s.protocol)
	}
	return k
}

func TestApply(t *testing.T) {
	wrongGw := via5
	wrongGw.Via = netip.MustParseAddr("198.18.0.55")
	wrongMTU := vx6
	wrongMTU.MTU = 1500
	stale := fabric.Route{Dst: netip.MustParsePrefix("10.244.8.0/24"), Via: netip.MustParseAddr("198.18.0.8"), Dev: "eth0"}
	tests := []struct {
		name string
		seed []protoRoute
		want []fabric.Route
		// kernel is the table after Apply; mutations the calls it took.
		kernel    string
		mutations int
	}{
		{
			name: "converge from empty",
			want: []fabric.Route{via5, vx6, bh, v6, wl},
			kernel: `blackhole 10.244.0.0/16 proto 87
10.244.3.4/32 dev wl1234 proto 87
10.244.5.0/24 via 198.18.0.5 dev eth0 proto 87
10.244.6.0/24 via 10.244.6.0 dev weft.vxlan onlink mtu 1450 proto 87
fd00:244:7::/64 via fe80::7 dev eth0 proto 87
`,
			mutations: 5,
		},
		{
			name: "messy kernel: foreign stay, stale go, wrong gateway and mtu replaced",
			seed: withWeft(foreign, wrongGw, wrongMTU, stale, bh),
			want: []fabric.Route{via5, vx6, bh},
			kernel: `0.0.0.0/0 via 198.18.0.1 dev eth0 proto dhcp
blackhole 10.244.0.0/16 proto 87
10.244.5.0/24 via 198.18.0.5 dev eth0 proto 87
10.244.6.0/24 via 10.244.6.0 dev weft.vxlan onlink mtu 1450 proto 87
10.244.9.0/24 via 198.18.0.9 dev eth0 proto static
198.18.0.0/24 dev eth0 proto kernel
`,
			mutations: 3,
		},
		{
			name: "empty want removes only weft's routes",
			seed: withWeft(foreign, via5, v6),
			kernel: `0.0.0.0/0 via 198.18.0.1 dev eth0 proto dhcp
10.244.9.0/24 via 198.18.0.9 dev eth0 proto static
198.18.0.0/24 dev eth0 proto kernel
`,
			mutations: 2,
		},
		{
			name: "already converged",
			seed: withWeft(foreign, via5),
			want: []fabric.Route{via5},
			kernel: `0.0.0.0/0 via 198.18.0.1 dev eth0 proto dhcp
10.244.5.0/24 via 198.18.0.5 dev eth0 proto 87
10.244.9.0/24 via 198.18.0.9 dev eth0 proto static
198.18.0.0/24 dev eth0 proto kernel
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newKernel(tt.seed)
			a := routing.New(routing.Config{Kernel: k})
			if err := a.Apply(context.Background(), tt.want); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if diff := cmp.Diff(tt.kernel, k.String()); diff != "" {
				t.Errorf("kernel after Apply (-want +got):\n%s", diff)
			}
			if got := k.Mutations(); got != tt.mutations {
				t.Errorf("first Apply made %d mutating calls, want %d", got, tt.mutations)
			}
			k.ResetCalls()
			if err := a.Apply(context.Background(), tt.want); err != nil {
				t.Fatalf("second Apply: %v", err)
			}
			if got := k.Mutations(); got != 0 {
				t.Errorf("second Apply made %d mutating calls, want 0", got)
			}
			if diff := cmp.Diff(tt.kernel, k.String()); diff != "" {
				t.Errorf("kernel after second Apply (-want +got):\n%s", diff)
			}
		})
	}
}

func TestApplyInvalidChangesNothing(t *testing.T) {
	other := via5
	other.Via = netip.MustParseAddr("198.18.0.6")
	tests := []struct {
		name string
		want []fabric.Route
	}{
		{"duplicate Dst", []fabric.Route{via5, bh, other}},
		{"same route twice", []fabric.Route{via5, via5}},
		{"invalid Dst", []fabric.Route{{Dev: "eth0"}}},
		{"host bits in Dst", []fabric.Route{{Dst: netip.MustParsePrefix("10.244.5.1/24"), Dev: "eth0"}}},
		{"no Dev, Via or Blackhole", []fabric.Route{{Dst: netip.MustParsePrefix("10.244.5.0/24")}}},
		{"blackhole with Dev", []fabric.Route{{Dst: netip.MustParsePrefix("10.244.5.0/24"), Blackhole: true, Dev: "eth0"}}},
		{"blackhole with Via", []fabric.Route{{Dst: netip.MustParsePrefix("10.244.5.0/24"), Blackhole: true, Via: netip.MustParseAddr("198.18.0.1")}}},
		{"Via of the other family", []fabric.Route{{Dst: netip.MustParsePrefix("10.244.5.0/24"), Via: netip.MustParseAddr("fe80::1"), Dev: "eth0"}}},
		{"mapped IPv4 Via", []fabric.Route{{Dst: netip.MustParsePrefix("10.244.5.0/24"), Via: netip.MustParseAddr("::ffff:198.18.0.1"), Dev: "eth0"}}},
		{"OnLink without Dev", []fabric.Route{{Dst: netip.MustParsePrefix("10.244.5.0/24"), Via: netip.MustParseAddr("198.18.0.1"), OnLink: true}}},
		{"negative MTU", []fabric.Route{{Dst: netip.MustParsePrefix("10.244.5.0/24"), Dev: "eth0", MTU: -1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newKernel(withWeft(foreign, vx6))
			before := k.String()
			a := routing.New(routing.Config{Kernel: k})
			if err := a.Apply(context.Background(), tt.want); err == nil {
				t.Fatalf("Apply(%v) succeeded, want an error", tt.want)
			} else {
				t.Logf("Apply: %v", err)
			}
			if _, err := a.Check(context.Background(), tt.want); err == nil {
				t.Errorf("Check(%v) succeeded, want an error", tt.want)
			}
			calls := k.Calls(routingtest.OpRouteList) + k.Mutations()
			if calls != 0 {
				t.Errorf("invalid want made %d kernel calls, want 0", calls)
			}
			if diff := cmp.Diff(before, k.String()); diff != "" {
				t.Errorf("kernel changed (-before +after):\n%s", diff)
			}
		})
	}
}

func TestApplyFailureThenRecovery(t *testing.T) {
	stale := fabric.Route{Dst: netip.MustParsePrefix("10.244.8.0/24"), Via: netip.MustParseAddr("198.18.0.8"), Dev: "eth0"}
	want := []fabric.Route{via5, vx6, bh}
	converged := `0.0.0.0/0 via 198.18.0.1 dev eth0 proto dhcp
blackhole 10.244.0.0/16 proto 87
10.244.5.0/24 via 198.18.0.5 dev eth0 proto 87
10.244.6.0/24 via 10.244.6.0 dev weft.vxlan onlink mtu 1450 proto 87
10.244.9.0/24 via 198.18.0.9 dev eth0 proto static
198.18.0.0/24 dev eth0 proto kernel
`
	tests := []struct {
		name string
		kind string
		err  error
		// afterFailure is the table after the failed Apply; wantErr whether
		// that Apply fails.
		afterFailure string
		wantErr      bool
	}{
		{
			name: "list fails: nothing changes",
			kind: routingtest.OpRouteList,
			err:  errInjected,
			afterFailure: `0.0.0.0/0 via 198.18.0.1 dev eth0 proto dhcp
10.244.8.0/24 via 198.18.0.8 dev eth0 proto 87
10.244.9.0/24 via 198.18.0.9 dev eth0 proto static
198.18.0.0/24 dev eth0 proto kernel
`,
			wantErr: true,
		},
		{
			name: "first replace fails: the others and the delete go on",
			kind: routingtest.OpRouteReplace,
			err:  errInjected,
			afterFailure: `0.0.0.0/0 via 198.18.0.1 dev eth0 proto dhcp
10.244.5.0/24 via 198.18.0.5 dev eth0 proto 87
10.244.6.0/24 via 10.244.6.0 dev weft.vxlan onlink mtu 1450 proto 87
10.244.9.0/24 via 198.18.0.9 dev eth0 proto static
198.18.0.0/24 dev eth0 proto kernel
`,
			wantErr: true,
		},
		{
			name: "delete fails: the stale route stays",
			kind: routingtest.OpRouteDel,
			err:  errInjected,
			afterFailure: `0.0.0.0/0 via 198.18.0.1 dev eth0 proto dhcp
blackhole 10.244.0.0/16 proto 87
10.244.5.0/24 via 198.18.0.5 dev eth0 proto 87
10.244.6.0/24 via 10.244.6.0 dev weft.vxlan onlink mtu 1450 proto 87
10.244.8.0/24 via 198.18.0.8 dev eth0 proto 87
10.244.9.0/24 via 198.18.0.9 dev eth0 proto static
198.18.0.0/24 dev eth0 proto kernel
`,
			wantErr: true,
		},
		{
			// The kernel answers ESRCH when the route went between the
			// dump and the delete; the fake's injected ESRCH leaves it.
			name: "delete answered ESRCH counts as done",
			kind: routingtest.OpRouteDel,
			err:  fmt.Errorf("delete route: %w", unix.ESRCH),
			afterFailure: `0.0.0.0/0 via 198.18.0.1 dev eth0 proto dhcp
blackhole 10.244.0.0/16 proto 87
10.244.5.0/24 via 198.18.0.5 dev eth0 proto 87
10.244.6.0/24 via 10.244.6.0 dev weft.vxlan onlink mtu 1450 proto 87
10.244.8.0/24 via 198.18.0.8 dev eth0 proto 87
10.244.9.0/24 via 198.18.0.9 dev eth0 proto static
198.18.0.0/24 dev eth0 proto kernel
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newKernel(withWeft(foreign, stale))
			a := routing.New(routing.Config{Kernel: k})
			k.FailNext(tt.kind, tt.err)
			err := a.Apply(context.Background(), want)
			if tt.wantErr != (err != nil) || (err != nil && !errors.Is(err, tt.err)) {
				t.Fatalf("Apply with %s failing: got %v, want error %v", tt.kind, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.afterFailure, k.String()); diff != "" {
				t.Errorf("kernel after the failure (-want +got):\n%s", diff)
			}
			if err := a.Apply(context.Background(), want); err != nil {
				t.Fatalf("Apply after the failure: %v", err)
			}
			if diff := cmp.Diff(converged, k.String()); diff != "" {
				t.Errorf("kernel after recovery (-want +got):\n%s", diff)
			}
			k.ResetCalls()
			if err := a.Apply(context.Background(), want); err != nil || k.Mutations() != 0 {
				t.Errorf("Apply once recovered: err %v, %d mutating calls, want nil and 0", err, k.Mutations())
			}
		})
	}
}

func TestApplyForeignRouteAtWantedDst(t *testing.T) {
	k := newKernel(foreign)
	a := routing.New(routing.Config{Kernel: k})
	clash := fabric.Route{Dst: static9.Dst, Via: netip.MustParseAddr("198.18.0.99"), Dev: "eth0"}
	err := a.Apply(context.Background(), []fabric.Route{clash, via5})
	if !errors.Is(err, unix.EEXIST) {
		t.Fatalf("Apply over a foreign route: got %v, want an error wrapping EEXIST", err)
	}
	want := `0.0.0.0/0 via 198.18.0.1 dev eth0 proto dhcp
10.244.5.0/24 via 198.18.0.5 dev eth0 proto 87
10.244.9.0/24 via 198.18.0.9 dev eth0 proto static
198.18.0.0/24 dev eth0 proto kernel
`
	if diff := cmp.Diff(want, k.String()); diff != "" {
		t.Errorf("kernel (-want +got):\n%s", diff)
	}
}

func TestApplyCancelled(t *testing.T) {
	k := newKernel(foreign)
	a := routing.New(routing.Config{Kernel: k})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Apply(ctx, []fabric.Route{via5}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply with a cancelled context: got %v, want context.Canceled", err)
	}
	if got := k.Mutations(); got != 0 {
		t.Errorf("cancelled Apply made %d mutating calls, want 0", got)
	}
}

func TestCheck(t *testing.T) {
	wrongGw := via5
	wrongGw.Via = netip.MustParseAddr("198.18.0.55")
	stale := fabric.Route{Dst: netip.MustParsePrefix("10.244.8.0/24"), Via: netip.MustParseAddr("198.18.0.8"), Dev: "eth0"}
	tests := []struct {
		name   string
		seed   []protoRoute
		want   []fabric.Route
		report routing.Report
		inSync bool
	}{
		{
			name:   "in sync",
			seed:   withWeft(foreign, via5, bh),
			want:   []fabric.Route{via5, bh},
			report: routing.Report{Routes: []routing.RouteState{{Route: bh, InKernel: true}, {Route: via5, InKernel: true}}},
			inSync: true,
		},
		{
			name: "missing, different and stale",
			seed: withWeft(foreign, wrongGw, stale),
			want: []fabric.Route{via5, bh},
			report: routing.Report{
				Routes: []routing.RouteState{{Route: bh}, {Route: via5}},
				Stale:  []fabric.Route{wrongGw, stale},
			},
		},
		{
			name:   "foreign route at a wanted Dst is not weft's",
			seed:   foreign,
			want:   []fabric.Route{static9},
			report: routing.Report{Routes: []routing.RouteState{{Route: static9}}},
		},
		{
			name:   "nothing wanted, nothing there",
			seed:   foreign,
			inSync: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newKernel(tt.seed)
			before := k.String()
			a := routing.New(routing.Config{Kernel: k})
			got, err := a.Check(context.Background(), tt.want)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if diff := cmp.Diff(tt.report, got, addrCmp, prefixCmp); diff != "" {
				t.Errorf("Check (-want +got):\n%s", diff)
			}
			if got.InSync() != tt.inSync {
				t.Errorf("InSync() = %v, want %v", got.InSync(), tt.inSync)
			}
			if k.Mutations() != 0 || k.String() != before {
				t.Errorf("Check changed the kernel: %d mutating calls", k.Mutations())
			}
		})
	}
}

func TestSweep(t *testing.T) {
	onlyForeign := `0.0.0.0/0 via 198.18.0.1 dev eth0 proto dhcp
10.244.9.0/24 via 198.18.0.9 dev eth0 proto static
198.18.0.0/24 dev eth0 proto kernel
`
	k := newKernel(withWeft(foreign, via5, vx6, bh, v6))
	a := routing.New(routing.Config{Kernel: k})
	k.FailNext(routingtest.OpRouteDel, errInjected)
	if err := a.Sweep(context.Background()); !errors.Is(err, errInjected) {
		t.Fatalf("Sweep with a failing delete: got %v, want the injected error", err)
	}
	if got := k.Mutations(); got != 4 {
		t.Errorf("Sweep made %d delete calls, want 4 (it keeps going)", got)
	}
	if err := a.Sweep(context.Background()); err != nil {
		t.Fatalf("second Sweep: %v", err)
	}
	if diff := cmp.Diff(onlyForeign, k.String()); diff != "" {
		t.Errorf("kernel after Sweep (-want +got):\n%s", diff)
	}
	k.ResetCalls()
	if err := a.Sweep(context.Background()); err != nil || k.Mutations() != 0 {
		t.Errorf("Sweep of a clean kernel: err %v, %d mutating calls, want nil and 0", err, k.Mutations())
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		route fabric.Route
		want  string
	}{
		{via5, "10.244.5.0/24 via 198.18.0.5 dev eth0"},
		{vx6, "10.244.6.0/24 via 10.244.6.0 dev weft.vxlan onlink mtu 1450"},
		{bh, "blackhole 10.244.0.0/16"},
		{wl, "10.244.3.4/32 dev wl1234"},
		{v6, "fd00:244:7::/64 via fe80::7 dev eth0"},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, routing.Format(tt.route)); diff != "" {
			t.Errorf("Format(%+v) (-want +got):\n%s", tt.route, diff)
		}
	}
}
