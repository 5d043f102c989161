package api_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/api"
)

// A request record alone, as another replica wrote it, is the initial
// state: the server queued with the create's parameters, the operation
// pending, the Idempotency-Key's record; the lifecycle's records win over
// it, whatever order the read model reads them in.
func TestReadModelMaterializesRequest(t *testing.T) {
	rm := api.NewReadModel()
	at := time.Now().UTC().Truncate(time.Millisecond)
	create := cloudservers.Request{OperationID: "op-1", ServerID: "srv-1", CustomerID: "alice", Operation: cloudservers.OpCreate,
		Params:      json.RawMessage(`{"name":"web-1","size":"s-1vcpu-64mb","image":"tiny","region":"region-one"}`),
		RequestedAt: at,
		Idempotency: &cloudservers.RequestIdempotency{Key: "k1", BodyHash: "h1", Method: "POST", Path: "/v1/servers", ExpiresAt: at.Add(time.Hour)}}
	b, _ := json.Marshal(create)
	if err := rm.ApplyRecord(cloudservers.TopicRequests, 2, 7, []byte("bucket"), b); err != nil {
		t.Fatal(err)
	}
	srv, ok := rm.Server("srv-1")
	if !ok || srv.Status != cloudservers.StatusQueued || srv.Name != "web-1" || srv.Size != "s-1vcpu-64mb" || srv.Image != "tiny" ||
		srv.Region != "region-one" || srv.CustomerID != "alice" || srv.OperationID != "op-1" || !srv.CreatedAt.Equal(at) || srv.Version != 0 {
		t.Fatalf("server %+v %v", srv, ok)
	}
	op, ok := rm.Operation("op-1")
	if !ok || op.Status != cloudservers.OperationPending || op.Type != cloudservers.OpCreate || op.ServerID != "srv-1" || !op.CreatedAt.Equal(at) {
		t.Fatalf("operation %+v %v", op, ok)
	}
	rec, ok := rm.Idempotency("alice/k1")
	if !ok || rec.BodyHash != "h1" || rec.Status != 202 || rec.Location != "/v1/servers/srv-1" || !rec.ExpiresAt.Equal(at.Add(time.Hour)) {
		t.Fatalf("idempotency record %+v %v", rec, ok)
	}
	var answered api.OperationView
	if err := json.Unmarshal(rec.Response, &answered); err != nil || answered.ID != "op-1" || answered.Status != "pending" {
		t.Fatalf("remembered answer %s: %v", rec.Response, err)
	}

	// The lifecycle's records (version 1) win, and the request read again
	// (another interleaving of partitions, a replay) does not undo them.
	creating, _ := json.Marshal(cloudservers.Server{ID: "srv-1", CustomerID: "alice", Name: "web-1", Status: cloudservers.StatusCreating, OperationID: "op-1", Version: 1})
	running, _ := json.Marshal(cloudservers.Operation{ID: "op-1", ServerID: "srv-1", CustomerID: "alice", Type: cloudservers.OpCreate, Status: cloudservers.OperationRunning, Version: 1})
	_ = rm.ApplyRecord(cloudservers.TopicServers, 0, 0, []byte("srv-1"), creating)
	_ = rm.ApplyRecord(cloudservers.TopicOperations, 0, 0, []byte("op-1"), running)
	_ = rm.ApplyRecord(cloudservers.TopicRequests, 2, 7, []byte("bucket"), b)
	if s, _ := rm.Server("srv-1"); s.Status != cloudservers.StatusCreating {
		t.Errorf("server after the lifecycle's record and the request again: %s", s.Status)
	}
	if o, _ := rm.Operation("op-1"); o.Status != cloudservers.OperationRunning {
		t.Errorf("operation after the lifecycle's record and the request again: %s", o.Status)
	}

	// Another mutation: its operation pending, no server record of its own.
	reboot, _ := json.Marshal(cloudservers.Request{OperationID: "op-2", ServerID: "srv-1", CustomerID: "alice", Operation: cloudservers.OpReboot, RequestedAt: at})
	_ = rm.ApplyRecord(cloudservers.TopicRequests, 2, 8, []byte("bucket"), reboot)
	if o, ok := rm.Operation("op-2"); !ok || o.Status != cloudservers.OperationPending || o.Type != cloudservers.OpReboot {
		t.Errorf("reboot operation %+v %v", o, ok)
	}
	if s, _ := rm.Server("srv-1"); s.Status != cloudservers.StatusCreating {
		t.Errorf("a reboot request changed the server: %s", s.Status)
	}
	if _, ok := rm.Idempotency("alice/"); ok {
		t.Error("a request without Idempotency-Key left a record")
	}

	// A request of an earlier API version (no idempotency field) and a
	// malformed one.
	old := []byte(`{"operation_id":"op-3","server_id":"srv-3","customer_id":"bob","operation":"create","params":{"name":"old"},"requested_at":"2026-01-01T00:00:00Z"}`)
	if err := rm.ApplyRecord(cloudservers.TopicRequests, 0, 0, nil, old); err != nil {
		t.Fatal(err)
	}
	if s, ok := rm.Server("srv-3"); !ok || s.Name != "old" || s.Status != cloudservers.StatusQueued {
		t.Errorf("old request's server %+v %v", s, ok)
	}
	if err := rm.ApplyRecord(cloudservers.TopicRequests, 0, 1, nil, []byte(`{"operation":"create"}`)); err == nil {
		t.Error("a request without IDs was applied")
	}
}

