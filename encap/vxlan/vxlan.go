// Package vxlan applies the VXLAN part of a node's plan to the kernel: one
// VXLAN device, its static neighbour (ARP/NDP) entries and its static FDB
// entries, the way flannel's vxlan backend does it.
//
// Learning is off and nothing is resolved on the wire: for every peer the
// plan names its VTEP address and MAC (a neighbour entry, so the kernel never
// ARPs across the overlay) and that MAC's underlay address (an FDB entry, so
// the device knows where to send the encapsulated frame). The route to the
// peer's subnet, via the peer's VTEP address onlink, belongs to the route
// applier, not to this package.
//
// Data flow: [Want] (from fabric.Plan) -> [Driver.Apply] reads back the
// device, its addresses, neighbours and FDB entries through [Kernel], and
// changes only the difference. [Driver.Check] runs the same comparison and
// reports the differences without changing anything.
package vxlan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/weft-net/weft/fabric"
)

// LinkPrefix starts the name of every link weft makes. With no device
// wanted, the driver removes the VXLAN devices whose name starts with it, and
// no others.
const LinkPrefix = "weft."

const (
	// maxVNI is the largest VXLAN network identifier: the field is 24 bits.
	maxVNI = 1<<24 - 1
	// maxLinkName is the longest link name Linux takes (IFNAMSIZ 16, less
	// the terminating NUL).
	maxLinkName = 15
	// minMTU is the smallest MTU an IPv4 link takes (RFC 791).
	minMTU = 68
)

// Want is the whole desired VXLAN state of the node.
type Want struct {
	// Device is the VXLAN device; nil: no device, and the driver removes
	// every VXLAN device named LinkPrefix* (so Device.Name should start
	// with LinkPrefix for the device to be removed later). A zero MTU or a
	// nil MAC leaves the kernel's; an invalid Addr means no address; an
	// invalid Local or an empty Dev leaves the source address or the
	// underlay device unset.
	Device *fabric.VXLANDevice
	// Neighbors are the static neighbour entries on Device; an empty Dev
	// means Device.
	Neighbors []fabric.Neighbor
	// FDB are the static FDB entries on Device; an empty Dev means Device.
	FDB []fabric.FDBEntry
}

// Config configures a Driver.
type Config struct {
	// Kernel is the namespace the driver works in; required.
	Kernel Kernel
	// Logger receives the changes made (debug) and a summary per Apply
	// that changed something (info); nil discards them.
	Logger *slog.Logger
}

// Driver applies a Want to the kernel. It keeps no memory of earlier calls:
// what it owns is recognised by name. Its methods are safe for concurrent
// use; calls are serialized.
type Driver struct {
	k   Kernel
	log *slog.Logger
	mu  sync.Mutex
}

// New returns a Driver working through c.Kernel, which must not be nil.
func New(c Config) *Driver {
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Driver{k: c.Kernel, log: log.With("component", "vxlan")}
}

