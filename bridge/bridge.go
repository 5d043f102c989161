// Package bridge moves messages from Kafka into Temporal.
//
//   - The request consumer reads one partition of the requests topic in
//     order and hands each request to its server's lifecycle workflow
//     (signal-with-start), committing the offset only after Temporal accepted
//     it. The operation ID is the deduplication key: a message delivered
//     twice has no second effect.
//   - The notification router (a singleton) reads OpenStack's notification
//     topics, decodes every supported format, finds the server each one is
//     about from what the notification itself carries (the Nova instance's
//     display name cs-<server id> and its metadata) and signals that
//     server's lifecycle.
//
// Which process consumes which partition is decided elsewhere (ZooKeeper, or
// a Kafka consumer group); this package consumes what it is told to.
package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"go.temporal.io/sdk/client"
)

// Temporal is the part of the Temporal client the bridge uses.
type Temporal interface {
	SignalWithStartWorkflow(ctx context.Context, workflowID string, signalName string, signalArg any,
		options client.StartWorkflowOptions, workflow any, workflowArgs ...any) (client.WorkflowRun, error)
	SignalWorkflow(ctx context.Context, workflowID string, runID string, signalName string, arg any) error
}

// DeadLetters receives messages that cannot be processed.
type DeadLetters interface {
	Send(ctx context.Context, topic string, key, value []byte) error
}

// DeadLetter is the JSON record written to the dead-letter topic for a
// message that could not be decoded: where it came from, why, and the
// message itself, so nothing is lost.
type DeadLetter struct {
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Error     string    `json:"error"`
	Value     []byte    `json:"value"`
	At        time.Time `json:"at"`
}

// Stats counts what a consumer did; safe for concurrent use.
type Stats struct {
	Consumed    atomic.Int64
	Delivered   atomic.Int64 // handed to Temporal
	Duplicates  atomic.Int64
	Skipped     atomic.Int64 // not ours (notifications of other instances) or for ended workflows
	DeadLetters atomic.Int64
}

// Snapshot returns the counters as a map for status output.
func (s *Stats) Snapshot() map[string]int64 {
	return map[string]int64{
		"consumed": s.Consumed.Load(), "delivered": s.Delivered.Load(), "duplicates": s.Duplicates.Load(),
		"skipped": s.Skipped.Load(), "dead_letters": s.DeadLetters.Load(),
	}
}

// FreshStart says where a consumer group with no committed offset starts.
type FreshStart int

const (
	// FreshAtOldest reads everything the topic holds: the production
	// setting, so that no request is ever skipped.
	FreshAtOldest FreshStart = iota
	// FreshAtNewest skips what was there before: for tests that share
	// topics with other tests.
	FreshAtNewest
)

// handler processes one message. A nil error means the offset may be
// committed; an error is retried (with backoff) until ctx ends, because a
// request must never be skipped.
type handler func(ctx context.Context, msg *sarama.ConsumerMessage) error

// consumePartition consumes topic/partition from the group's committed
// offset until ctx ends, committing after each message is handled. It stops
// at a message boundary: the message in hand is finished and committed
// first.
//
// consumer is shared by all the partitions of one role (one fetch per
// broker carries them all) and should sit on a client of its own: Kafka
// answers a connection's requests in order, so a long-polling fetch would
// hold back everything else sent on the same connection. kc (another
// client) carries the offset commits.
//
// A group with no committed offset starts at the oldest message (nothing
// is lost), or at the newest when fresh is FreshAtNewest.
func consumePartition(ctx context.Context, consumer sarama.Consumer, kc sarama.Client, group, topic string, partition int32, meta string, fresh FreshStart, h handler, log *slog.Logger) error {
	om, err := sarama.NewOffsetManagerFromClient(group, kc)
	if err != nil {
		return fmt.Errorf("offset manager for %s: %w", group, err)
	}
	defer om.Close()
	pom, err := om.ManagePartition(topic, partition)
	if err != nil {
		return fmt.Errorf("manage offsets of %s/%d: %w", topic, partition, err)
	}
	defer pom.AsyncClose()
	next, _ := pom.NextOffset()
	if next < 0 {
		next = sarama.OffsetOldest
		if fresh == FreshAtNewest {
			next = sarama.OffsetNewest
		}
	}
	pc, err := consumer.ConsumePartition(topic, partition, next)
	if err != nil {
		return fmt.Errorf("consume %s/%d from %d: %w", topic, partition, next, err)
	}
	// Close (not AsyncClose) drains the channels, so the partition is free
	// for the next tenure when this returns.
	defer pc.Close()
	log = log.With("topic", topic, "partition", partition)
	log.Info("consuming", "from", next)
	for {
		select {
		case <-ctx.Done():
			om.Commit()
			return nil
		case cerr, ok := <-pc.Errors():
			if ok {
				log.Warn("consume error", "error", cerr)
			}
		case msg, ok := <-pc.Messages():
			if !ok {
				return fmt.Errorf("consumer of %s/%d closed", topic, partition)
			}
			if err := handleWithRetry(ctx, msg, h, log); err != nil {
				// Only ctx ending stops the retries: leave the offset
				// uncommitted so the next owner handles the message.
				om.Commit()
				return nil
			}
			pom.MarkOffset(msg.Offset+1, meta)
			om.Commit()
		}
	}
}

func handleWithRetry(ctx context.Context, msg *sarama.ConsumerMessage, h handler, log *slog.Logger) error {
	backoff := 200 * time.Millisecond
	for {
		err := h(ctx, msg)
		if err == nil {
			return nil
		}
		log.Warn("message not handled; retrying", "offset", msg.Offset, "error", err, "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func deadLetter(ctx context.Context, dl DeadLetters, msg *sarama.ConsumerMessage, cause error, now time.Time) error {
	v, err := json.Marshal(DeadLetter{Topic: msg.Topic, Partition: msg.Partition, Offset: msg.Offset, Error: cause.Error(), Value: msg.Value, At: now})
	if err != nil {
		return err
	}
	return dl.Send(ctx, "cloudservers.deadletter", nil, v)
}
