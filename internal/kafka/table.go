package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// Table materializes topics (compacted ones, as a rule) into whatever its
// Apply callback keeps: it reads every partition from the oldest offset
// until its context ends, and Sync waits until it has read everything
// written before the call. It is the read side the reaper and the
// notification router keep of the state topics.
type Table struct {
	// Client answers metadata, offsets and scans; Consumer (on a client of
	// its own: Kafka answers one connection's requests in order, and a
	// scan must not wait behind long-polling fetches) reads the records.
	Client   sarama.Client
	Consumer sarama.Consumer
	Topics   []string
	// Apply is called for each record, in offset order within a
	// partition, from one goroutine per partition: it must be safe for
	// concurrent use across partitions. A tombstone has a nil Value.
	Apply func(msg *sarama.ConsumerMessage)
	Log   *slog.Logger

	mu      sync.Mutex
	changed *sync.Cond
	next    map[topicPartition]int64
}

type topicPartition struct {
	topic     string
	partition int32
}

func (t *Table) init() {
	if t.changed == nil {
		t.changed = sync.NewCond(&t.mu)
		t.next = map[topicPartition]int64{}
	}
}

// Run reads every partition of the topics until ctx ends. It returns an
// error only when it cannot start (a topic missing, a partition that cannot
// be consumed); read errors later are logged and the consumer carries on.
func (t *Table) Run(ctx context.Context) error {
	t.mu.Lock()
	t.init()
	t.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() {
		t.mu.Lock()
		t.changed.Broadcast()
		t.mu.Unlock()
	})
	defer stop()
	for _, topic := range t.Topics {
		parts, err := t.Client.Partitions(topic)
		if err != nil {
			return fmt.Errorf("partitions of %s: %w", topic, err)
		}
		for _, p := range parts {
			pc, err := t.Consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
			if err != nil {
				return fmt.Errorf("consume %s/%d: %w", topic, p, err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer pc.Close()
				t.consume(ctx, pc)
			}()
		}
	}
	<-ctx.Done()
	return nil
}

func (t *Table) consume(ctx context.Context, pc sarama.PartitionConsumer) {
	for {
		select {
		case <-ctx.Done():
			return
		case err, ok := <-pc.Errors():
			if ok && t.Log != nil {
				t.Log.Warn("table read error", "topic", err.Topic, "partition", err.Partition, "error", err.Err)
			}
		case msg, ok := <-pc.Messages():
			if !ok {
				return
			}
			t.Apply(msg)
			t.mu.Lock()
			t.next[topicPartition{msg.Topic, msg.Partition}] = msg.Offset + 1
			t.changed.Broadcast()
			t.mu.Unlock()
		}
	}
}

// Sync waits until every partition has been read up to its end as of now,
// so that whatever was written before the call has been applied. The end
// may be offsets a read_committed consumer never delivers (transaction
// markers, records of aborted transactions): when a partition makes no
// progress for a moment, Scan tells those apart from a record still on its
// way (or a transaction still open, which is waited for).
func (t *Table) Sync(ctx context.Context) error {
	ends := map[topicPartition]int64{}
	for _, topic := range t.Topics {
		parts, err := t.Client.Partitions(topic)
		if err != nil {
			return fmt.Errorf("partitions of %s: %w", topic, err)
		}
		for _, p := range parts {
			end, err := t.Client.GetOffset(topic, p, sarama.OffsetNewest)
			if err != nil {
				return fmt.Errorf("end of %s/%d: %w", topic, p, err)
			}
			ends[topicPartition{topic, p}] = end
		}
	}
	quiet := 20 * time.Millisecond
	t.mu.Lock()
	t.init()
	t.mu.Unlock()
	for {
		t.mu.Lock()
		behind := map[topicPartition]int64{} // next offset to read
		for tp, end := range ends {
			if t.next[tp] < end {
				behind[tp] = t.next[tp]
			}
		}
		if len(behind) == 0 {
			t.mu.Unlock()
			return nil
		}
		if err := ctx.Err(); err != nil {
			t.mu.Unlock()
			return fmt.Errorf("%w: %s", err, describeBehind(behind, ends))
		}
		// Wait for a record, or for a quiet moment.
		wctx, cancel := context.WithTimeout(ctx, quiet)
		stop := context.AfterFunc(wctx, func() {
			t.mu.Lock()
			t.changed.Broadcast()
			t.mu.Unlock()
		})
		t.changed.Wait()
		progressed := false
		for tp, was := range behind {
			progressed = progressed || t.next[tp] != was
		}
		t.mu.Unlock()
		stop()
		cancel()
		if progressed {
			quiet = 20 * time.Millisecond
			continue
		}
		for tp, from := range behind {
			pos, err := Scan(t.Client, tp.topic, tp.partition, from, ends[tp])
			if err != nil || pos != CaughtUp {
				continue // a record on its way, or an open transaction: wait
			}
			t.mu.Lock()
			if t.next[tp] == from {
				t.next[tp] = ends[tp]
			}
			t.mu.Unlock()
		}
		quiet = min(2*quiet, 500*time.Millisecond)
	}
}

func describeBehind(behind, ends map[topicPartition]int64) string {
	var parts []string
	for tp, next := range behind {
		parts = append(parts, fmt.Sprintf("%s/%d read up to %d of %d", tp.topic, tp.partition, next, ends[tp]))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}
