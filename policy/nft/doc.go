// Package nft enforces weft's policies on one host with nftables: a pure
// compiler from a policy Set to the ruleset of table inet weft, and an
// applier that writes each new ruleset in one atomic transaction through
// google/nftables, sending only what changed (weft issue #9).
//
// Data flow:
//
//	*policy.Set + HostInfo + policy.Options --Compile--> Ruleset
//	Ruleset (last applied, kept in memory) + Ruleset (new) --diff--> delta
//	delta --queueDelta--> one transaction --> kernel   (else a full replace)
//	Ruleset.String(): `nft list table` text
//	kernel --Applier.Stats--> []RuleStats (per policy rule counters)
//
// Updates. The Applier keeps the Ruleset it last applied. The next Apply
// diffs it with the new one, without reading the kernel, and sends the
// difference as one transaction: set and map elements deleted and added
// (a changed map verdict is a delete and an add of the same key; a range
// of an interval set that changes at all is deleted and added whole, since
// the kernel refuses a range end added inside another range), new chains,
// changed chains flushed and refilled, old chains flushed then deleted,
// old sets deleted, in an order in which every reference exists when it
// is made (see delta). The first chain, weft-version, is always refilled:
// its one rule carries the version comment by which a restarted agent
// recognises the table (a chain of its own, with no verdict, so that
// rewriting it does not make the kernel validate the whole table).
// Because chains and sets are named after what they hold (endpoint
// chains, selector sets) or what they come from (policy chains), an
// endpoint coming, going or changing labels is a few elements and perhaps
// a new endpoint chain; a policy change refills its chains. Adding a map
// element that jumps, or a rule with a verdict, makes the kernel validate
// every chain reachable from the base chains at commit (a cost that grows
// with the table); deleting elements does not.
// The whole table is replaced (add table, delete it, add it with
// everything, in one transaction: never a moment unfiltered) when the
// Applier knows nothing (first Apply after start: unless the kernel's
// table already carries the wanted version, which is then adopted without
// sending anything), when base chains or a set's definition change, when
// the delta is larger than half the table (and minFullDelta operations),
// after a failed delta (at once, in the same Apply: the state is unknown),
// and on Replace (the periodic resync).
//
// Compile reads the Set through policy.Set.Program, which resolves every
// selector to the addresses of the endpoints and network sets it matches,
// exactly as policy.Evaluate matches them; the compiler then only deals in
// addresses, ports and protocols. The layout it produces:
//
//	table inet weft
//	  weft-version                            one rule, never run: the version comment
//	  base chains, each: ct state established,related accept; then dispatch
//	    forward-egress  (forward, filter)     iifname . ip saddr vmap @wl-egress4
//	    forward-ingress (forward, filter + 1) oifname . ip daddr vmap @wl-ingress4
//	    input-egress    (input, filter)       a workload's egress to the host itself
//	    output-ingress  (output, filter + 1)  the host to a workload's ingress
//	    input-ingress, output-egress          host endpoints, by address (only when this node has some)
//	  wl-out-<hash>, wl-in-<hash>, hep-...    an endpoint's tiers in one direction (.1, .2: later tiers)
//	  gnp/<name>/<dir>, np/<ns>/<name>/<dir>  a policy's rules in one direction, with counters
//	  sel4-<hash>, notsel4-, port4-           the addresses a selector matches; resolved named ports
//
// A packet passes the source endpoint's egress at priority filter and the
// destination's ingress at filter + 1: a drop in either is final, an accept
// in the first goes on to the second, so a flow between two workloads of
// the host needs both, as Evaluate says. Dispatch is one verdict-map lookup
// keyed by interface and address, so the per-packet cost does not grow with
// the number of endpoints; a packet from a workload interface with another
// source address is dropped (anti-spoofing). Endpoints with the same
// policies share their chains. Within an endpoint chain, tiers run in
// order and jump to the policy chains; Allow accepts, Deny drops, Log logs
// and goes on, Pass sets passMark and returns, which the endpoint chain
// turns into a goto to the next tier; the end of a tier that applies drops
// unless its default action is Pass; after the last tier a workload is
// accepted (dropped with DefaultDenyWorkloads) and a host endpoint dropped
// (accepted with projectcalico-default-allow). Host endpoint chains start
// with the failsafe ports, then untracked, preDNAT and normal policy, in
// the filter hook (judged in that order, without notrack or NAT).
//
// What is not enforced: host endpoints by interface name (only their
// expectedIPs count, as in Evaluate) and host endpoint policy on forwarded
// traffic (applyOnForward); doNotTrack policy does not bypass conntrack.
//
// Tests: golden files (testdata/*.nft, rewritten with -update) for
// Compile; table tests of diff and a property test (random sequences of
// changes: the delta applied to a model of the old table, with the
// kernel's reference checks at every step, gives the new one); the
// Applier against a fake Conn that checks references and element
// existence like the kernel, and in namespaces, where `nft` must list the
// applied table exactly as it lists the one it loads from Ruleset.String,
// after a full load and after every step of random incremental sequences;
// and TestDifferential, which judges random flows under random policies by
// policy.Evaluate and by real packets through the ruleset between network
// namespaces (-seed, -cases, -case), with TestDifferentialIncremental doing
// the same after each of several random incremental changes per case
// (-inc-cases, -steps).
package nft
