package policy

import (
	"fmt"
	"io"
	"strings"
)

// Verdicts and side actions, as Verdict spells them.
const (
	Allow = "allow"
	Deny  = "deny"
)

// Verdict is the outcome of Evaluate: allow only if the source's egress and
// the destination's ingress both allow. It marshals to JSON as an object whose
// field "verdict" is "allow" or "deny".
type Verdict struct {
	Verdict string `json:"verdict"`
	Flow    Flow   `json:"flow"`
	// Egress is the source endpoint's egress; Ingress the destination's.
	Egress  Side `json:"egress"`
	Ingress Side `json:"ingress"`
}

// Allowed reports whether the flow is allowed.
func (v Verdict) Allowed() bool { return v.Verdict == Allow }

// Side is how one endpoint's policy judged the flow in one direction.
type Side struct {
	Direction string `json:"direction"` // "egress" or "ingress"
	// Endpoint is the endpoint at the address, e.g. "WorkloadEndpoint
	// prod/web-1"; "" when the address is no endpoint (external).
	Endpoint string `json:"endpoint,omitempty"`
	// Action is "allow" or "deny".
	Action string `json:"action"`
	// Steps are what was evaluated, in order; the last one decided.
	Steps []Step `json:"steps"`
}

// Decision returns the step that decided the side.
func (s Side) Decision() Step {
	if len(s.Steps) == 0 {
		return Step{}
	}
	return s.Steps[len(s.Steps)-1]
}

// Step is one thing the evaluator looked at: a rule that did or did not
// match, a tier that no policy of applied, the end of a tier, the failsafe
// ports, or the default (profile) at the end.
type Step struct {
	// Stage is "untracked" or "preDNAT" for those host endpoint policies,
	// "failsafe", or "" for normal policy.
	Stage  string `json:"stage,omitempty"`
	Tier   string `json:"tier,omitempty"`
	Kind   string `json:"kind,omitempty"`   // GlobalNetworkPolicy or NetworkPolicy
	Policy string `json:"policy,omitempty"` // "name", or "namespace/name"
	// Rule is e.g. "ingress[2]", the rule's place in the policy.
	Rule   string `json:"rule,omitempty"`
	Action string `json:"action,omitempty"` // the rule's action
	// Result is one of the Result constants.
	Result string `json:"result"`
	// Why explains the result: the first criterion that did not match,
	// or what a default means.
	Why string `json:"why,omitempty"`
}

// Step results.
const (
	ResultNoMatch   = "no match"   // the rule did not match; Why says which criterion failed
	ResultLog       = "log"        // a Log rule matched; evaluation went on
	ResultPass      = "pass"       // a Pass rule matched, or the tier's default action is Pass
	ResultAllow     = "allow"      // decided: allowed
	ResultDeny      = "deny"       // decided: denied
	ResultNoRules   = "no rules"   // the policy has no rules in this direction
	ResultSkip      = "skip"       // no policy in the tier applies to the endpoint
	ResultNextStage = "next stage" // untracked or preDNAT policy did not decide
)

// WriteText writes the verdict for people: the verdict, the flow, and per
// side every step, the deciding one last.
func (v Verdict) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "verdict: %s\nflow: %s\n", v.Verdict, v.Flow)
	for _, s := range []Side{v.Egress, v.Ingress} {
		who := s.Endpoint
		if who == "" {
			who = "no endpoint (external address)"
		}
		fmt.Fprintf(&b, "\n%s of %s: %s\n", s.Direction, who, s.Action)
		for i, st := range s.Steps {
			mark := "  "
			if i == len(s.Steps)-1 {
				mark = "=>"
			}
			fmt.Fprintf(&b, "%s %s\n", mark, st)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// String returns the step on one line, e.g. `tier default, NetworkPolicy
// prod/db, ingress[0] (Allow): no match: protocol TCP: flow is UDP`.
func (s Step) String() string {
	var parts []string
	if s.Stage != "" {
		parts = append(parts, s.Stage)
	}
	if s.Tier != "" {
		parts = append(parts, "tier "+s.Tier)
	}
	if s.Policy != "" {
		parts = append(parts, s.Kind+" "+s.Policy)
	}
	if s.Rule != "" {
		r := s.Rule
		if s.Action != "" {
			r += " (" + s.Action + ")"
		}
		parts = append(parts, r)
	}
	out := strings.Join(parts, ", ")
	if out != "" {
		out += ": "
	}
	out += s.Result
	if s.Why != "" {
		out += ": " + s.Why
	}
	return out
}
