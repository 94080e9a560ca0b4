package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"sigs.k8s.io/yaml"

	"github.com/weft-net/weft/internal/api"
	"github.com/weft-net/weft/internal/policystore"
	"github.com/weft-net/weft/policy"
)

// kindsHelp lists the kinds `policy get|delete` take, for help texts.
const kindsHelp = "KIND is one of Tier, GlobalNetworkPolicy (gnp), NetworkPolicy (np; Calico's or Kubernetes'),\n" +
	"GlobalNetworkSet (gns), NetworkSet (netset), HostEndpoint (hep), Namespace, ServiceAccount (sa),\n" +
	"in any case. Namespaced kinds (NetworkPolicy, NetworkSet, ServiceAccount) without NAMESPACE are in\n" +
	"\"default\"."

func policyApplyCommand() *cli.Command {
	return &cli.Command{
		Name:      "apply",
		Usage:     "create or update policies from YAML/JSON files, for the whole cluster",
		UsageText: "weft policy apply -f FILE|DIR [-f ...] [--output table|json]",
		Description: "Reads Calico v3 resources (GlobalNetworkPolicy, NetworkPolicy, Tier, GlobalNetworkSet,\n" +
			"NetworkSet, HostEndpoint), Kubernetes NetworkPolicy, Namespace and ServiceAccount objects\n" +
			"from the files (a directory: every .yaml, .yml and .json file in it, recursively).\n\n" +
			"Everything is checked here first: any error (it names the file, document, object, field and\n" +
			"value) exits with status 2 and sends nothing. The agent then checks that the whole cluster set\n" +
			"(the store plus these objects) resolves, e.g. that every policy's tier exists, and refuses\n" +
			"everything if it does not. Otherwise every object is stored and spreads to every host; the\n" +
			"command prints, per object, whether it was created, updated or unchanged.\n\n" +
			"Workload endpoints are not applied here: each host registers its own with `weft endpoint add`.\n\n" +
			"Example:\n  weft policy apply -f policies/\n  weft policy get -o yaml > backup.yaml && weft policy apply -f backup.yaml",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "file", Aliases: []string{"f"}, Usage: "resource `FILE` or directory (repeatable)"},
			runDirFlag, outputFlag,
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err} },
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError{fmt.Errorf("unexpected argument %q: give the files with -f", c.Args().First())}
			}
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			files := c.StringSlice("file")
			if len(files) == 0 {
				return usageError{errors.New("-f FILE|DIR is required")}
			}
			req, err := applyRequest(files)
			if err != nil {
				return usageError{err}
			}
			res, err := api.NewClient(c.String("run-dir")).PolicyApply(c.Context, req)
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(c.App.Writer, res)
			}
			return printResults(c.App.Writer, res)
		},
	}
}

// applyRequest reads, decodes and validates the files and returns the
// request that applies their objects. Objects that cannot be stored as
// policy, and two objects with one key, are errors.
func applyRequest(files []string) (api.PolicyApplyRequest, error) {
	var req api.PolicyApplyRequest
	var errs []error
	seen := map[string]policy.Origin{}
	for _, f := range files {
		objs, err := policy.LoadObjects(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, o := range objs {
			key, value, err := policystore.Encode(o.Resource)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", o.Origin, err))
				continue
			}
			if first, dup := seen[key]; dup {
				errs = append(errs, fmt.Errorf("%s: %s: already defined at %s", o.Origin, policystore.RefOf(o.Resource), first))
				continue
			}
			seen[key] = o.Origin
			req.Objects = append(req.Objects, api.PolicyObject{File: o.Origin.File, Document: o.Origin.Document, Item: o.Origin.Item, Object: value})
		}
	}
	if len(errs) > 0 {
		return req, fmt.Errorf("nothing applied: %w", errors.Join(errs...))
	}
	if len(req.Objects) == 0 {
		return req, fmt.Errorf("nothing to apply: no objects in %s", strings.Join(files, ", "))
	}
	return req, nil
}

// printResults prints one "REF RESULT" line per object.
func printResults(w io.Writer, res []api.PolicyResult) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range res {
		fmt.Fprintf(tw, "%s\t%s\n", r.Ref, r.Result)
	}
	return tw.Flush()
}

func policyGetCommand() *cli.Command {
	return &cli.Command{
		Name:      "get",
		Usage:     "list the cluster's policy objects, or show one",
		UsageText: "weft policy get [KIND | KIND/NAME | KIND/NAMESPACE/NAME] [--output table|yaml|json]",
		Description: "Lists what the store holds (the same on every host once gossip has spread it). With\n" +
			"--output yaml the objects come out as a multi-document YAML file that `weft policy apply -f`\n" +
			"takes back. An object the agent cannot enforce (a store entry that does not decode or\n" +
			"resolve) is shown with its problem.\n\n" + kindsHelp + "\n\n" +
			"Examples:\n  weft policy get\n  weft policy get gnp\n  weft policy get NetworkPolicy/prod/db -o yaml",
		Flags: []cli.Flag{runDirFlag, &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "output format: table, yaml or json", Value: "table"}},
		Action: func(c *cli.Context) error {
			format := c.String("output")
			if format != "table" && format != "yaml" && format != "json" {
				return usageError{fmt.Errorf("--output: %q: want table, yaml or json", format)}
			}
			if c.NArg() > 1 {
				return usageError{fmt.Errorf("unexpected argument %q: give at most one KIND/NAME", c.Args().Get(1))}
			}
			var ref policystore.Ref
			if c.NArg() == 1 {
				r, err := policystore.ParseRef(c.Args().First(), true)
				if err != nil {
					return usageError{err}
				}
				ref = r
			}
			all, err := api.NewClient(c.String("run-dir")).PolicyList(c.Context)
			if err != nil {
				return err
			}
			var sel []api.PolicyEntry
			for _, e := range all {
				if ref.Kind != "" && e.Kind != ref.Kind || ref.Name != "" && e.Key != ref.Key() {
					continue
				}
				sel = append(sel, e)
			}
			if ref.Name != "" && len(sel) == 0 {
				return fmt.Errorf("%s: not found", ref)
			}
			sortEntries(sel)
			switch format {
			case "json":
				if sel == nil {
					sel = []api.PolicyEntry{}
				}
				return writeJSON(c.App.Writer, sel)
			case "yaml":
				return printEntriesYAML(c.App.Writer, sel)
			}
			return printEntries(c.App.Writer, sel, time.Now())
		},
	}
}

