package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/weft-net/weft/internal/api"
)

func cloudCommand() *cli.Command {
	return &cli.Command{
		Name:  "cloud",
		Usage: "show what the cloud adapter (cloud: aws) found and did with the VPC's route tables",
		Subcommands: []*cli.Command{{
			Name:  "status",
			Usage: "what was discovered, which routes are programmed, which peers fell back to the overlay and why",
			Flags: []cli.Flag{runDirFlag, outputFlag},
			Action: func(c *cli.Context) error {
				format, err := outputFormat(c)
				if err != nil {
					return err
				}
				cl, err := api.NewClient(c.String("run-dir")).Cloud(c.Context)
				if err != nil {
					return err
				}
				if format == "json" {
					return writeJSON(c.App.Writer, cl)
				}
				return printCloud(c.App.Writer, cl)
			},
		}},
	}
}

func printCloud(w io.Writer, cl api.Cloud) error {
	fmt.Fprintf(w, "provider: %s\n", cl.Provider)
	if cl.Problem != "" {
		fmt.Fprintf(w, "problem:  %s\n", cl.Problem)
	}
	if in := cl.Instance; in != nil {
		fmt.Fprintf(w, "instance: %s in %s, subnet %s (%s), %s/%s, eni %s, %s\n", in.ID, in.VPC, in.Subnet, in.SubnetCIDR, in.Region, in.Zone, in.ENI, in.PrivateIP)
	}
	if cl.Report == nil {
		if cl.Provider != "none" {
			fmt.Fprintln(w, "no reconcile yet")
		}
		return nil
	}
	r := cl.Report
	fmt.Fprintf(w, "last reconcile: %s (%d API calls)", cl.LastReconcile.Format(time.RFC3339), r.Calls)
	if cl.LastError != "" {
		fmt.Fprintf(w, ", failed: %s", cl.LastError)
	}
	fmt.Fprintln(w)
	for _, t := range r.Tables {
		fmt.Fprintf(w, "table %s: %d routes, full %v, this host's %v\n", t.ID, t.Routes, t.Full, t.Local)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nDST\tNODE\tTARGET\tSTATE\tWHY")
	for _, p := range r.Programmed {
		fmt.Fprintf(tw, "%s\t%s\t%s\tprogrammed\t-\n", p.Dst, p.Node, orDash(p.Instance+p.ENI))
	}
	for _, f := range r.FellBack {
		why := string(f.Reason)
		if f.Detail != "" {
			why += ": " + f.Detail
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\toverlay\t%s\n", f.Dst, f.Node, orDash(f.Instance+f.ENI), why)
	}
	for _, rm := range r.Removed {
		fmt.Fprintf(tw, "%s\t-\t%s\tremoved\t%s\n", rm.Dst, rm.Target, rm.Why)
	}
	return tw.Flush()
}
