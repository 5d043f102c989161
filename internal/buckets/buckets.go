// Package buckets changes the bucket map of a running system: it adds
// partitions to the requests topic and moves customers' buckets between
// partitions without reordering, losing or duplicating one customer's
// operations. The protocol (docs/scale-out.md):
//
//  1. take the move lock (one command at a time);
//  2. freeze the bucket: write the map with the move recorded; every API
//     replica stops publishing the bucket's mutations (they wait briefly,
//     then answer 503 with Retry-After);
//  3. wait until every live API replica has acknowledged that version: no
//     mutation of the bucket routed by an older map is still in flight;
//  4. wait until the bridges have committed the source partition past its
//     end as it was after 3: every request of the bucket has reached its
//     lifecycle;
//  5. flip: write the map with the bucket on its new partition and the move
//     cleared (a ZooKeeper version check); the replicas publish the
//     bucket's next mutations there.
//
// A command that dies leaves the move recorded in the map (the bucket
// stays frozen) and the lock to expire with its session; the next move or
// rebalance completes it from step 3 (every step is repeatable), and one
// that cannot complete it (a replica does not acknowledge, the source
// partition is not drained in time) rolls it back: the bucket stays where
// it was, unfrozen.
package buckets

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/bridge"
	"github.com/cloudservers/cloudservers/internal/zkcoord"
)

// Mover changes the bucket map.
type Mover struct {
	Coord *zkcoord.Coordinator
	Kafka sarama.Client
	// Admin grows the requests topic (AddPartitions only).
	Admin sarama.ClusterAdmin
	// Topic is the requests topic (default cloudservers.TopicRequests),
	// Group the bridges' offsets group (default bridge.RequestGroup).
	Topic, Group string
	// LockWait is how long to wait for another command's move lock
	// (one that died holds it until its session expires).
	LockWait time.Duration
	// AckTimeout bounds the wait for the API replicas' acknowledgements,
	// DrainTimeout the wait for the bridges' commits; either rolls the
	// move back. Defaults 30 s and 2 min.
	AckTimeout, DrainTimeout time.Duration
	// Out receives one line per step.
	Out io.Writer
	// By names this command in the map and the lock.
	By string
}

