//go:build integration

package main

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/IBM/sarama"
	"github.com/google/uuid"

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
	st, _ := collectStatus(ctx, coord, kc, topic, group)
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
