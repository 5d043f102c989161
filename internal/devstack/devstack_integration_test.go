//go:build integration

package devstack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/cloudservers/cloudservers"
)

// stderrLog shows the stack's progress in `go test -v` output.
type stderrLog struct{}

func (stderrLog) Write(p []byte) (int, error) { return os.Stderr.Write(p) }

// rssKB returns a process's resident set size in KiB.
func rssKB(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				n, _ := strconv.Atoi(f[1])
				return n
			}
		}
	}
	return 0
}

// TestStack starts a real stack on free ports in a fresh data folder,
// checks every component, stops it, checks that no process is left, then
// starts it again on the same folder (the data must still be there).
func TestStack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	cfg := Config{DataDir: t.TempDir(), RequestPartitions: 4, Log: stderrLog{}}

	// The first fetch and build (minutes) are not part of the start time.
	t0 := time.Now()
	if err := Ensure(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Logf("TIMING ensure: %.1fs", time.Since(t0).Seconds())

	t0 = time.Now()
	st, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cold := time.Since(t0)
	stopped := false
	defer func() {
		if !stopped {
			st.Stop()
		}
	}()
	e := st.Endpoints()
	t.Logf("TIMING cold start (format + create topics): %.1fs; endpoints %+v", cold.Seconds(), e)
	for name, pid := range e.Pids {
		t.Logf("RSS %s: %d MiB", name, rssKB(pid)/1024)
	}

	t.Run("zookeeper", func(t *testing.T) {
		if err := ZooKeeperRUOK(ctx, e.ZooKeeper); err != nil {
			t.Fatal(err)
		}
		out, err := ZooKeeperCommand(ctx, e.ZooKeeper, "srvr")
		if err != nil || !strings.Contains(out, "Mode: standalone") {
			t.Errorf("srvr: %q %v", out, err)
		}
	})

	payload := fmt.Sprintf(`{"operation_id":"op-%d"}`, time.Now().UnixNano())
	t.Run("kafka produce and consume", func(t *testing.T) {
		produceConsume(t, e.Kafka, payload, true)
	})

	t.Run("kafka topics", func(t *testing.T) {
		checkTopics(t, e.Kafka, 4)
	})

	t.Run("temporal", func(t *testing.T) {
		if err := TemporalReady(ctx, e.Temporal, e.TemporalNamespace); err != nil {
			t.Fatal(err)
		}
		c, err := client.DialContext(ctx, client.Options{HostPort: e.Temporal, Namespace: e.TemporalNamespace, Logger: quietLogger})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sa, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: e.TemporalNamespace})
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range SearchAttributes {
			if typ := sa.GetCustomAttributes()[name]; typ != enums.INDEXED_VALUE_TYPE_KEYWORD {
				t.Errorf("search attribute %s: %v, want Keyword", name, typ)
			}
		}
		resp, err := http.Get(e.TemporalUI)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("Temporal UI %s: %s", e.TemporalUI, resp.Status)
		}
	})

	t.Run("second stack on the same data folder is refused", func(t *testing.T) {
		_, err := Start(ctx, Config{DataDir: cfg.DataDir})
		if err == nil || !strings.Contains(err.Error(), "in use by another stack") {
			t.Errorf("err = %v", err)
		}
	})

	pids := st.Group().Pids()
	t0 = time.Now()
	st.Stop()
	stopped = true
	t.Logf("TIMING stop: %.1fs", time.Since(t0).Seconds())
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d is still running after Stop", pid)
		}
	}
	for _, addr := range []string{e.ZooKeeper, e.Kafka[0], e.Temporal} {
		if TCPReady(addr)(ctx) == nil {
			t.Errorf("%s still accepts connections after Stop", addr)
		}
	}

	// Warm start on the same folder: the same ports (remembered), the
	// message still there, nothing formatted again.
	t0 = time.Now()
	st2, err := Start(ctx, Config{DataDir: cfg.DataDir, RequestPartitions: 4, Log: stderrLog{}})
	if err != nil {
		t.Fatal(err)
	}
	warm := time.Since(t0)
	e2 := st2.Endpoints()
	t.Logf("TIMING warm start: %.1fs", warm.Seconds())
	for name, pid := range e2.Pids {
		t.Logf("RSS %s (warm): %d MiB", name, rssKB(pid)/1024)
	}
	if e2.Kafka[0] != e.Kafka[0] || e2.TemporalUI != e.TemporalUI {
		t.Errorf("ports changed between runs: %v %v -> %v %v", e.Kafka, e.TemporalUI, e2.Kafka, e2.TemporalUI)
	}
	produceConsume(t, e2.Kafka, payload, false)
	pids = st2.Group().Pids()
	t0 = time.Now()
	st2.Stop()
	t.Logf("TIMING stop (warm): %.1fs", time.Since(t0).Seconds())
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d is still running after Stop", pid)
		}
	}
}

