package devstack

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/cloudservers/cloudservers/internal/setup"
	"github.com/cloudservers/cloudservers/internal/zkcoord"
)

// TopicSpec is a topic the stack creates (setup.TopicSpec).
type TopicSpec = setup.TopicSpec

// NotificationPartitions is the partition count of OpenStack's notification
// topics (setup.NotificationPartitions).
const NotificationPartitions = setup.NotificationPartitions

// Topics returns the project's topics (setup.Topics).
func Topics(requestPartitions int) []TopicSpec { return setup.Topics(requestPartitions) }

// CreateTopics creates every topic that does not exist yet, with
// replication factor 1 (the dev stack has one broker), through setup. An
// existing topic with fewer partitions than asked is grown, one that
// differs otherwise is reported and kept as it is. It is idempotent.
func CreateTopics(ctx context.Context, brokers []string, topics []TopicSpec, log io.Writer) error {
	return createTopics(ctx, brokers, topics, 1, 0, log)
}

// createTopics is CreateTopics with replication factor rf and, when
// minISR > 0, min.insync.replicas on every topic.
func createTopics(ctx context.Context, brokers []string, topics []TopicSpec, rf int16, minISR int, log io.Writer) error {
	r, err := setup.Run(ctx, setup.Config{
		Kafka:             brokers,
		Topics:            topics,
		ReplicationFactor: rf,
		MinInsyncReplicas: minISR,
		GrowPartitions:    true,
		AcceptMismatch:    true,
	})
	if log != nil && r != nil {
		// One line for what was created, one per other change or
		// difference: the stack's start-up output stays short.
		var created []string
		for _, s := range r.Applied {
			if strings.HasPrefix(s.Action, "create") {
				created = append(created, strings.TrimPrefix(s.Target, "topic "))
			} else {
				fmt.Fprintf(log, "  %s: %s\n", s.Target, s.Action)
			}
		}
		if len(created) > 0 {
			fmt.Fprintf(log, "  created %d topics: %v\n", len(created), created)
		}
		for _, p := range r.Problems {
			fmt.Fprintf(log, "  %s (kept)\n", p)
		}
	}
	return err
}

// ensureBucketMap writes the bucket map of a new system (the initial
// spread over the requests topic's partitions) under the chroot the
// processes use; an existing map is kept.
func ensureBucketMap(ctx context.Context, zookeeper string, cfg Config) error {
	connect := zookeeper + zkcoord.DefaultChroot
	m, created, err := zkcoord.EnsureMap(ctx, connect, int32(cfg.RequestPartitions), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return fmt.Errorf("devstack: bucket map: %w", err)
	}
	if created {
		fmt.Fprintf(cfg.Log, "  bucket map written: %d buckets over %d partitions\n", len(m.Buckets), m.Partitions)
	}
	return nil
}
