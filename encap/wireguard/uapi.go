package wireguard

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// uapiTimeout bounds one request to a UAPI socket: the device answers from
// memory, so only a hung process takes longer.
const uapiTimeout = 10 * time.Second

// uapiClient speaks WireGuard's cross-platform configuration protocol
// (https://www.wireguard.com/xplatform/) over the UAPI socket of a
// user-space device, as wgctrl's user-space client does, but in a directory
// of the caller's choosing: wgctrl only looks in /var/run/wireguard, and two
// namespaces of one host (the tests, the lab) need a directory each.
type uapiClient struct {
	dir string
}

// NewUAPIClient returns a Client for the user-space devices whose UAPI
// sockets are dir/<name>.sock (DefaultSocketDir where wg(8) looks). Each call
// dials the socket, makes one request and closes it; it is safe for
// concurrent use. A socket that is missing or that nothing listens on is
// reported as os.ErrNotExist.
func NewUAPIClient(dir string) Client {
	return uapiClient{dir: dir}
}

func sockPath(dir, name string) string { return filepath.Join(dir, name+".sock") }

// request sends req and returns the answer up to its blank line.
func (c uapiClient) request(name string, req []byte) (*bufio.Reader, func(), error) {
	path := sockPath(c.dir, name)
	conn, err := net.DialTimeout("unix", path, uapiTimeout)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ECONNREFUSED) {
		return nil, nil, fmt.Errorf("dial %s: %w (%w)", path, os.ErrNotExist, err)
	} else if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", path, err)
	}
	if err := conn.SetDeadline(time.Now().Add(uapiTimeout)); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("set deadline on %s: %w", path, err)
	}
	if _, err := conn.Write(req); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("write to %s: %w", path, err)
	}
	return bufio.NewReader(conn), func() { conn.Close() }, nil
}

// Device implements Client.
func (c uapiClient) Device(name string) (*wgtypes.Device, error) {
	r, done, err := c.request(name, []byte("get=1\n\n"))
	if err != nil {
		return nil, err
	}
	defer done()
	d, err := parseDevice(r)
	if err != nil {
		return nil, fmt.Errorf("get wireguard device %s: %w", name, err)
	}
	d.Name = name
	d.Type = wgtypes.Userspace
	return d, nil
}

// ConfigureDevice implements Client.
func (c uapiClient) ConfigureDevice(name string, cfg wgtypes.Config) error {
	var req bytes.Buffer
	req.WriteString("set=1\n")
	writeConfig(&req, cfg)
	req.WriteString("\n")
	r, done, err := c.request(name, req.Bytes())
	clear(req.Bytes()) // it may hold the private key
	if err != nil {
		return err
	}
	defer done()
	if _, err := parseDevice(r); err != nil {
		return fmt.Errorf("set wireguard device %s: %w", name, err)
	}
	return nil
}

// writeConfig writes cfg in the protocol's "set" form, without the
// operation line and the closing blank line.
func writeConfig(w io.Writer, cfg wgtypes.Config) {
	if cfg.PrivateKey != nil {
		fmt.Fprintf(w, "private_key=%s\n", hex.EncodeToString(cfg.PrivateKey[:]))
	}
	if cfg.ListenPort != nil {
		fmt.Fprintf(w, "listen_port=%d\n", *cfg.ListenPort)
	}
	if cfg.FirewallMark != nil {
		fmt.Fprintf(w, "fwmark=%d\n", *cfg.FirewallMark)
	}
	if cfg.ReplacePeers {
		fmt.Fprintln(w, "replace_peers=true")
	}
	for _, p := range cfg.Peers {
		fmt.Fprintf(w, "public_key=%s\n", hex.EncodeToString(p.PublicKey[:]))
		if p.Remove {
			fmt.Fprintln(w, "remove=true")
			continue
		}
		if p.UpdateOnly {
			fmt.Fprintln(w, "update_only=true")
		}
		if p.PresharedKey != nil {
			fmt.Fprintf(w, "preshared_key=%s\n", hex.EncodeToString(p.PresharedKey[:]))
		}
		if p.Endpoint != nil {
			fmt.Fprintf(w, "endpoint=%s\n", addrPort(p.Endpoint))
		}
		if p.PersistentKeepaliveInterval != nil {
			fmt.Fprintf(w, "persistent_keepalive_interval=%d\n", int(p.PersistentKeepaliveInterval.Seconds()))
		}
		if p.ReplaceAllowedIPs {
			fmt.Fprintln(w, "replace_allowed_ips=true")
		}
		for _, ip := range p.AllowedIPs {
			fmt.Fprintf(w, "allowed_ip=%s\n", ip.String())
		}
	}
}

