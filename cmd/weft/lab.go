package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/weft-net/weft/internal/api"
	"github.com/weft-net/weft/internal/lab"
)

func labCommand() *cli.Command {
	return &cli.Command{
		Name:  "lab",
		Usage: "build a multi-host fabric in network namespaces on this machine, with an agent and a labelled workload on every host, and ping every pair (root)",
		Description: "The lab has two regions: in region r1, two L2 segments joined by a router; a WAN router to\n" +
			"region r2, which has one segment. Every host runs a real `weft agent` and one workload namespace\n" +
			"attached as a routed veth, labelled (app, tier, env: a three-tier app in prod and dev) and registered\n" +
			"as a policy endpoint (`weft endpoint list`). The lab shows each step, then the path every host chose to every other\n" +
			"and the result of a ping between every pair of workloads; it exits non-zero if any ping fails.\n" +
			"Lab addresses come from 198.18.0.0/15 and live only inside the lab's namespaces: the machine's own\n" +
			"network is not touched. Everything is removed at the end (also on Ctrl-C) unless --keep is given;\n" +
			"`weft lab down` removes a kept lab.",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "timeout", Usage: "how long to wait for the agents and their data planes to converge", Value: 60 * time.Second},
			&cli.BoolFlag{Name: "keep", Usage: "leave the lab running after the report (remove it with `weft lab down`)"},
			outputFlag,
			&cli.BoolFlag{Name: "verbose", Usage: "log what the lab builder does"},
		},
		Subcommands: []*cli.Command{{
			Name:  "down",
			Usage: "remove every lab that `weft lab --keep` left running",
			Action: func(c *cli.Context) error {
				return lab.Down(c.App.Writer)
			},
		}},
		Action: func(c *cli.Context) error {
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find own binary: %w", err)
			}
			log := slog.New(slog.DiscardHandler)
			if c.Bool("verbose") {
				log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
			}
			progress := c.App.Writer
			if format == "json" {
				progress = c.App.ErrWriter
			}
			return lab.Run(c.Context, lab.RunOptions{
				Binary:   self,
				Out:      c.App.Writer,
				Progress: progress,
				JSON:     format == "json",
				Timeout:  c.Duration("timeout"),
				Keep:     c.Bool("keep"),
				Logger:   log,
				PrintPeers: func(w io.Writer, peers []api.Peer) error {
					return printPeers(w, peers, time.Now())
				},
			})
		},
	}
}
