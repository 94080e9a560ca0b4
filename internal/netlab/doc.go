// Package netlab builds multi-host network topologies out of Linux network
// namespaces and veth pairs, for end-to-end tests and for `weft lab`.
//
// Data flow: a declarative [Topology] (segments, routers, hosts) is checked by
// [Topology.Validate] and turned by the pure [Topology.Plan] into a [Plan]:
// every node's interfaces, addresses and static routes. [Build] then realises
// the plan in the kernel and returns a [Lab], which runs commands and
// functions inside the nodes, cuts links, and tears everything down on
// [Lab.Close]. [Sweep] removes what a killed run left behind.
//
// Kernel layout for a run with prefix P:
//
//   - namespace "P-sw" (the switch) holds one Linux bridge per segment, named
//     after the segment, and the switch-side end of every veth ("<node>.<i>");
//   - namespace "P-<node>" per host and router holds the node-side ends
//     ("eth0", "eth1", ... in the order of the node's segments), addresses,
//     routes and, on routers only, net.ipv4.ip_forward=1.
//
// Every link is created through a netlink handle bound to a lab namespace,
// with both veth ends placed in lab namespaces by the create request itself,
// so the root namespace never holds a lab link, address or route. Lab
// addresses come from 198.18.0.0/15 (RFC 2544 benchmark range).
package netlab
