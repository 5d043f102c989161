package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/cloudservers/cloudservers/internal/bench"
	"github.com/cloudservers/cloudservers/internal/devstack"
)

// runBench runs the benchmark report (internal/bench) on a system of its
// own, started as `dev` is.
func runBench(ctx context.Context, args []string) error {
	cfg := bench.DefaultConfig()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.IntVar(&cfg.N, "n", cfg.N, "creates (then deletes) end to end")
	fs.IntVar(&cfg.C, "c", cfg.C, "concurrent clients for the creates and deletes")
	fs.DurationVar(&cfg.BootTime, "boot-time", cfg.BootTime, "the simulator's create-to-ACTIVE time; the raw workflow is signalled as long after its start")
	fs.DurationVar(&cfg.DeleteTime, "delete-time", cfg.DeleteTime, "the simulator's delete-to-gone time, likewise")
	fs.IntVar(&cfg.AcceptSingle, "accept-single", cfg.AcceptSingle, "POST /v1/servers sent one at a time")
	fs.IntVar(&cfg.AcceptConcurrent, "accept-concurrent", cfg.AcceptConcurrent, "POST /v1/servers sent by -accept-clients concurrent clients")
	fs.IntVar(&cfg.AcceptClients, "accept-clients", cfg.AcceptClients, "concurrent clients (and raw producers) of the accept measure")
	fs.IntVar(&cfg.Customers, "customers", cfg.Customers, "customers the load is spread over (rate limit and quota are per customer)")
	fs.IntVar(&cfg.HistorySample, "history-sample", cfg.HistorySample, "servers (and raw workflows) whose Temporal histories are counted")
	fs.DurationVar(&cfg.OpTimeout, "op-timeout", cfg.OpTimeout, "longest wait for a burst's operations to end")
	fs.StringVar(&cfg.JSONPath, "json", cfg.JSONPath, "write the report as JSON here (empty: not written)")
	fs.StringVar(&cfg.PicturePath, "picture", cfg.PicturePath, "write the picture here: .png or .svg (empty: not drawn)")
	fs.StringVar(&cfg.Topology, "topology", cfg.Topology, `what the system runs on, as dev -topology: "single" (the Temporal dev server) or "ha" (the Temporal server on PostgreSQL, 3 brokers, 3 ZooKeeper)`)
	fs.StringVar(&cfg.DataDir, "data", "", "data folder of the system (default: a fresh temporary one, removed at the end)")
	fs.BoolVar(&cfg.KeepData, "keep-data", false, "keep the temporary data folder (its logs/) after the run")
	fs.StringVar(&cfg.CacheDir, "cache", devstack.DefaultCacheDir(), "cache folder of Kafka, ZooKeeper and Temporal (env CLOUDSERVERS_CACHE)")
	routerNotifications := fs.Int("router-notifications", 30_000, "notifications of the router section (0: no router section)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *routerNotifications > 0 {
		cfg.Sections = append(cfg.Sections, bench.RouterSection(bench.RouterScaleConfig{Notifications: *routerNotifications}))
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	rep, err := bench.Run(ctx, self, cfg, os.Stderr)
	if rep != nil && len(rep.Rows) > 0 {
		fmt.Println()
		bench.Print(os.Stdout, rep)
	}
	if err != nil {
		return err
	}
	fmt.Printf("\nreport: %s  picture: %s  (%s)\n", cfg.JSONPath, cfg.PicturePath, rep.Duration)
	return nil
}
