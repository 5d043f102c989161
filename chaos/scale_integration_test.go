//go:build integration

package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/api"
	"github.com/cloudservers/cloudservers/internal/buckets"
	"github.com/cloudservers/cloudservers/internal/zkcoord"
)

// TestScaleOutUnderLoad adds a partition, a third bridge and a third of
// the buckets to a running system while customers stream creates and
// actions, and kills -9 the admin command in the middle of a move: every
// customer's operations reach their lifecycles once each, in the order
// they were accepted. The customers publish through two "API replicas"
// made of the API's own routing (api.BucketRoutes, fed by
// zkcoord.WatchBucketMap, acknowledging each version) without the HTTP
// layer; bridges and the admin command are processes of the built binary.
// The freeze time of every moved bucket is logged as a SCALE line.
func TestScaleOutUnderLoad(t *testing.T) {
	w := newWorld(t, worldOptions{partitions: 2})
	ctx := context.Background()
	zk := w.ends.ZooKeeper + w.chroot
	coord, err := zkcoord.Connect(ctx, zkcoord.Config{Servers: []string{zk}, Logger: quietLog()})
	must(t, err)
	t.Cleanup(func() { coord.Close() })
	if _, _, err := coord.EnsureBucketMap(2, cloudservers.DefaultBucketMap(2)); err != nil {
		t.Fatal(err)
	}

	// Two API replicas' routing, each with its own ZooKeeper session.
	var replicas []*api.BucketRoutes
	for _, name := range []string{"api-1", "api-2"} {
		rc, err := zkcoord.Connect(ctx, zkcoord.Config{Servers: []string{zk}, Logger: quietLog()})
		must(t, err)
		routes := api.NewBucketRoutes()
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = rc.WatchBucketMap(wctx, cloudservers.Buckets, name, func(m zkcoord.BucketMap, err error) {
				routes.Follow(m.Version, m.Buckets, m.FrozenBuckets(), err)
			})
		}()
		t.Cleanup(func() { cancel(); <-done; rc.Close() })
		replicas = append(replicas, routes)
	}

	a := startProc(t, "bridge-a", w.bridgeArgs("bridge-a", "-processes", "bridge-a,bridge-b", "-session-timeout", "2s")...)
	b := startProc(t, "bridge-b", w.bridgeArgs("bridge-b", "-processes", "bridge-a,bridge-b", "-session-timeout", "2s")...)
	t0 := time.Now().Add(-time.Minute)
	a.wait(t0, 60*time.Second, "bridge-a consumes partition 0", isConsuming(w.topic, 0))
	b.wait(t0, 60*time.Second, "bridge-b consumes partition 1", isConsuming(w.topic, 1))

	// Customers: three whose buckets the rebalance moves, one it does not.
	plan := buckets.Plan(zkcoord.BucketMap{Version: 1, Partitions: 3, Buckets: cloudservers.DefaultBucketMap(2)})
	moved := map[int]bool{}
	for _, s := range plan {
		moved[s[0]] = true
	}
	// The first customer's bucket is the sixth to move: the one frozen
	// when the admin command is killed (after five moves), if the kill
	// lands there.
	var customers []string
	for i := 0; len(customers) < 1; i++ {
		if id := fmt.Sprintf("scale-%s-k%d", w.run, i); cloudservers.Bucket(id) == plan[5][0] {
			customers = append(customers, id)
		}
	}
	for i := 0; len(customers) < 4; i++ {
		id := fmt.Sprintf("scale-%s-%d", w.run, i)
		if moved[cloudservers.Bucket(id)] == (len(customers) < 3) && !slices.ContainsFunc(customers, func(c string) bool {
			return cloudservers.Bucket(c) == cloudservers.Bucket(id)
		}) {
			customers = append(customers, id)
		}
	}
	streams := make([]*customerStream, len(customers))
	for i, c := range customers {
		streams[i] = w.startCustomer(c, replicas, 800*time.Millisecond)
	}
	time.Sleep(4 * time.Second)

	// A partition, and a third bridge for it with bridge-a as partner.
	admin := func(name string, args ...string) *proc {
		return startProc(t, name, append([]string{"admin"}, append(args,
			"-kafka", strings.Join(w.ends.Kafka, ","), "-zookeeper", zk, "-requests-topic", w.topic,
			"-request-group", w.requestGroup, "-session-timeout", "2s")...)...)
	}
	add := admin("admin-add", "partitions", "add", "1", "-assignment", "2=bridge-c,bridge-a")
	add.wait(t0, 60*time.Second, "partitions add", func(l line) bool { return strings.Contains(l.raw, "bucket map version") })
	waitExit(t, add, 30*time.Second)
	since := time.Now()
	c := startProc(t, "bridge-c", w.bridgeArgs("bridge-c", "-assignment", "0=bridge-a,bridge-b;1=bridge-b,bridge-a;2=bridge-c,bridge-a", "-session-timeout", "2s")...)
	c.wait(since, 60*time.Second, "bridge-c consumes partition 2", isConsuming(w.topic, 2))
	a.wait(t0, 60*time.Second, "bridge-a joins partition 2 as partner", func(l line) bool {
		return l.is("joining a partition recorded in zookeeper", "partition", "2")
	})
	eventually(t, 30*time.Second, "status shows partition 2 owned by bridge-c with partner bridge-a alive", func() error {
		st, err := c.status()
		if err != nil {
			return err
		}
		for _, p := range st.System.Partitions {
			if p.Partition == 2 {
				if p.Owner == "bridge-c" && slices.Equal(p.Candidates, []string{"bridge-c", "bridge-a"}) && slices.Contains(p.Alive, "bridge-a") {
					return nil
				}
				return fmt.Errorf("partition 2: %+v", p)
			}
		}
		return errors.New("no partition 2 in the status")
	})

	// Rebalance, killed -9 while a bucket is frozen, then run again.
	var interrupted *zkcoord.BucketMove
	var runs []*proc
	for attempt := 1; interrupted == nil && attempt <= 5; attempt++ {
		r := admin(fmt.Sprintf("admin-rebalance-%d", attempt), "buckets", "rebalance")
		runs = append(runs, r)
		r.wait(t0, 60*time.Second, "moves under way", func(l line) bool {
			return len(r.find(func(l line) bool { return strings.HasPrefix(l.raw, "moved bucket") })) >= 5
		})
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			m, err := coord.ReadBucketMap(cloudservers.Buckets)
			must(t, err)
			if m.Move != nil {
				r.kill()
				if m, err = coord.ReadBucketMap(cloudservers.Buckets); err == nil && m.Move != nil {
					interrupted = m.Move
				}
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		if interrupted == nil && r.running() {
			r.kill()
		}
	}
	if interrupted == nil {
		t.Fatal("could not kill the admin command in the middle of a move in 5 attempts")
	}
	t.Logf("SCALE killed the admin command with bucket %v frozen (partition %v → %d)", interrupted.Buckets, interrupted.From, interrupted.To)
	final := admin("admin-rebalance-final", "buckets", "rebalance")
	runs = append(runs, final)
	final.wait(t0, 60*time.Second, "the re-run completes the interrupted move", func(l line) bool {
		return strings.HasPrefix(l.raw, "completing the move of buckets "+strconv.Itoa(interrupted.Buckets[0])+" ")
	})
	waitExit(t, final, 5*time.Minute)
	m, err := coord.ReadBucketMap(cloudservers.Buckets)
	must(t, err)
	counts := make([]int, m.Partitions)
	for _, p := range m.Buckets {
		counts[p]++
	}
	if m.Move != nil || m.Partitions != 3 || counts[2] != len(plan) {
		t.Fatalf("after the rebalance: move %+v, buckets per partition %v; want none in progress and %d on partition 2", m.Move, counts, len(plan))
	}
	time.Sleep(3 * time.Second) // the customers go on on their new partition

	var accepted [][]acceptedOp
	for _, s := range streams {
		accepted = append(accepted, s.stop())
	}

	// Every accepted operation reached its lifecycle once, in order.
	lost, dup, reordered, total := 0, 0, 0, 0
	for i, ops := range accepted {
		total += len(ops)
		var deliveries map[string][]time.Time
		eventually(t, 2*time.Minute, "every operation of "+customers[i]+" delivered", func() error {
			var err error
			deliveries, err = w.deliveries(ctx, ops)
			if err != nil {
				return err
			}
			for _, op := range ops {
				if len(deliveries[op.op]) == 0 {
					return fmt.Errorf("operation %s (%d of %d) not delivered yet", op.op, op.seq, len(ops))
				}
			}
			return nil
		})
		var last time.Time
		for _, op := range ops {
			d := deliveries[op.op]
			switch {
			case len(d) == 0:
				lost++
			case len(d) > 1:
				dup++
			}
			if len(d) > 0 {
				if d[0].Before(last) {
					reordered++
					t.Errorf("%s: operation %d (%s, partition %d, map version %d) was delivered at %s, before the one accepted before it (%s)",
						customers[i], op.seq, op.op, op.partition, op.version, d[0].Format(time.RFC3339Nano), last.Format(time.RFC3339Nano))
				}
				last = d[0]
			}
		}
		onNew := 0
		for _, op := range ops {
			if op.partition == 2 {
				onNew++
			}
		}
		if i < 3 && onNew == 0 {
			t.Errorf("%s (bucket %d, moved) published nothing on partition 2", customers[i], cloudservers.Bucket(customers[i]))
		}
		if i == 3 && onNew > 0 {
			t.Errorf("%s (bucket %d, not moved) published on partition 2", customers[i], cloudservers.Bucket(customers[i]))
		}
	}
	var freezes []time.Duration
	for _, r := range runs {
		for _, l := range r.find(func(l line) bool { return strings.HasPrefix(l.raw, "moved bucket") }) {
			_, ms, ok := strings.Cut(l.raw, "frozen ")
			n, err := strconv.Atoi(strings.TrimSuffix(ms, " ms"))
			if ok && err == nil {
				freezes = append(freezes, time.Duration(n)*time.Millisecond)
			}
		}
	}
	slices.Sort(freezes)
	if interrupted.Buckets[0] == cloudservers.Bucket(customers[0]) {
		// Frozen for the kill and the lock's expiry, past the 500 ms the
		// customer waits: it was told to retry, and retried.
		if streams[0].refused == 0 {
			t.Errorf("%s's bucket was frozen by the killed command, yet no publish was refused", customers[0])
		}
		t.Logf("SCALE the interrupted bucket was %s's: %d publishes refused while it was frozen, longest wait %v", customers[0], streams[0].refused, streams[0].maxWait)
	}
	var refused, maxWait int
	for _, s := range streams {
		refused += s.refused
		maxWait = max(maxWait, int(s.maxWait.Milliseconds()))
	}
	t.Logf("SCALE %d customers, %d operations accepted: %d lost, %d duplicated, %d reordered; %d buckets moved, frozen p50 %v max %v; %d publishes refused (bucket frozen), longest wait of a customer %d ms",
		len(customers), total, lost, dup, reordered, len(freezes), freezes[len(freezes)/2], freezes[len(freezes)-1], refused, maxWait)
	if lost+dup+reordered > 0 {
		t.Fatalf("%d lost, %d duplicated, %d reordered", lost, dup, reordered)
	}
	if len(freezes) != len(plan) {
		// A kill that landed after a flip and before its line was printed.
		t.Logf("%d moves reported, the plan had %d", len(freezes), len(plan))
	}
}

