package gossip

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the size of the cluster keys that GenerateKey makes: AES-256, the
// largest memberlist supports (it accepts 16, 24 or 32 bytes).
const KeySize = 32

// GenerateKey returns a new random cluster key of KeySize bytes.
func GenerateKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("read random key: %w", err)
	}
	return k, nil
}

// EncodeKey renders a key as the key file holds it: base64 and a newline.
func EncodeKey(k []byte) []byte {
	return []byte(base64.StdEncoding.EncodeToString(k) + "\n")
}

// ParseKey decodes the content of a key file. Surrounding white space is
// ignored; anything else that is not base64 of 16, 24 or 32 bytes is an error.
func ParseKey(data []byte) ([]byte, error) {
	s := strings.TrimSpace(string(data))
	if s == "" {
		return nil, errors.New("cluster key: empty")
	}
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("cluster key: not base64: %w", err)
	}
	switch len(k) {
	case 16, 24, 32:
		return k, nil
	}
	return nil, fmt.Errorf("cluster key: %d bytes, want 16, 24 or 32", len(k))
}

// WriteKeyFile writes a new key to path with mode 0600, creating the parent
// directory (0700) if needed. It refuses to overwrite an existing file unless
// force is set: replacing a cluster's key by accident cuts a node off.
func WriteKeyFile(path string, k []byte, force bool) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create key directory %s: %w", filepath.Dir(path), err)
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return fmt.Errorf("create key file %s: %w", path, err)
	}
	// O_TRUNC keeps the mode of an existing file: tighten it.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("chmod key file %s: %w", path, err)
	}
	if _, err := f.Write(EncodeKey(k)); err != nil {
		f.Close()
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync key file %s: %w", path, err)
	}
	return f.Close()
}

// LoadKeyFile reads a cluster key file. A file that group or others can read
// is refused, as ssh refuses such private keys.
func LoadKeyFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("cluster key file %s does not exist (make one with `weft keys gen --out %s`): %w", path, path, err)
		}
		return nil, fmt.Errorf("stat cluster key file %s: %w", path, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("cluster key file %s: mode %04o lets others read it, want 0600", path, st.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read cluster key file %s: %w", path, err)
	}
	k, err := ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("cluster key file %s: %w", path, err)
	}
	return k, nil
}
