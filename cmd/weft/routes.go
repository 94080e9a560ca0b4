package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/weft-net/weft/internal/api"
)

func routesCommand() *cli.Command {
	return &cli.Command{
		Name:  "routes",
		Usage: "show the route to every peer (path: direct, VXLAN, IP-in-IP or WireGuard; device, next hop, MTU) and whether the kernel holds it",
		Flags: []cli.Flag{runDirFlag, outputFlag},
		Action: func(c *cli.Context) error {
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			rs, err := api.NewClient(c.String("run-dir")).Routes(c.Context)
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(c.App.Writer, rs)
			}
			return printRoutes(c.App.Writer, rs)
		},
	}
}

func printRoutes(w io.Writer, rs api.Routes) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tPATH\tSUBNETS\tDEV\tVIA\tMTU\tKERNEL\tWHY")
	for _, r := range rs.Routes {
		subnets := make([]string, len(r.Subnets))
		for i, s := range r.Subnets {
			subnets[i] = s.String()
		}
		via, dev, mtu := "-", "-", "-"
		if r.Via.IsValid() {
			via = r.Via.String()
		}
		if r.Dev != "" {
			dev = r.Dev
		}
		if r.MTU > 0 {
			mtu = fmt.Sprint(r.MTU)
		}
		kernel := "ok"
		if !r.InKernel {
			kernel = "MISSING"
		}
		why := r.Reason
		if len(r.Mismatch) > 0 {
			why = strings.Join(r.Mismatch, "; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Peer, r.Path, orDash(strings.Join(subnets, ",")), dev, via, mtu, kernel, why)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, e := range rs.Extra {
		fmt.Fprintf(w, "also: %s\n", e)
	}
	if rs.LastError != "" {
		fmt.Fprintf(w, "last data plane pass failed: %s\n", rs.LastError)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
