package policy

import (
	"strconv"
)

// direction is ingress or egress of an endpoint.
type direction uint8

const (
	dirIngress direction = iota
	dirEgress
)

func (d direction) String() string {
	if d == dirIngress {
		return "ingress"
	}
	return "egress"
}

// evaluator holds one flow's evaluation.
type evaluator struct {
	set      *Set
	flow     Flow
	opts     Options
	srcObjs  []*object // endpoints and network sets at the source address
	dstObjs  []*object
	src, dst *object // the endpoints at either end, or nil
}

// Evaluate judges a flow as Calico would: the source endpoint's egress, then
// the destination endpoint's ingress; the flow is allowed only if both are.
// For each side, tiers are evaluated in order; within a tier, the policies
// that select the endpoint for the direction, by order then name; within a
// policy, its rules in order. The first Allow or Deny rule that matches
// decides; Log rules do not decide; Pass goes on to the next tier that
// applies. A tier whose policies select the endpoint but do not decide
// denies (or passes, if its defaultAction is Pass). When no tier decides:
// a workload endpoint is allowed (denied with Options.DefaultDenyWorkloads);
// a host endpoint is denied, unless it has the projectcalico-default-allow
// profile. An address that is no endpoint is not judged on its side; rules
// match it only by nets and network sets.
//
// Host endpoints: the flow is traffic to or from the host itself. The
// failsafe ports allow first; then doNotTrack policies, then (ingress)
// preDNAT policies, whose Allow or Deny is final but which otherwise fall
// through; then normal policies. Traffic from a host endpoint to a workload
// on the same node is always allowed. Policies with doNotTrack or preDNAT
// never apply to workload endpoints.
//
// Evaluate is pure and deterministic; set is only read, so calls may run
// concurrently.
func Evaluate(set *Set, flow Flow, opts Options) Verdict {
	e := &evaluator{set: set, flow: flow, opts: opts,
		srcObjs: set.objectsAt(flow.Src), dstObjs: set.objectsAt(flow.Dst)}
	e.src, e.dst = firstEndpoint(e.srcObjs), firstEndpoint(e.dstObjs)
	v := Verdict{Flow: flow}
	if e.src != nil && e.dst != nil && e.src.kind == objHost && e.dst.kind == objWorkload &&
		e.src.node != "" && e.src.node == e.dst.node {
		why := "traffic from a host to a workload on the same node (" + e.src.node + ") is always allowed"
		v.Egress = Side{Direction: "egress", Endpoint: e.src.String(), Action: Allow, Steps: []Step{{Result: ResultAllow, Why: why}}}
		v.Ingress = Side{Direction: "ingress", Endpoint: e.dst.String(), Action: Allow, Steps: []Step{{Result: ResultAllow, Why: why}}}
		v.Verdict = Allow
		return v
	}
	v.Egress = e.side(e.src, dirEgress)
	v.Ingress = e.side(e.dst, dirIngress)
	v.Verdict = Deny
	if v.Egress.Action == Allow && v.Ingress.Action == Allow {
		v.Verdict = Allow
	}
	return v
}

// side evaluates one endpoint (nil: none) in one direction.
func (e *evaluator) side(ep *object, dir direction) Side {
	s := Side{Direction: dir.String()}
	if ep == nil {
		addr := e.flow.Dst
		if dir == dirEgress {
			addr = e.flow.Src
		}
		s.Action = Allow
		s.Steps = []Step{{Result: ResultAllow, Why: addr.String() + " is no endpoint: no " + dir.String() + " policy applies"}}
		return s
	}
	s.Endpoint = ep.String()
	normal := func(p *compiledPolicy) bool { return !p.doNotTrack && !p.preDNAT }
	if ep.kind == objWorkload {
		decided, applied := e.tiers(&s.Steps, "", ep, dir, normal, true)
		if decided == "" {
			decided = e.workloadDefault(&s.Steps, applied)
		}
		s.Action = decided
		return s
	}

	// A host endpoint.
	if st, ok := e.failsafe(dir); ok {
		s.Steps, s.Action = append(s.Steps, st), Allow
		return s
	}
	untracked := func(p *compiledPolicy) bool { return p.doNotTrack }
	if decided, _ := e.tiers(&s.Steps, "untracked", ep, dir, untracked, false); decided != "" {
		s.Action = decided
		return s
	}
	if dir == dirIngress {
		preDNAT := func(p *compiledPolicy) bool { return p.preDNAT }
		if decided, _ := e.tiers(&s.Steps, "preDNAT", ep, dir, preDNAT, false); decided != "" {
			s.Action = decided
			return s
		}
	}
	decided, applied := e.tiers(&s.Steps, "", ep, dir, normal, true)
	if decided == "" {
		decided = hostDefault(&s.Steps, ep, applied)
	}
	s.Action = decided
	return s
}

