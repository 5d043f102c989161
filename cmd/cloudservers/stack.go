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
	fetchOnly := fs.Bool("fetch-only", false, "only fetch the jars and build the Temporal CLI (-topology ha: the Temporal server, its SQL tool and UI server), then exit")
	topology := fs.String("topology", devstack.TopologySingle, `"single": one ZooKeeper, one Kafka broker, the Temporal dev server; "ha": 3 ZooKeeper servers, 3 Kafka brokers (RF 3, min.insync.replicas 2), the Temporal server on PostgreSQL and its UI, in <data>/ha on free ports (the -*-port flags are for "single")`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	cfg.Log = os.Stderr
	if *topology != devstack.TopologySingle && *topology != devstack.TopologyHA {
		return fmt.Errorf("-topology %q: use %q or %q", *topology, devstack.TopologySingle, devstack.TopologyHA)
	}
	if *topology == devstack.TopologyHA {
		return runStackHA(ctx, cfg, *fetchOnly, *endpointsFile)
	}

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

// runStackHA runs the HA topology until ctx is cancelled. A member that
// dies is reported and the rest carries on: surviving it is the point.
func runStackHA(ctx context.Context, cfg devstack.Config, fetchOnly bool, endpointsFile string) error {
	if fetchOnly {
		if err := devstack.EnsureHA(ctx, cfg); err != nil {
			return err
		}
		fmt.Fprintln(os.Stderr, "everything is in", cfg.CacheDir)
		return nil
	}
	st, err := devstack.StartHA(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Stop()
	e := st.Endpoints()
	printHAEndpoints(e)
	if endpointsFile != "" {
		if err := devstack.WriteEndpoints(endpointsFile, e); err != nil {
			return err
		}
		defer os.Remove(endpointsFile)
		fmt.Fprintf(os.Stderr, "  endpoints    %s\n", endpointsFile)
	}
	fmt.Fprintln(os.Stderr, "\nrunning; Ctrl-C stops everything")
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(os.Stderr, "stopping")
			return nil
		case x := <-st.Exits():
			fmt.Fprintf(os.Stderr, "%s (pid %d) exited (%v); the cluster carries on without it. Last lines of its log:\n%s\n", x.Name, x.Pid, x.Err, x.Tail)
		}
	}
}

func printHAEndpoints(e devstack.Endpoints) {
	fmt.Fprintf(os.Stderr, `
  topology     ha
  ZooKeeper    %s
  Kafka        %s (RF %d, min.insync.replicas %d)
  controllers  %s
  PostgreSQL   %s
  Temporal     %s (namespace %s, %d history shards)
  Temporal UI  %s
  logs         %s
`, e.ZooKeeper, strings.Join(e.Kafka, ","), e.ReplicationFactor, e.MinInsyncReplicas, strings.Join(e.KafkaControllers, ","),
		e.PostgreSQL, e.Temporal, e.TemporalNamespace, e.TemporalHistoryShards, e.TemporalUI, e.LogDir)
}
