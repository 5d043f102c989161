//go:build integration

package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/google/uuid"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/bridge"
	"github.com/cloudservers/cloudservers/internal/devstack"
	"github.com/cloudservers/cloudservers/internal/itest"
	"github.com/cloudservers/cloudservers/internal/kafka"
	"github.com/cloudservers/cloudservers/internal/zkcoord"
)

// TestStatusLagSkipsTransactionMarkers: the API writes each request in a
// transaction, whose commit marker takes the offset after the request. A
// bridge that has handled the request has committed the offset of the
// marker, not the end: the status must show that partition's lag as 0,
// not 1 forever.
func TestStatusLagSkipsTransactionMarkers(t *testing.T) {
	ends := devstack.TestEndpoints(t)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	run := uuid.NewString()[:8]
	topic, group := "status-"+run+".requests", "status-bridge-"+run
	itest.OwnTopics(t, ends.Kafka, devstack.TopicSpec{Name: topic, Partitions: 2})
	pool, err := kafka.ConnectTxnPool(ctx, ends.Kafka, "status-"+run, "status-"+run, 1, log)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := pool.Transact(ctx, []kafka.Record{{Topic: topic, Partition: 0, Value: []byte(`{"operation_id":"op"}`)}}); err != nil {
		t.Fatal(err)
	}
	kc, err := kafka.Connect(ctx, ends.Kafka, "status-"+run, log)
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	// The bridge handled the request at offset 0 and committed 1.
	om, err := sarama.NewOffsetManagerFromClient(group, kc)
	if err != nil {
		t.Fatal(err)
	}
	pom, err := om.ManagePartition(topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	pom.MarkOffset(1, "owner=test")
	om.Commit()
	pom.AsyncClose() // Close waits for errors nobody sends
	om.Close()

	coord, err := zkcoord.Connect(ctx, zkcoord.Config{Servers: []string{ends.ZooKeeper}, Chroot: "/status-" + run, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer coord.Close()
	st, _ := collectStatus(ctx, coord, kc, topic, group, nil, bridge.RouterGroup)
	var found bool
	for _, p := range st.Partitions {
		if p.Partition != 0 {
			continue
		}
		found = true
		if p.Committed != 1 || p.End != 2 || p.Lag != 0 {
			t.Errorf("partition 0: committed %d, end %d, lag %d; want 1, 2 (the marker) and 0", p.Committed, p.End, p.Lag)
		}
	}
	if !found {
		t.Fatalf("no partition 0 in %+v", st)
	}
}

// TestStatusRoutes: the status shows who routes each notification
// partition (the ZooKeeper owner of the route, its primary and partners,
// the fence), with the router group's committed offset (and its
// owner/fence metadata), the end and the lag.
func TestStatusRoutes(t *testing.T) {
	ends := devstack.TestEndpoints(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	run := uuid.NewString()[:8]
	topic, group := "status-"+run+".versioned_notifications.info", "status-router-"+run
	itest.OwnTopics(t, ends.Kafka, devstack.TopicSpec{Name: topic, Partitions: 2})
	p, err := sarama.NewSyncProducer(ends.Kafka, kafka.ProducerConfig("status-"+run))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, part := range []int32{0, 0, 0, 1} {
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: part, Value: sarama.StringEncoder("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	kc, err := kafka.Connect(ctx, ends.Kafka, "status-"+run, log)
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	chroot := "/status-" + run
	owner, err := zkcoord.Connect(ctx, zkcoord.Config{Servers: []string{ends.ZooKeeper}, Chroot: chroot, ProcessID: "bridge-a", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	leases := make(chan zkcoord.Lease, 2)
	done := make(chan error, 1)
	go func() {
		done <- owner.OwnResourcePartitions(ctx, zkcoord.Routes(topic), zkcoord.Assignment{0: {"bridge-a", "bridge-b"}, 1: {"bridge-b", "bridge-a"}},
			func(ctx context.Context, l zkcoord.Lease) error { leases <- l; <-ctx.Done(); return nil })
	}()
	defer func() { cancel(); <-done }()
	var l0 zkcoord.Lease
	for range 2 { // bridge-b is down: bridge-a routes both, partition 1 as partner
		select {
		case l := <-leases:
			if l.Partition == 0 {
				l0 = l
			}
		case <-time.After(15 * time.Second):
			t.Fatal("bridge-a did not take both routes")
		}
	}
	// The router handled offsets 0 and 1 of partition 0.
	om, err := sarama.NewOffsetManagerFromClient(group, kc)
	if err != nil {
		t.Fatal(err)
	}
	pom, err := om.ManagePartition(topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	pom.MarkOffset(2, "owner=bridge-a fence=7")
	om.Commit()
	pom.AsyncClose()
	om.Close()

	reader, err := zkcoord.Connect(ctx, zkcoord.Config{Servers: []string{ends.ZooKeeper}, Chroot: chroot, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	st, err := collectStatus(ctx, reader, kc, cloudservers.TopicRequests, "status-bridge-"+run, []string{topic}, group)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Routes) != 2 {
		t.Fatalf("routes = %+v, want the topic's 2 partitions", st.Routes)
	}
	r0, r1 := st.Routes[0], st.Routes[1]
	if r0.Topic != topic || r0.Partition != 0 || r0.Owner != "bridge-a" || r0.Fence != l0.Fence || strings.Join(r0.Candidates, ",") != "bridge-a,bridge-b" ||
		r0.Committed != 2 || r0.CommitMetadata != "owner=bridge-a fence=7" || r0.End != 3 || r0.Lag != 1 {
		t.Errorf("route 0 = %+v, want bridge-a (fence %d), committed 2 of 3, lag 1", r0, l0.Fence)
	}
	if r1.Partition != 1 || r1.Owner != "bridge-a" || r1.Committed != -1 || r1.End != 1 || r1.Lag != 1 || !strings.Contains(r1.Note, "partner owns it") {
		t.Errorf("route 1 = %+v, want bridge-a as partner, nothing committed, lag 1", r1)
	}
	var text strings.Builder
	if err := st.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), topic+"/1") || !strings.Contains(text.String(), "bridge-b(down)") {
		t.Errorf("text status lacks the routes:\n%s", text.String())
	}
	t.Logf("status:\n%s", text.String())
}
