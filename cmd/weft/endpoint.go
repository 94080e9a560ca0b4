package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/weft-net/weft/internal/api"
	"github.com/weft-net/weft/internal/policystore"
)

func endpointCommand() *cli.Command {
	return &cli.Command{
		Name:  "endpoint",
		Usage: "register this host's workloads for policy (their interface, addresses and labels); list every host's",
		Description: "An endpoint is a workload attached to this host by a routed veth: the host side of the veth,\n" +
			"the workload's addresses and the labels that policy selectors match. Each host registers its\n" +
			"own; the store spreads them to every host, where selectors resolve to their addresses.",
		Subcommands: []*cli.Command{endpointAddCommand(), endpointDelCommand(), endpointListCommand()},
	}
}

func endpointAddCommand() *cli.Command {
	return &cli.Command{
		Name:      "add",
		Usage:     "register (or update) a workload of this host",
		UsageText: "weft endpoint add NAME --iface IF --ip ADDR[,ADDR] [--labels KEY=VALUE,...] [--namespace NS] [--port NAME=PROTO:PORT]",
		Description: "NAME is unique on this host (a DNS label, e.g. web-1). Running it again for the same NAME\n" +
			"replaces the endpoint: that is how its labels change (give all of them; those left out go).\n" +
			"The agent refuses an interface that another endpoint of this host has, and an address that\n" +
			"any endpoint of the cluster has. Policies see the endpoint as WorkloadEndpoint\n" +
			"NAMESPACE/<host>.<NAME>.\n\n" +
			"Example:\n  weft endpoint add web-1 --iface cali1234 --ip 10.244.1.5 --labels app=web,tier=frontend",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "iface", Usage: "host side `IF` of the workload's veth (required)"},
			&cli.StringSliceFlag{Name: "ip", Usage: "an address `ADDR` of the workload, IPv4 or IPv6 (required; repeat or separate with commas)"},
			&cli.StringSliceFlag{Name: "labels", Aliases: []string{"l"}, Usage: "labels as `KEY=VALUE` pairs separated by commas (repeatable)"},
			&cli.StringFlag{Name: "namespace", Aliases: []string{"n"}, Usage: "the endpoint's `NS` for namespaced policies", Value: "default"},
			&cli.StringFlag{Name: "service-account", Usage: "the endpoint's service `ACCOUNT`, for serviceAccountSelectors"},
			&cli.StringFlag{Name: "orchestrator", Value: policystore.DefaultOrchestrator, Usage: "the endpoint's `ORCHESTRATOR` label; Kubernetes NetworkPolicies select only k8s endpoints, as in Calico"},
			&cli.StringSliceFlag{Name: "port", Usage: "a named port as `NAME=PROTO:PORT`, e.g. http=tcp:8080, that rules may name (repeatable)"},
			runDirFlag, outputFlag,
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err} },
		Action: func(c *cli.Context) error {
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			ep, err := endpointFromFlags(c)
			if err != nil {
				return usageError{err}
			}
			res, err := api.NewClient(c.String("run-dir")).EndpointPut(c.Context, ep)
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(c.App.Writer, res)
			}
			return printResults(c.App.Writer, []api.PolicyResult{res})
		},
	}
}

// endpointFromFlags builds and checks the endpoint of `endpoint add`
// (all but the node, which the agent fills in).
func endpointFromFlags(c *cli.Context) (policystore.Endpoint, error) {
	var ep policystore.Endpoint
	if c.NArg() != 1 {
		return ep, errors.New("want exactly one NAME")
	}
	ep.Name = c.Args().First()
	ep.Interface = c.String("iface")
	if ep.Interface == "" {
		return ep, errors.New("--iface is required")
	}
	for _, item := range c.StringSlice("ip") {
		for s := range strings.SplitSeq(item, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(s))
			if err != nil {
				return ep, fmt.Errorf("--ip: %q: want an IP address", s)
			}
			ep.Addrs = append(ep.Addrs, a)
		}
	}
	if len(ep.Addrs) == 0 {
		return ep, errors.New("--ip is required")
	}
	labels, err := parseLabelPairs(c.StringSlice("labels"))
	if err != nil {
		return ep, fmt.Errorf("--labels: %w", err)
	}
	if len(labels) > 0 {
		ep.Labels = labels
	}
	ep.Namespace = c.String("namespace")
	ep.ServiceAccount = c.String("service-account")
	ep.Orchestrator = c.String("orchestrator")
	for _, p := range c.StringSlice("port") {
		name, rest, ok1 := strings.Cut(p, "=")
		proto, num, ok2 := strings.Cut(rest, ":")
		n, err := strconv.ParseUint(num, 10, 16)
		if !ok1 || !ok2 || err != nil || n == 0 {
			return ep, fmt.Errorf("--port: %q: want NAME=PROTO:PORT, e.g. http=tcp:8080", p)
		}
		ep.Ports = append(ep.Ports, policystore.EndpointPort{Name: name, Protocol: proto, Port: uint16(n)})
	}
	// Check all but the node here, so that nothing is sent on bad input.
	check := ep
	check.Node = "local"
	check.Addrs = slices.Clone(ep.Addrs)
	check.Normalize()
	if err := check.Validate(); err != nil {
		return ep, err
	}
	return ep, nil
}

func endpointDelCommand() *cli.Command {
	return &cli.Command{
		Name:      "del",
		Usage:     "unregister a workload of this host",
		UsageText: "weft endpoint del NAME",
		Flags:     []cli.Flag{runDirFlag},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError{errors.New("want exactly one NAME")}
			}
			res, err := api.NewClient(c.String("run-dir")).EndpointDelete(c.Context, c.Args().First())
			if err != nil {
				return err
			}
			return printResults(c.App.Writer, []api.PolicyResult{res})
		},
	}
}

func endpointListCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list the endpoints of every host: node, name, interface, addresses, labels",
		Flags: []cli.Flag{runDirFlag, outputFlag},
		Action: func(c *cli.Context) error {
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			eps, err := api.NewClient(c.String("run-dir")).EndpointList(c.Context)
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(c.App.Writer, eps)
			}
			return printEndpoints(c.App.Writer, eps)
		},
	}
}

func printEndpoints(w io.Writer, eps []policystore.Endpoint) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tNAME\tNAMESPACE\tIFACE\tIPS\tLABELS")
	for _, e := range eps {
		ips := make([]string, len(e.Addrs))
		for i, a := range e.Addrs {
			ips[i] = a.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Node, e.Name, e.Namespace, e.Interface, strings.Join(ips, ","), formatLabels(e.Labels))
	}
	return tw.Flush()
}

// formatLabels renders labels as sorted KEY=VALUE pairs, or "-".
func formatLabels(l map[string]string) string {
	if len(l) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		keys[i] = k + "=" + l[k]
	}
	return strings.Join(keys, ",")
}
