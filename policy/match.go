package policy

import (
	"net/netip"
	"strconv"
	"strings"
)

// ruleMatches reports whether r matches the flow; when it does not, the
// string says which criterion failed first.
func (e *evaluator) ruleMatches(r *compiledRule) (string, bool) {
	f := &e.flow
	if r.ipVersion != 0 {
		v := 6
		if f.isIPv4() {
			v = 4
		}
		if v != r.ipVersion {
			return "ipVersion " + strconv.Itoa(r.ipVersion) + ": the flow is IPv" + strconv.Itoa(v), false
		}
	}
	if r.protocol != nil && r.protocol.Num != f.Protocol {
		return "protocol " + r.protocol.String() + ": the flow is " + ProtocolName(f.Protocol), false
	}
	if r.notProtocol != nil && r.notProtocol.Num == f.Protocol {
		return "notProtocol " + r.notProtocol.String() + ": the flow is " + ProtocolName(f.Protocol), false
	}
	if r.icmp != nil && !icmpMatches(r.icmp, f) {
		return "icmp " + icmpText(r.icmp) + ": the flow is " + flowICMPText(f), false
	}
	if r.notICMP != nil && icmpMatches(r.notICMP, f) {
		return "notICMP " + icmpText(r.notICMP) + ": the flow is " + flowICMPText(f), false
	}
	if why, ok := e.entity("source", &r.src, f.Src, f.SrcPort, e.srcObjs); !ok {
		return why, false
	}
	if why, ok := e.entity("destination", &r.dst, f.Dst, f.DstPort, e.dstObjs); !ok {
		return why, false
	}
	return "", true
}

func icmpMatches(m *ICMPFields, f *Flow) bool {
	if f.ICMPType == nil || m.Type == nil || int(*f.ICMPType) != *m.Type {
		return false
	}
	return m.Code == nil || (f.ICMPCode != nil && int(*f.ICMPCode) == *m.Code)
}

func icmpText(m *ICMPFields) string {
	s := "type " + strconv.Itoa(*m.Type)
	if m.Code != nil {
		s += " code " + strconv.Itoa(*m.Code)
	}
	return s
}

func flowICMPText(f *Flow) string {
	if f.ICMPType == nil {
		return "without an ICMP type"
	}
	s := "type " + strconv.Itoa(int(*f.ICMPType))
	if f.ICMPCode != nil {
		s += " code " + strconv.Itoa(int(*f.ICMPCode))
	}
	return s
}

// entity matches one end (source or destination) of a rule against the
// flow's address and port there; objs are the endpoints and network sets
// that hold the address.
func (e *evaluator) entity(end string, c *compiledEntity, addr netip.Addr, port uint16, objs []*object) (string, bool) {
	if c.nets != nil && !anyContains(c.nets, addr) {
		return end + ".nets " + prefixList(c.nets) + ": " + addr.String() + " is in none of them", false
	}
	for _, n := range c.notNets {
		if n.Contains(addr) {
			return end + ".notNets " + prefixList(c.notNets) + ": " + addr.String() + " is in " + n.String(), false
		}
	}
	if c.sel != nil {
		found := false
		for _, o := range objs {
			if c.sel.matches(o) {
				found = true
				break
			}
		}
		if !found {
			return end + " " + c.sel.String() + ": " + describe(addr, objs) + " does not match", false
		}
	}
	if c.notSel != nil {
		for _, o := range objs {
			if c.notSel.Evaluate(o.labels) {
				return end + ".notSelector " + c.notSel.String() + ": " + addr.String() + " (" + o.String() + ") matches", false
			}
		}
	}
	if len(c.ports) > 0 && !e.anyPort(c, c.ports, port, objs) {
		return end + ".ports " + portList(c.ports) + ": " + e.portText(port) + " is none of them", false
	}
	if len(c.notPorts) > 0 && e.anyPort(c, c.notPorts, port, objs) {
		return end + ".notPorts " + portList(c.notPorts) + ": " + e.portText(port) + " is one of them", false
	}
	return "", true
}

// anyPort reports whether port matches one of ports: a number or range, or
// a named port that an endpoint at the address declares with the flow's
// protocol and this number (and that the end's selector matches).
func (e *evaluator) anyPort(c *compiledEntity, ports []Port, port uint16, objs []*object) bool {
	hasPorts := protoHasPorts(e.flow.Protocol)
	for _, p := range ports {
		if p.Name == "" {
			if hasPorts && p.contains(port) {
				return true
			}
			continue
		}
		for _, o := range objs {
			if !o.isEndpoint() || (c.sel != nil && !c.sel.matches(o)) {
				continue
			}
			for _, np := range o.ports {
				if np.Name == p.Name && np.Protocol.Num == e.flow.Protocol && np.Port == port {
					return true
				}
			}
		}
	}
	return false
}

func (e *evaluator) portText(port uint16) string {
	if !protoHasPorts(e.flow.Protocol) {
		return "the flow's protocol " + ProtocolName(e.flow.Protocol) + " has no ports, so it"
	}
	return "port " + strconv.Itoa(int(port))
}

func anyContains(nets []netip.Prefix, addr netip.Addr) bool {
	for _, n := range nets {
		if n.Contains(addr) {
			return true
		}
	}
	return false
}

// describe names what is at an address, for a trace.
func describe(addr netip.Addr, objs []*object) string {
	if len(objs) == 0 {
		return addr.String() + " (no endpoint or network set)"
	}
	names := make([]string, len(objs))
	for i, o := range objs {
		names[i] = o.String()
	}
	return addr.String() + " (" + strings.Join(names, ", ") + ")"
}

func prefixList(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return "[" + strings.Join(s, ", ") + "]"
}

func portList(ps []Port) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return "[" + strings.Join(s, ", ") + "]"
}
