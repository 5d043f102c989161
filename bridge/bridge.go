// Package bridge moves messages from Kafka into Temporal.
//
//   - The request consumer reads one partition of the requests topic in
//     order and hands each request to its server's lifecycle workflow
//     (signal-with-start), committing the offset only after Temporal accepted
//     it. The operation ID is the deduplication key: a message delivered
//     twice has no second effect.
//   - The notification router reads OpenStack's notification topics (one
//     partition per RoutePartition call, owned like a request partition), decodes every supported format, finds the server each one is
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
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"

	"github.com/cloudservers/cloudservers"
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
	Decoded     atomic.Int64 // notifications decoded (the rest was decided at a glance)
	Delivered   atomic.Int64 // handed to Temporal
	Duplicates  atomic.Int64
	Skipped     atomic.Int64 // not ours (notifications of other instances) or for ended workflows
	DeadLetters atomic.Int64
	// toSignal (RegisterStats) times the router's deliveries.
	toSignal prometheus.Histogram
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

// finishGrace bounds how long the message in hand may still take, handled
// and committed, after a tenure ended. Stopping in the middle of it could
// leave Temporal with a request whose offset is not committed, which the
// next owner would deliver a second time. It is short: after a lost
// ZooKeeper connection the run must return within the last third of the
// session timeout, before the session expires and the partner starts.
const finishGrace = time.Second

