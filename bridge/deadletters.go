package bridge

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/IBM/sarama"

	"github.com/cloudservers/cloudservers"
)

// ReplayGroup is the Kafka group whose committed offsets on the dead-letter
// topic say which dead letters were replayed already.
const ReplayGroup = "cloudservers-deadletter-replay"

// PartitionProducer writes a record to an explicit partition
// (kafka.Producer made by NewPartitionProducer).
type PartitionProducer interface {
	SendToPartition(ctx context.Context, topic string, partition int32, key, value []byte) error
}

// Replay re-sends dead letters to the topic and partition they came from,
// after the fault that sent them there was fixed (a decoder that learnt a
// new notification format, a request producer that was corrected). It
// reads every partition of the dead-letter topic from the replay group's
// committed offset up to the end it had when the replay began, and commits
// after each record it re-sent or passed over, so a second replay re-sends
// nothing twice; a record that is still malformed is dead-lettered again,
// after that end, and waits for the next replay. Re-sending a record twice
// (a replay stopped between a send and its commit) is harmless: a request
// carries its operation ID, which its lifecycle deduplicates, and a
// notification's signal has a request ID of its own, which Temporal
// deduplicates.
type Replay struct {
	Kafka    sarama.Client
	Consumer sarama.Consumer
	Producer PartitionProducer
	// Topic is the dead-letter topic (default cloudservers.deadletter);
	// Group commits the progress (default ReplayGroup, and with Only
	// ReplayGroup-<Only>: each source topic's replays keep their own
	// progress).
	Topic, Group string
	// Only, when set, replays only the dead letters of this source topic
	// (the others are passed over: a replay of theirs has its own group).
	Only string
	// DryRun lists what would be replayed, and sends and commits nothing.
	DryRun bool
	Log    *slog.Logger
}

// Replayed is one dead letter the replay re-sent (or, in a dry run, would
// re-send).
type Replayed struct {
	DeadLetter
	DeadLetterPartition int32 `json:"deadletter_partition"`
	DeadLetterOffset    int64 `json:"deadletter_offset"`
}

// Run replays, calling found for each dead letter it re-sent, and returns
// how many it re-sent and how many it passed over (of other source topics,
// or not dead letters).
func (r *Replay) Run(ctx context.Context, found func(Replayed)) (replayed, passed int, err error) {
	topic, group := cmp.Or(r.Topic, cloudservers.TopicDeadLetter), cmp.Or(r.Group, ReplayGroup)
	if r.Only != "" && r.Group == "" {
		group += "-" + r.Only
	}
	parts, err := r.Kafka.Partitions(topic)
	if err != nil {
		return 0, 0, fmt.Errorf("partitions of %s: %w", topic, err)
	}
	// The group's coordinator may still be loading or moving: retried,
	// as the consumers do.
	committed, err := retryOffsets(ctx, r.Log, "read the replay's committed offsets", func() (map[int32]Committed, error) {
		return CommittedOffsets(r.Kafka, group, topic, parts)
	})
	if err != nil {
		return 0, 0, err
	}
	for _, p := range parts {
		end, err := r.Kafka.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return replayed, passed, fmt.Errorf("end of %s/%d: %w", topic, p, err)
		}
		from := committed[p].Offset
		if from < 0 {
			if from, err = r.Kafka.GetOffset(topic, p, sarama.OffsetOldest); err != nil {
				return replayed, passed, fmt.Errorf("start of %s/%d: %w", topic, p, err)
			}
		}
		if from >= end {
			continue
		}
		n, m, err := r.partition(ctx, topic, group, p, from, end, found)
		replayed, passed = replayed+n, passed+m
		if err != nil {
			return replayed, passed, err
		}
	}
	return replayed, passed, nil
}

func (r *Replay) partition(ctx context.Context, topic, group string, p int32, from, end int64, found func(Replayed)) (replayed, passed int, err error) {
	pc, err := r.Consumer.ConsumePartition(topic, p, from)
	if err != nil {
		return 0, 0, fmt.Errorf("consume %s/%d from %d: %w", topic, p, from, err)
	}
	defer pc.Close()
	for {
		var msg *sarama.ConsumerMessage
		select {
		case <-ctx.Done():
			return replayed, passed, ctx.Err()
		case cerr := <-pc.Errors():
			return replayed, passed, fmt.Errorf("read %s/%d: %w", topic, p, cerr)
		case msg = <-pc.Messages():
		}
		var dl DeadLetter
		if err := json.Unmarshal(msg.Value, &dl); err != nil || dl.Topic == "" {
			r.Log.Warn("not a dead letter; passed over", "topic", topic, "partition", p, "offset", msg.Offset)
			passed++
		} else if r.Only != "" && dl.Topic != r.Only {
			passed++
		} else {
			if !r.DryRun {
				if err := r.Producer.SendToPartition(ctx, dl.Topic, dl.Partition, nil, dl.Value); err != nil {
					return replayed, passed, fmt.Errorf("re-send %s/%d@%d (dead letter %s/%d@%d): %w", dl.Topic, dl.Partition, dl.Offset, topic, p, msg.Offset, err)
				}
			}
			replayed++
			if found != nil {
				found(Replayed{DeadLetter: dl, DeadLetterPartition: p, DeadLetterOffset: msg.Offset})
			}
		}
		if !r.DryRun {
			if _, err := retryOffsets(ctx, r.Log, "commit the replay's progress", func() (struct{}, error) {
				return struct{}{}, commitOffset(r.Kafka, group, noGeneration, "", topic, p, msg.Offset+1, "replay")
			}); err != nil {
				return replayed, passed, err
			}
		}
		if msg.Offset+1 >= end {
			return replayed, passed, nil
		}
	}
}
