// Command sanitel watches a district's sanitation facilities through their
// sensors: it ingests readings over MQTT, writes them to InfluxDB, and turns
// alerts into supervision tickets (督办单). See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one sanitel subcommand.
type command struct {
	name    string
	summary string
	usage   string // arguments after the command name
	help    string // longer description
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "run the service: MQTT → spool → InfluxDB, alerts → tickets, HTTP API",
			"--config FILE", serveHelp, runServe},
		{"simulate", "publish simulated device readings to an MQTT broker",
			"--config FILE [--devices N --registry-out FILE] [--rate MSG/S] [--duration D] [--count N] [--speed X] [--seed S] [--faults LIST]",
			simulateHelp, runSimulate},
		{"demo", "everything in one process: embedded broker, simulator, ingestion, alerting, tickets, HTTP on :8080",
			"[--listen ADDR] [--dir DIR] [--devices N] [--speed X] [--influx-url URL]", demoHelp, runDemo},
		{"check-config", "validate a config file and print the effective config, secrets masked",
			"--config FILE", checkConfigHelp, runCheckConfig},
		{"report", "print the monthly ranking of streets or responsible units",
			"[--config FILE] [--month YYYY-MM] [--by street|org_unit]", reportHelp, runReport},
		{"version", "print the version", "", "", runVersion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// errUsage marks an error already explained by printed usage.
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) > 1 {
			return run(ctx, []string{args[1], "--help"}, stdout, stderr)
		}
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" {
		args = append([]string{"version"}, args[1:]...)
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		default:
			fmt.Fprintf(stderr, "sanitel %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "sanitel: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `sanitel — sanitation sensors to InfluxDB and supervision tickets (督办单)

Usage:
  sanitel <command> [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run 'sanitel <command> --help' for a command's flags.
Start here: 'sanitel demo' runs everything on this machine, nothing to install.
`)
}

// newFlags returns a flag set whose --help prints the command's usage.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, c := range commands() {
		if c.name == name {
			fs.Usage = func() {
				fmt.Fprintf(fs.Output(), "Usage: sanitel %s %s\n\n%s\n", c.name, c.usage, c.help)
				if hasFlags(fs) {
					fmt.Fprintf(fs.Output(), "\nFlags:\n")
					fs.PrintDefaults()
				}
			}
		}
	}
	return fs
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// parse parses flags; it reports a usage error for stray arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return nil
}

// defaultConfig is the config file used when --config is not given.
func defaultConfig() string {
	if v := os.Getenv("SANITEL_CONFIG"); v != "" {
		return v
	}
	return "configs/sanitel.yaml"
}

var version = "dev"

func runVersion(_ context.Context, _ []string, stdout, _ io.Writer) error {
	fmt.Fprintf(stdout, "sanitel %s\n", version)
	return nil
}
