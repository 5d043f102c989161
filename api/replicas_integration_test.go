//go:build integration

package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
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

// These tests run API replicas against the real Kafka of the stack named
// by $CLOUDSERVERS_ENDPOINTS: each replica has its own read model,
// consumer and producers, as separate processes would.

type replica struct {
	name string
	base string
	rm   *api.ReadModel
	kc   sarama.Client
	// requests is the replica's requests producer, with faults on demand.
	requests *faultyProducer
}

// faultyProducer is a requests producer (kafka.Producer) that fails on
// demand: before the write (nothing reaches Kafka) or after it (Kafka has
// the record, the API hears of an error: a timed-out produce that landed).
type faultyProducer struct {
	*kafka.Producer
	mu                  sync.Mutex
	failBefore, failAft error
}

func (p *faultyProducer) fail(before, after error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failBefore, p.failAft = before, after
}

func (p *faultyProducer) SendToPartition(ctx context.Context, topic string, partition int32, key, value []byte) error {
	p.mu.Lock()
	before, after := p.failBefore, p.failAft
	p.mu.Unlock()
	if before != nil {
		return before
	}
	if err := p.Producer.SendToPartition(ctx, topic, partition, key, value); err != nil {
		return err
	}
	return after
}

func startReplica(t testing.TB, ep devstack.Endpoints, name string) *replica {
	t.Helper()
	return startReplicaWith(t, ep, name, api.Config{})
}

