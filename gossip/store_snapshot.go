package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// The store is saved to Config.StorePath so that a cluster whose nodes all
// restart at once keeps its policies and endpoints. The file is
//
//	"WFST" snapshotVersion:byte crc32(IEEE, 4 bytes big endian, of the body) body
//
// where body is the store encoding of store_wire.go, tombstones included. It
// is written whole, atomically (a temporary file in the same directory,
// fsync, rename, fsync of the directory), mode 0600, at most
// storeSaveDelay after a change, and on Shutdown.

const (
	snapshotMagic   = "WFST"
	snapshotVersion = 1
	// storeSaveDelay coalesces a burst of changes into one write.
	storeSaveDelay = 500 * time.Millisecond
	// storeSaveRetry is the wait after a failed save before the next try.
	storeSaveRetry = 10 * time.Second
)

func encodeSnapshot(entries []StoreEntry) []byte {
	body := encodeStore(entries)
	b := make([]byte, 0, len(snapshotMagic)+5+len(body))
	b = append(b, snapshotMagic...)
	b = append(b, snapshotVersion)
	b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(body))
	return append(b, body...)
}

func decodeSnapshot(b []byte) ([]StoreEntry, error) {
	const head = len(snapshotMagic) + 5
	switch {
	case len(b) < head:
		return nil, fmt.Errorf("%d bytes, shorter than the header", len(b))
	case string(b[:len(snapshotMagic)]) != snapshotMagic:
		return nil, fmt.Errorf("magic %q, want %q: not a weft store snapshot", b[:len(snapshotMagic)], snapshotMagic)
	case b[len(snapshotMagic)] != snapshotVersion:
		return nil, fmt.Errorf("version %d, this build reads only version %d", b[len(snapshotMagic)], snapshotVersion)
	}
	body := b[head:]
	if sum, want := crc32.ChecksumIEEE(body), binary.BigEndian.Uint32(b[head-4:head]); sum != want {
		return nil, fmt.Errorf("checksum %08x, want %08x: damaged or truncated", sum, want)
	}
	return decodeStore(body)
}

// readSnapshot reads the snapshot at path; a missing file is an empty store.
func readSnapshot(path string) ([]StoreEntry, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read store snapshot %s: %w", path, err)
	}
	entries, err := decodeSnapshot(b)
	if err != nil {
		return nil, fmt.Errorf("store snapshot %s: %w", path, errCorrupt{err})
	}
	return entries, nil
}

// errCorrupt marks a snapshot that was read but cannot be used.
type errCorrupt struct{ err error }

func (e errCorrupt) Error() string { return e.err.Error() }
func (e errCorrupt) Unwrap() error { return e.err }

// writeFileAtomic replaces path with data so that a crash at any moment
// leaves either the old file or the new one, never a mix.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temporary file in %s: %w", dir, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename it no longer exists: harmless
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, path, err)
	}
	// The rename is durable only once the directory is.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// loadSnapshot fills the store from cfg.StorePath at start. A snapshot that
// cannot be decoded is moved aside to PATH.corrupt and the store starts
// empty, with an error logged: its content comes back from the peers by
// push/pull. Only an unreadable file (permissions, I/O) stops New.
func (m *Membership) loadSnapshot() error {
	path := m.cfg.StorePath
	if path == "" {
		return nil
	}
	entries, err := readSnapshot(path)
	var corrupt errCorrupt
	if errors.As(err, &corrupt) {
		aside := path + ".corrupt"
		if rerr := os.Rename(path, aside); rerr != nil {
			return fmt.Errorf("%w; move it aside: %w", err, rerr)
		}
		m.log.Error("store snapshot corrupt, moved aside, starting with an empty store", "file", path, "moved_to", aside, "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	kept := m.store.load(entries)
	// Loading is not a change to save: drop the signal it raised.
	select {
	case <-m.store.dirty:
	default:
	}
	m.log.Info("store snapshot loaded", "file", path, "entries", len(entries), "kept", kept)
	return nil
}

// saveSnapshot writes the whole store to cfg.StorePath.
func (m *Membership) saveSnapshot() error {
	entries := m.store.all()
	if err := writeFileAtomic(m.cfg.StorePath, encodeSnapshot(entries), 0o600); err != nil {
		return fmt.Errorf("save store snapshot: %w", err)
	}
	m.log.Debug("store snapshot saved", "file", m.cfg.StorePath, "entries", len(entries))
	return nil
}

// saveLoop saves the store storeSaveDelay after a change, coalescing the
// changes in between, and once more when stopped if a save was pending.
func (m *Membership) saveLoop() {
	defer m.done.Done()
	if m.cfg.StorePath == "" {
		return
	}
	delay := storeSaveDelay
	for {
		select {
		case <-m.stop:
			return
		case <-m.store.dirty:
		}
		select {
		case <-m.stop:
			if err := m.saveSnapshot(); err != nil {
				m.log.Error("save store snapshot", "err", err)
			}
			return
		case <-time.After(delay):
		}
		delay = storeSaveDelay
		if err := m.saveSnapshot(); err != nil {
			m.log.Error("save store snapshot, will retry", "retry_in", storeSaveRetry, "err", err)
			delay = storeSaveRetry
			select {
			case m.store.dirty <- struct{}{}:
			default:
			}
		}
	}
}
