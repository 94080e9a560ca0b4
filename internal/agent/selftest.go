package agent

import (
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/weft-net/weft/fabric"
	"github.com/weft-net/weft/fabric/health"
)

// Encapsulation self-test.
//
// Path health probes a path both through the routing table (through this
// node's own tunnel device, as workload packets go) and, while it is not in
// use, with packets built by hand that bypass the device. When the path
// comes back on hand-built probes and then fails on the first probes
// through the device (health.StateChange.LocalFault), the network carries
// the path and this node's device does not send it intact: the famous case
// is a checksum offload that produces bad checksums. For weft's own VXLAN
// device the agent then turns transmit checksum offload off (checksums are
// computed in software, before the device) and says so in status; whether
// that cured it shows as the path coming back and staying. weft never
// changes the underlay's (or any other) device.

// maxFindings bounds the self-test lines kept for status.
const maxFindings = 10

// selfTest is what the encapsulation self-test found and did.
type selfTest struct {
	mu       sync.Mutex
	findings []finding
	txOff    map[string]bool // devices whose tx checksum offload weft turned off
}

type finding struct {
	at   time.Time
	peer string
	path fabric.PathKind
	text string
}

// localFault handles a path to a peer that this node's own sending breaks.
func (a *Agent) localFault(c health.StateChange) {
	h := a.health
	st := &h.self
	st.mu.Lock()
	defer st.mu.Unlock()
	text := fmt.Sprintf("%s to %s: packets through this node's device are lost, hand-built ones arrive", c.Path, c.Peer)
	switch dev := a.cfg.VXLAN.Device; {
	case c.Path != fabric.PathVXLAN:
		text += "; not weft's own device, left as it is"
	case st.txOff[dev]:
		text += fmt.Sprintf("; tx checksum offload is already off on %s: not the cause", dev)
	default:
		if err := a.setTxChecksum(dev, false); err != nil {
			text += fmt.Sprintf("; turning tx checksum offload off on %s failed: %v", dev, err)
			break
		}
		if st.txOff == nil {
			st.txOff = map[string]bool{}
		}
		st.txOff[dev] = true
		text += fmt.Sprintf("; turned tx checksum offload off on %s", dev)
	}
	a.log.Warn("encapsulation self-test", "peer", c.Peer, "path", c.Path, "finding", text)
	st.findings = append(st.findings, finding{at: c.At, peer: c.Peer, path: c.Path, text: text})
	if len(st.findings) > maxFindings {
		st.findings = st.findings[len(st.findings)-maxFindings:]
	}
}

// selfTestProblems returns the self-test's findings for status, each with
// what became of the path since.
func (a *Agent) selfTestProblems(snap map[string]health.PeerStatus) []string {
	h := a.health
	if h == nil {
		return nil
	}
	h.self.mu.Lock()
	defer h.self.mu.Unlock()
	var out []string
	for _, f := range h.self.findings {
		line := "encapsulation self-test: " + f.text + " (" + f.at.UTC().Format(time.RFC3339) + ")"
		if s, ok := snap[f.peer]; ok && s.Path == f.path && s.State == health.StateUp && s.Since.After(f.at) {
			line += "; since then the path works"
		}
		out = append(out, line)
	}
	return out
}

// setTxChecksum turns transmit checksum offload of the device named dev on
// or off (ETHTOOL_STXCSUM), in the agent's network namespace.
func (a *Agent) setTxChecksum(dev string, on bool) error {
	if a.setTxCsum != nil {
		return a.setTxCsum(dev, on)
	}
	return setTxChecksum(dev, on)
}

// ethtool ioctl numbers (linux/sockios.h, linux/ethtool.h).
const (
	siocEthtool    = 0x8946
	ethtoolGTxCsum = 0x16
	ethtoolSTxCsum = 0x17
)

type ethtoolValue struct{ cmd, data uint32 }

// ifreqData is struct ifreq with the ifr_data member (40 bytes on 64-bit).
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [16]byte
}

func ethtool(dev string, v *ethtoolValue) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket for ethtool: %w", err)
	}
	defer unix.Close(fd)
	var ifr ifreqData
	if len(dev) >= unix.IFNAMSIZ {
		return fmt.Errorf("device name %q too long", dev)
	}
	copy(ifr.name[:], dev)
	ifr.data = unsafe.Pointer(v)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), siocEthtool, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(v)
	if errno != 0 {
		return fmt.Errorf("ethtool %#x on %s: %w", v.cmd, dev, errno)
	}
	return nil
}

// setTxChecksum sets transmit checksum offload of dev and reads it back.
func setTxChecksum(dev string, on bool) error {
	want := uint32(0)
	if on {
		want = 1
	}
	if err := ethtool(dev, &ethtoolValue{cmd: ethtoolSTxCsum, data: want}); err != nil {
		return err
	}
	return checkTxChecksum(dev, on)
}

// checkTxChecksum returns an error unless dev's transmit checksum offload is on (or off).
func checkTxChecksum(dev string, on bool) error {
	v := ethtoolValue{cmd: ethtoolGTxCsum}
	if err := ethtool(dev, &v); err != nil {
		return err
	}
	if (v.data != 0) != on {
		return fmt.Errorf("tx checksum offload on %s is %d after setting it", dev, v.data)
	}
	return nil
}
