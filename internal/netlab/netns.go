package netlab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns` and netns.NewNamed keep the bind mounts that
// name network namespaces.
const netnsDir = "/run/netns"

// threadResult carries the outcome of a function run on a locked thread back
// to the caller's goroutine.
type threadResult struct {
	err      error
	panicked any
	didPanic bool
}

// onLockedThread runs fn on a new goroutine locked to its OS thread and waits
// for it. fn must leave the thread's network namespace as it found it and
// report whether it did; when it did not, the thread stays locked, so the Go
// runtime discards it when the goroutine ends instead of reusing a thread in
// the wrong namespace. A panic in fn is re-raised on the caller's goroutine.
func onLockedThread(fn func() (restored bool, err error)) error {
	done := make(chan threadResult, 1)
	go func() {
		runtime.LockOSThread()
		var r threadResult
		restored := false
		defer func() {
			if p := recover(); p != nil {
				r.panicked, r.didPanic = p, true
			}
			if restored {
				runtime.UnlockOSThread()
			}
			done <- r
		}()
		restored, r.err = fn()
	}()
	r := <-done
	if r.didPanic {
		panic(r.panicked)
	}
	return r.err
}

// inNetNS runs fn with its OS thread switched into the network namespace at
// path, then switches back. fn runs on another goroutine: it must not call
// t.FailNow and the like. fn's error is returned unchanged.
func inNetNS(path string, fn func() error) error {
	return onLockedThread(func() (restored bool, err error) {
		orig, err := netns.Get()
		if err != nil {
			return true, fmt.Errorf("open current netns: %w", err)
		}
		defer orig.Close()
		target, err := netns.GetFromPath(path)
		if err != nil {
			return true, fmt.Errorf("open netns %s: %w", path, err)
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			return false, fmt.Errorf("enter netns %s: %w", path, err)
		}
		defer func() {
			// Also runs when fn panics; onLockedThread then discards
			// the thread whatever happens here.
			if rerr := netns.Set(orig); rerr != nil {
				restored = false
				err = errors.Join(err, fmt.Errorf("leave netns %s: %w", path, rerr))
				return
			}
			restored = true
		}()
		return false, fn()
	})
}

// createNamedNS creates a network namespace bound at /run/netns/<name>
// without moving any goroutine's thread into it for good. made reports
// whether something may have been left at that path (to be removed on
// teardown), which is false only when the name was already taken.
func createNamedNS(name string) (made bool, err error) {
	err = onLockedThread(func() (bool, error) {
		orig, err := netns.Get()
		if err != nil {
			return true, fmt.Errorf("open current netns: %w", err)
		}
		defer orig.Close()
		// netns.NewNamed unshares the calling thread into the new
		// namespace, even when it then fails to bind-mount it.
		ns, nsErr := netns.NewNamed(name)
		if nsErr == nil {
			ns.Close()
		}
		if err := netns.Set(orig); err != nil {
			return false, errors.Join(nsErr, fmt.Errorf("leave new netns %s: %w", name, err))
		}
		return true, nsErr
	})
	if err != nil {
		return !errors.Is(err, fs.ErrExist), fmt.Errorf("create netns %s: %w", name, err)
	}
	return true, nil
}

// removeNamedNS removes the bind mount and file /run/netns/<name>. The
// namespace itself, with its links and routes, goes when nothing else holds
// it (open handles, processes). A missing name is not an error, and a plain
// file left by a half-done create is removed too.
func removeNamedNS(name string) error {
	err := netns.DeleteNamed(name)
	switch {
	case err == nil, errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.EINVAL):
		// Not a mount point: creation stopped between creating the file
		// and bind-mounting it.
		if err := os.Remove(filepath.Join(netnsDir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove netns file %s: %w", name, err)
		}
		return nil
	default:
		return fmt.Errorf("delete netns %s: %w", name, err)
	}
}

// Sweep removes every named network namespace whose name starts with prefix,
// such as those left by a killed run (pass that run's [Lab.Prefix]). Namespaces
// of a lab still running are removed too: the default generated prefixes all
// start with "wl", so Sweep("wl") removes every generated lab. prefix must not
// be empty. Sweep keeps going after a failure and returns all of them joined.
// It is safe to call concurrently with itself, and idempotent.
func Sweep(prefix string) error {
	if prefix == "" {
		return fmt.Errorf("sweep prefix %q: empty would match every namespace", prefix)
	}
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sweep %s*: list %s: %w", prefix, netnsDir, err)
	}
	var errs []error
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		if err := removeNamedNS(e.Name()); err != nil {
			errs = append(errs, fmt.Errorf("sweep %s*: %w", prefix, err))
		}
	}
	return errors.Join(errs...)
}
