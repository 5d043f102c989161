package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
)

// Offsets are committed and read with explicit, synchronous requests to the
// group coordinator rather than through sarama's OffsetManager: a commit
// must be known to have succeeded before a partition is handed on (the next
// owner starts from it), and its failure must be seen, not queued on an
// error channel nobody reads.

// noGeneration and noMember make a "simple" commit: the ZooKeeper mode's,
// for a group with no members. The consumer-group mode passes its member ID
// and generation, which the coordinator checks (a stale generation is
// refused: the broker's own fence).
const noGeneration = sarama.GroupGenerationUndefined

// ErrGroupHasMembers is wrapped by commitOffset's error when a simple commit
// is refused because the group has active members: some bridge runs in
// consumer-group mode while this one runs in ZooKeeper mode.
var ErrGroupHasMembers = errors.New("the consumer group has active members (is another bridge running with -assignment-mode consumer-group?)")

// Committed is a committed offset with its metadata ("owner=<id> fence=<n>").
type Committed struct {
	Offset   int64  `json:"offset"` // -1: nothing committed
	Metadata string `json:"metadata,omitempty"`
}

// CommittedOffsets reads the group's committed offsets of the partitions of
// topic. A partition with nothing committed has Offset -1.
func CommittedOffsets(kc sarama.Client, group, topic string, partitions []int32) (map[int32]Committed, error) {
	b, err := kc.Coordinator(group)
	if err != nil {
		return nil, fmt.Errorf("coordinator of group %s: %w", group, err)
	}
	req := sarama.NewOffsetFetchRequest(kc.Config().Version, group, map[string][]int32{topic: partitions})
	// A read_committed consumer must not start below an offset committed
	// by a transaction whose marker is not written yet.
	req.RequireStable = kc.Config().Consumer.IsolationLevel == sarama.ReadCommitted && req.Version >= 7
	resp, err := b.FetchOffset(req)
	if err != nil {
		_ = kc.RefreshCoordinator(group)
		return nil, fmt.Errorf("fetch offsets of group %s: %w", group, err)
	}
	out := make(map[int32]Committed, len(partitions))
	for _, p := range partitions {
		blk := resp.GetBlock(topic, p)
		if blk == nil {
			kerr := resp.Err
			if resp.Version >= 8 && len(resp.Groups) > 0 {
				kerr = resp.Groups[0].Err
			}
			if kerr == sarama.ErrNoError {
				return nil, fmt.Errorf("fetch offset of %s/%d in group %s: %w", topic, p, group, sarama.ErrIncompleteResponse)
			}
			return nil, coordinatorError(kc, group, fmt.Errorf("fetch offset of %s/%d in group %s: %w", topic, p, group, kerr), kerr)
		}
		if blk.Err != sarama.ErrNoError {
			return nil, coordinatorError(kc, group, fmt.Errorf("fetch offset of %s/%d in group %s: %w", topic, p, group, blk.Err), blk.Err)
		}
		out[p] = Committed{Offset: blk.Offset, Metadata: blk.Metadata}
	}
	return out, nil
}

// commitOffset commits offset (the next message to read) with its metadata,
// synchronously. generation and member are noGeneration and "" for a simple
// commit.
func commitOffset(kc sarama.Client, group string, generation int32, member, topic string, partition int32, offset int64, meta string) error {
	b, err := kc.Coordinator(group)
	if err != nil {
		return fmt.Errorf("coordinator of group %s: %w", group, err)
	}
	req := sarama.NewOffsetCommitRequest(kc.Config(), group)
	req.ConsumerGroupGeneration = generation
	req.ConsumerID = member
	req.AddBlockWithLeaderEpoch(topic, partition, offset, -1, 0, meta)
	resp, err := b.CommitOffset(req)
	if err != nil {
		_ = kc.RefreshCoordinator(group)
		return fmt.Errorf("commit %s/%d@%d for group %s: %w", topic, partition, offset, group, err)
	}
	kerr, ok := resp.Errors[topic][partition]
	if !ok {
		return fmt.Errorf("commit %s/%d@%d for group %s: %w", topic, partition, offset, group, sarama.ErrIncompleteResponse)
	}
	if kerr == sarama.ErrNoError {
		return nil
	}
	err = fmt.Errorf("commit %s/%d@%d for group %s: %w", topic, partition, offset, group, kerr)
	if member == "" && (kerr == sarama.ErrUnknownMemberId || kerr == sarama.ErrIllegalGeneration) {
		return fmt.Errorf("%w: %w", err, ErrGroupHasMembers)
	}
	return coordinatorError(kc, group, err, kerr)
}

// coordinatorError refreshes the coordinator when the error says it moved.
func coordinatorError(kc sarama.Client, group string, err error, kerr sarama.KError) error {
	switch kerr {
	case sarama.ErrNotCoordinatorForConsumer, sarama.ErrConsumerCoordinatorNotAvailable:
		_ = kc.RefreshCoordinator(group)
	}
	return err
}

// retryOffsets calls f until it succeeds, backing off, while ctx lives.
func retryOffsets[T any](ctx context.Context, log *slog.Logger, what string, f func() (T, error)) (T, error) {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		v, err := f()
		if err == nil {
			return v, nil
		}
		if errors.Is(err, ErrGroupHasMembers) {
			return v, err
		}
		if attempt == 1 || attempt%10 == 0 {
			log.Warn(what+" failed; retrying", "error", err, "attempt", attempt, "in", backoff)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}