// waitExit waits for the process to exit on its own and fails the test
// unless it exited 0.
func waitExit(t *testing.T, p *proc, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		t.Fatalf("%s still running after %s:\n%s", p.name, timeout, p.tail(20))
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("%s exited %d:\n%s", p.name, code, p.tail(20))
	}
}

// acceptedOp is an operation whose request Kafka acknowledged.
type acceptedOp struct {
	seq        int
	op, server string
	partition  int32
	version    int64
}

// customerStream is one customer sending operations one after the other,
// each once the previous one was accepted: a create, then a reboot of the
// server it created, and so on.
type customerStream struct {
	cancel  context.CancelFunc
	done    chan struct{}
	mu      sync.Mutex
	ops     []acceptedOp
	refused int
	maxWait time.Duration
	failed  error
}

func (w *world) startCustomer(customer string, replicas []*api.BucketRoutes, every time.Duration) *customerStream {
	ctx, cancel := context.WithCancel(context.Background())
	s := &customerStream{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		server := ""
		for n := 0; ctx.Err() == nil; n++ {
			req := cloudservers.Request{OperationID: uuid.NewString(), CustomerID: customer, RequestedAt: time.Now().UTC()}
			if n%2 == 0 {
				server = uuid.NewString()
				req.Operation = cloudservers.OpCreate
				req.Params, _ = json.Marshal(cloudservers.CreateParams{Name: "scale-" + strconv.Itoa(n), Size: "s-1vcpu-64mb", Image: "tiny", Region: "region-one"})
			} else {
				req.Operation = cloudservers.OpReboot
				req.Params, _ = json.Marshal(cloudservers.RebootParams{Type: "soft"})
			}
			req.ServerID = server
			start := time.Now()
			for attempt := 0; ; attempt++ {
				// As a client behind a balancer: each attempt may land on
				// either replica.
				routes := replicas[(n+attempt)%len(replicas)]
				bucket := cloudservers.Bucket(customer)
				p, v, release, err := routes.Route(ctx, bucket, 500*time.Millisecond)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					s.mu.Lock()
					s.refused++
					s.mu.Unlock()
					time.Sleep(200 * time.Millisecond)
					continue
				}
				req.BucketMapVersion = v
				body, _ := json.Marshal(req)
				err = w.producer.SendToPartition(ctx, w.topic, p, []byte(strconv.Itoa(bucket)), body)
				release()
				if err != nil {
					s.mu.Lock()
					s.failed = err
					s.mu.Unlock()
					return
				}
				s.mu.Lock()
				s.ops = append(s.ops, acceptedOp{seq: n, op: req.OperationID, server: server, partition: p, version: v})
				s.maxWait = max(s.maxWait, time.Since(start))
				s.mu.Unlock()
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(every):
			}
		}
	}()
	w.t.Cleanup(func() { s.cancel(); <-s.done })
	return s
}

func (s *customerStream) stop() []acceptedOp {
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		panic(fmt.Sprintf("a customer's publish failed: %v", s.failed))
	}
	return slices.Clone(s.ops)
}

// deliveries reads, from the lifecycles' histories, when each operation's
// request reached its lifecycle (the request signals carrying its ID, in
// history order).
func (w *world) deliveries(ctx context.Context, ops []acceptedOp) (map[string][]time.Time, error) {
	out := map[string][]time.Time{}
	seen := map[string]bool{}
	for _, op := range ops {
		if seen[op.server] {
			continue
		}
		seen[op.server] = true
		if _, err := w.requestDeliveries(ctx, op.server, out); err != nil {
			return out, err
		}
	}
	return out, nil
}
