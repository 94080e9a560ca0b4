package main

import (
	"log/slog"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/weft-net/weft/internal/agent"
	"github.com/weft-net/weft/internal/config"
)

func agentCommand() *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "run the weft agent on this host (as root, one per host, usually under systemd)",
		Description: "The agent joins the cluster by encrypted gossip, claims a workload subnet for this host\n" +
			"(kept across restarts in the state dir), writes a flannel-compatible subnet.env in the run dir,\n" +
			"picks a path to every peer (a direct route on the same L2 segment, VXLAN across subnets,\n" +
			"WireGuard across regions or wherever encryption is required) and\n" +
			"keeps the kernel's routes, devices and masquerade rule equal to that plan, repairing drift.\n" +
			"It enforces the cluster's network policies (`weft policy`) for this host's workloads (`weft endpoint`)\n" +
			"in the nftables table inet weft, rebuilt on every change of the replicated policy store.\n" +
			"It serves the local API that `weft status`, `weft peers` and `weft routes` use. Stopping it\n" +
			"leaves the data plane in place, so a restart loses no packets; `weft cleanup` removes it.\n\n" +
			"Configuration: " + config.Precedence + "\n" +
			"A bad value stops the agent with an error that names the field and the value.\n\n" +
			"Before the first start, make a cluster key with `weft keys gen` and copy it to every host.",
		Flags: config.Flags(),
		Action: func(c *cli.Context) error {
			cfg, err := config.FromCLI(c)
			if err != nil {
				return usageError{err}
			}
			log, err := newLogger(cfg)
			if err != nil {
				return usageError{err}
			}
			dp, err := agent.NewKernelDataPlane(cfg, log)
			if err != nil {
				return err
			}
			pol, err := agent.NewKernelPolicy(cfg, log)
			if err != nil {
				return err
			}
			a, err := agent.New(agent.Options{Config: cfg, Logger: log, Version: versionString(), DataPlane: dp, Policy: pol})
			if err != nil {
				return err
			}
			return a.Run(c.Context)
		},
	}
}

func newLogger(cfg config.Config) (*slog.Logger, error) {
	level, err := cfg.SlogLevel()
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
}
