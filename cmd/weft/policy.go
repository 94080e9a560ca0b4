package main

import "github.com/urfave/cli/v2"

func policyCommand() *cli.Command {
	return &cli.Command{
		Name:  "policy",
		Usage: "manage the cluster's network policies (Calico v3, Kubernetes NetworkPolicy): apply, get, delete, stats, trace, check",
		Description: "Policies live in a store that every agent replicates by gossip: apply, get and delete on any host\n" +
			"reach every host, and each agent enforces them for its own workloads (see `weft endpoint`) in the\n" +
			"nftables table inet weft. check and trace -f work offline, without an agent.",
		Subcommands: []*cli.Command{
			policyApplyCommand(),
			policyGetCommand(),
			policyDeleteCommand(),
			policyStatsCommand(),
			policyTraceCommand(),
			policyCheckCommand(),
		},
	}
}