// Idempotency through the request record: a server mutation with an
// Idempotency-Key writes one record, and a replica that reads only that
// (a fresh one, replaying Kafka) answers the repeat with the same bytes,
// and refuses the key with another body.
func TestIdempotencyThroughRequest(t *testing.T) {
	e := newEnv(t, api.Config{})
	body := withField(validServer, "name", "idem-1")
	r1 := e.do(req{method: "POST", path: "/v1/servers", key: e.alice, body: body, header: idem("through")})
	var op api.OperationView
	expect(t, r1, 202, "", &op)
	if n := len(e.kafka.log); n != 3+1 { // three API keys, one request
		t.Fatalf("%d records written, want the request only", n-3)
	}
	reqs := e.kafka.records(cloudservers.TopicRequests)
	var kr cloudservers.Request
	_ = json.Unmarshal(reqs[0].value, &kr)
	if kr.Idempotency == nil || kr.Idempotency.Key != "through" || kr.Idempotency.BodyHash == "" || kr.Idempotency.Method != "POST" ||
		kr.Idempotency.Path != "/v1/servers" || !kr.Idempotency.ExpiresAt.Equal(kr.RequestedAt.Add(24*time.Hour)) {
		t.Fatalf("request's idempotency %+v", kr.Idempotency)
	}

	rm2 := api.NewReadModel()
	s2 := api.New(api.Config{Catalog: testCatalog(), RateLimit: 1e6, RateBurst: 1e6}, nil, rm2, nil, e.kafka, e.kafka)
	s2.SetClock(e.clock.Now)
	e.kafka.replay(t, rm2)
	e2 := *e
	e2.api, e2.rm, e2.h = s2, rm2, s2.Handler()
	again := e2.do(req{method: "POST", path: "/v1/servers", key: e.alice, body: body, header: idem("through")})
	if again.Code != 202 || again.Body.String() != r1.Body.String() || again.Header().Get("Idempotent-Replayed") != "true" ||
		again.Header().Get("Location") != r1.Header().Get("Location") {
		t.Fatalf("replay on the other replica: %d %v %s, first %s", again.Code, again.Header(), again.Body, r1.Body)
	}
	expect(t, e2.do(req{method: "POST", path: "/v1/servers", key: e.alice, body: withField(body, "name", "other"), header: idem("through")}), 422, api.CodeIdempotencyReuse, nil, "Idempotency-Key")
	if n := len(e.kafka.records(cloudservers.TopicRequests)); n != 1 {
		t.Errorf("%d requests", n)
	}
	// The other replica sees the server, queued, locked by its operation.
	expect(t, e2.do(req{method: "DELETE", path: "/v1/servers/" + op.ServerID, key: e.alice}), 409, api.CodeLocked, nil)
}

// Kafka does not answer: a mutation answers 503 with Retry-After within
// WriteTimeout, and while MaxPendingWrites writes hang the next ones are
// refused at once instead of queueing.
func TestOverloadAnswersAtOnce(t *testing.T) {
	e := newEnv(t, api.Config{WriteTimeout: 300 * time.Millisecond, MaxPendingWrites: 2})
	release := e.kafka.holdWrites()
	defer release()
	for i := range 2 {
		start := time.Now()
		r := e.do(req{method: "POST", path: "/v1/servers", key: e.alice, body: withField(validServer, "name", "hung"), header: idem("hung")})
		took := time.Since(start)
		expect(t, r, 503, api.CodeUnavailable, nil)
		if r.Header().Get("Retry-After") == "" || took < 250*time.Millisecond || took > 2*time.Second {
			t.Errorf("write %d with Kafka not answering: after %s, Retry-After %q", i, took, r.Header().Get("Retry-After"))
		}
	}
	// Both writes still hang: the third is refused at once.
	start := time.Now()
	r := e.do(req{method: "POST", path: "/v1/servers", key: e.alice, body: withField(validServer, "name", "over")})
	took := time.Since(start)
	expect(t, r, 503, api.CodeUnavailable, nil)
	if r.Header().Get("Retry-After") != "1" || took > 100*time.Millisecond || !strings.Contains(r.Body.String(), "too many") {
		t.Errorf("write over MaxPendingWrites: after %s, Retry-After %q, %s", took, r.Header().Get("Retry-After"), r.Body)
	}
	// Kafka answers again: the hung writes end (and, having landed, are
	// found by the retry with their key), and new ones go through.
	release()
	deadline := time.Now().Add(5 * time.Second)
	for len(e.kafka.records(cloudservers.TopicRequests)) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	var retried api.OperationView
	expect(t, e.do(req{method: "POST", path: "/v1/servers", key: e.alice, body: withField(validServer, "name", "hung"), header: idem("hung")}), 202, "", &retried)
	reqs := e.kafka.records(cloudservers.TopicRequests)
	var kr cloudservers.Request
	_ = json.Unmarshal(reqs[0].value, &kr)
	if retried.ID != kr.OperationID {
		t.Errorf("the retry made operation %s; the write that timed out but landed is %s", retried.ID, kr.OperationID)
	}
	if n := len(e.kafka.records(cloudservers.TopicRequests)); n != 2 {
		t.Errorf("%d requests on Kafka, want the two that hung (one operation ID) and no new one", n)
	}
}
