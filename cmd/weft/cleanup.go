package main

import (
	"fmt"
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/weft-net/weft/internal/agent"
	"github.com/weft-net/weft/internal/config"
)

func cleanupCommand() *cli.Command {
	return &cli.Command{
		Name:  "cleanup",
		Usage: "remove everything weft made on this host (routes, VXLAN device, nftables tables, run-dir files); stop the agent first",
		Description: "weft recognises what it made without memory: routes by their protocol number (87), devices by\n" +
			"their name prefix (weft.), its nftables tables (ip weft-nat; inet weft, the policy), and the files\n" +
			"it writes in the run dir. Nothing else is touched. The state dir (the subnet this host holds) stays; `weft leave` frees it.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "config file of the agent (for its run dir)", Value: config.DefaultPath, EnvVars: []string{"WEFT_CONFIG"}},
			&cli.StringFlag{Name: "run-dir", Usage: "run directory of the agent (default: from the config, else /run/weft)", EnvVars: []string{"WEFT_RUN_DIR"}},
		},
		Action: func(c *cli.Context) error {
			cfg, err := config.Load(c.String("config"), c.IsSet("config"))
			if err != nil {
				return usageError{err}
			}
			if c.IsSet("run-dir") {
				cfg.RunDir = c.String("run-dir")
			}
			done, err := agent.Cleanup(c.Context, cfg, slog.New(slog.DiscardHandler))
			for _, d := range done {
				fmt.Fprintln(c.App.Writer, "done:", d)
			}
			return err
		},
	}
}