// workloadDefault is the end of a workload endpoint's evaluation: its
// profiles, which allow (Kubernetes' kns. profiles do), or the cluster-wide
// default deny.
func (e *evaluator) workloadDefault(steps *[]Step, applied bool) string {
	why := "no policy applies to the endpoint"
	if applied {
		why = "the last tier that applies passed"
	}
	if e.opts.DefaultDenyWorkloads {
		*steps = append(*steps, Step{Result: ResultDeny, Why: why + "; workload endpoints are denied by default (cluster-wide default deny)"})
		return Deny
	}
	*steps = append(*steps, Step{Result: ResultAllow, Why: why + "; workload endpoints are allowed by default (profile)"})
	return Allow
}

// hostDefault is the end of a host endpoint's evaluation: deny, unless the
// endpoint has the projectcalico-default-allow profile.
func hostDefault(steps *[]Step, ep *object, applied bool) string {
	why := "no policy applies to the host endpoint"
	if applied {
		why = "the last tier that applies passed"
	}
	if ep.defaultAllow {
		*steps = append(*steps, Step{Result: ResultAllow, Why: why + "; its profile " + ProfileDefaultAllow + " allows"})
		return Allow
	}
	*steps = append(*steps, Step{Result: ResultDeny, Why: why + "; host endpoints are denied by default"})
	return Deny
}

// failsafe checks the failsafe ports of a host endpoint's side.
func (e *evaluator) failsafe(dir direction) (Step, bool) {
	list, remote := e.opts.FailsafeInbound, e.flow.Src
	if dir == dirEgress {
		list, remote = e.opts.FailsafeOutbound, e.flow.Dst
	}
	for _, f := range list {
		if f.matches(e.flow, remote) {
			word := "inbound"
			if dir == dirEgress {
				word = "outbound"
			}
			return Step{Stage: "failsafe", Result: ResultAllow, Why: f.String() + " is a failsafe " + word + " port of host endpoints"}, true
		}
	}
	return Step{}, false
}

// tiers runs the tiers over the policies that pass filter and select ep for
// dir, appending a step for everything it looks at. It returns Allow or Deny
// when a rule or a tier's end decided, "" when none did (every tier that
// applied passed, or none applied), and whether any tier applied. With
// endDeny false (untracked and preDNAT), a tier's end does not decide.
func (e *evaluator) tiers(steps *[]Step, stage string, ep *object, dir direction, filter func(*compiledPolicy) bool, endDeny bool) (string, bool) {
	applied := false
	next := 0 // ep.policies is in tier order: walk it alongside the tiers
	for ti, t := range e.set.tiers {
		first := next
		for next < len(ep.policies) && ep.policies[next].tierIndex == ti {
			next++
		}
		selected := false
		passed := false
	policies:
		for _, p := range ep.policies[first:next] {
			if !filter(p) || (dir == dirIngress && !p.hasIngress) || (dir == dirEgress && !p.hasEgress) {
				continue
			}
			selected = true
			rules := p.ingress
			if dir == dirEgress {
				rules = p.egress
			}
			base := Step{Stage: stage, Tier: t.name, Kind: p.kind, Policy: p.key()}
			if len(rules) == 0 {
				st := base
				st.Result = ResultNoRules
				st.Why = "the policy has no " + dir.String() + " rules"
				*steps = append(*steps, st)
				continue
			}
			for i := range rules {
				r := &rules[i]
				st := base
				st.Rule = dir.String() + "[" + strconv.Itoa(i) + "]"
				st.Action = string(r.action)
				if why, ok := e.ruleMatches(r); !ok {
					st.Result, st.Why = ResultNoMatch, why
					*steps = append(*steps, st)
					continue
				}
				switch r.action {
				case ActionLog:
					st.Result = ResultLog
					*steps = append(*steps, st)
				case ActionPass:
					st.Result, st.Why = ResultPass, "go on with the next tier"
					*steps = append(*steps, st)
					passed = true
					break policies
				case ActionAllow:
					st.Result = ResultAllow
					*steps = append(*steps, st)
					return Allow, true
				case ActionDeny:
					st.Result = ResultDeny
					*steps = append(*steps, st)
					return Deny, true
				}
			}
		}
		if !selected {
			if stage == "" {
				*steps = append(*steps, Step{Tier: t.name, Result: ResultSkip, Why: "no policy in the tier applies to the endpoint for " + dir.String()})
			}
			continue
		}
		applied = true
		if passed {
			continue
		}
		end := Step{Stage: stage, Tier: t.name}
		switch {
		case t.defaultAction == ActionPass:
			end.Result, end.Why = ResultPass, "end of tier: no rule decided; the tier's default action is Pass"
		case !endDeny:
			end.Result, end.Why = ResultNextStage, "end of tier: no rule decided; "+stage+" policy has no default deny"
		default:
			end.Result, end.Why = ResultDeny, "end of tier: the tier's policies apply to the endpoint but no rule decided"
			*steps = append(*steps, end)
			return Deny, true
		}
		*steps = append(*steps, end)
	}
	if stage != "" && !applied {
		*steps = append(*steps, Step{Stage: stage, Result: ResultNextStage, Why: "no " + stage + " policy applies to the endpoint for " + dir.String()})
	}
	return "", applied
}
