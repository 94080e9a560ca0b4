package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/weft-net/weft/gossip"
	"github.com/weft-net/weft/internal/api"
)

func keysCommand() *cli.Command {
	return &cli.Command{
		Name:  "keys",
		Usage: "manage keys: the cluster key that encrypts gossip, this host's WireGuard key pair",
		Subcommands: []*cli.Command{{
			Name:  "rotate",
			Usage: "give this host's WireGuard a new key pair; peers switch to it without breaking TCP streams",
			Description: "The new private key is kept in the state dir (mode 0600) and put in force at once; its public\n" +
				"key is gossiped and every peer replaces its entry for this host as soon as the record arrives.\n" +
				"The gap is the gossip delay plus one handshake: TCP retransmits across it.",
			Flags: []cli.Flag{runDirFlag},
			Action: func(c *cli.Context) error {
				if err := api.NewClient(c.String("run-dir")).RotateKeys(c.Context); err != nil {
					return err
				}
				fmt.Fprintln(c.App.Writer, "rotated the WireGuard key; peers are switching to it")
				return nil
			},
		}, {
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
