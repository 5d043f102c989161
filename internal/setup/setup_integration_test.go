//go:build integration

package setup_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/go-zookeeper/zk"
	"github.com/google/uuid"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/internal/devstack"
	"github.com/cloudservers/cloudservers/internal/kafka"
	"github.com/cloudservers/cloudservers/internal/setup"
	"github.com/cloudservers/cloudservers/internal/zkcoord"
)

// ownTopics are topics of this test's own, named with prefix, deleted at
// the end.
func ownTopics(t *testing.T, brokers []string, prefix string, partitions int32) []setup.TopicSpec {
	t.Helper()
	specs := []setup.TopicSpec{
		{Name: prefix + ".requests", Partitions: partitions, Config: map[string]string{"cleanup.policy": "delete", "retention.ms": "604800000"}},
		{Name: prefix + ".apikeys", Partitions: 3, Config: map[string]string{"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}},
	}
	t.Cleanup(func() {
		admin, err := sarama.NewClusterAdmin(brokers, kafka.Config("setup-test-cleanup"))
		if err != nil {
			return
		}
		defer admin.Close()
		for _, s := range specs {
			_ = admin.DeleteTopic(s.Name)
		}
	})
	return specs
}

func describe(t *testing.T, admin sarama.ClusterAdmin, name string) sarama.TopicDetail {
	t.Helper()
	all, err := admin.ListTopics()
	if err != nil {
		t.Fatal(err)
	}
	d, ok := all[name]
	if !ok {
		t.Fatalf("topic %s does not exist", name)
	}
	return d
}

func zkConn(t *testing.T, servers string) *zk.Conn {
	t.Helper()
	conn, _, err := zk.Connect(strings.Split(servers, ","), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	return conn
}

// TestSetupCreatesThenChangesNothing: a dry run changes nothing; the first
// run creates every topic (partitions, min.insync.replicas, configs), the
// namespace with its search attributes, the chroot and an admin key; a
// second run finds nothing to do; a config changed behind its back is set
// back.
func TestSetupCreatesThenChangesNothing(t *testing.T) {
	ep := devstack.TestEndpoints(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := uuid.NewString()[:8]
	topics := ownTopics(t, ep.Kafka, "setup-"+run, 4)
	chroot := "/setup-" + run + "/cloudservers"
	cfg := setup.Config{
		Kafka: ep.Kafka, Topics: topics, ReplicationFactor: 1, MinInsyncReplicas: 1,
		Temporal: ep.Temporal, Namespace: "setup-" + run,
		ZooKeeper:     ep.ZooKeeper + chroot,
		BucketMap:     setup.BucketMap(ep.ZooKeeper+chroot, 4),
		AdminCustomer: "operator-" + run, APIKeysTopic: topics[1].Name,
	}
	admin, err := sarama.NewClusterAdmin(ep.Kafka, kafka.Config("setup-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	conn := zkConn(t, ep.ZooKeeper)
	tc, err := setup.DialTemporal(ctx, ep.Temporal, "default")
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()

	// Dry run: the whole plan, nothing done.
	dry := cfg
	dry.DryRun = true
	r, err := setup.Run(ctx, dry)
	if err != nil {
		t.Fatal(err)
	}
	// 2 topics, namespace + search attributes, chroot, bucket map, admin key.
	if len(r.Planned) != 7 || len(r.Applied) != 0 || len(r.Problems) != 0 {
		t.Fatalf("dry run: planned %v applied %v problems %v", r.Planned, r.Applied, r.Problems)
	}
	all, err := admin.ListTopics()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range topics {
		if _, ok := all[s.Name]; ok {
			t.Errorf("dry run created topic %s", s.Name)
		}
	}
	if ok, _, _ := conn.Exists("/setup-" + run); ok {
		t.Error("dry run created the chroot")
	}
	if _, err := tc.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: cfg.Namespace}); err == nil {
		t.Error("dry run created the namespace")
	}

	// First run: everything made.
	var log strings.Builder
	first := cfg
	first.Log = &log
	r, err = setup.Run(ctx, first)
	if err != nil {
		t.Fatalf("first run: %v\n%s", err, log.String())
	}
	t.Logf("first run:\n%s", log.String())
	if len(r.Applied) != 7 || len(r.Problems) != 0 {
		t.Fatalf("first run: applied %v problems %v", r.Applied, r.Problems)
	}
	data, _, err := conn.Get(zkcoord.BucketMapPath(chroot))
	if err != nil {
		t.Fatalf("bucket map: %v", err)
	}
	m, err := zkcoord.DecodeBucketMap(chroot, data, cloudservers.Buckets)
	if err != nil || m.Version != 1 || m.Partitions != 4 || m.Partition(5) != 1 {
		t.Errorf("bucket map: %+v, %v; want version 1 over 4 partitions, bucket 5 on partition 1", m, err)
	}
	if !strings.HasPrefix(r.AdminKey, "cs_") || r.AdminCustomer != cfg.AdminCustomer {
		t.Errorf("first run: admin key %q for %q", r.AdminKey, r.AdminCustomer)
	}
	for _, s := range topics {
		d := describe(t, admin, s.Name)
		if d.NumPartitions != s.Partitions || d.ReplicationFactor != 1 {
			t.Errorf("%s: %d partitions RF %d, want %d RF 1", s.Name, d.NumPartitions, d.ReplicationFactor, s.Partitions)
		}
		for k, v := range s.Config {
			if got := d.ConfigEntries[k]; got == nil || *got != v {
				t.Errorf("%s: %s = %v, want %s", s.Name, k, got, v)
			}
		}
		if got := d.ConfigEntries["min.insync.replicas"]; got == nil || *got != "1" {
			t.Errorf("%s: min.insync.replicas = %v, want 1", s.Name, got)
		}
	}
	if ok, _, err := conn.Exists(chroot); err != nil || !ok {
		t.Errorf("chroot %s: exists %v, %v", chroot, ok, err)
	}
	if err := setup.TemporalReady(ctx, ep.Temporal, cfg.Namespace); err != nil {
		t.Errorf("namespace: %v", err)
	}

	// Second run: nothing to do, no second admin key.
	r, err = setup.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Planned) != 0 || len(r.Problems) != 0 || r.AdminKey != "" {
		t.Fatalf("second run: planned %v problems %v admin key %q", r.Planned, r.Problems, r.AdminKey)
	}
	if len(r.Unchanged) != 6 {
		t.Errorf("second run: unchanged %v, want the 2 topics, the namespace, the chroot, the bucket map and the admin key", r.Unchanged)
	}

	// A corrupted map is reported, never overwritten.
	if _, err := conn.Set(zkcoord.BucketMapPath(chroot), []byte("{not json"), -1); err != nil {
		t.Fatal(err)
	}
	if r, err = setup.Run(ctx, cfg); r == nil || len(r.Problems) != 1 || !strings.Contains(r.Problems[0].Target, "bucket map") {
		t.Errorf("corrupted map: problems %v, err %v; want the bucket map reported", r.Problems, err)
	}
	if got, _, _ := conn.Get(zkcoord.BucketMapPath(chroot)); string(got) != "{not json" {
		t.Errorf("setup overwrote a corrupted map: %q", got)
	}
	if _, err := conn.Set(zkcoord.BucketMapPath(chroot), data, -1); err != nil {
		t.Fatal(err)
	}

	// A config changed by hand is planned back.
	v := "3600000"
	if err := admin.IncrementalAlterConfig(sarama.TopicResource, topics[0].Name, map[string]sarama.IncrementalAlterConfigsEntry{
		"retention.ms": {Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &v}}, false); err != nil {
		t.Fatal(err)
	}
	r, err = setup.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Applied) != 1 || !strings.Contains(r.Applied[0].Action, "retention.ms 3600000 → 604800000") {
		t.Fatalf("after a config change: applied %v", r.Applied)
	}
	if got := describe(t, admin, topics[0].Name).ConfigEntries["retention.ms"]; got == nil || *got != "604800000" {
		t.Errorf("retention.ms = %v after setup, want 604800000", got)
	}
}

// TestSetupReportsMismatch: a topic with fewer partitions, more
// partitions or another replication factor than configured is reported
// and nothing at all is changed (not even a missing topic created) unless
// told to; -grow-partitions grows it.
func TestSetupReportsMismatch(t *testing.T) {
	ep := devstack.TestEndpoints(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := uuid.NewString()[:8]
	topics := ownTopics(t, ep.Kafka, "setup-mismatch-"+run, 2)
	admin, err := sarama.NewClusterAdmin(ep.Kafka, kafka.Config("setup-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	// Only the requests topic exists, with 2 partitions.
	if _, err := setup.Run(ctx, setup.Config{Kafka: ep.Kafka, Topics: topics[:1], ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}

	want := append([]setup.TopicSpec{}, topics...)
	want[0].Partitions = 4
	cfg := setup.Config{Kafka: ep.Kafka, Topics: want, ReplicationFactor: 1}
	var log strings.Builder
	cfg.Log = &log
	r, err := setup.Run(ctx, cfg)
	if !errors.Is(err, setup.ErrMismatch) {
		t.Fatalf("err = %v, want ErrMismatch\n%s", err, log.String())
	}
	t.Logf("mismatch run:\n%s", log.String())
	if len(r.Problems) != 1 || !strings.Contains(r.Problems[0].Detail, "has 2 partitions, the configuration says 4") {
		t.Fatalf("problems %v", r.Problems)
	}
	if !strings.Contains(log.String(), "differs   topic "+want[0].Name+": has 2 partitions") {
		t.Errorf("the log does not report the difference:\n%s", log.String())
	}
	if len(r.Applied) != 0 {
		t.Fatalf("applied %v despite the mismatch", r.Applied)
	}
	all, err := admin.ListTopics()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := all[want[1].Name]; ok {
		t.Errorf("topic %s was created despite the mismatch", want[1].Name)
	}
	if n := all[want[0].Name].NumPartitions; n != 2 {
		t.Errorf("%s has %d partitions, want 2 (unchanged)", want[0].Name, n)
	}

	// Another replication factor, and more partitions than configured:
	// reported, never changed, also with GrowPartitions.
	other := cfg
	other.Topics = []setup.TopicSpec{topics[0]}
	other.Topics[0].Partitions = 1
	other.ReplicationFactor = 2
	other.GrowPartitions = true
	other.Log = nil
	r, err = setup.Run(ctx, other)
	if !errors.Is(err, setup.ErrMismatch) || len(r.Problems) != 2 ||
		!strings.Contains(r.Problems[0].Detail, "has 2 partitions, the configuration says 1 (partitions cannot be removed") ||
		!strings.Contains(r.Problems[1].Detail, "has replication factor 1, the configuration says 2") {
		t.Fatalf("err %v, problems %v", err, r.Problems)
	}

	// Told to: grown, and the missing topic created.
	cfg.GrowPartitions = true
	cfg.Log = nil
	r, err = setup.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Applied) != 2 {
		t.Fatalf("applied %v, want the growth and the creation", r.Applied)
	}
	if n := describe(t, admin, want[0].Name).NumPartitions; n != 4 {
		t.Errorf("%s has %d partitions after -grow-partitions, want 4", want[0].Name, n)
	}
	describe(t, admin, want[1].Name)
}
