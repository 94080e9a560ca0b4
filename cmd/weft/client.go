package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/weft-net/weft/internal/api"
)

// runDirFlag points a client command at the agent's run directory.
var runDirFlag = &cli.StringFlag{
	Name:    "run-dir",
	Usage:   "run directory of the agent to ask (where its weft.sock lives)",
	Value:   "/run/weft",
	EnvVars: []string{"WEFT_RUN_DIR"},
}

// outputFlag picks between a table for people and JSON for scripts.
var outputFlag = &cli.StringFlag{
	Name:    "output",
	Aliases: []string{"o"},
	Usage:   "output format: table or json",
	Value:   "table",
}

func outputFormat(c *cli.Context) (string, error) {
	switch f := c.String("output"); f {
	case "table", "json":
		return f, nil
	default:
		return "", usageError{fmt.Errorf("--output: %q: want table or json", f)}
	}
}

// usageError exits with status 2, as for a bad command line.
type usageError struct{ error }

func (usageError) ExitCode() int   { return 2 }
func (u usageError) Unwrap() error { return u.error }

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show this host's node: its subnet, how many members are alive or dead, its health and problems, and the last encapsulation self-test of each tunnel type in use (when, why, result, what was done)",
		Flags: []cli.Flag{runDirFlag, outputFlag},
		Action: func(c *cli.Context) error {
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			s, err := api.NewClient(c.String("run-dir")).Status(c.Context)
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(c.App.Writer, s)
			}
			return printStatus(c.App.Writer, s)
		},
	}
}

func printStatus(w io.Writer, s api.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	loc := locationString(s.Location.Cloud, s.Location.Region, s.Location.Zone)
	subnet := "-"
	if s.Subnet.IsValid() {
		subnet = s.Subnet.String()
	}
	rows := [][2]string{
		{"node", s.Node},
		{"cluster", fmt.Sprintf("%s (%s)", s.Cluster, s.ClusterCIDR)},
		{"subnet", fmt.Sprintf("%s (%s)", subnet, s.SubnetState)},
		{"gossip", fmt.Sprintf("%s, encrypted: %v", s.Gossip, s.Encrypted)},
		{"underlay", fmt.Sprintf("%s, advertising %s", s.Underlay, s.Advertise)},
		{"location", loc},
		{"members", fmt.Sprintf("%d alive, %d dead", s.MembersAlive, s.MembersDead)},
		{"data plane", s.DataPlane},
		{"wireguard", s.WireGuard},
		{"ip-in-ip", s.IPIP},
		{"policy", policySummary(s.Policy)},
		{"health", s.Health},
		{"version", s.Version},
		{"up since", s.StartedAt.Format(time.RFC3339)},
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
	}
	for _, t := range s.SelfTests {
		fmt.Fprintf(tw, "self-test %s:\t%s\n", t.Tunnel, selfTestLine(t))
	}
	for _, p := range s.Problems {
		fmt.Fprintf(tw, "problem:\t%s\n", p)
	}
	return tw.Flush()
}

// selfTestLine is one encapsulation self-test in `weft status`.
func selfTestLine(t api.SelfTest) string {
	line := fmt.Sprintf("%s at %s (%s, peers %s): %s", t.Result, t.At.UTC().Format(time.RFC3339), t.Why, strings.Join(t.Peers, ","), t.Found)
	if t.Did != "" {
		line += "; did: " + t.Did
	}
	return line
}

func locationString(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, "/")
}

func peersCommand() *cli.Command {
	return &cli.Command{
		Name:  "peers",
		Usage: "list the hosts this host knows: underlay address, location, subnet, state, path and its health (state, RTT, loss, MTU, since when, last change and why)",
		Flags: []cli.Flag{runDirFlag, outputFlag},
		Action: func(c *cli.Context) error {
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			peers, err := api.NewClient(c.String("run-dir")).Peers(c.Context)
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(c.App.Writer, peers)
			}
			return printPeers(c.App.Writer, peers, time.Now())
		},
	}
}

// printPeers renders the peers table; the local node is marked with '*'.
// The health columns (state of the path in use, its RTT and loss, the
// path's MTU, since when the peer is on it, and the last change of path
// with its reason) show "-" when path health is off.
func printPeers(w io.Writer, peers []api.Peer, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tUNDERLAY\tLOCATION\tSUBNET\tSTATE\tSINCE\tPATH\tHEALTH\tRTT\tLOSS\tMTU\tON PATH\tLAST CHANGE")
	for _, p := range peers {
		name := p.Name
		if p.Local {
			name += " *"
		}
		under := "-"
		if len(p.Underlay) > 0 {
			under = p.Underlay[0].String()
		}
		subnet := "-"
		if p.Subnet.IsValid() {
			subnet = p.Subnet.String()
			if p.Conflict != "" {
				subnet += " (conflict)"
			}
		}
		path := p.Path
		switch {
		case p.Local:
			path = "local"
		case path == "":
			path = "-"
		}
		state, rtt, loss, mtu, onPath, last := "-", "-", "-", "-", "-", "-"
		if p.MTU > 0 {
			mtu = fmt.Sprint(p.MTU)
		}
		if h := p.Health; h != nil {
			state = h.State
			if h.RTTMillis > 0 {
				rtt = fmt.Sprintf("%.2fms", h.RTTMillis)
			}
			loss = fmt.Sprintf("%.0f%%", h.Loss*100)
			onPath = ago(now, h.PathSince)
			if c := h.LastChange; c != nil {
				last = fmt.Sprintf("%s ago %s->%s (%s)", ago(now, c.At), c.From, c.To, c.Reason)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, under,
			locationString(p.Location.Cloud, p.Location.Region, p.Location.Zone),
			subnet, p.State, ago(now, p.Since), path, state, rtt, loss, mtu, onPath, last)
	}
	return tw.Flush()
}

// ago renders how long ago t was, coarsely.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func leaveCommand() *cli.Command {
	return &cli.Command{
		Name:  "leave",
		Usage: "take this host out of the cluster for good: peers drop it at once, its subnet is freed, the agent stops",
		Description: "Stopping the agent (SIGTERM, a restart) keeps the host's place and subnet: peers see it as dead\n" +
			"and it comes back as it was. `weft leave` is the explicit way out.",
		Flags: []cli.Flag{runDirFlag},
		Action: func(c *cli.Context) error {
			if err := api.NewClient(c.String("run-dir")).Leave(c.Context); err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, "left the cluster; the agent is stopping")
			return nil
		},
	}
}

// policySummary renders the policy engine's state on one line.
func policySummary(p *api.PolicyStatus) string {
	switch {
	case p == nil:
		return "-"
	case !p.Enabled:
		return fmt.Sprintf("off (policy.enabled: false); store revision %d, %d policies, %d endpoints", p.Revision, p.Policies, p.Endpoints)
	case p.AppliedAt.IsZero():
		return "not applied yet"
	}
	return fmt.Sprintf("store revision %d: %d policies, %d endpoints (%d here), %d chains, %d sets; applied %s",
		p.Revision, p.Policies, p.Endpoints, p.LocalEndpoints, p.Chains, p.Sets, p.AppliedAt.Format(time.RFC3339))
}
