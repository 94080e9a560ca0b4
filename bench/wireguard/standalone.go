package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// ip runs `ip args...` and returns its output, or an error with it.
func ip(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// nsCommand runs name with args inside the named network namespace.
func nsCommand(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// nsPair is two fresh namespaces joined by one veth (eth0 on both sides,
// MTU 1500 as on the lab's links): no bridge, no routing, no weft.
type nsPair struct {
	a, b string
	made []string
}

// newNSPair makes namespaces a and b joined by a veth with addrs on its
// ends. The caller must Close it, also after an error.
func newNSPair(ctx context.Context, a, b string, addrs [2]netip.Prefix) (*nsPair, error) {
	p := &nsPair{a: a, b: b}
	for _, ns := range []string{a, b} {
		if _, err := ip(ctx, "netns", "add", ns); err != nil {
			return p, err
		}
		p.made = append(p.made, ns)
	}
	// Made inside a with its peer put straight into b: the root namespace
	// never sees either end.
	steps := [][]string{
		{"-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b},
		{"-n", a, "addr", "add", addrs[0].String(), "dev", "eth0"},
		{"-n", b, "addr", "add", addrs[1].String(), "dev", "eth0"},
	}
	for _, ns := range []string{a, b} {
		steps = append(steps, []string{"-n", ns, "link", "set", "lo", "up"}, []string{"-n", ns, "link", "set", "eth0", "up"})
	}
	for _, s := range steps {
		if _, err := ip(ctx, s...); err != nil {
			return p, err
		}
	}
	return p, nil
}

// Close removes the namespaces p made; it is idempotent.
func (p *nsPair) Close() error {
	var errs []error
	var left []string
	for _, ns := range p.made {
		// Not the run's context: this must work after an interruption too.
		if _, err := ip(context.Background(), "netns", "del", ns); err != nil {
			errs = append(errs, err)
			left = append(left, ns)
		}
	}
	p.made = left
	return errors.Join(errs...)
}

// wgEnd is one end of a standalone wireguard-go tunnel.
type wgEnd struct {
	ns, dev string
	under   netip.Addr   // underlay address the other end sends to
	port    int          // listen port
	tunnel  netip.Prefix // address on the device; the peer's /32 is its allowed IP
	key     wgtypes.Key
	cmd     *exec.Cmd
	done    chan struct{}
}

// wgTunnel is two standalone wireguard-go processes (the `wireguard`
// binary) configured with wg(8) and ip(8) into a point-to-point tunnel.
type wgTunnel struct {
	ends   [2]*wgEnd
	keyDir string
}

// wgMTU is the devices' MTU: the 1500-byte underlay minus WireGuard's
// overhead for an IPv6 underlay (80 bytes), as weft sets it.
const wgMTU = 1420

// wgSocketDir is where the standalone wireguard-go puts its UAPI socket.
const wgSocketDir = "/var/run/wireguard"

// startTunnel starts wireguard-go for both ends and configures them with
// peers, addresses and MTU. The caller must Close the tunnel, also after
// an error.
func startTunnel(ctx context.Context, bin string, ends [2]*wgEnd) (*wgTunnel, error) {
	t := &wgTunnel{ends: ends}
	var err error
	if t.keyDir, err = os.MkdirTemp("", "weft-bench-wg-keys-"); err != nil {
		return t, fmt.Errorf("make key dir: %w", err)
	}
	for _, e := range ends {
		if err := e.start(ctx, bin); err != nil {
			return t, err
		}
	}
	if err := t.rekey(ctx); err != nil {
		return t, err
	}
	for i, e := range ends {
		if err := t.addPeer(ctx, i); err != nil {
			return t, err
		}
		for _, s := range [][]string{
			{"-n", e.ns, "addr", "add", e.tunnel.String(), "dev", e.dev},
			{"-n", e.ns, "link", "set", e.dev, "mtu", strconv.Itoa(wgMTU), "up"},
		} {
			if _, err := ip(ctx, s...); err != nil {
				return t, err
			}
		}
	}
	return t, nil
}

// start runs wireguard-go in the foreground for e and waits for its UAPI socket.
func (e *wgEnd) start(ctx context.Context, bin string) error {
	// Not CommandContext: Close stops it, after an interruption too.
	e.cmd = exec.Command("ip", "netns", "exec", e.ns, bin, e.dev)
	e.cmd.Env = append(os.Environ(), "WG_PROCESS_FOREGROUND=1", "LOG_LEVEL=error")
	e.cmd.Stdout, e.cmd.Stderr = os.Stderr, os.Stderr
	if err := e.cmd.Start(); err != nil {
		return fmt.Errorf("start wireguard-go %s in %s: %w", e.dev, e.ns, err)
	}
	e.done = make(chan struct{})
	go func() {
		_ = e.cmd.Wait()
		close(e.done)
	}()
	sock := filepath.Join(wgSocketDir, e.dev+".sock")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := uapiGet(sock); err == nil {
			return nil
		}
		select {
		case <-e.done:
			return fmt.Errorf("wireguard-go %s in %s exited at start", e.dev, e.ns)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wireguard-go %s in %s: no uapi socket %s after 10s", e.dev, e.ns, sock)
		}
	}
}

// wg runs wg(8) with args inside e's namespace.
func (e *wgEnd) wg(ctx context.Context, args ...string) error {
	out, err := nsCommand(ctx, e.ns, "wg", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("wg %s in %s: %w: %s", strings.Join(args, " "), e.ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// rekey gives both ends a fresh key pair and removes their peers: after
// it, each is a new peer to the other.
func (t *wgTunnel) rekey(ctx context.Context) error {
	for _, e := range t.ends {
		k, err := wgtypes.GeneratePrivateKey()
		if err != nil {
			return fmt.Errorf("generate key for %s: %w", e.dev, err)
		}
		e.key = k
		f := filepath.Join(t.keyDir, e.dev+".key")
		if err := os.WriteFile(f, []byte(k.String()+"\n"), 0o600); err != nil {
			return fmt.Errorf("write key of %s: %w", e.dev, err)
		}
		if err := e.wg(ctx, "set", e.dev, "private-key", f, "listen-port", strconv.Itoa(e.port)); err != nil {
			return err
		}
	}
	for i, e := range t.ends {
		otherPub := t.ends[1-i].key.PublicKey()
		peers, err := uapiGet(filepath.Join(wgSocketDir, e.dev+".sock"))
		if err != nil {
			return err
		}
		for _, p := range peers {
			if p.PublicKey == hex.EncodeToString(otherPub[:]) {
				continue
			}
			k, err := hex.DecodeString(p.PublicKey)
			if err != nil || len(k) != wgtypes.KeyLen {
				return fmt.Errorf("peer key %q of %s: not a hex key", p.PublicKey, e.dev)
			}
			if err := e.wg(ctx, "set", e.dev, "peer", wgtypes.Key(k).String(), "remove"); err != nil {
				return err
			}
		}
	}
	return nil
}

// addPeer configures end i with the other end as its peer, as
// `wg set DEV peer KEY allowed-ips X/32 endpoint ADDR:PORT`.
func (t *wgTunnel) addPeer(ctx context.Context, i int) error {
	e, other := t.ends[i], t.ends[1-i]
	return e.wg(ctx, "set", e.dev, "peer", other.key.PublicKey().String(),
		"allowed-ips", netip.PrefixFrom(other.tunnel.Addr(), 32).String(),
		"endpoint", netip.AddrPortFrom(other.under, uint16(other.port)).String())
}

// pids returns the wireguard-go processes' ids.
func (t *wgTunnel) pids() []int {
	var out []int
	for _, e := range t.ends {
		if e != nil && e.cmd != nil && e.cmd.Process != nil {
			out = append(out, e.cmd.Process.Pid)
		}
	}
	return out
}

// sock returns end i's UAPI socket path.
func (t *wgTunnel) sock(i int) string { return filepath.Join(wgSocketDir, t.ends[i].dev+".sock") }

// Close stops both wireguard-go processes (SIGTERM, then SIGKILL after
// 5 s), which removes their devices, and the key files. It is idempotent.
func (t *wgTunnel) Close() error {
	var errs []error
	for _, e := range t.ends {
		if e == nil || e.done == nil {
			continue
		}
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.done:
		case <-time.After(5 * time.Second):
			_ = e.cmd.Process.Kill()
			<-e.done
			errs = append(errs, fmt.Errorf("wireguard-go %s in %s: killed after SIGTERM did not stop it", e.dev, e.ns))
		}
	}
	if t.keyDir != "" {
		errs = append(errs, os.RemoveAll(t.keyDir))
	}
	return errors.Join(errs...)
}
