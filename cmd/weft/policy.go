package main

import "github.com/urfave/cli/v2"

func policyCommand() *cli.Command {
	return &cli.Command{
		Name:  "policy",
		Usage: "work with Calico-style network policies: test selectors, trace flows (offline)",
		Subcommands: []*cli.Command{
			policyCheckCommand(),
			policyTraceCommand(),
		},
	}
}