// parseDevice reads a "get" answer (or the status of a "set", which is its
// errno line alone) up to its blank line. A non-zero errno (negative from
// wireguard-go) is returned as that syscall.Errno. Unknown keys are skipped (newer protocol versions);
// malformed values are errors.
func parseDevice(r *bufio.Reader) (*wgtypes.Device, error) {
	var (
		d             wgtypes.Device
		peer          *wgtypes.Peer
		hsSec, hsNsec int64
		sawErrno      bool
	)
	flushHandshake := func() {
		if peer != nil && (hsSec != 0 || hsNsec != 0) {
			peer.LastHandshakeTime = time.Unix(hsSec, hsNsec)
		}
		hsSec, hsNsec = 0, 0
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("read answer: %w", err)
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			break
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("answer line %q: not key=value", line)
		}
		if key == "public_key" {
			flushHandshake()
			k, err := parseHexKey(value)
			if err != nil {
				return nil, fmt.Errorf("public_key: %w", err)
			}
			d.Peers = append(d.Peers, wgtypes.Peer{PublicKey: k})
			peer = &d.Peers[len(d.Peers)-1]
			continue
		}
		if key == "errno" {
			n, err := strconv.ParseInt(value, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("errno %q: %w", value, err)
			}
			if n < 0 {
				n = -n // wireguard-go sends -errno
			}
			if n != 0 {
				return nil, syscall.Errno(n)
			}
			sawErrno = true
			continue
		}
		if err := parseField(&d, peer, key, value, &hsSec, &hsNsec); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
	}
	if !sawErrno {
		return nil, errors.New("answer without errno")
	}
	flushHandshake()
	if d.PrivateKey != (wgtypes.Key{}) {
		d.PublicKey = d.PrivateKey.PublicKey()
	}
	return &d, nil
}

// parseField sets the field key of d (peer nil) or of peer. The value of
// private_key is never quoted in an error: it is a secret.
func parseField(d *wgtypes.Device, peer *wgtypes.Peer, key, value string, hsSec, hsNsec *int64) error {
	var err error
	if peer == nil {
		switch key {
		case "private_key":
			d.PrivateKey, err = parseHexKey(value)
			if err != nil {
				return errors.New("not a hex key")
			}
		case "listen_port":
			d.ListenPort, err = parseUint(value, 16)
		case "fwmark":
			d.FirewallMark, err = parseUint(value, 32)
		}
		return err
	}
	switch key {
	case "preshared_key":
		peer.PresharedKey, err = parseHexKey(value)
	case "protocol_version":
		peer.ProtocolVersion, err = parseUint(value, 32)
	case "endpoint":
		var ap netip.AddrPort
		if ap, err = netip.ParseAddrPort(value); err == nil {
			peer.Endpoint = net.UDPAddrFromAddrPort(ap)
		}
	case "last_handshake_time_sec":
		*hsSec, err = strconv.ParseInt(value, 10, 64)
	case "last_handshake_time_nsec":
		*hsNsec, err = strconv.ParseInt(value, 10, 64)
	case "tx_bytes":
		peer.TransmitBytes, err = strconv.ParseInt(value, 10, 64)
	case "rx_bytes":
		peer.ReceiveBytes, err = strconv.ParseInt(value, 10, 64)
	case "persistent_keepalive_interval":
		var n int
		n, err = parseUint(value, 16)
		peer.PersistentKeepaliveInterval = time.Duration(n) * time.Second
	case "allowed_ip":
		var p netip.Prefix
		if p, err = netip.ParsePrefix(value); err == nil {
			peer.AllowedIPs = append(peer.AllowedIPs, *ipNet(p))
		}
	}
	return err
}

func parseUint(s string, bits int) (int, error) {
	n, err := strconv.ParseUint(s, 10, bits)
	return int(n), err
}

func parseHexKey(s string) (wgtypes.Key, error) {
	if len(s) != 2*keyLen {
		return wgtypes.Key{}, fmt.Errorf("%d hex digits, want %d", len(s), 2*keyLen)
	}
	var k wgtypes.Key
	if _, err := hex.Decode(k[:], []byte(s)); err != nil {
		return wgtypes.Key{}, errors.New("not hex")
	}
	return k, nil
}
