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
		Usage: "build a multi-host fabric in network namespaces on this machine, run an agent on every host and show what each sees (root)",
		Description: "The lab has two regions: in region r1, two L2 segments joined by a router; a WAN router to\n" +
			"region r2, which has one segment. Every host runs a real `weft agent`. Lab addresses come from\n" +
			"198.18.0.0/15 and live only inside the lab's namespaces: the machine's own network is not touched.\n" +
			"Everything is removed at the end, also on Ctrl-C.",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "timeout", Usage: "how long to wait for the agents to converge", Value: 60 * time.Second},
			&cli.BoolFlag{Name: "hold", Usage: "keep the lab running after the report, until Ctrl-C"},
			&cli.StringFlag{Name: "dir", Usage: "work directory for configs, state and logs (default: a temporary one, removed at the end)"},
			&cli.BoolFlag{Name: "verbose", Usage: "log what the lab builder does"},
		},
		Action: func(c *cli.Context) error {
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find own binary: %w", err)
			}
			log := slog.New(slog.DiscardHandler)
			if c.Bool("verbose") {
				log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
			}
			return lab.Run(c.Context, lab.RunOptions{
				Binary:  self,
				Dir:     c.String("dir"),
				Out:     c.App.Writer,
				Timeout: c.Duration("timeout"),
				Hold:    c.Bool("hold"),
				Logger:  log,
				PrintPeers: func(w io.Writer, peers []api.Peer) error {
					return printPeers(w, peers, time.Now())
				},
			})
		},
	}
}
