package setup

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/internal/kafka"
)

// TopicSpec is a topic setup creates: its partitions and the topic-level
// configs it sets (the replication factor and min.insync.replicas come
// from Config, the same for every topic).
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

// DefaultRequestPartitions is the partition count of the requests topic
// when none is configured.
const DefaultRequestPartitions = 6

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

// adminConfig is the sarama configuration of setup's cluster admin: the
// system's (bounded timeouts), with time for the controller to create topics.
func adminConfig() *sarama.Config {
	c := kafka.Config("cloudservers-setup")
	c.Admin.Timeout = 30 * time.Second
	return c
}

// planTopics compares the topics the cluster has with cfg's and returns
// the steps that bring them in line and the differences setup does not
// fix on its own.
func planTopics(admin sarama.ClusterAdmin, cfg Config) (steps []Step, problems []Problem, unchanged []string, err error) {
	existing, err := admin.ListTopics()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("list topics: %w", err)
	}
	for _, t := range cfg.Topics {
		want := wantedConfig(t, cfg)
		target := "topic " + t.Name
		d, ok := existing[t.Name]
		if !ok {
			steps = append(steps, Step{Target: target,
				Action: fmt.Sprintf("create: %d partitions, replication factor %d, %s", t.Partitions, cfg.ReplicationFactor, describeConfig(want)),
				apply:  createTopic(admin, t, cfg.ReplicationFactor, want)})
			continue
		}
		changed := false
		switch {
		case d.NumPartitions < t.Partitions && cfg.GrowPartitions:
			steps = append(steps, Step{Target: target,
				Action: fmt.Sprintf("grow from %d to %d partitions", d.NumPartitions, t.Partitions),
				apply: func(context.Context) error {
					return admin.CreatePartitions(t.Name, t.Partitions, nil, false)
				}})
			changed = true
		case d.NumPartitions < t.Partitions:
			problems = append(problems, Problem{Target: target, Detail: fmt.Sprintf(
				"has %d partitions, the configuration says %d (run with -grow-partitions to grow it; a grown requests topic moves buckets to other partitions)",
				d.NumPartitions, t.Partitions)})
		case d.NumPartitions > t.Partitions:
			problems = append(problems, Problem{Target: target, Detail: fmt.Sprintf(
				"has %d partitions, the configuration says %d (partitions cannot be removed: set the configuration to %d)",
				d.NumPartitions, t.Partitions, d.NumPartitions)})
		}
		if d.ReplicationFactor != cfg.ReplicationFactor {
			problems = append(problems, Problem{Target: target, Detail: fmt.Sprintf(
				"has replication factor %d, the configuration says %d (setup does not reassign replicas: use kafka-reassign-partitions.sh)",
				d.ReplicationFactor, cfg.ReplicationFactor)})
		}
		alter := map[string]sarama.IncrementalAlterConfigsEntry{}
		var diffs []string
		for _, k := range slices.Sorted(maps.Keys(want)) {
			v := want[k]
			have := "(default)"
			if p := d.ConfigEntries[k]; p != nil {
				have = *p
			}
			if have != v {
				alter[k] = sarama.IncrementalAlterConfigsEntry{Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &v}
				diffs = append(diffs, fmt.Sprintf("%s %s → %s", k, have, v))
			}
		}
		if len(alter) > 0 {
			steps = append(steps, Step{Target: target, Action: "set " + strings.Join(diffs, ", "),
				apply: func(context.Context) error {
					return admin.IncrementalAlterConfig(sarama.TopicResource, t.Name, alter, false)
				}})
			changed = true
		}
		if !changed {
			unchanged = append(unchanged, target)
		}
	}
	return steps, problems, unchanged, nil
}

// wantedConfig is t's topic configs plus min.insync.replicas from cfg.
func wantedConfig(t TopicSpec, cfg Config) map[string]string {
	want := maps.Clone(t.Config)
	if want == nil {
		want = map[string]string{}
	}
	if cfg.MinInsyncReplicas > 0 {
		want["min.insync.replicas"] = strconv.Itoa(cfg.MinInsyncReplicas)
	}
	return want
}

func describeConfig(c map[string]string) string {
	if len(c) == 0 {
		return "broker defaults"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		parts = append(parts, k+"="+c[k])
	}
	return strings.Join(parts, " ")
}

func createTopic(admin sarama.ClusterAdmin, t TopicSpec, rf int16, cfg map[string]string) func(context.Context) error {
	return func(context.Context) error {
		entries := map[string]*string{}
		for k, v := range cfg {
			entries[k] = &v
		}
		err := admin.CreateTopic(t.Name, &sarama.TopicDetail{NumPartitions: t.Partitions, ReplicationFactor: rf, ConfigEntries: entries}, false)
		if errors.Is(err, sarama.ErrTopicAlreadyExists) { // created meanwhile by another setup
			return nil
		}
		return err
	}
}

// AwaitTopics waits until the cluster's metadata shows every topic with a
// leader for each partition. CreateTopics returns once the KRaft controller
// has committed the topics; the broker that answers metadata requests learns
// of them a moment later, and a producer, consumer or test that asks in
// between is told the topic does not exist.
func AwaitTopics(ctx context.Context, admin sarama.ClusterAdmin, topics []TopicSpec) error {
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
	sort.Strings(missing)
	return missing, nil
}
