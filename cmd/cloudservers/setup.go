package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/cloudservers/cloudservers/internal/config"
	"github.com/cloudservers/cloudservers/internal/setup"
)

// runSetup bootstraps Kafka, Temporal and ZooKeeper for the system
// (internal/setup): idempotent, -dry-run shows the plan.
func runSetup(ctx context.Context, args []string) error {
	return setupCommand(ctx, args, os.Stdout)
}

func setupCommand(ctx context.Context, args []string, out io.Writer) error {
	var c common
	var problems []error
	envInt := func(name string, def int) int {
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s=%q: not a number", name, v))
			return def
		}
		return n
	}
	fs := flag.NewFlagSet("setup", flag.ContinueOnError)
	c.register(fs)
	rf := fs.Int("replication-factor", envInt("CLOUDSERVERS_REPLICATION_FACTOR", 3), "replication factor of every topic (env CLOUDSERVERS_REPLICATION_FACTOR)")
	minISR := fs.Int("min-insync-replicas", envInt("CLOUDSERVERS_MIN_INSYNC_REPLICAS", 2), "min.insync.replicas of every topic, 0 for the broker's default (env CLOUDSERVERS_MIN_INSYNC_REPLICAS)")
	partitions := fs.Int("request-partitions", envInt("CLOUDSERVERS_REQUEST_PARTITIONS", setup.DefaultRequestPartitions), "partitions of cloudservers.requests: the bridges' unit of scale-out (env CLOUDSERVERS_REQUEST_PARTITIONS)")
	retention := fs.Duration("retention", setup.DefaultRetention, "history retention of the Temporal namespace, when setup creates it")
	grow := fs.Bool("grow-partitions", false, "grow topics that have fewer partitions than configured (a grown requests topic moves buckets)")
	accept := fs.Bool("accept-mismatch", false, "apply the rest of the plan when some topic or search attribute differs, leaving those as they are")
	adminCustomer := fs.String("admin-customer", envOr("CLOUDSERVERS_ADMIN_CUSTOMER", "admin"), "customer of the first admin API key, made when no admin key exists; empty for none (env CLOUDSERVERS_ADMIN_CUSTOMER)")
	dryRun := fs.Bool("dry-run", false, "only show the plan")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up when the cluster has not answered within this")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := c.load(fs, func(f config.File) []fromFile {
		return []fromFile{
			{"replication-factor", "CLOUDSERVERS_REPLICATION_FACTOR", intString(f.Topics.ReplicationFactor)},
			{"min-insync-replicas", "CLOUDSERVERS_MIN_INSYNC_REPLICAS", intString(f.Topics.MinInsyncReplicas)},
			{"request-partitions", "CLOUDSERVERS_REQUEST_PARTITIONS", intString(f.Topics.RequestPartitions)},
		}
	}); err != nil {
		return err
	}
	if *rf < 1 || *rf > 32767 {
		problems = append(problems, fmt.Errorf("-replication-factor %d: must be at least 1", *rf))
	}
	if *minISR < 0 || *minISR > *rf {
		problems = append(problems, fmt.Errorf("-min-insync-replicas %d: must be between 0 and the replication factor (%d)", *minISR, *rf))
	}
	if *partitions < 1 {
		problems = append(problems, fmt.Errorf("-request-partitions %d: must be at least 1", *partitions))
	}
	if c.kafka == "" && c.temporal == "" && c.zookeeper == "" {
		problems = append(problems, errors.New("nothing to set up: give -kafka, -temporal and/or -zookeeper (or CLOUDSERVERS_KAFKA, ...)"))
	}
	if len(problems) > 0 {
		return fmt.Errorf("setup configuration: %w", errors.Join(problems...))
	}
	cfg := setup.Config{
		Topics:            setup.Topics(*partitions),
		ReplicationFactor: int16(*rf),
		MinInsyncReplicas: *minISR,
		GrowPartitions:    *grow,
		AcceptMismatch:    *accept,
		Temporal:          c.temporal,
		Namespace:         c.namespace,
		Retention:         *retention,
		ZooKeeper:         c.zookeeper,
		BucketMap:         setup.BucketMap(c.zookeeper, int32(*partitions)),
		DryRun:            *dryRun,
	}
	if c.kafka != "" {
		cfg.Kafka, _ = c.brokers()
		cfg.AdminCustomer = *adminCustomer
	}
	if !*asJSON {
		cfg.Log = out
		if *dryRun {
			fmt.Fprintln(out, "setup plan (dry run, nothing is changed):")
		} else {
			fmt.Fprintln(out, "setup:")
		}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	r, err := setup.Run(ctx, cfg)
	if *asJSON {
		if jerr := printSetupJSON(out, r, *dryRun, err); jerr != nil {
			return jerr
		}
		return err
	}
	if err != nil {
		return err
	}
	switch {
	case len(r.Planned) == 0 && len(r.Problems) == 0:
		fmt.Fprintf(out, "nothing to change: %d things checked are as configured\n", len(r.Unchanged))
	case *dryRun:
		fmt.Fprintf(out, "%d changes planned, %d things as configured, %d differences\n", len(r.Planned), len(r.Unchanged), len(r.Problems))
	default:
		fmt.Fprintf(out, "%d changes made, %d things as configured, %d differences left as they are\n", len(r.Applied), len(r.Unchanged), len(r.Problems))
	}
	if r.AdminKey != "" {
		fmt.Fprintf(out, "\nadmin API key for customer %s (shown once; only its hash is stored):\n%s\n", r.AdminCustomer, r.AdminKey)
	}
	return nil
}

func printSetupJSON(out io.Writer, r *setup.Report, dryRun bool, runErr error) error {
	type step struct {
		Target string `json:"target"`
		Action string `json:"action"`
	}
	steps := func(ss []setup.Step) []step {
		l := []step{}
		for _, s := range ss {
			l = append(l, step{s.Target, s.Action})
		}
		return l
	}
	v := map[string]any{"dry_run": dryRun, "planned": steps(r.Planned), "applied": steps(r.Applied), "unchanged": r.Unchanged, "problems": r.Problems}
	if r.AdminKey != "" {
		v["admin_customer"], v["admin_api_key"] = r.AdminCustomer, r.AdminKey
	}
	if runErr != nil {
		v["error"] = runErr.Error()
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
