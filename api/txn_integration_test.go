//go:build integration

package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/api"
	"github.com/cloudservers/cloudservers/internal/devstack"
	"github.com/cloudservers/cloudservers/internal/kafka"
)

// uncommitted returns the first record of topic from the given offsets on
// that matches want, read as a read_uncommitted consumer would (aborted
// records included), or nil after a few seconds.
func uncommitted(t *testing.T, ep devstack.Endpoints, topic string, from map[int32]int64, want func(*sarama.ConsumerMessage) bool) *sarama.ConsumerMessage {
	t.Helper()
	c := kafka.Config("it-uncommitted")
	c.Consumer.IsolationLevel = sarama.ReadUncommitted
	kc, err := sarama.NewClient(ep.Kafka, c)
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	pcs, stop := consume(t, kc, topic, from)
	defer stop()
	found := make(chan *sarama.ConsumerMessage, len(pcs))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, pc := range pcs {
		wg.Go(func() {
			for {
				select {
				case msg := <-pc.Messages():
					if want(msg) {
						found <- msg
						return
					}
				case <-ctx.Done():
					return
				}
			}
		})
	}
	select {
	case msg := <-found:
		cancel()
		return msg
	case <-ctx.Done():
		return nil
	}
}

func customerIs(id string) func(*sarama.ConsumerMessage) bool {
	return func(msg *sarama.ConsumerMessage) bool {
		var v struct {
			CustomerID string `json:"customer_id"`
		}
		return json.Unmarshal(msg.Value, &v) == nil && v.CustomerID == id
	}
}

// syncWithin brings a replica up to date with Kafka, failing the test
// unless it does within d: a replica waiting for offsets it never reads
// (transaction markers, aborted records) would not.
func syncWithin(t *testing.T, r *replica, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	if err := r.rm.Sync(ctx, r.kc); err != nil {
		t.Fatalf("%s not in sync with Kafka within %s: %v", r.name, d, err)
	}
	t.Logf("%s in sync in %s", r.name, time.Since(start).Round(time.Millisecond))
}

// A mutation whose transaction is aborted after its records were written
// leaves nothing that another replica (a read_committed reader) can see;
// a committed one is visible on another replica at once.
func TestPublishIsOneTransaction(t *testing.T) {
	ep := devstack.TestEndpoints(t)
	aliceID, alice, r1, r2 := twoReplicas(t, ep, "t1", "t2")
	body := map[string]any{"name": "tx-1", "size": "s-1vcpu-64mb", "image": "tiny", "region": "region-one"}

	servers, requests := offsets(t, r1.kc, cloudservers.TopicServers, sarama.OffsetNewest), offsets(t, r1.kc, cloudservers.TopicRequests, sarama.OffsetNewest)
	// The API process "dies" after Kafka took all the records, before the
	// commit: the transaction is aborted.
	r1.txn.BeforeCommit(func([]kafka.Record) error { return errors.New("injected: the process died before the commit") })
	code, b := r1.call(t, "POST", "/v1/servers", alice, body, nil)
	if code != 503 || !strings.Contains(string(b), api.CodeUnavailable) {
		t.Fatalf("create with the commit failing: %d %s", code, b)
	}
	// The records were written, then aborted.
	srvMsg := uncommitted(t, ep, cloudservers.TopicServers, servers, customerIs(aliceID))
	reqMsg := uncommitted(t, ep, cloudservers.TopicRequests, requests, customerIs(aliceID))
	if srvMsg == nil || reqMsg == nil {
		t.Fatalf("the aborted transaction's records are not in the log: server %v, request %v", srvMsg, reqMsg)
	}
	var srv cloudservers.Server
	var req cloudservers.Request
	_ = json.Unmarshal(srvMsg.Value, &srv)
	_ = json.Unmarshal(reqMsg.Value, &req)
	if srv.ID == "" || req.ServerID != srv.ID || srv.Status != cloudservers.StatusQueued {
		t.Fatalf("aborted records: server %+v, request %+v", srv, req)
	}
	// Nothing of it on the other replica, nor on the first.
	syncWithin(t, r2, 2*time.Second)
	for _, r := range []*replica{r1, r2} {
		if code, b := r.call(t, "GET", "/v1/servers/"+srv.ID, alice, nil, nil); code != 404 {
			t.Errorf("aborted server on %s: %d %s", r.name, code, b)
		}
		if code, b := r.call(t, "GET", "/v1/operations/"+req.OperationID, alice, nil, nil); code != 404 {
			t.Errorf("aborted operation on %s: %d %s", r.name, code, b)
		}
		if all := r.rm.Servers(aliceID, func(cloudservers.Server) bool { return true }); len(all) != 0 {
			t.Errorf("servers of alice on %s: %+v", r.name, all)
		}
		if ops := r.rm.Operations(aliceID, srv.ID); len(ops) != 0 {
			t.Errorf("operations on %s: %+v", r.name, ops)
		}
	}
	if n := countRequests(t, ep, req.OperationID); n != 0 {
		t.Errorf("%d committed requests for the aborted operation", n)
	}

	// Committed: on the other replica at once, and the pool went on after
	// the abort.
	r1.txn.BeforeCommit(nil)
	code, b = r1.call(t, "POST", "/v1/servers", alice, body, nil)
	if code != 202 {
		t.Fatalf("create: %d %s", code, b)
	}
	var op api.OperationView
	_ = json.Unmarshal(b, &op)
	readsCreate(t, r2, alice, op)
	syncWithin(t, r2, 2*time.Second)
	if n := countRequests(t, ep, op.ID); n != 1 {
		t.Errorf("%d requests for operation %s", n, op.ID)
	}

	// Concurrent mutations share the replica's producers; each is visible
	// on the other replica.
	var wg sync.WaitGroup
	ops := make([]api.OperationView, 8)
	for i := range ops {
		wg.Go(func() {
			code, b := r1.call(t, "POST", "/v1/servers", alice, withField(body, "name", fmt.Sprintf("tx-c%d", i)), nil)
			if code != 202 {
				t.Errorf("concurrent create %d: %d %s", i, code, b)
			}
			_ = json.Unmarshal(b, &ops[i])
		})
	}
	wg.Wait()
	for _, o := range ops {
		if code, b := r2.call(t, "GET", "/v1/servers/"+o.ServerID, alice, nil, nil); code != 200 {
			t.Errorf("server %s on t2: %d %s", o.ServerID, code, b)
		}
	}
	// A replica started now catches up past the markers the transactions
	// left at the end of the partitions.
	r3 := startReplica(t, ep, "t3")
	if _, ok := r3.rm.Server(op.ServerID); !ok {
		t.Error("a new replica lacks the committed server")
	}
	if _, ok := r3.rm.Server(srv.ID); ok {
		t.Error("a new replica has the aborted server")
	}
}