// Apply makes the kernel match want. It validates want first (an invalid
// want changes nothing), then reads back the device, its addresses,
// neighbours and FDB entries and changes only the difference, adding before
// deleting. A device whose VNI, port, local address, underlay device or
// learning flag differs is deleted and created again; MTU, MAC, the address
// and the up state are changed in place. After a failure Apply keeps going
// with what does not depend on the failed step, and returns all failures
// joined. It is idempotent: a second Apply with the same want makes no
// mutating kernel call. It stops making calls once ctx is done. Apply does
// not keep want or its slices.
func (d *Driver) Apply(ctx context.Context, want Want) error {
	if err := want.Validate(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s := &session{ctx: ctx, k: d.k, log: d.log, apply: true}
	s.run(want)
	err := errors.Join(s.errs...)
	if len(s.diffs) > 0 {
		d.log.Info("vxlan applied", "changes", len(s.diffs), "failed", len(s.errs))
	}
	return err
}

// Check reports every difference between want and the kernel, one readable
// line each (such as "fdb 0a:58:0a:f4:02:00 dst 198.18.2.2 missing"),
// without changing anything. No lines and a nil error mean Apply would make
// no call. Entries are compared with the device as it is now, even when
// Apply would create it again. The error joins the validation error or the
// reads that failed; the lines found are returned with it.
func (d *Driver) Check(ctx context.Context, want Want) ([]string, error) {
	if err := want.Validate(); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s := &session{ctx: ctx, k: d.k, log: d.log}
	s.run(want)
	return s.diffs, errors.Join(s.errs...)
}

// Validate reports the first field of w that the driver cannot apply, with
// its value: a device name that Linux would refuse, a VNI, port or MTU out of
// range, a MAC that is not unicast, an address that is not a single host,
// an entry on another device, or two entries that conflict.
func (w Want) Validate() error {
	if err := w.validateDevice(); err != nil {
		return fmt.Errorf("vxlan want: %w", err)
	}
	if err := w.validateEntries(); err != nil {
		return fmt.Errorf("vxlan want: %w", err)
	}
	return nil
}

func (w Want) validateDevice() error {
	dev := w.Device
	if dev == nil {
		switch {
		case len(w.Neighbors) > 0:
			return fmt.Errorf("Neighbors: %d entries but no Device", len(w.Neighbors))
		case len(w.FDB) > 0:
			return fmt.Errorf("FDB: %d entries but no Device", len(w.FDB))
		}
		return nil
	}
	if err := validLinkName(dev.Name); err != nil {
		return fmt.Errorf("Device.Name %q: %w", dev.Name, err)
	}
	if dev.Dev != "" {
		if err := validLinkName(dev.Dev); err != nil {
			return fmt.Errorf("Device.Dev %q: %w", dev.Dev, err)
		}
	}
	if dev.VNI < 1 || dev.VNI > maxVNI {
		return fmt.Errorf("Device.VNI %d: outside 1..%d", dev.VNI, maxVNI)
	}
	if dev.Port < 1 || dev.Port > 65535 {
		return fmt.Errorf("Device.Port %d: outside 1..65535", dev.Port)
	}
	if dev.Local.IsValid() && (dev.Local.IsUnspecified() || dev.Local.Zone() != "") {
		return fmt.Errorf("Device.Local %s: not a unicast address without zone", dev.Local)
	}
	if dev.MTU != 0 && (dev.MTU < minMTU || dev.MTU > 65535) {
		return fmt.Errorf("Device.MTU %d: outside %d..65535", dev.MTU, minMTU)
	}
	if dev.MAC != nil {
		if err := validUnicastMAC(dev.MAC); err != nil {
			return fmt.Errorf("Device.MAC %s: %w", dev.MAC, err)
		}
	}
	if a := dev.Addr; a.IsValid() && (a.Bits() != a.Addr().BitLen() || a.Addr().Is4In6() || a.Addr().Zone() != "") {
		return fmt.Errorf("Device.Addr %s: not a single address (/32 or /128)", a)
	}
	return nil
}

func (w Want) validateEntries() error {
	if w.Device == nil {
		return nil // validateDevice refused entries without a device
	}
	name := w.Device.Name
	neighs := map[netip.Addr]net.HardwareAddr{}
	for i, n := range w.Neighbors {
		switch {
		case n.Dev != "" && n.Dev != name:
			return fmt.Errorf("Neighbors[%d].Dev %q: not Device.Name %q", i, n.Dev, name)
		case !n.IP.IsValid() || n.IP.IsUnspecified() || n.IP.Is4In6() || n.IP.Zone() != "":
			return fmt.Errorf("Neighbors[%d].IP %s: not a unicast address without zone", i, n.IP)
		case len(n.MAC) != 6:
			return fmt.Errorf("Neighbors[%d].MAC %q: not a 6-byte MAC", i, n.MAC)
		}
		if mac, ok := neighs[n.IP]; ok && !bytes.Equal(mac, n.MAC) {
			return fmt.Errorf("Neighbors[%d]: IP %s has MACs %s and %s", i, n.IP, mac, n.MAC)
		}
		neighs[n.IP] = n.MAC
	}
	fdb := map[string]netip.Addr{}
	for i, f := range w.FDB {
		switch {
		case f.Dev != "" && f.Dev != name:
			return fmt.Errorf("FDB[%d].Dev %q: not Device.Name %q", i, f.Dev, name)
		case !f.Dst.IsValid() || f.Dst.IsUnspecified() || f.Dst.Is4In6() || f.Dst.Zone() != "":
			return fmt.Errorf("FDB[%d].Dst %s: not a unicast address without zone", i, f.Dst)
		}
		// A unicast MAC has one destination in a VXLAN FDB: the kernel
		// neither appends to it nor floods it.
		if err := validUnicastMAC(f.MAC); err != nil {
			return fmt.Errorf("FDB[%d].MAC %s: %w", i, f.MAC, err)
		}
		if dst, ok := fdb[string(f.MAC)]; ok && dst != f.Dst {
			return fmt.Errorf("FDB[%d]: MAC %s has destinations %s and %s", i, f.MAC, dst, f.Dst)
		}
		fdb[string(f.MAC)] = f.Dst
	}
	return nil
}

// validLinkName reports why Linux would refuse name as a link name.
func validLinkName(name string) error {
	switch {
	case name == "":
		return errors.New("empty")
	case len(name) > maxLinkName:
		return fmt.Errorf("longer than %d bytes", maxLinkName)
	case name == "." || name == "..":
		return errors.New("reserved")
	}
	for _, c := range []byte(name) {
		if c == '/' || c == ':' || c <= ' ' || c == 0x7f {
			return fmt.Errorf("contains %q", c)
		}
	}
	return nil
}

// validUnicastMAC reports why mac cannot be a device's MAC or the key of a
// unicast FDB entry.
func validUnicastMAC(mac net.HardwareAddr) error {
	switch {
	case len(mac) != 6:
		return errors.New("not a 6-byte MAC")
	case mac[0]&1 != 0:
		return errors.New("multicast")
	case bytes.Equal(mac, make(net.HardwareAddr, 6)):
		return errors.New("all zeros")
	}
	return nil
}