// startReplicaWith starts a replica with cfg (its Catalog and Partitions
// are filled in).
func startReplicaWith(t testing.TB, ep devstack.Endpoints, name string, cfg api.Config) *replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})).With("replica", name)
	kc, err := kafka.Connect(ctx, ep.Kafka, "it-api-"+name, log)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := kc.Partitions(cloudservers.TopicRequests)
	if err != nil {
		t.Fatal(err)
	}
	// As the api command: one idempotent acks=all producer for requests.
	rp, err := kafka.ConnectProducer(ctx, ep.Kafka, "it-api-"+name+"-requests", true, log)
	if err != nil {
		t.Fatal(err)
	}
	requests := &faultyProducer{Producer: rp}
	state, err := kafka.NewProducer(ep.Kafka, "it-api-"+name)
	if err != nil {
		t.Fatal(err)
	}
	rm := api.NewReadModel()
	cfg.Catalog, cfg.Partitions = cloudservers.DefaultCatalog(), int32(len(parts))
	srv := api.New(cfg, log, rm, kc, requests, state)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := rm.Run(ctx, kc, log); err != nil {
			t.Errorf("read model of %s: %v", name, err)
		}
	}()
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		srv.Shutdown()
		hs.Close()
		cancel()
		wg.Wait()
		requests.Close()
		state.Close()
		kc.Close()
	})
	deadline := time.Now().Add(60 * time.Second)
	for !rm.Ready() {
		if time.Now().After(deadline) {
			t.Fatalf("replica %s did not catch up with Kafka in 60s", name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r := &replica{name: name, base: hs.URL, rm: rm, kc: kc, requests: requests}
	if code, body := r.call(t, "GET", "/readyz", "", nil, nil); code != 200 {
		t.Fatalf("%s /readyz: %d %s", name, code, body)
	}
	return r
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

var itClient = &http.Client{Timeout: 30 * time.Second}

func (r *replica) call(t testing.TB, method, path, key string, body any, header map[string]string) (int, []byte) {
	t.Helper()
	code, b, _ := r.callH(t, method, path, key, body, header)
	return code, b
}

func (r *replica) callH(t testing.TB, method, path, key string, body any, header map[string]string) (int, []byte, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, r.base+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := itClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, r.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// customer publishes an API key for a new customer, as `cloudservers admin
// create-key` does.
func customer(t testing.TB, ep devstack.Endpoints, name string) (id, key string) {
	t.Helper()
	id = fmt.Sprintf("it-%s-%d", name, time.Now().UnixNano())
	key, rec, err := api.NewAPIKey(id, "it", false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p, err := kafka.NewProducer(ep.Kafka, "it-admin")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	b, _ := json.Marshal(rec)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Send(ctx, cloudservers.TopicAPIKeys, []byte(rec.Hash), b); err != nil {
		t.Fatal(err)
	}
	return id, key
}

// ensureSSHKeyTopic creates the SSH key topic when the stack does not (yet).
func ensureSSHKeyTopic(t *testing.T, ep devstack.Endpoints) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := devstack.CreateTopics(ctx, ep.Kafka, []devstack.TopicSpec{{Name: api.TopicSSHKeys, Partitions: 3, Config: map[string]string{
		"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "delete.retention.ms": "86400000",
	}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
}

// waitKey waits until a replica knows an API key (its consumer read it):
// the only record these tests do not write through the API.
func waitKey(t testing.TB, r *replica, key string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, ok := r.rm.Key(api.HashKey(key)); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s never read the API key", r.name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// twoReplicas starts two replicas and a customer, alice, that both know.
func twoReplicas(t *testing.T, ep devstack.Endpoints, name1, name2 string) (aliceID, alice string, r1, r2 *replica) {
	t.Helper()
	aliceID, alice = customer(t, ep, "alice")
	r1, r2 = startReplica(t, ep, name1), startReplica(t, ep, name2)
	waitKey(t, r1, alice)
	waitKey(t, r2, alice)
	return aliceID, alice, r1, r2
}

func TestReplicasIdempotencyAndReadYourWrites(t *testing.T) {
	ep := devstack.TestEndpoints(t)
	ensureSSHKeyTopic(t, ep)
	_, alice := customer(t, ep, "alice")
	_, bob := customer(t, ep, "bob")
	r1 := startReplica(t, ep, "r1")
	r2 := startReplica(t, ep, "r2")
	for _, r := range []*replica{r1, r2} {
		waitKey(t, r, alice)
		waitKey(t, r, bob)
	}
	body := map[string]any{"name": "it-1", "size": "s-1vcpu-64mb", "image": "tiny", "region": "region-one"}
	key := map[string]string{"Idempotency-Key": fmt.Sprintf("it-%d", time.Now().UnixNano())}

	// Key K on replica 1, then the same request on replica 2: the same
	// operation, replayed, and one request on Kafka.
	code, first, h1 := r1.callH(t, "POST", "/v1/servers", alice, body, key)
	if code != 202 {
		t.Fatalf("create on r1: %d %s", code, first)
	}
	var op api.OperationView
	_ = json.Unmarshal(first, &op)
	code, again, h2 := r2.callH(t, "POST", "/v1/servers", alice, body, key)
	if code != 202 || string(again) != string(first) || h2.Get("Idempotent-Replayed") != "true" || h2.Get("Location") != h1.Get("Location") {
		t.Fatalf("replay on r2: %d %s %v, first %s", code, again, h2, first)
	}
	// Different body, same key, on replica 2: refused.
	code, b := r2.call(t, "POST", "/v1/servers", alice, withField(body, "name", "it-2"), key)
	if code != 422 || !strings.Contains(string(b), api.CodeIdempotencyReuse) {
		t.Fatalf("different body on r2: %d %s", code, b)
	}

	// Read-your-writes: created on replica 1, read at once on replica 2.
	code, b = r1.call(t, "POST", "/v1/servers", alice, withField(body, "name", "it-3"), nil)
	if code != 202 {
		t.Fatalf("create: %d %s", code, b)
	}
	var op3 api.OperationView
	_ = json.Unmarshal(b, &op3)
	readsCreate(t, r2, alice, op3)
	// A mutation on replica 2 sees replica 1's lock.
	if code, b = r2.call(t, "DELETE", "/v1/servers/"+op3.ServerID, alice, nil, nil); code != 409 || !strings.Contains(string(b), api.CodeLocked) {
		t.Fatalf("delete of a locked server on r2: %d %s", code, b)
	}
	// Tenancy holds on both replicas.
	for _, r := range []*replica{r1, r2} {
		if code, b = r.call(t, "GET", "/v1/servers/"+op3.ServerID, bob, nil, nil); code != 404 {
			t.Errorf("bob reads alice's server on %s: %d %s", r.name, code, b)
		}
		if code, b = r.call(t, "GET", "/v1/operations/"+op.ID, bob, nil, nil); code != 404 {
			t.Errorf("bob reads alice's operation on %s: %d %s", r.name, code, b)
		}
	}

	// A replica started now (a restart) replays key K from Kafka.
	r3 := startReplica(t, ep, "r3")
	code, b = r3.call(t, "POST", "/v1/servers", alice, body, key)
	if code != 202 || string(b) != string(first) {
		t.Fatalf("replay on a restarted replica: %d %s", code, b)
	}

	// Kafka has exactly one request for operation K.
	if n := countRequests(t, ep, op.ID); n != 1 {
		t.Errorf("%d requests for operation %s on Kafka", n, op.ID)
	}
}

func TestReplicasSSHKeys(t *testing.T) {
	ep := devstack.TestEndpoints(t)
	ensureSSHKeyTopic(t, ep)
	_, alice, r1, r2 := twoReplicas(t, ep, "k1", "k2")

	code, b := r1.call(t, "POST", "/v1/ssh_keys", alice, map[string]any{"name": "laptop", "public_key": testKeys[0]}, nil)
	if code != 201 {
		t.Fatalf("create key: %d %s", code, b)
	}
	var k api.SSHKeyView
	_ = json.Unmarshal(b, &k)
	if code, b = r2.call(t, "GET", "/v1/ssh_keys/"+k.ID, alice, nil, nil); code != 200 {
		t.Fatalf("key on r2: %d %s", code, b)
	}
	// By name on replica 2, at once.
	code, b = r2.call(t, "POST", "/v1/servers", alice, map[string]any{"name": "it-k", "size": "s-1vcpu-64mb", "image": "tiny", "region": "region-one", "ssh_key": "laptop"}, nil)
	if code != 202 {
		t.Fatalf("create with the key on r2: %d %s", code, b)
	}
	// The same name on replica 2 is taken.
	if code, b = r2.call(t, "POST", "/v1/ssh_keys", alice, map[string]any{"name": "laptop", "public_key": testKeys[1]}, nil); code != 409 {
		t.Fatalf("duplicate name on r2: %d %s", code, b)
	}
	// Deleted on replica 2 (a tombstone): gone on replica 1 and for a new
	// replica.
	if code, b = r2.call(t, "DELETE", "/v1/ssh_keys/laptop", alice, nil, nil); code != 204 {
		t.Fatalf("delete: %d %s", code, b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := r1.rm.SSHKey(k.ID); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("replica 1 still has the deleted key")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r3 := startReplica(t, ep, "k3")
	if _, ok := r3.rm.SSHKey(k.ID); ok {
		t.Error("a new replica has the deleted key")
	}
}

func TestReplicasEventStreamResumes(t *testing.T) {
	ep := devstack.TestEndpoints(t)
	_, alice, r1, r2 := twoReplicas(t, ep, "e1", "e2")
	body := map[string]any{"name": "ev-1", "size": "s-1vcpu-64mb", "image": "tiny", "region": "region-one"}

	s1 := openStream(t, r1.base, alice, "")
	code, b := r2.call(t, "POST", "/v1/servers", alice, body, nil)
	if code != 202 {
		t.Fatalf("create: %d %s", code, b)
	}
	var a api.OperationView
	_ = json.Unmarshal(b, &a)
	// Replica 1 streams what replica 2 accepted, once Kafka has it.
	ev := s1.next(t)
	if !strings.Contains(ev.data, a.ServerID) {
		t.Fatalf("first event %+v", ev)
	}
	last := s1.next(t)
	if !strings.Contains(last.data, a.ID) {
		t.Fatalf("second event %+v", last)
	}
	s1.close()
	code, b = r1.call(t, "POST", "/v1/servers", alice, withField(body, "name", "ev-2"), nil)
	if code != 202 {
		t.Fatalf("create: %d %s", code, b)
	}
	var c api.OperationView
	_ = json.Unmarshal(b, &c)
	// Resume on replica 2 with replica 1's last ID: only the new changes.
	s2 := openStream(t, r2.base, alice, last.id)
	for _, want := range []string{c.ServerID, c.ID} {
		if ev := s2.next(t); !strings.Contains(ev.data, want) {
			t.Errorf("resumed on r2: %+v, want %s", ev, want)
		}
	}
	s2.quiet(t, 300*time.Millisecond)
}

// readsCreate checks that a replica reads a create it did not accept
// itself at once: its server queued, its operation.
func readsCreate(t *testing.T, r *replica, key string, op api.OperationView) {
	t.Helper()
	code, b := r.call(t, "GET", "/v1/servers/"+op.ServerID, key, nil, nil)
	var sv api.ServerView
	_ = json.Unmarshal(b, &sv)
	if code != 200 || sv.ID != op.ServerID || sv.Status != "queued" || sv.OperationID != op.ID {
		t.Fatalf("GET on %s right after the create on another replica: %d %s", r.name, code, b)
	}
	if code, b = r.call(t, "GET", "/v1/operations/"+op.ID, key, nil, nil); code != 200 {
		t.Fatalf("operation on %s: %d %s", r.name, code, b)
	}
}

// countRequests reads the requests topic for an operation's requests.
func countRequests(t *testing.T, ep devstack.Endpoints, opID string) int {
	t.Helper()
	n := 0
	readTopic(t, ep, cloudservers.TopicRequests, func(msg *sarama.ConsumerMessage) {
		var r cloudservers.Request
		if json.Unmarshal(msg.Value, &r) == nil && r.OperationID == opID {
			n++
		}
	})
	return n
}

// readTopic hands f every committed record of topic, up to the end of
// each partition as of the call.
func readTopic(t *testing.T, ep devstack.Endpoints, topic string, f func(*sarama.ConsumerMessage)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Two clients: Kafka answers one connection's requests in order, so
	// Scan would wait behind the consumer's long-polling fetches.
	var kcs [2]sarama.Client
	for i := range kcs {
		kc, err := kafka.Connect(ctx, ep.Kafka, "it-read", slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer kc.Close()
		kcs[i] = kc
	}
	kc := kcs[0]
	ends := offsets(t, kc, topic, sarama.OffsetNewest)
	starts := offsets(t, kc, topic, sarama.OffsetOldest)
	pcs, stop := consume(t, kcs[1], topic, starts)
	defer stop()
	for p, pc := range pcs {
		// A partition may end with offsets a read_committed consumer
		// skips (transaction markers, aborted records): when nothing
		// comes, ask whether anything is left.
		for next, end := starts[p], ends[p]; next < end; {
			select {
			case msg := <-pc.Messages():
				f(msg)
				next = msg.Offset + 1
			case <-time.After(50 * time.Millisecond):
				pos, err := kafka.Scan(kc, topic, p, next, end)
				if err != nil {
					t.Fatal(err)
				}
				if pos == kafka.CaughtUp {
					next = end
				}
			case <-ctx.Done():
				t.Fatalf("reading %s/%d timed out at %d of %d", topic, p, next, end)
			}
		}
	}
}

// offsets returns the oldest or the newest (which) offset of every
// partition of topic.
func offsets(t *testing.T, kc sarama.Client, topic string, which int64) map[int32]int64 {
	t.Helper()
	parts, err := kc.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	for _, p := range parts {
		if out[p], err = kc.GetOffset(topic, p, which); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// consume reads the partitions of topic from the given offsets, all at
// once (each fetch of a consumer may wait long), until stop.
func consume(t *testing.T, kc sarama.Client, topic string, from map[int32]int64) (pcs map[int32]sarama.PartitionConsumer, stop func()) {
	t.Helper()
	consumer, err := sarama.NewConsumerFromClient(kc)
	if err != nil {
		t.Fatal(err)
	}
	pcs = map[int32]sarama.PartitionConsumer{}
	stop = func() {
		for _, pc := range pcs {
			pc.AsyncClose()
		}
		_ = consumer.Close()
	}
	for p, off := range from {
		if pcs[p], err = consumer.ConsumePartition(topic, p, off); err != nil {
			stop()
			t.Fatal(err)
		}
	}
	return pcs, stop
}