// A replica restarted under the same name fences its previous incarnation:
// the transaction that one left open is aborted, and it cannot commit.
func TestRestartedReplicaFencesZombie(t *testing.T) {
	ep := devstack.TestEndpoints(t)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prefix := fmt.Sprintf("it-zombie-%d", time.Now().UnixNano())
	record := func(id string) []kafka.Record {
		v, _ := json.Marshal(cloudservers.Server{ID: id, CustomerID: prefix, Status: cloudservers.StatusQueued})
		return []kafka.Record{{Topic: cloudservers.TopicServers, Partition: kafka.ByKey, Key: []byte(id), Value: v}}
	}
	zombie, err := kafka.ConnectTxnPool(ctx, ep.Kafka, prefix, prefix, 1, log)
	if err != nil {
		t.Fatal(err)
	}
	defer zombie.Close()
	inTxn, resume := make(chan struct{}), make(chan struct{})
	zombie.BeforeCommit(func([]kafka.Record) error {
		close(inTxn)
		<-resume
		return nil
	})
	zerr := make(chan error, 1)
	go func() { zerr <- zombie.Transact(ctx, record(prefix+"-zombie")) }()
	<-inTxn // the zombie's record is written, its transaction open

	restarted, err := kafka.ConnectTxnPool(ctx, ep.Kafka, prefix, prefix, 1, log)
	if err != nil {
		t.Fatal(err)
	}
	defer restarted.Close()
	close(resume)
	if err := <-zerr; err == nil {
		t.Fatal("the fenced zombie committed")
	} else {
		t.Logf("the zombie's commit: %v", err)
	}
	if err := restarted.Transact(ctx, record(prefix+"-new")); err != nil {
		t.Fatal(err)
	}
	r := startReplica(t, ep, "z1")
	syncWithin(t, r, 2*time.Second)
	if _, ok := r.rm.Server(prefix + "-new"); !ok {
		t.Error("the restarted replica's record is not visible")
	}
	if _, ok := r.rm.Server(prefix + "-zombie"); ok {
		t.Error("the zombie's aborted record is visible")
	}
}