func (mv *Mover) topic() string { return cmp.Or(mv.Topic, cloudservers.TopicRequests) }
func (mv *Mover) group() string { return cmp.Or(mv.Group, bridge.RequestGroup) }
func (mv *Mover) by() string {
	if mv.By != "" {
		return mv.By
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/pid %d", host, os.Getpid())
}

func (mv *Mover) printf(format string, args ...any) {
	if mv.Out != nil {
		fmt.Fprintf(mv.Out, format+"\n", args...)
	}
}

// ErrRefused marks a request that cannot be carried out as asked: a
// partition that does not exist, shrinking the topic, a destination nobody
// owns.
var ErrRefused = errors.New("refused")

func refusef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// begin takes the move lock and reads the map (a corrupted one is an
// error: nothing is changed by guesswork).
func (mv *Mover) begin(ctx context.Context) (zkcoord.BucketMap, func(), error) {
	unlock, err := mv.Coord.LockMoves(ctx, mv.by(), mv.LockWait)
	if err != nil {
		return zkcoord.BucketMap{}, nil, err
	}
	m, err := mv.Coord.ReadBucketMap(cloudservers.Buckets)
	if err != nil {
		unlock()
		return m, nil, err
	}
	return m, unlock, nil
}

// Move moves buckets to partition to, one at a time (each is frozen only
// for its own move). A move left unfinished by an earlier command is
// completed first.
func (mv *Mover) Move(ctx context.Context, buckets []int, to int32) error {
	m, unlock, err := mv.begin(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if to < 0 || to >= m.Partitions {
		return refusef("partition %d does not exist: the bucket map has %d partitions (0..%d); add partitions first (admin partitions add)", to, m.Partitions, m.Partitions-1)
	}
	for _, b := range buckets {
		if b < 0 || b >= cloudservers.Buckets {
			return refusef("bucket %d does not exist (buckets are 0..%d)", b, cloudservers.Buckets-1)
		}
	}
	if err := mv.checkOwned(ctx, to); err != nil {
		return err
	}
	if m, err = mv.finishPending(ctx, m); err != nil {
		return err
	}
	for _, b := range buckets {
		if m.Buckets[b] == to {
			mv.printf("bucket %d is already on partition %d", b, to)
			continue
		}
		if m, err = mv.moveOne(ctx, m, b, to); err != nil {
			return err
		}
	}
	return nil
}

// Plan is the rebalance of m: the fewest moves that leave every partition
// with 256/partitions buckets (give or take one), each bucket moved from
// the partition with the most buckets to the one with the fewest, highest
// bucket numbers first.
func Plan(m zkcoord.BucketMap) [][2]int {
	counts := make([]int, m.Partitions)
	byPart := make([][]int, m.Partitions)
	for b, p := range m.Buckets {
		counts[p]++
		byPart[p] = append(byPart[p], b)
	}
	var moves [][2]int
	for {
		hi, lo := 0, 0
		for p := range counts {
			if counts[p] > counts[hi] {
				hi = p
			}
			if counts[p] < counts[lo] {
				lo = p
			}
		}
		if counts[hi]-counts[lo] <= 1 {
			return moves
		}
		b := byPart[hi][len(byPart[hi])-1]
		byPart[hi] = byPart[hi][:len(byPart[hi])-1]
		counts[hi]--
		counts[lo]++
		moves = append(moves, [2]int{b, lo})
	}
}

// Rebalance completes any unfinished move, then carries out Plan, one
// bucket at a time.
func (mv *Mover) Rebalance(ctx context.Context) error {
	m, unlock, err := mv.begin(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if m, err = mv.finishPending(ctx, m); err != nil {
		return err
	}
	plan := Plan(m)
	if len(plan) == 0 {
		mv.printf("balanced: nothing to move (%d partitions)", m.Partitions)
		return nil
	}
	checked := map[int32]bool{}
	for _, step := range plan {
		if to := int32(step[1]); !checked[to] {
			if err := mv.checkOwned(ctx, to); err != nil {
				return err
			}
			checked[to] = true
		}
	}
	mv.printf("rebalancing: %d buckets to move", len(plan))
	for _, step := range plan {
		if m, err = mv.moveOne(ctx, m, step[0], int32(step[1])); err != nil {
			return err
		}
	}
	return nil
}

// checkOwned refuses a destination partition that no bridge owns: its
// customers' requests would wait there.
func (mv *Mover) checkOwned(ctx context.Context, p int32) error {
	st, err := mv.Coord.Status(ctx)
	if err != nil {
		return fmt.Errorf("read the partitions' owners: %w", err)
	}
	for _, ps := range st.Partitions {
		if ps.Partition == p && ps.Owner != nil {
			return nil
		}
	}
	return refusef("partition %d has no owner: start a bridge for it first (bridge -assignment \"...;%d=<primary>,<partner>\")", p, p)
}

// finishPending completes the move an earlier command left in the map.
func (mv *Mover) finishPending(ctx context.Context, m zkcoord.BucketMap) (zkcoord.BucketMap, error) {
	if m.Move == nil {
		return m, nil
	}
	mv.printf("completing the move of buckets %s to partition %d left unfinished by %s (frozen since %s)",
		ints(m.Move.Buckets), m.Move.To, m.Move.By, m.Move.Since.Format(time.RFC3339))
	return mv.run(ctx, m, *m.Move)
}

func (mv *Mover) moveOne(ctx context.Context, m zkcoord.BucketMap, b int, to int32) (zkcoord.BucketMap, error) {
	move := zkcoord.BucketMove{Buckets: []int{b}, From: []int32{m.Buckets[b]}, To: to, Since: time.Now().UTC(), By: mv.by()}
	next := m
	next.Move = &move
	m, err := mv.Coord.WriteBucketMap(m, next)
	if err != nil {
		return m, err
	}
	mv.printf("froze bucket %d (partition %d → %d), map version %d", b, move.From[0], to, m.Version)
	return mv.run(ctx, m, move)
}

// run carries out steps 3 to 5 of a move whose freeze is m (its version
// in force).
func (mv *Mover) run(ctx context.Context, m zkcoord.BucketMap, move zkcoord.BucketMove) (zkcoord.BucketMap, error) {
	if err := mv.awaitAcks(ctx, m.Version); err != nil {
		return mv.rollback(m, err)
	}
	if err := mv.awaitDrained(ctx, move.From); err != nil {
		return mv.rollback(m, err)
	}
	next := m
	next.Buckets = slices.Clone(m.Buckets)
	for _, b := range move.Buckets {
		next.Buckets[b] = move.To
	}
	next.Move = nil
	m, err := mv.Coord.WriteBucketMap(m, next)
	if err != nil {
		return m, fmt.Errorf("flip buckets %s to partition %d: %w", ints(move.Buckets), move.To, err)
	}
	frozen := time.Since(move.Since)
	mv.printf("moved bucket %s from partition %s to %d, map version %d, frozen %d ms",
		ints(move.Buckets), ints(move.From), move.To, m.Version, frozen.Milliseconds())
	return m, nil
}

// rollback unfreezes a move that cannot complete: the buckets stay on
// their partitions.
func (mv *Mover) rollback(m zkcoord.BucketMap, cause error) (zkcoord.BucketMap, error) {
	next := m
	next.Move = nil
	if _, err := mv.Coord.WriteBucketMap(m, next); err != nil {
		return m, fmt.Errorf("%w; rolling back failed too (the next move or rebalance completes or rolls it back): %v", cause, err)
	}
	mv.printf("rolled back the move of buckets %s: they stay on partitions %s", ints(m.Move.Buckets), ints(m.Move.From))
	return m, fmt.Errorf("move rolled back: %w", cause)
}

const pollEvery = 20 * time.Millisecond

// awaitAcks waits until every live API replica has version in force.
func (mv *Mover) awaitAcks(ctx context.Context, version int64) error {
	deadline := time.Now().Add(cmp.Or(mv.AckTimeout, 30*time.Second))
	for {
		acks, err := mv.Coord.BucketMapAcks()
		var behind []string
		if err != nil {
			behind = []string{"(" + err.Error() + ")"} // retried until the deadline
		}
		for _, a := range acks {
			if a.Version < version {
				behind = append(behind, fmt.Sprintf("%s (at version %d)", a.Replica, a.Version))
			}
		}
		if len(behind) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("API replicas %s did not put bucket map version %d in force in time", strings.Join(behind, ", "), version)
		}
		if err := sleep(ctx, pollEvery); err != nil {
			return err
		}
	}
}

// awaitDrained waits until the bridges have committed each partition past
// its end offset as it is now.
func (mv *Mover) awaitDrained(ctx context.Context, parts []int32) error {
	parts = slices.Compact(slices.Sorted(slices.Values(parts)))
	ends := map[int32]int64{}
	for _, p := range parts {
		end, err := mv.Kafka.GetOffset(mv.topic(), p, sarama.OffsetNewest)
		if err != nil {
			return fmt.Errorf("end of %s/%d: %w", mv.topic(), p, err)
		}
		ends[p] = end
	}
	deadline := time.Now().Add(cmp.Or(mv.DrainTimeout, 2*time.Minute))
	for {
		// A lookup that fails (the group's coordinator moving, a fresh
		// group) is retried until the deadline, and reported with it.
		committed, err := bridge.CommittedOffsets(mv.Kafka, mv.group(), mv.topic(), parts)
		var behind []string
		for _, p := range parts {
			if err != nil {
				behind = []string{err.Error()}
				break
			}
			c := committed[p].Offset
			if ends[p] > 0 && c < ends[p] {
				behind = append(behind, fmt.Sprintf("partition %d committed %d of %d", p, c, ends[p]))
			}
		}
		if len(behind) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the bridges did not deliver the requests already queued in time (%s): is the partition's owner running?", strings.Join(behind, "; "))
		}
		if err := sleep(ctx, pollEvery); err != nil {
			return err
		}
	}
}

// AddPartitions grows the requests topic by n partitions and the bucket
// map's partition count with it (no bucket moves: the new partitions get
// traffic once buckets are moved to them). candidates, when given, records
// each new partition's bridges (primary first): they take it up without a
// restart. A command that died between growing the topic and writing the
// map is completed by the next one (the map follows the topic).
func (mv *Mover) AddPartitions(ctx context.Context, n int, candidates zkcoord.Assignment) error {
	if n < 1 {
		return refusef("add %d partitions: a Kafka topic's partitions can only be added (at least 1), never removed", n)
	}
	m, unlock, err := mv.begin(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := mv.Kafka.RefreshMetadata(mv.topic()); err != nil {
		return fmt.Errorf("metadata of %s: %w", mv.topic(), err)
	}
	parts, err := mv.Kafka.Partitions(mv.topic())
	if err != nil {
		return fmt.Errorf("partitions of %s: %w", mv.topic(), err)
	}
	have := int32(len(parts))
	if have < m.Partitions {
		return fmt.Errorf("the bucket map says %d partitions but topic %s has %d: repair the map or the topic first", m.Partitions, mv.topic(), have)
	}
	want := m.Partitions + int32(n)
	for p := range candidates {
		if p < m.Partitions || p >= want {
			return refusef("-assignment names partition %d: only the new partitions %d..%d take an assignment here", p, m.Partitions, want-1)
		}
	}
	if have < want {
		if err := mv.Admin.CreatePartitions(mv.topic(), want, nil, false); err != nil {
			return fmt.Errorf("grow %s from %d to %d partitions: %w", mv.topic(), have, want, err)
		}
		mv.printf("topic %s grown from %d to %d partitions", mv.topic(), have, want)
	} else if have > want {
		want = have // an earlier command grew it further
	}
	for _, p := range candidates.Partitions() {
		if err := mv.Coord.RecordCandidates(p, candidates[p]); err != nil {
			return err
		}
		mv.printf("partition %d: bridges %s (primary first)", p, strings.Join(candidates[p], ", "))
	}
	next := m
	next.Partitions = want
	if m, err = mv.Coord.WriteBucketMap(m, next); err != nil {
		return err
	}
	mv.printf("bucket map version %d: %d partitions; no bucket moved yet (admin buckets rebalance, or move)", m.Version, m.Partitions)
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func ints[T int | int32](v []T) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ",")
}