// consumePartition consumes topic/partition from the group's committed
// offset until ctx ends, committing after each message is handled. It stops
// at a message boundary: the message in hand is finished and committed
// first (within finishGrace).
//
// consumer is shared by all the partitions of one role (one fetch per
// broker carries them all) and should sit on a client of its own: Kafka
// answers a connection's requests in order, so a long-polling fetch would
// hold back everything else sent on the same connection. kc (another
// client) carries the offset commits, which are synchronous and checked
// (see offsets.go). meta (owner and fencing token) is written with every
// commit.
//
// A group with no committed offset starts at the oldest message (nothing
// is lost), or at the newest when fresh is FreshAtNewest.
//
// commitEvery 0 commits after each message, synchronously: the requests,
// whose next owner must start exactly after the last one handled. A
// positive commitEvery commits the last handled offset at most that often
// and when the tenure ends: the notifications, where a commit per message
// held the router to about a thousand messages a second instead of eight
// thousand (BenchmarkRouter) and a redelivery after a crash is harmless (a
// saga ignores a notification it already had).
func consumePartition(ctx context.Context, consumer sarama.Consumer, kc sarama.Client, group, topic string, partition int32, meta string, fresh FreshStart, commitEvery time.Duration, h handler, log *slog.Logger) error {
	log = log.With("topic", topic, "partition", partition)
	committed, err := retryOffsets(ctx, log, "read the committed offset", func() (map[int32]Committed, error) {
		return CommittedOffsets(kc, group, topic, []int32{partition})
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	next := committed[partition].Offset
	if next < 0 {
		next = sarama.OffsetOldest
		if fresh == FreshAtNewest {
			next = sarama.OffsetNewest
		}
	}
	pc, err := consumer.ConsumePartition(topic, partition, next)
	if errors.Is(err, sarama.ErrOffsetOutOfRange) {
		// The committed offset is older than the topic's retention: what
		// lay between is gone; go on from the oldest message kept.
		log.Error("committed offset is no longer in the topic; starting at the oldest message", "committed", next)
		next = sarama.OffsetOldest
		pc, err = consumer.ConsumePartition(topic, partition, next)
	}
	if err != nil {
		return fmt.Errorf("consume %s/%d from %d: %w", topic, partition, next, err)
	}
	// Close (not AsyncClose) drains the channels, so the partition is free
	// for the next tenure when this returns.
	defer pc.Close()
	// The message in hand when the tenure ends gets finishGrace to finish.
	mctx, cancelGrace := graceContext(ctx, finishGrace)
	defer cancelGrace()
	log.Info("consuming", "from", next, "committed_by", committed[partition].Metadata)
	commitNow := func(ctx context.Context, msg *sarama.ConsumerMessage) error {
		return commitOffset(kc, group, noGeneration, "", topic, partition, msg.Offset+1, meta)
	}
	commit := commitNow
	var tick <-chan time.Time
	var pending *sarama.ConsumerMessage // handled, not committed yet
	flush := func() error {
		if pending == nil {
			return nil
		}
		mctx, cancel := graceContext(ctx, finishGrace)
		defer cancel()
		_, err := retryOffsets(mctx, log, "commit", func() (struct{}, error) { return struct{}{}, commitNow(mctx, pending) })
		if err != nil {
			if errors.Is(err, ErrGroupHasMembers) {
				return err
			}
			log.Warn("offset not committed; the next owner delivers the messages after the last commit again", "offset", pending.Offset, "error", err)
			return nil
		}
		pending = nil
		return nil
	}
	if commitEvery > 0 {
		commit = func(_ context.Context, msg *sarama.ConsumerMessage) error { pending = msg; return nil }
		t := time.NewTicker(commitEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return flush()
		case <-tick:
			if err := flush(); err != nil {
				return err
			}
		case cerr, ok := <-pc.Errors():
			if ok {
				log.Warn("consume error", "error", cerr)
			}
		case msg, ok := <-pc.Messages():
			if !ok {
				return errors.Join(fmt.Errorf("consumer of %s/%d closed", topic, partition), flush())
			}
			if err := processIn(ctx, mctx, msg, h, commit, log); err != nil {
				return err
			}
			if ctx.Err() != nil {
				return flush()
			}
		}
	}
}

// process handles one message and commits its offset. The message is
// finished even if ctx ends meanwhile (within finishGrace). It returns an
// error only for a failure that retrying cannot fix; when ctx ended before
// the message was handled or committed it returns nil, and the next owner
// delivers the message again (harmless: the operation ID deduplicates).
func process(ctx context.Context, msg *sarama.ConsumerMessage, h handler, commit func(context.Context, *sarama.ConsumerMessage) error, log *slog.Logger) error {
	mctx, cancel := graceContext(ctx, finishGrace)
	defer cancel()
	return processIn(ctx, mctx, msg, h, commit, log)
}

// processIn is process with the grace context of the tenure (graceContext
// of ctx), made once for all its messages: one per message registered and
// removed a callback on the tenure's context, whose lock every partition
// of a process shares.
func processIn(ctx, mctx context.Context, msg *sarama.ConsumerMessage, h handler, commit func(context.Context, *sarama.ConsumerMessage) error, log *slog.Logger) error {
	if err := handleWithRetry(ctx, mctx, msg, h, log); err != nil {
		log.Warn("stopped before the message was handled; the next owner delivers it", "offset", msg.Offset, "error", err)
		return nil
	}
	_, err := retryOffsets(mctx, log, "commit", func() (struct{}, error) { return struct{}{}, commit(mctx, msg) })
	switch {
	case errors.Is(err, ErrGroupHasMembers):
		return err
	case err != nil:
		log.Warn("stopped before the offset was committed; the next owner delivers the message again", "offset", msg.Offset, "error", err)
	}
	return nil
}

// handleWithRetry calls h with hctx until it succeeds; failures are retried
// with backoff while ctx (the tenure) lives. hctx outlives ctx by a grace
// period so that the attempt in progress can finish.
func handleWithRetry(ctx, hctx context.Context, msg *sarama.ConsumerMessage, h handler, log *slog.Logger) error {
	backoff := 200 * time.Millisecond
	for {
		err := h(hctx, msg)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		log.Warn("message not handled; retrying", "offset", msg.Offset, "error", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// graceContext returns a context that ends grace after ctx ends (or when
// cancel is called), carrying ctx's values.
func graceContext(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(grace, cancel) })
	return gctx, func() { stop(); cancel() }
}

func deadLetter(ctx context.Context, dl DeadLetters, msg *sarama.ConsumerMessage, cause error, now time.Time) error {
	v, err := json.Marshal(DeadLetter{Topic: msg.Topic, Partition: msg.Partition, Offset: msg.Offset, Error: cause.Error(), Value: msg.Value, At: now})
	if err != nil {
		return err
	}
	return dl.Send(ctx, cloudservers.TopicDeadLetter, nil, v)
}