// sortEntries orders entries by kind (as policystore.Kinds lists them),
// namespace and name.
func sortEntries(es []api.PolicyEntry) {
	slices.SortStableFunc(es, func(a, b api.PolicyEntry) int {
		ia, ib := slices.Index(policystore.Kinds, a.Kind), slices.Index(policystore.Kinds, b.Kind)
		if ia != ib {
			return ia - ib
		}
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
}

func printEntries(w io.Writer, es []api.PolicyEntry, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tNAMESPACE\tNAME\tWRITTEN BY\tAGE\tPROBLEM")
	for _, e := range es {
		ns, kind, prob := e.Namespace, e.Kind, e.Problem
		if ns == "" {
			ns = "-"
		}
		if kind == "" {
			kind = "?"
		}
		if prob == "" {
			prob = "-"
		}
		by := e.WrittenBy
		if by == "" {
			by = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", kind, ns, e.Name, by, ago(now, e.WrittenAt), prob)
	}
	return tw.Flush()
}

// printEntriesYAML writes the objects as YAML documents.
func printEntriesYAML(w io.Writer, es []api.PolicyEntry) error {
	for i, e := range es {
		if e.Object == nil {
			continue
		}
		y, err := yaml.JSONToYAML(e.Object)
		if err != nil {
			return fmt.Errorf("render %s as YAML: %w", e.Key, err)
		}
		if i > 0 {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		if _, err := w.Write(y); err != nil {
			return err
		}
	}
	return nil
}

func policyDeleteCommand() *cli.Command {
	return &cli.Command{
		Name:      "delete",
		Usage:     "delete policy objects from the whole cluster, by name or as listed in files",
		UsageText: "weft policy delete KIND/NAME|KIND/NAMESPACE/NAME ... | -f FILE|DIR",
		Description: "The agent first checks that the cluster set still resolves without the objects (a Tier that\n" +
			"policies are still in cannot go) and deletes nothing if not. An object that is not in the\n" +
			"store is reported as \"not found\" and makes the command exit with status 1; the others are\n" +
			"deleted.\n\n" + kindsHelp + "\n\n" +
			"Examples:\n  weft policy delete gnp/default-deny\n  weft policy delete -f policies/",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "file", Aliases: []string{"f"}, Usage: "delete the objects defined in `FILE` or directory (repeatable)"},
			runDirFlag, outputFlag,
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err} },
		Action: func(c *cli.Context) error {
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			files := c.StringSlice("file")
			if (len(files) == 0) == (c.NArg() == 0) {
				return usageError{errors.New("give either KIND/NAME arguments or -f FILE|DIR")}
			}
			var keys []string
			for _, a := range c.Args().Slice() {
				r, err := policystore.ParseRef(a, false)
				if err != nil {
					return usageError{err}
				}
				keys = append(keys, r.Key())
			}
			if len(files) > 0 {
				req, err := applyRequest(files)
				if err != nil {
					return usageError{errors.New(strings.Replace(err.Error(), "nothing applied", "nothing deleted", 1))}
				}
				for _, o := range req.Objects {
					objs, err := policy.Decode(o.File, o.Object)
					if err != nil || len(objs) != 1 {
						return fmt.Errorf("%s: document %d: re-read: %v", o.File, o.Document, err)
					}
					keys = append(keys, policystore.Key(objs[0].Resource))
				}
			}
			res, err := api.NewClient(c.String("run-dir")).PolicyDelete(c.Context, api.PolicyDeleteRequest{Keys: keys})
			if err != nil {
				return err
			}
			if format == "json" {
				err = writeJSON(c.App.Writer, res)
			} else {
				err = printResults(c.App.Writer, res)
			}
			if err != nil {
				return err
			}
			var missing []string
			for _, r := range res {
				if r.Result == api.ResultNotFound {
					missing = append(missing, r.Ref)
				}
			}
			if len(missing) > 0 {
				return fmt.Errorf("not found: %s", strings.Join(missing, ", "))
			}
			return nil
		},
	}
}

func policyStatsCommand() *cli.Command {
	return &cli.Command{
		Name:  "stats",
		Usage: "show how many packets and bytes each policy rule matched on this host",
		Description: "Reads the counters of this host's nftables ruleset (table inet weft): one row per policy\n" +
			"rule that applies to one of this host's endpoints, counting the first packet of every\n" +
			"connection it matched (later packets are accepted as established before any rule). Policies\n" +
			"that select none of this host's endpoints are not in its ruleset. Counters may start again\n" +
			"at zero when the ruleset changes.",
		Flags: []cli.Flag{runDirFlag, outputFlag},
		Action: func(c *cli.Context) error {
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			st, err := api.NewClient(c.String("run-dir")).PolicyStats(c.Context)
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(c.App.Writer, st)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KIND\tPOLICY\tRULE\tPACKETS\tBYTES")
			for _, r := range st.Rules {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\n", r.Kind, r.Policy, r.Rule, r.Packets, r.Bytes)
			}
			return tw.Flush()
		},
	}
}
