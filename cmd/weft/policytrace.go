package main

import (
	"fmt"
	"net/netip"

	"github.com/urfave/cli/v2"

	"github.com/weft-net/weft/internal/api"
	"github.com/weft-net/weft/policy"
)

// policyTraceCommand is `weft policy trace`: evaluate one flow against
// resource files, offline, and say which tier, policy and rule decided each
// side. Bad flags or bad resource files exit with status 2.
func policyTraceCommand() *cli.Command {
	return &cli.Command{
		Name:  "trace",
		Usage: "say whether a flow is allowed by the cluster's policies (or by policy files, offline), and which rule decided",
		UsageText: "weft policy trace --from IP --to IP [--proto P] [--port N] ...            (asks the agent)\n" +
			"weft policy trace -f FILE|DIR --from IP --to IP [--proto P] [--port N] ...  (offline)",
		Description: "Evaluates the flow as Calico would: the source endpoint's egress, then the destination\n" +
			"endpoint's ingress; the flow is allowed only if both are. Without -f the agent answers from\n" +
			"the policies and endpoints it enforces now (the live store, with its own failsafe ports and\n" +
			"defaultDenyWorkloads); with -f the files are evaluated here, without an agent. An address\n" +
			"that is no endpoint is external, judged only by nets and network sets. --port and --src-port\n" +
			"are 0 when omitted; an ICMP flow without --icmp-type is an echo request (type 8, or 128 for\n" +
			"ICMPv6).",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "evaluate resource `FILE` or directory offline (YAML or JSON; Calico v3, Kubernetes NetworkPolicy, Namespace, ServiceAccount) instead of asking the agent"},
			&cli.StringFlag{Name: "from", Usage: "source `IP`"},
			&cli.StringFlag{Name: "to", Usage: "destination `IP`"},
			&cli.StringFlag{Name: "proto", Value: "tcp", Usage: "protocol: tcp, udp, icmp, icmpv6, sctp, udplite or a number 1-255"},
			&cli.IntFlag{Name: "port", Usage: "destination `PORT`"},
			&cli.IntFlag{Name: "src-port", Usage: "source `PORT`"},
			&cli.IntFlag{Name: "icmp-type", Value: -1, Usage: "ICMP `TYPE` (0-255)"},
			&cli.IntFlag{Name: "icmp-code", Value: -1, Usage: "ICMP `CODE` (0-255)"},
			&cli.BoolFlag{Name: "default-deny-workloads", Usage: "with -f: deny workload traffic that no policy decides (cluster-wide default deny)"},
			&cli.IntFlag{Name: "gossip-port", Value: policy.DefaultGossipPort, Usage: "with -f: weft's gossip `PORT`, a host endpoint failsafe (0: none)"},
			&cli.IntFlag{Name: "wireguard-port", Value: policy.DefaultWireGuardPort, Usage: "with -f: weft's WireGuard `PORT`, a host endpoint failsafe (0: none)"},
			runDirFlag,
			outputFlag,
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err} },
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError{fmt.Errorf("unexpected argument %q: give the flow with flags", c.Args().First())}
			}
			for _, name := range []string{"from", "to"} {
				if c.String(name) == "" {
					return usageError{fmt.Errorf("--%s is required", name)}
				}
			}
			offline := c.String("file") != ""
			if !offline {
				for _, name := range []string{"default-deny-workloads", "gossip-port", "wireguard-port"} {
					if c.IsSet(name) {
						return usageError{fmt.Errorf("--%s needs -f: without it the agent uses its own configuration", name)}
					}
				}
			}
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			flow, err := traceFlow(c)
			if err != nil {
				return usageError{err}
			}
			var v policy.Verdict
			if offline {
				opts, err := traceOptions(c)
				if err != nil {
					return usageError{err}
				}
				set, err := policy.Load(c.String("file"))
				if err != nil {
					return usageError{err}
				}
				v = policy.Evaluate(set, flow, opts)
			} else if v, err = api.NewClient(c.String("run-dir")).PolicyTrace(c.Context, flow); err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(c.App.Writer, v)
			}
			return v.WriteText(c.App.Writer)
		},
	}
}

// traceFlow builds the flow from the flags.
func traceFlow(c *cli.Context) (policy.Flow, error) {
	var f policy.Flow
	var err error
	if f.Src, err = netip.ParseAddr(c.String("from")); err != nil || f.Src.Zone() != "" {
		return f, fmt.Errorf("--from: %q: want an IP address", c.String("from"))
	}
	if f.Dst, err = netip.ParseAddr(c.String("to")); err != nil || f.Dst.Zone() != "" {
		return f, fmt.Errorf("--to: %q: want an IP address", c.String("to"))
	}
	f.Src, f.Dst = f.Src.Unmap(), f.Dst.Unmap()
	if f.Src.Is4() != f.Dst.Is4() {
		return f, fmt.Errorf("--from %s and --to %s: want addresses of one IP version", f.Src, f.Dst)
	}
	proto, err := policy.ParseProtocol(c.String("proto"))
	if err != nil {
		return f, fmt.Errorf("--proto: %q: %w", c.String("proto"), err)
	}
	f.Protocol = proto.Num
	for _, p := range []struct {
		name string
		dst  *uint16
	}{{"port", &f.DstPort}, {"src-port", &f.SrcPort}} {
		if !c.IsSet(p.name) {
			continue
		}
		n := c.Int(p.name)
		if !proto.SupportsPorts() {
			return f, fmt.Errorf("--%s: protocol %s has no ports", p.name, proto)
		}
		if n < 0 || n > 65535 {
			return f, fmt.Errorf("--%s: %d: want 0-65535", p.name, n)
		}
		*p.dst = uint16(n)
	}
	icmp := f.Protocol == policy.ProtoICMP || f.Protocol == policy.ProtoICMPv6
	typ, code := c.Int("icmp-type"), c.Int("icmp-code")
	if !icmp && (c.IsSet("icmp-type") || c.IsSet("icmp-code")) {
		return f, fmt.Errorf("--icmp-type and --icmp-code: want --proto icmp or icmpv6, not %s", proto)
	}
	if !icmp {
		return f, nil
	}
	if c.IsSet("icmp-code") && !c.IsSet("icmp-type") {
		return f, fmt.Errorf("--icmp-code: needs --icmp-type")
	}
	if !c.IsSet("icmp-type") {
		typ, code = 8, 0 // echo request
		if f.Protocol == policy.ProtoICMPv6 {
			typ = 128
		}
	}
	if typ < 0 || typ > 255 {
		return f, fmt.Errorf("--icmp-type: %d: want 0-255", typ)
	}
	t := uint8(typ)
	f.ICMPType = &t
	if code != -1 {
		if code < 0 || code > 255 {
			return f, fmt.Errorf("--icmp-code: %d: want 0-255", code)
		}
		cd := uint8(code)
		f.ICMPCode = &cd
	}
	return f, nil
}

func traceOptions(c *cli.Context) (policy.Options, error) {
	ports := map[string]uint16{}
	for _, name := range []string{"gossip-port", "wireguard-port"} {
		n := c.Int(name)
		if n < 0 || n > 65535 {
			return policy.Options{}, fmt.Errorf("--%s: %d: want 0-65535", name, n)
		}
		ports[name] = uint16(n)
	}
	opts := policy.DefaultOptions(ports["gossip-port"], ports["wireguard-port"])
	opts.DefaultDenyWorkloads = c.Bool("default-deny-workloads")
	return opts, nil
}