// produceConsume finds payload on partition 0 of the requests topic,
// producing it first when produce is set.
func produceConsume(t *testing.T, brokers []string, payload string, produce bool) {
	t.Helper()
	c := saramaConfig()
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Idempotent = true
	c.Net.MaxOpenRequests = 1
	c.Producer.Return.Successes = true
	c.Producer.Partitioner = sarama.NewManualPartitioner
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	cl, err := sarama.NewClient(brokers, c)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if produce {
		p, err := sarama.NewSyncProducerFromClient(cl)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		part, off, err := p.SendMessage(&sarama.ProducerMessage{Topic: cloudservers.TopicRequests, Partition: 0,
			Key: sarama.StringEncoder("bucket-0"), Value: sarama.StringEncoder(payload)})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("produced to %s/%d at offset %d", cloudservers.TopicRequests, part, off)
	}
	cons, err := sarama.NewConsumerFromClient(cl)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	pc, err := cons.ConsumePartition(cloudservers.TopicRequests, 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case m := <-pc.Messages():
			if string(m.Value) == payload && string(m.Key) == "bucket-0" {
				return
			}
		case err := <-pc.Errors():
			t.Fatal(err)
		case <-timeout:
			t.Fatalf("message %s not consumed within 30s", payload)
		}
	}
}

func checkTopics(t *testing.T, brokers []string, requestPartitions int) {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(brokers, saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	topics, err := admin.ListTopics()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int32{
		cloudservers.TopicRequests:   int32(requestPartitions),
		cloudservers.TopicServers:    3,
		cloudservers.TopicOperations: 3,
		cloudservers.TopicDeadLetter: 1,
	}
	for _, n := range cloudservers.NotificationTopics {
		want[n] = NotificationPartitions
	}
	for _, n := range cloudservers.StateTopics {
		want[n] = 3
	}
	for name, parts := range want {
		d, ok := topics[name]
		if !ok {
			t.Errorf("topic %s missing", name)
			continue
		}
		if d.NumPartitions != parts {
			t.Errorf("topic %s: %d partitions, want %d", name, d.NumPartitions, parts)
		}
	}
	for _, name := range append([]string{cloudservers.TopicServers, cloudservers.TopicOperations, cloudservers.TopicRequests}, cloudservers.StateTopics...) {
		entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		policy := ""
		for _, en := range entries {
			if en.Name == "cleanup.policy" {
				policy = en.Value
			}
		}
		wantPolicy := "compact"
		switch name {
		case cloudservers.TopicRequests:
			wantPolicy = "delete"
		case cloudservers.TopicIdempotency:
			wantPolicy = "compact,delete"
		}
		if policy != wantPolicy {
			t.Errorf("topic %s: cleanup.policy=%q, want %q", name, policy, wantPolicy)
		}
	}
	// Topics are not created by accident (auto.create.topics.enable=false).
	c := saramaConfig()
	c.Producer.Return.Successes = true
	c.Producer.Retry.Max = 0
	c.Metadata.AllowAutoTopicCreation = true
	p, err := sarama.NewSyncProducer(brokers, c)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, _, err = p.SendMessage(&sarama.ProducerMessage{Topic: "no.such.topic", Value: sarama.StringEncoder("x")})
	if err == nil {
		t.Error("producing to an unknown topic created it: auto.create.topics.enable must be false")
	} else if !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		t.Logf("unknown topic: %v", err)
	}
	// Creating again is a no-op.
	if err := CreateTopics(context.Background(), brokers, Topics(requestPartitions), nil); err != nil {
		t.Errorf("CreateTopics again: %v", err)
	}
}
