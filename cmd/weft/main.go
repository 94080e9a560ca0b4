// Command weft is the one binary of the weft network fabric: the agent that
// runs on every host, the client commands that ask it questions, and the lab.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/urfave/cli/v2"
)

// Set by the linker: go build -ldflags "-X main.version=v0.1.0 -X main.commit=abc123".
var (
	version = "dev"
	commit  = ""
)

// exitCoder lets a command choose its exit status (e.g. 2 for bad input).
type exitCoder interface{ ExitCode() int }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := newApp()
	err := app.RunContext(ctx, flagsFirst(app, os.Args))
	if err != nil {
		fmt.Fprintln(os.Stderr, "weft:", err)
		var ec exitCoder
		if errors.As(err, &ec) {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "weft",
		Usage: "join Linux hosts across segments, clouds and regions into one routed network for their workloads",
		Description: "Run `weft agent` on every host. The agents find each other by encrypted gossip, give every\n" +
			"host a workload subnet, and answer the other commands through a local socket.\n" +
			"Try it without any hosts: `weft lab` builds a small multi-host fabric in network namespaces.",
		Version:              versionString(),
		HideVersion:          true,
		EnableBashCompletion: true,
		Commands: []*cli.Command{
			agentCommand(),
			statusCommand(),
			peersCommand(),
			routesCommand(),
			cloudCommand(),
			policyCommand(),
			endpointCommand(),
			leaveCommand(),
			cleanupCommand(),
			keysCommand(),
			labCommand(),
			versionCommand(),
		},
		ExitErrHandler: func(*cli.Context, error) {}, // main prints and exits
	}
}

// buildCommit returns the commit from the linker, else from the Go build info.
func buildCommit() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" && dirty {
			rev += "-dirty"
		}
		if rev != "" {
			return rev
		}
	}
	return "unknown"
}

func versionString() string { return version + " (commit " + buildCommit() + ")" }

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print weft's version and the commit it was built from",
		Action: func(c *cli.Context) error {
			fmt.Fprintf(c.App.Writer, "weft %s\n", versionString())
			return nil
		},
	}
}
