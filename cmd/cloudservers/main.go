// Command cloudservers is the one binary of the system. Each subcommand runs
// one component; `dev` runs them all on one machine.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand. run gets the arguments after the subcommand's
// name and stops when ctx is cancelled (Ctrl-C or SIGTERM).
type command struct {
	summary string
	run     func(ctx context.Context, args []string) error
}

func commands() map[string]command {
	return map[string]command{
		"stack":       {"run ZooKeeper, Kafka and the Temporal dev server (with its UI) until stopped", runStack},
		"sim":         {"run the OpenStack simulator", runSim},
		"api":         {"serve the customer REST API", runAPI},
		"worker":      {"host the Temporal workflows and activities", runWorker},
		"bridge":      {"own request partitions (ZooKeeper) and run the single-instance services", runBridge},
		"admin":       {"administration: create-key; partitions add; buckets move, rebalance, status; deadletters replay", runAdmin},
		"healthcheck": {"GET a health URL (arg or CLOUDSERVERS_HEALTH_URL), fail unless 2xx: the image's HEALTHCHECK", runHealthcheck},
		"config":      {"config check: validate a configuration file, listing every problem", runConfig},
		"setup":       {"bootstrap Kafka topics, the Temporal namespace, the ZooKeeper chroot and the first admin key (idempotent; -dry-run shows the plan)", runSetup},
		"status":      {"who owns each request partition (owner, partners, offsets, lag) and who leads each singleton", runStatus},
		"dev":         {"run the whole system on this machine (what make run does)", runDev},
		"bench":       {"the benchmark report: the system beside raw baselines on the same engines (what make bench does)", runBench},

		"servers": {"the customer CLI: create, list, get, delete, reboot, power-off, power-on, resize, keys... (-wait follows an operation)", runServersCLI},
	}
}

func main() {
	cmds := commands()
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "help" || os.Args[1] == "--help" {
		usage(cmds)
		os.Exit(2)
	}
	cmd, ok := cmds[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "cloudservers: unknown command %q\n", os.Args[1])
		usage(cmds)
		os.Exit(2)
	}
	// SIGHUP too: closing the terminal that runs `make run` stops it cleanly
	// (children stopped in order, the simulator's cloud saved) instead of
	// killing it outright.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	err := cmd.run(ctx, os.Args[2:])
	stop()
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "cloudservers %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage(cmds map[string]command) {
	fmt.Fprintln(os.Stderr, "usage: cloudservers <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-11s %s\n", n, cmds[n].summary)
	}
}
