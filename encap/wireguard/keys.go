package wireguard

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// KeyFile is the name of the private key file in the state dir. It holds
// the key in base64 on one line, as `wg genkey` writes it, so that
// `wg pubkey < wireguard.key` shows the node's public key.
const KeyFile = "wireguard.key"

// keyLen is the length of a Curve25519 key.
const keyLen = 32

// keyFileMode is the only mode a key file may have: readable by root alone.
const keyFileMode fs.FileMode = 0o600

// PrivateKey is a node's WireGuard (Curve25519) private key, always clamped
// as WireGuard clamps it (so the device reads back the bytes that were set).
// It never shows itself: String, GoString, LogValue and MarshalText do not
// reveal it, so that a key passed to a logger or printed by mistake does not
// leak. It is never gossiped: only PublicKey is.
type PrivateKey [keyLen]byte

// PublicKey is a WireGuard (Curve25519) public key. It prints and
// marshals as standard base64, the form wg(8) uses.
type PublicKey [keyLen]byte

// GenerateKey returns a new random private key from crypto/rand.
func GenerateKey() (PrivateKey, error) {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return PrivateKey{}, fmt.Errorf("generate wireguard key: %w", err)
	}
	return PrivateKey(k), nil
}

// PublicKey returns the public key of k. The zero private key gives a
// public key too; callers refuse a zero key first (IsZero).
func (k PrivateKey) PublicKey() PublicKey { return PublicKey(wgtypes.Key(k).PublicKey()) }

// IsZero reports whether k is the zero key (no key).
func (k PrivateKey) IsZero() bool { return k == PrivateKey{} }

// String returns a placeholder, never the key.
func (k PrivateKey) String() string { return "(private key)" }

// GoString returns a placeholder, never the key (for %#v).
func (k PrivateKey) GoString() string { return "wireguard.PrivateKey(redacted)" }

// LogValue implements slog.LogValuer: a placeholder, never the key.
func (k PrivateKey) LogValue() slog.Value { return slog.StringValue("(private key)") }

// MarshalText refuses: a private key is never serialized by accident (the
// key file is written by LoadOrCreateKey and Rotate alone).
func (k PrivateKey) MarshalText() ([]byte, error) {
	return nil, errors.New("wireguard private key: not marshalled")
}

// clamp applies the Curve25519 clamping that WireGuard applies on set.
func (k *PrivateKey) clamp() {
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
}

// ParsePublicKey parses a public key in standard base64 (44 characters, as
// wg(8) prints it). It refuses anything else with an error that quotes s:
// another length, non-canonical base64, or the all-zero key.
func ParsePublicKey(s string) (PublicKey, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	switch {
	case err != nil:
		return PublicKey{}, fmt.Errorf("wireguard public key %q: %w", s, err)
	case len(b) != keyLen:
		return PublicKey{}, fmt.Errorf("wireguard public key %q: %d bytes, want %d", s, len(b), keyLen)
	}
	k := PublicKey(b)
	if k.IsZero() {
		return PublicKey{}, fmt.Errorf("wireguard public key %q: all zeros", s)
	}
	return k, nil
}

// IsZero reports whether k is the zero key (no key).
func (k PublicKey) IsZero() bool { return k == PublicKey{} }

// String returns k in standard base64.
func (k PublicKey) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// MarshalText returns k in standard base64.
func (k PublicKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText parses a key as ParsePublicKey does; on error k is
// unchanged.
func (k *PublicKey) UnmarshalText(b []byte) error {
	p, err := ParsePublicKey(string(b))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// LoadOrCreateKey returns the private key kept in stateDir/KeyFile, making a
// new one there first if there is none (and stateDir, mode 0700, if
// missing). The file has mode 0600; a key file readable or writable by group
// or others is refused (fix with chmod 600, or rotate the key: it may have
// leaked), as is a file that holds no valid key. It is safe against
// concurrent callers, in this or another process: the file appears whole or
// not at all, and all callers get the same key. It never logs the key.
func LoadOrCreateKey(stateDir string) (PrivateKey, error) {
	path := filepath.Join(stateDir, KeyFile)
	k, err := readKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k, err = GenerateKey()
	if err != nil {
		return PrivateKey{}, err
	}
	tmp, err := writeTemp(stateDir, k)
	if err != nil {
		return PrivateKey{}, err
	}
	defer os.Remove(tmp)
	// Link, unlike rename, does not replace: a key made meanwhile by
	// another caller wins, and this one is discarded.
	if err := os.Link(tmp, path); errors.Is(err, fs.ErrExist) {
		return readKey(path)
	} else if err != nil {
		return PrivateKey{}, fmt.Errorf("install wireguard key %s: %w", path, err)
	}
	if err := syncDir(stateDir); err != nil {
		return PrivateKey{}, err
	}
	return k, nil
}

// Rotate makes a new private key, replaces the one in stateDir/KeyFile with
// it atomically (a reader or a crash sees the old key or the new one, whole)
// and returns it. The old key is not kept: the device holds one key, and
// peers switch to the new one as soon as its public key reaches them (see
// the package doc for the order: apply the new key, then publish it).
func Rotate(stateDir string) (PrivateKey, error) {
	k, err := GenerateKey()
	if err != nil {
		return PrivateKey{}, err
	}
	tmp, err := writeTemp(stateDir, k)
	if err != nil {
		return PrivateKey{}, err
	}
	path := filepath.Join(stateDir, KeyFile)
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return PrivateKey{}, fmt.Errorf("replace wireguard key %s: %w", path, err)
	}
	if err := syncDir(stateDir); err != nil {
		return PrivateKey{}, err
	}
	return k, nil
}

// readKey reads and checks the key file at path. A missing file is an
// error for which errors.Is(err, fs.ErrNotExist) holds.
func readKey(path string) (PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("open wireguard key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return PrivateKey{}, fmt.Errorf("stat wireguard key %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return PrivateKey{}, fmt.Errorf("wireguard key %s: mode %s: not a regular file", path, fi.Mode())
	}
	if perm := fi.Mode().Perm(); perm&^keyFileMode != 0 {
		return PrivateKey{}, fmt.Errorf("wireguard key %s: mode %04o: open to group or others, want %04o", path, perm, keyFileMode)
	}
	buf := make([]byte, 128) // a key line is 45 bytes; more is not a key file
	n, err := f.Read(buf)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("read wireguard key %s: %w", path, err)
	}
	// The error must not quote the content: it may be the key.
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(buf[:n])))
	if err != nil || len(b) != keyLen {
		return PrivateKey{}, fmt.Errorf("wireguard key %s: not one base64 %d-byte key", path, keyLen)
	}
	k := PrivateKey(b)
	if k.IsZero() {
		return PrivateKey{}, fmt.Errorf("wireguard key %s: all zeros", path)
	}
	k.clamp()
	return k, nil
}

// writeTemp writes k to a new temporary file (mode 0600) in dir, synced,
// and returns its path; the caller renames or removes it.
func writeTemp(dir string, k PrivateKey) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("make state dir %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "."+KeyFile+".*") // mode 0600
	if err != nil {
		return "", fmt.Errorf("create wireguard key file in %s: %w", dir, err)
	}
	line := make([]byte, 0, 45)
	line = base64.StdEncoding.AppendEncode(line, k[:])
	line = append(line, '\n')
	_, err = f.Write(line)
	clear(line)
	if err == nil {
		err = f.Chmod(keyFileMode) // whatever the umask did
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("write wireguard key file %s: %w", f.Name(), err)
	}
	return f.Name(), nil
}

// syncDir makes a rename or link in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open state dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync state dir %s: %w", dir, err)
	}
	return nil
}
