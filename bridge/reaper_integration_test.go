//go:build integration

package bridge

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/google/uuid"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/internal/devstack"
	"github.com/cloudservers/cloudservers/internal/kafka"
)

// TestServerViewSyncsPastTransactionMarkers: the API writes the servers
// topic in transactions, so a partition often ends with a commit marker, or
// with the records of an aborted transaction, which a read_committed
// consumer never delivers. The reaper's view must still see itself caught
// up (it used to wait for those offsets until its context ended), know the
// committed server, and not know the aborted one.
func TestServerViewSyncsPastTransactionMarkers(t *testing.T) {
	ends := devstack.TestEndpoints(t)
	ctx := context.Background()
	log := logTo(io.Discard)
	run := uuid.NewString()[:8]
	pool, err := kafka.ConnectTxnPool(ctx, ends.Kafka, "itest-reaper-"+run, "itest-reaper-"+run, 1, log)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	record := func(id string) []kafka.Record {
		return []kafka.Record{{Topic: cloudservers.TopicServers, Partition: kafka.ByKey, Key: []byte(id),
			Value: encode(t, cloudservers.Server{ID: id, Status: cloudservers.StatusQueued})}}
	}
	committed, aborted := uuid.NewString(), uuid.NewString()
	if err := pool.Transact(ctx, record(committed)); err != nil {
		t.Fatal(err)
	}
	refused := errors.New("refused by the test")
	pool.BeforeCommit(func([]kafka.Record) error { return refused })
	if err := pool.Transact(ctx, record(aborted)); !errors.Is(err, refused) {
		t.Fatalf("the aborted transaction: %v", err)
	}

	kc, err := kafka.Connect(ctx, ends.Kafka, "itest-reaper-"+run, log)
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	ckc, err := kafka.Connect(ctx, ends.Kafka, "itest-reaper-consumer-"+run, log)
	if err != nil {
		t.Fatal(err)
	}
	defer ckc.Close()
	consumer, err := sarama.NewConsumerFromClient(ckc)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	v := newServerView()
	table := &kafka.Table{Client: kc, Consumer: consumer, Topics: []string{cloudservers.TopicServers},
		Apply: func(msg *sarama.ConsumerMessage) { v.apply(msg, log) }, Log: log}
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- table.Run(cctx) }()
	defer func() { stop(); <-done }()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	began := time.Now()
	if err := table.Sync(sctx); err != nil {
		t.Fatalf("sync: %v", err)
	}
	t.Logf("synced in %s", time.Since(began).Round(time.Millisecond))
	if live := v.live([]string{committed, aborted}); len(live) != 1 || live[0] != committed {
		t.Fatalf("live %v: want only the committed server %s", live, committed)
	}
}
