package api

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/internal/kafka"
)

// fakeScan answers scans from a script, one answer a call (the last one
// repeats), and records the ranges asked.
type fakeScan struct {
	mu      sync.Mutex
	answers []kafka.Position
	asked   [][2]int64
}

func (f *fakeScan) scan(_ topicPartition, from, to int64) (kafka.Position, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, [2]int64{from, to})
	a := f.answers[0]
	if len(f.answers) > 1 {
		f.answers = f.answers[1:]
	}
	return a, nil
}

func (f *fakeScan) calls() [][2]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][2]int64{}, f.asked...)
}

var serversTP = topicPartition{cloudservers.TopicServers, 0}

func serverRecord(rm *ReadModel, offset int64, id string) {
	_ = rm.ApplyRecord(cloudservers.TopicServers, 0, offset, []byte(id), []byte(`{"id":"`+id+`","customer_id":"c"}`))
}

// A partition that ends with a transaction's commit marker: its consumer
// delivered the last record (offset 4), the end is 6 (the marker took 5).
func TestWaitForPastTransactionMarker(t *testing.T) {
	rm := NewReadModel()
	serverRecord(rm, 4, "s")
	targets := map[topicPartition]int64{serversTP: 6}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := rm.waitFor(ctx, nil, targets); err == nil {
		t.Fatal("without scanning, the records alone reached the end past a marker")
	}

	f := &fakeScan{answers: []kafka.Position{kafka.CaughtUp}}
	start := time.Now()
	if err := rm.waitFor(context.Background(), f.scan, targets); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("took %s", d)
	}
	if c := f.calls(); len(c) != 1 || c[0] != [2]int64{5, 6} {
		t.Errorf("scans %v, want one of [5,6)", c)
	}
	// The partition counts as read up to its end now.
	if err := rm.waitFor(context.Background(), nil, targets); err != nil {
		t.Fatal(err)
	}
}

// A committed record is still to come: wait for it, then scan again from
// after it.
func TestWaitForRecordThenMarker(t *testing.T) {
	rm := NewReadModel()
	serverRecord(rm, 1, "a")
	f := &fakeScan{answers: []kafka.Position{kafka.Behind, kafka.CaughtUp}}
	go func() {
		time.Sleep(scanQuiet + 30*time.Millisecond) // after the first scan
		serverRecord(rm, 3, "b")                    // 2 was a marker, 4 is one
	}()
	if err := rm.waitFor(context.Background(), f.scan, map[topicPartition]int64{serversTP: 5}); err != nil {
		t.Fatal(err)
	}
	if _, ok := rm.Server("b"); !ok {
		t.Fatal("returned before the record came")
	}
	// Not scanned again while the record was on its way.
	if c := f.calls(); len(c) != 2 || c[0] != [2]int64{2, 5} || c[1] != [2]int64{4, 5} {
		t.Errorf("scans %v", c)
	}
}

// A range that belongs to an open transaction is scanned again, later.
func TestWaitForOpenTransaction(t *testing.T) {
	rm := NewReadModel()
	serverRecord(rm, 0, "a")
	f := &fakeScan{answers: []kafka.Position{kafka.Undecided, kafka.Undecided, kafka.CaughtUp}}
	start := time.Now()
	if err := rm.waitFor(context.Background(), f.scan, map[topicPartition]int64{serversTP: 3}); err != nil {
		t.Fatal(err)
	}
	if n := len(f.calls()); n != 3 {
		t.Errorf("%d scans", n)
	}
	if d := time.Since(start); d < scanRetry+2*scanRetry {
		t.Errorf("scanned again without waiting: %s", d)
	}
	// Undecided until the deadline: the wait fails, naming the partition.
	f = &fakeScan{answers: []kafka.Position{kafka.Undecided}}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := rm.waitFor(ctx, f.scan, map[topicPartition]int64{serversTP: 9})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "read up to 3 of 9") {
		t.Errorf("error %v", err)
	}
	if n := len(f.calls()); n < 3 || n > 10 {
		t.Errorf("%d scans in 300 ms", n)
	}
}

// configOnly is a Kafka client of which only the configuration is read.
type configOnly struct {
	sarama.Client
	c *sarama.Config
}

func (k configOnly) Config() *sarama.Config { return k.c }

// The read model refuses a client that would read aborted records.
func TestReadModelNeedsReadCommitted(t *testing.T) {
	c := kafka.Config("t")
	c.Consumer.IsolationLevel = sarama.ReadUncommitted
	err := NewReadModel().Run(context.Background(), configOnly{c: c}, nil)
	if err == nil || !strings.Contains(err.Error(), "committed") {
		t.Errorf("error %v", err)
	}
}
