package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sort"
	"strconv"
	"time"

	"github.com/IBM/sarama"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/internal/zkcoord"
)

// TopicSpec is a topic the stack creates.
type TopicSpec struct {
	Name       string
	Partitions int32
	Config     map[string]string
}

// NotificationPartitions is the partition count of OpenStack's notification
// topics: the router's unit of scale-out (each partition is routed by one
// bridge at a time, its partners standing by), so it bounds how many
// bridges share the routing. Nova's notifications have no key and spread
// over them all.
const NotificationPartitions = 6

// Topics returns the project's topics with their partitions and configs:
// the requests topic (requestPartitions partitions), the compacted state
// topics, the dead letters and OpenStack's notification topics.
func Topics(requestPartitions int) []TopicSpec {
	// State topics are the read store: keep the newest record per key
	// forever, compact soon enough that a reader catching up does not read
	// long histories, and keep tombstones a day so readers see deletions.
	compacted := map[string]string{
		"cleanup.policy":            "compact",
		"min.compaction.lag.ms":     "0",
		"min.cleanable.dirty.ratio": "0.1",
		"segment.ms":                "600000",   // 10 min: the active segment is never compacted
		"delete.retention.ms":       "86400000", // 1 day
		"max.compaction.lag.ms":     "3600000",  // 1 hour
	}
	topics := []TopicSpec{
		{Name: cloudservers.TopicRequests, Partitions: int32(requestPartitions), Config: map[string]string{
			"cleanup.policy": "delete",
			"retention.ms":   "604800000", // 7 days
		}},
		{Name: cloudservers.TopicDeadLetter, Partitions: 1, Config: map[string]string{
			"cleanup.policy": "delete",
			"retention.ms":   "2592000000", // 30 days
		}},
	}
	for _, n := range append(append([]string{}, cloudservers.StateTopics...), cloudservers.TopicSSHKeys, cloudservers.TopicInstances) {
		cfg := compacted
		if n == cloudservers.TopicIdempotency {
			// Idempotency records matter for a day (the key TTL); keep
			// them two, then let Kafka drop them.
			cfg = maps.Clone(compacted)
			cfg["cleanup.policy"] = "compact,delete"
			cfg["retention.ms"] = "172800000"
		}
		topics = append(topics, TopicSpec{Name: n, Partitions: 3, Config: cfg})
	}
	for _, n := range cloudservers.NotificationTopics {
		topics = append(topics, TopicSpec{Name: n, Partitions: NotificationPartitions, Config: map[string]string{
			"cleanup.policy": "delete",
			"retention.ms":   "86400000", // 1 day
		}})
	}
	return topics
}

// CreateTopics creates every topic that does not exist yet, with
// replication factor 1 (the dev stack has one broker). An existing topic
// keeps its configuration; one with fewer partitions than asked is grown
// (a topic can never shrink). It is idempotent.
func CreateTopics(ctx context.Context, brokers []string, topics []TopicSpec, log io.Writer) error {
	return createTopics(ctx, brokers, topics, 1, 0, log)
}

// createTopics is CreateTopics with replication factor rf and, when
// minISR > 0, min.insync.replicas on every topic it creates.
func createTopics(ctx context.Context, brokers []string, topics []TopicSpec, rf int16, minISR int, log io.Writer) error {
	if log == nil {
		log = io.Discard
	}
	return withAdmin(ctx, brokers, func(admin sarama.ClusterAdmin) error {
		existing, err := admin.ListTopics()
		if err != nil {
			return fmt.Errorf("list topics: %w", err)
		}
		var created []string
		for _, t := range topics {
			if d, ok := existing[t.Name]; ok {
				if d.NumPartitions < t.Partitions {
					if err := admin.CreatePartitions(t.Name, t.Partitions, nil, false); err != nil {
						return fmt.Errorf("grow %s to %d partitions: %w", t.Name, t.Partitions, err)
					}
					fmt.Fprintf(log, "  grew topic %s from %d to %d partitions\n", t.Name, d.NumPartitions, t.Partitions)
				} else if d.NumPartitions > t.Partitions {
					fmt.Fprintf(log, "  topic %s keeps its %d partitions (%d asked; partitions cannot be removed)\n", t.Name, d.NumPartitions, t.Partitions)
				}
				continue
			}
			entries := map[string]*string{}
			for k, v := range t.Config {
				entries[k] = &v
			}
			if minISR > 0 {
				v := strconv.Itoa(minISR)
				entries["min.insync.replicas"] = &v
			}
			err := admin.CreateTopic(t.Name, &sarama.TopicDetail{
				NumPartitions:     t.Partitions,
				ReplicationFactor: rf,
				ConfigEntries:     entries,
			}, false)
			if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
				return fmt.Errorf("create topic %s: %w", t.Name, err)
			}
			created = append(created, t.Name)
		}
		if len(created) > 0 {
			sort.Strings(created)
			fmt.Fprintf(log, "  created %d topics: %v\n", len(created), created)
		}
		return awaitTopics(ctx, admin, topics)
	})
}

// awaitTopics waits until the broker's metadata shows every topic with a
// leader for each partition. CreateTopics returns once the KRaft controller
// has committed the topics; the broker that answers metadata requests learns
// of them a moment later, and a producer, consumer or test that asks in
// between is told the topic does not exist.
func awaitTopics(ctx context.Context, admin sarama.ClusterAdmin, topics []TopicSpec) error {
	names := make([]string, len(topics))
	for i, t := range topics {
		names[i] = t.Name
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		missing, err := topicsNotReady(admin, names)
		if err == nil && len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("topics not ready: %w", err)
			}
			return fmt.Errorf("topics not ready after creation: %v have no leader yet", missing)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// topicsNotReady returns the topics whose metadata is missing or has a
// partition without a leader.
func topicsNotReady(admin sarama.ClusterAdmin, names []string) ([]string, error) {
	metas, err := admin.DescribeTopics(names)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, m := range metas {
		ready := m.Err == sarama.ErrNoError && len(m.Partitions) > 0
		for _, p := range m.Partitions {
			if p.Err != sarama.ErrNoError || p.Leader < 0 {
				ready = false
			}
		}
		if !ready {
			missing = append(missing, m.Name)
		}
	}
	if len(metas) < len(names) {
		missing = append(missing, "(some not described)")
	}
	return missing, nil
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
