//go:build integration

package devstack

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/cloudservers/cloudservers"
)

// TestHATopology starts the HA topology (what `stack -topology ha` runs)
// and checks its shape, then kills a broker and the ZooKeeper leader with
// SIGKILL. It costs about a minute and, the first time, the Temporal
// server's build, so it runs only with CLOUDSERVERS_HA=1 (make test-ha).
func TestHATopology(t *testing.T) {
	if os.Getenv("CLOUDSERVERS_HA") != "1" {
		t.Skip("set CLOUDSERVERS_HA=1 (make test-ha) to start the HA topology")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	// PostgreSQL runs as the postgres user when we are root: it must be
	// able to enter the folder, and t.TempDir's parent is 0700.
	dir, err := os.MkdirTemp("", "cloudservers-ha-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	st, err := StartHA(ctx, Config{DataDir: dir, Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Stop()
	t.Logf("HA topology ready in %s", time.Since(t0).Round(100*time.Millisecond))
	e := st.Endpoints()
	if len(e.Kafka) != 3 || len(e.ZooKeeperServers) != 3 || e.Topology != TopologyHA {
		t.Fatalf("endpoints: %d brokers, %d ZooKeeper servers, topology %q", len(e.Kafka), len(e.ZooKeeperServers), e.Topology)
	}

	// Kafka: 3 brokers in the metadata; every topic RF 3, min ISR 2.
	admin, err := sarama.NewClusterAdmin(e.Kafka, saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	brokers, _, err := admin.DescribeCluster()
	if err != nil {
		t.Fatal(err)
	}
	if len(brokers) != 3 {
		t.Fatalf("%d brokers in the cluster metadata, want 3", len(brokers))
	}
	var names []string
	for _, ts := range Topics(e.RequestPartitions) {
		names = append(names, ts.Name)
	}
	metas, err := admin.DescribeTopics(names)
	if err != nil {
		t.Fatal(err)
	}
	if len(metas) != len(names) {
		t.Fatalf("%d topics described, want %d", len(metas), len(names))
	}
	for _, m := range metas {
		if m.Err != sarama.ErrNoError || len(m.Partitions) == 0 {
			t.Fatalf("topic %s: %v, %d partitions", m.Name, m.Err, len(m.Partitions))
		}
		for _, p := range m.Partitions {
			if len(p.Replicas) != 3 {
				t.Errorf("%s/%d has %d replicas, want 3", m.Name, p.ID, len(p.Replicas))
			}
		}
	}
	if err := CheckTopicGuarantees(admin, Topics(e.RequestPartitions)); err != nil {
		t.Error(err)
	}

	// ZooKeeper: three serving, exactly one leader.
	leader := zkLeader(t, ctx, e, 3)

	// Temporal: the server (not the dev server) with more than one shard.
	tc, err := client.DialContext(ctx, client.Options{HostPort: e.Temporal, Namespace: e.TemporalNamespace, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	info, err := tc.WorkflowService().GetClusterInfo(ctx, &workflowservice.GetClusterInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetHistoryShardCount() <= 1 {
		t.Errorf("%d history shards, want more than 1", info.GetHistoryShardCount())
	}
	t.Logf("temporal server %s, %d history shards, persistence %s", info.GetServerVersion(), info.GetHistoryShardCount(), info.GetPersistenceStore())
	if _, err := tc.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: e.TemporalNamespace}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(e.TemporalUI + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("Temporal UI answered %s, want 200", resp.Status)
	}

	// kill -9 one broker: a produce with acks=all (idempotent, as the
	// project's producers) still succeeds on the two left (min ISR 2).
	if err := st.Group().Kill("kafka-2"); err != nil {
		t.Fatal(err)
	}
	pc := sarama.NewConfig()
	pc.Version = sarama.V3_6_0_0
	pc.Producer.RequiredAcks = sarama.WaitForAll
	pc.Producer.Idempotent = true
	pc.Net.MaxOpenRequests = 1
	pc.Producer.Retry.Max = 20
	pc.Producer.Retry.Backoff = 500 * time.Millisecond
	pc.Producer.Return.Successes = true
	pc.Producer.Partitioner = sarama.NewManualPartitioner
	alive := []string{e.Kafka[0], e.Kafka[2]}
	prod, err := sarama.NewSyncProducer(alive, pc)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	tk := time.Now()
	for i := range e.RequestPartitions { // one per requests partition, whoever leads it
		_, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: cloudservers.TopicRequests, Partition: int32(i),
			Key: sarama.StringEncoder("ha-test-" + strconv.Itoa(i)), Value: sarama.StringEncoder("after kill -9 of kafka-2")})
		if err != nil {
			t.Fatalf("produce %d with acks=all after a broker was killed: %v", i, err)
		}
	}
	t.Logf("acks=all produces succeeded %s after kill -9 of kafka-2", time.Since(tk).Round(time.Millisecond))

	// kill -9 the ZooKeeper leader: the two left elect another.
	if err := st.Group().Kill(leader); err != nil {
		t.Fatal(err)
	}
	tz := time.Now()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var newLeader string
		for i, addr := range e.ZooKeeperServers {
			name := "zookeeper-" + strconv.Itoa(i+1)
			if name == leader {
				continue
			}
			cctx, c := context.WithTimeout(ctx, 2*time.Second)
			mode, err := ZooKeeperMode(cctx, addr)
			c()
			if err == nil && mode == "leader" {
				newLeader = name
			}
		}
		if newLeader != "" {
			t.Logf("ZooKeeper leader %s killed; %s elected in %s", leader, newLeader, time.Since(tz).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new ZooKeeper leader within 60 s after killing %s", leader)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("whole test %s", time.Since(t0).Round(100*time.Millisecond))
}

// zkLeader waits until want servers are serving with exactly one leader,
// and returns the leader's process name.
func zkLeader(t *testing.T, ctx context.Context, e Endpoints, want int) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var leaders []string
		serving := 0
		for i, addr := range e.ZooKeeperServers {
			cctx, c := context.WithTimeout(ctx, 2*time.Second)
			mode, err := ZooKeeperMode(cctx, addr)
			c()
			if err == nil {
				serving++
				if mode == "leader" {
					leaders = append(leaders, "zookeeper-"+strconv.Itoa(i+1))
				}
			}
		}
		if serving == want && len(leaders) == 1 {
			return leaders[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("ZooKeeper: %d serving, leaders %v; want %d serving and one leader", serving, leaders, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// testWriter sends the stack's progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
