package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/cloudservers/cloudservers/internal/devstack"
)

// runStack runs ZooKeeper, Kafka and the Temporal dev server (with its Web
// UI) until ctx is cancelled, then stops them.
func runStack(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("stack", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `usage: cloudservers stack [flags]

Runs the real infrastructure on this machine, on 127.0.0.1 only: Apache
ZooKeeper, Apache Kafka (KRaft) and the Temporal dev server with its Web UI;
creates the Temporal namespace, its search attributes and the Kafka topics.
The first run fetches the jars with Maven and builds the Temporal CLI (minutes).
Stops everything on Ctrl-C / SIGTERM. A port of 0 picks a free port (the one
used last time for the same data folder when it is free).

flags:
`)
		fs.PrintDefaults()
	}
	var cfg devstack.Config
	fs.StringVar(&cfg.DataDir, "data", devstack.DefaultDataDir(), "data folder kept between runs (env CLOUDSERVERS_DATA)")
	fs.StringVar(&cfg.CacheDir, "cache", devstack.DefaultCacheDir(), "cache folder for the jars and the temporal binary (env CLOUDSERVERS_CACHE)")
	fs.IntVar(&cfg.ZooKeeperPort, "zookeeper-port", 0, "ZooKeeper client port (0 = free port)")
	fs.IntVar(&cfg.KafkaPort, "kafka-port", 0, "Kafka broker port (0 = free port)")
	fs.IntVar(&cfg.KafkaControllerPort, "kafka-controller-port", 0, "Kafka KRaft controller port (0 = free port)")
	fs.IntVar(&cfg.TemporalPort, "temporal-port", 0, "Temporal frontend gRPC port (0 = free port)")
	fs.IntVar(&cfg.TemporalUIPort, "temporal-ui-port", 0, "Temporal Web UI port (0 = free port)")
	fs.IntVar(&cfg.TemporalHTTPPort, "temporal-http-port", 0, "Temporal frontend HTTP API port (0 = free port)")
	fs.IntVar(&cfg.TemporalMetricsPort, "temporal-metrics-port", 0, "Temporal Prometheus metrics port (0 = free port)")
	fs.IntVar(&cfg.RequestPartitions, "request-partitions", 6, "partitions of the "+"cloudservers.requests topic")
	fs.StringVar(&cfg.Namespace, "namespace", devstack.DefaultNamespace, "Temporal namespace to create")
	endpointsFile := fs.String("endpoints-file", "", "write the endpoints as JSON to this file once ready (removed on stop)")
	fetchOnly := fs.Bool("fetch-only", false, "only fetch the jars and build the Temporal CLI, then exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	cfg.Log = os.Stderr

	if *fetchOnly {
		if err := devstack.Ensure(ctx, cfg); err != nil {
			return err
		}
		fmt.Fprintln(os.Stderr, "everything is in", cfg.CacheDir)
		return nil
	}

	st, err := devstack.Start(ctx, cfg)
	if err != nil {
		var busy *devstack.PortBusyError
		if errors.As(err, &busy) {
			flagName := "-" + strings.ReplaceAll(busy.Key, "_", "-") + "-port"
			return fmt.Errorf("%s port %d on 127.0.0.1 is already in use by another program: stop that program, or pass %s with another port (0 = any free port)",
				busy.Component, busy.Port, flagName)
		}
		return err
	}
	defer st.Stop()

	e := st.Endpoints()
	fmt.Fprintf(os.Stderr, `
  ZooKeeper    %s
  Kafka        %s
  Temporal     %s (namespace %s)
  Temporal UI  %s
  logs         %s
`, e.ZooKeeper, strings.Join(e.Kafka, ","), e.Temporal, e.TemporalNamespace, e.TemporalUI, e.LogDir)
	if *endpointsFile != "" {
		if err := devstack.WriteEndpoints(*endpointsFile, e); err != nil {
			return err
		}
		defer os.Remove(*endpointsFile)
		fmt.Fprintf(os.Stderr, "  endpoints    %s\n", *endpointsFile)
	}
	fmt.Fprintln(os.Stderr, "\nrunning; Ctrl-C stops everything")

	select {
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "stopping")
		return nil
	case x := <-st.Exits():
		return fmt.Errorf("%s (pid %d) exited unexpectedly (%v); stopping the stack\n--- last lines of its log ---\n%s", x.Name, x.Pid, x.Err, x.Tail)
	}
}
