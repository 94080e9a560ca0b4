package fabric

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
)

// StateFile is the name of the file in the state dir that holds the node's
// subnet claim across restarts.
const StateFile = "subnet.json"

// State is the node's subnet claim as kept in its state dir, so that a
// restarted node keeps its subnet and its precedence (ClaimedAt) in conflicts.
type State struct {
	// Subnet is the claimed subnet; never zero in a saved state.
	Subnet netip.Prefix `json:"subnet"`
	// ClaimedAt is when the subnet was claimed, in Unix milliseconds; not negative.
	ClaimedAt int64 `json:"claimedAt"`
	// Static reports whether the subnet was configured by hand.
	Static bool `json:"static"`
}

// Validate reports whether s can be saved: Subnet is a valid prefix without
// host bits set and ClaimedAt is not negative. The error names the field and
// its value.
func (s State) Validate() error {
	if !s.Subnet.IsValid() {
		return fmt.Errorf("subnet %q: not a valid prefix", s.Subnet.String())
	}
	if m := s.Subnet.Masked(); m != s.Subnet {
		return fmt.Errorf("subnet %s: host bits set, want %s", s.Subnet, m)
	}
	if s.ClaimedAt < 0 {
		return fmt.Errorf("claimedAt %d: negative", s.ClaimedAt)
	}
	return nil
}

// Claim returns s as the claim of the named node.
func (s State) Claim(node string) Claim {
	return Claim{Node: node, Subnet: s.Subnet, ClaimedAt: s.ClaimedAt, Static: s.Static}
}

// LoadState reads <dir>/subnet.json. It returns (State{}, false, nil) when
// the file does not exist, and an error naming the file (and, for a bad
// content, the field and value) when it cannot be read or decoded.
func LoadState(dir string) (State, bool, error) {
	path := filepath.Join(dir, StateFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, false, nil
	}
	if err != nil {
		return State{}, false, fmt.Errorf("load subnet state: %w", err)
	}
	s, err := DecodeState(data)
	if err != nil {
		return State{}, false, fmt.Errorf("load subnet state %s: %w", path, err)
	}
	return s, true, nil
}

// DecodeState decodes the JSON form of a State, as SaveState writes it, and
// validates it (see State.Validate). "subnet" is required; "claimedAt" and
// "static" default to 0 and false; unknown fields are ignored so that an
// older binary can read a newer file. Errors name the field and the value.
// DecodeState does not retain data.
func DecodeState(data []byte) (State, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return State{}, fmt.Errorf("decode subnet state: %w", err)
	}
	if fields == nil {
		return State{}, errors.New("decode subnet state: not a JSON object")
	}
	var s State
	raw, ok := fields["subnet"]
	if !ok {
		return State{}, errors.New("decode subnet state: subnet: missing")
	}
	var str string
	if err := json.Unmarshal(raw, &str); err != nil {
		return State{}, fmt.Errorf("decode subnet state: subnet %s: not a string", quoteRaw(raw))
	}
	p, err := netip.ParsePrefix(str)
	if err != nil {
		return State{}, fmt.Errorf("decode subnet state: subnet %q: %w", str, err)
	}
	s.Subnet = p
	if raw, ok := fields["claimedAt"]; ok {
		n, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64)
		if err != nil {
			return State{}, fmt.Errorf("decode subnet state: claimedAt %s: not an integer of milliseconds", quoteRaw(raw))
		}
		s.ClaimedAt = n
	}
	if raw, ok := fields["static"]; ok {
		if err := json.Unmarshal(raw, &s.Static); err != nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			return State{}, fmt.Errorf("decode subnet state: static %s: not true or false", quoteRaw(raw))
		}
	}
	if err := s.Validate(); err != nil {
		return State{}, fmt.Errorf("decode subnet state: %w", err)
	}
	return s, nil
}

// quoteRaw renders a raw JSON value for an error message, shortened.
func quoteRaw(raw json.RawMessage) string {
	return quoteShort(string(bytes.TrimSpace(raw)))
}

// encodeState returns the JSON form of a valid s, as DecodeState reads it.
func encodeState(s State) ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// SaveState writes s to <dir>/subnet.json atomically: a temporary file in dir
// is written, fsynced and renamed over the old one (and dir is fsynced), so a
// crash leaves the old state or the new one, never a mix. The file has mode
// 0600; dir is created with mode 0700 if it does not exist. An invalid s (see
// State.Validate) is refused and nothing is written. Concurrent calls on the
// same dir leave one of the states written.
func SaveState(dir string, s State) error {
	path := filepath.Join(dir, StateFile)
	data, err := encodeState(s)
	if err != nil {
		return fmt.Errorf("save subnet state %s: %w", path, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save subnet state: %w", err)
	}
	if err := writeFileAtomic(path, data, 0o600); err != nil {
		return fmt.Errorf("save subnet state: %w", err)
	}
	return nil
}

// writeFileAtomic replaces path with data through a temporary file in the same
// directory: write, chmod to mode, fsync, rename, fsync the directory. When it
// fails before the rename, the temporary file is removed and path is
// untouched. The errors from the os package name the file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+name+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if err := writeSync(f, data, mode); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	// The rename is durable only once the directory entry is on disk.
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// writeSync writes data to f, sets its mode, fsyncs it and closes it. f is
// closed whatever happens.
func writeSync(f *os.File, data []byte, mode os.FileMode) error {
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	// CreateTemp makes the file 0600 whatever the umask; Chmod sets mode exactly.
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
