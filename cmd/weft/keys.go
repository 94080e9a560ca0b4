package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/weft-net/weft/gossip"
)

func keysCommand() *cli.Command {
	return &cli.Command{
		Name:  "keys",
		Usage: "manage the cluster key that encrypts gossip between hosts",
		Subcommands: []*cli.Command{{
			Name:  "gen",
			Usage: "write a new random cluster key file (mode 0600); copy the same file to every host",
			Description: "Every host of one cluster needs the same key file: a host with another key, or with none,\n" +
				"cannot join, and the refused attempt is logged by the hosts it tried.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "out", Usage: "where to write the key", Value: "/etc/weft/cluster.key"},
				&cli.BoolFlag{Name: "force", Usage: "overwrite an existing key file (cuts this host off until every host has the new key)"},
			},
			Action: func(c *cli.Context) error {
				k, err := gossip.GenerateKey()
				if err != nil {
					return err
				}
				if err := gossip.WriteKeyFile(c.String("out"), k, c.Bool("force")); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "wrote a %d-bit cluster key to %s\n", 8*len(k), c.String("out"))
				return nil
			},
		}},
	}
}
