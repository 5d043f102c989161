//go:build integration

package buckets_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/google/uuid"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/api"
	"github.com/cloudservers/cloudservers/internal/buckets"
	"github.com/cloudservers/cloudservers/internal/devstack"
	"github.com/cloudservers/cloudservers/internal/itest"
	"github.com/cloudservers/cloudservers/internal/kafka"
	"github.com/cloudservers/cloudservers/internal/zkcoord"
)

// TestMoveRefusalsRollbackAndCorruption runs the move protocol's refusals
// and failure paths against the real ZooKeeper and Kafka: a partition that
// does not exist, shrinking, a destination nobody owns, a move while
// another command holds the lock, an API replica that never puts the
// freeze in force and a partition whose requests are not delivered (both
// rolled back, the bucket where it was), a successful move, and a
// corrupted map (reported; the replicas refuse mutations with 503).
func TestMoveRefusalsRollbackAndCorruption(t *testing.T) {
	ends := devstack.TestEndpoints(t)
	ctx := context.Background()
	run := uuid.NewString()[:8]
	chroot, topic, group := "/buckets-"+run, "buckets-"+run+".requests", "buckets-"+run
	log := slog.New(slog.DiscardHandler)
	itest.OwnTopics(t, ends.Kafka, devstack.TopicSpec{Name: topic, Partitions: 2})
	connect := ends.ZooKeeper + chroot

	m, created, err := zkcoord.EnsureMap(ctx, connect, 2, log)
	if err != nil || !created || m.Version != 1 || m.Partitions != 2 || m.Buckets[3] != 1 {
		t.Fatalf("EnsureMap on a new system: %+v created %v, %v", m, created, err)
	}
	if again, created, err := zkcoord.EnsureMap(ctx, connect, 5, log); err != nil || created || again.Partitions != 2 {
		t.Fatalf("EnsureMap again: %+v created %v, %v; want the existing map kept", again, created, err)
	}

	coord := connectCoord(t, ends.ZooKeeper, chroot, "")
	kc, err := kafka.Connect(ctx, ends.Kafka, "buckets-"+run, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kc.Close() })
	var out bytes.Buffer
	mv := &buckets.Mover{Coord: coord, Kafka: kc, Topic: topic, Group: group, AckTimeout: time.Second, DrainTimeout: 2 * time.Second, Out: &out}

	wantRefused := func(t *testing.T, err error, want string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v, want one naming %q", err, want)
		}
	}
	t.Run("partition that does not exist", func(t *testing.T) {
		err := mv.Move(ctx, []int{3}, 5)
		if !errors.Is(err, buckets.ErrRefused) {
			t.Fatalf("%v: want ErrRefused", err)
		}
		wantRefused(t, err, "partition 5 does not exist: the bucket map has 2 partitions (0..1)")
	})
	t.Run("shrinking", func(t *testing.T) {
		wantRefused(t, mv.AddPartitions(ctx, -1, nil), "never removed")
	})
	t.Run("destination nobody owns", func(t *testing.T) {
		wantRefused(t, mv.Move(ctx, []int{3}, 0), "partition 0 has no owner")
	})

	// An owner for partition 0, as a bridge would be.
	owner := connectCoord(t, ends.ZooKeeper, chroot, "bridge-x")
	octx, stopOwner := context.WithCancel(ctx)
	ownerDone := make(chan struct{})
	go func() {
		defer close(ownerDone)
		_ = owner.OwnPartition(octx, 0, []string{"bridge-x"}, func(ctx context.Context, _ zkcoord.Lease) error { <-ctx.Done(); return nil })
	}()
	t.Cleanup(func() { stopOwner(); <-ownerDone })
	itest.Eventually(t, 30*time.Second, "partition 0 owned", func() error {
		st, err := coord.Status(ctx)
		if err != nil {
			return err
		}
		for _, p := range st.Partitions {
			if p.Partition == 0 && p.Owner != nil {
				return nil
			}
		}
		return errors.New("not yet")
	})

	t.Run("another move in progress", func(t *testing.T) {
		other := connectCoord(t, ends.ZooKeeper, chroot, "")
		unlock, err := other.LockMoves(ctx, "operator-2/pid 42", 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
		err = mv.Move(ctx, []int{3}, 0)
		if !errors.Is(err, zkcoord.ErrMoveLocked) {
			t.Fatalf("%v: want ErrMoveLocked", err)
		}
		wantRefused(t, err, "operator-2/pid 42")
	})

	t.Run("a replica that never puts the freeze in force", func(t *testing.T) {
		stuck := connectCoord(t, ends.ZooKeeper, chroot, "")
		sctx, cancel := context.WithCancel(ctx)
		release := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = stuck.WatchBucketMap(sctx, cloudservers.Buckets, "api-stuck", func(m zkcoord.BucketMap, err error) {
				if err == nil && m.Move != nil {
					<-release // a write routed by the older map that never ends
				}
			})
		}()
		defer func() { close(release); cancel(); <-done }()
		itest.Eventually(t, 10*time.Second, "the replica acknowledged the map", func() error {
			acks, err := coord.BucketMapAcks()
			if err != nil || len(acks) != 1 || acks[0].Version < 1 {
				return errors.New("not yet")
			}
			return nil
		})
		err := mv.Move(ctx, []int{3}, 0)
		wantRefused(t, err, "api-stuck (at version")
		wantRefused(t, err, "move rolled back")
		m, err := coord.ReadBucketMap(cloudservers.Buckets)
		if err != nil || m.Move != nil || m.Buckets[3] != 1 {
			t.Fatalf("after the rollback: %+v %v; want bucket 3 unfrozen on partition 1", m, err)
		}
	})

	t.Run("requests not delivered, then delivered", func(t *testing.T) {
		p, err := kafka.NewPartitionProducer(ends.Kafka, "buckets-"+run)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		// The group exists and its coordinator has loaded (a fresh group's
		// first lookups fail for a moment; the move retries them), at the
		// partitions' ends.
		itest.CommitEnds(t, kc, group, "test", []string{topic})
		if err := p.SendToPartition(ctx, topic, 1, []byte("3"), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		err = mv.Move(ctx, []int{3}, 0)
		wantRefused(t, err, "partition 1 committed 0 of 1")
		if m, _ := coord.ReadBucketMap(cloudservers.Buckets); m.Move != nil || m.Buckets[3] != 1 {
			t.Fatalf("after the rollback: %+v", m)
		}
		itest.CommitEnds(t, kc, group, "test", []string{topic})
		before, _ := coord.ReadBucketMap(cloudservers.Buckets)
		if err := mv.Move(ctx, []int{3}, 0); err != nil {
			t.Fatal(err)
		}
		m, _ := coord.ReadBucketMap(cloudservers.Buckets)
		if m.Move != nil || m.Buckets[3] != 0 || m.Version != before.Version+2 {
			t.Fatalf("after the move: version %d (before %d), bucket 3 on %d, move %+v; want freeze and flip, bucket 3 on 0", m.Version, before.Version, m.Buckets[3], m.Move)
		}
		if !strings.Contains(out.String(), "moved bucket 3 from partition 1 to 0") {
			t.Fatalf("output:\n%s", out.String())
		}
	})

	t.Run("corrupted map", func(t *testing.T) {
		routes := api.NewBucketRoutes()
		watcher := connectCoord(t, ends.ZooKeeper, chroot, "")
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = watcher.WatchBucketMap(wctx, cloudservers.Buckets, "api-1", func(m zkcoord.BucketMap, err error) {
				routes.Follow(m.Version, m.Buckets, m.FrozenBuckets(), err)
			})
		}()
		defer func() { cancel(); <-done }()
		itest.Eventually(t, 10*time.Second, "the replica routes", func() error {
			_, _, release, err := routes.Route(ctx, 3, time.Millisecond)
			if err == nil {
				release()
			}
			return err
		})
		raw, _, err := zk.Connect([]string{ends.ZooKeeper}, 4*time.Second, zk.WithLogger(zkQuiet{}))
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		if _, err := raw.Set(chroot+"/buckets/map", []byte(`{"version":9,"partitions":2,"buckets":[0,1]}`), -1); err != nil {
			t.Fatal(err)
		}
		itest.Eventually(t, 10*time.Second, "the replica refuses mutations", func() error {
			_, _, release, err := routes.Route(ctx, 3, time.Millisecond)
			if err == nil {
				release()
				return errors.New("still routing")
			}
			var e *api.Error
			if !errors.As(err, &e) || e.Code != api.CodeUnavailable || e.RetryAfter == 0 || !strings.Contains(err.Error(), "corrupted") {
				t.Fatalf("refusal %v: want service_unavailable with Retry-After, naming the corruption", err)
			}
			return nil
		})
		var corrupt *zkcoord.CorruptBucketMapError
		if err := mv.Move(ctx, []int{4}, 0); !errors.As(err, &corrupt) || !strings.Contains(err.Error(), "2 buckets (want 256)") {
			t.Fatalf("move on a corrupted map: %v", err)
		}
	})
}

func connectCoord(t *testing.T, zkAddr, chroot, process string) *zkcoord.Coordinator {
	t.Helper()
	c, err := zkcoord.Connect(context.Background(), zkcoord.Config{Servers: []string{zkAddr}, Chroot: chroot, ProcessID: process,
		SessionTimeout: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type zkQuiet struct{}

func (zkQuiet) Printf(string, ...any) {}
