package vxlan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// session is one Apply or Check: it reads the kernel back, records every
// difference with want and, when applying, makes the call that removes it.
type session struct {
	ctx     context.Context
	k       Kernel
	log     *slog.Logger
	apply   bool     // false: record the differences only (Check)
	diffs   []string // every difference found, in the order handled
	errs    []error  // every read or change that failed
	stopped bool     // ctx was done: make no more changes
}

// run compares the whole of want with the kernel.
func (s *session) run(want Want) {
	if err := s.ctx.Err(); err != nil {
		s.fail(fmt.Errorf("vxlan: %w", err))
		return
	}
	if want.Device == nil {
		s.removeDevices()
		return
	}
	link, ok := s.device(want.Device)
	if !ok {
		// No device to work on (a read or the create failed): the
		// entries cannot be compared or applied.
		return
	}
	s.addresses(link, want.Device)
	s.neighbors(link, want)
	s.fdb(link, want)
}

// change records a difference, described by lines, and when applying makes
// the call do, described by op (for its error and the log). It reports
// whether do ran and succeeded.
func (s *session) change(op string, do func() error, lines ...string) bool {
	s.diffs = append(s.diffs, lines...)
	if !s.apply || s.stopped {
		return false
	}
	if err := s.ctx.Err(); err != nil {
		s.stopped = true
		s.fail(fmt.Errorf("stop before %s: %w", op, err))
		return false
	}
	if err := do(); err != nil {
		s.fail(fmt.Errorf("%s: %w", op, err))
		return false
	}
	s.log.Debug("changed", "op", op)
	return true
}

func (s *session) fail(err error) { s.errs = append(s.errs, err) }

// removeDevices deletes every VXLAN device named LinkPrefix*: weft's, from
// this or an earlier configuration. Other links are never touched.
func (s *session) removeDevices() {
	links, err := s.k.LinkList()
	if err != nil {
		s.fail(fmt.Errorf("list links: %w", err))
		return
	}
	slices.SortFunc(links, func(a, b netlink.Link) int { return strings.Compare(a.Attrs().Name, b.Attrs().Name) })
	for _, l := range links {
		name := l.Attrs().Name
		if _, ok := l.(*netlink.Vxlan); !ok || !strings.HasPrefix(name, LinkPrefix) {
			continue
		}
		if s.change("delete vxlan device "+name, func() error { return s.k.LinkDel(l) }, "device "+name+" unwanted") {
			s.log.Info("vxlan device removed", "link", name)
		}
	}
}

// lookup returns the link called name, nil if there is none. ok is false
// when the read failed (recorded).
func (s *session) lookup(name string) (link netlink.Link, ok bool) {
	l, err := s.k.LinkByName(name)
	switch {
	case errors.Is(err, unix.ENODEV):
		return nil, true
	case err != nil:
		s.fail(fmt.Errorf("look up link %s: %w", name, err))
		return nil, false
	}
	return l, true
}
