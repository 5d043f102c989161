package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/api"
	"github.com/cloudservers/cloudservers/internal/kafka"
)

// fakeKafka implements api.Producer and api.RequestProducer. It keeps
// every message in a log, with offsets per partition like Kafka, and feeds
// the records back to the read models attached to it, as their consumers
// would (the requests topic's too: the read models materialize them).
type fakeKafka struct {
	mu      sync.Mutex
	log     []record
	next    map[string]int64 // "topic/partition" -> next offset
	readers []*api.ReadModel
	fail    map[string]error // topic -> error to return
	// hold, when set, blocks every write until it is closed, whatever
	// the write's context says: a Kafka that does not answer, whose
	// client (like sarama's) takes no context.
	hold chan struct{}
}

// holdWrites makes writes block until the returned function is called.
func (f *fakeKafka) holdWrites() (release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hold = make(chan struct{})
	ch := f.hold
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.hold == ch {
				f.hold = nil
			}
			close(ch)
		})
	}
}

type record struct {
	topic     string
	partition int32
	offset    int64
	key       []byte
	value     []byte
}

const statePartitions = 3

func newFakeKafka() *fakeKafka {
	return &fakeKafka{next: map[string]int64{}, fail: map[string]error{}}
}

func (f *fakeKafka) attach(rm *api.ReadModel) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.readers = append(f.readers, rm)
}

func (f *fakeKafka) failTopic(topic string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.fail, topic)
	} else {
		f.fail[topic] = err
	}
}

func (f *fakeKafka) Send(ctx context.Context, topic string, key, value []byte) error {
	return f.SendToPartition(ctx, topic, kafka.ByKey, key, value)
}

func (f *fakeKafka) SendToPartition(ctx context.Context, topic string, partition int32, key, value []byte) error {
	return f.Transact(ctx, []kafka.Record{{Topic: topic, Partition: partition, Key: key, Value: value}})
}

func (f *fakeKafka) Transact(ctx context.Context, records []kafka.Record) error {
	f.mu.Lock()
	hold := f.hold
	f.mu.Unlock()
	if hold != nil {
		// A write Kafka was slow to take lands even when its caller
		// gave up meanwhile.
		<-hold
	} else if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	for _, r := range records {
		if err := f.fail[r.Topic]; err != nil {
			f.mu.Unlock()
			return err
		}
	}
	var written []record
	for _, kr := range records {
		partition := kr.Partition
		if partition == kafka.ByKey {
			h := fnv.New32a()
			h.Write(kr.Key)
			partition = int32(h.Sum32() % statePartitions)
		}
		tp := kr.Topic + "/" + string(rune('0'+partition))
		r := record{topic: kr.Topic, partition: partition, offset: f.next[tp], key: kr.Key, value: kr.Value}
		f.next[tp]++
		f.log = append(f.log, r)
		written = append(written, r)
	}
	readers := append([]*api.ReadModel{}, f.readers...)
	f.mu.Unlock()
	for _, r := range written {
		for _, rm := range readers {
			if err := rm.ApplyRecord(r.topic, r.partition, r.offset, r.key, r.value); err != nil {
				return err
			}
		}
	}
	return nil
}

// records returns the log's records of a topic.
func (f *fakeKafka) records(topic string) []record {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []record
	for _, r := range f.log {
		if r.topic == topic {
			out = append(out, r)
		}
	}
	return out
}

// replay feeds the whole log of the state topics to a fresh read model: a
// replica (re)starting.
func (f *fakeKafka) replay(t testing.TB, rm *api.ReadModel) {
	f.mu.Lock()
	log := append([]record{}, f.log...)
	f.mu.Unlock()
	for _, r := range log {
		if err := rm.ApplyRecord(r.topic, r.partition, r.offset, r.key, r.value); err != nil {
			t.Fatal(err)
		}
	}
	rm.MarkCaughtUp()
}

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// env is an API with a fake Kafka and three API keys: two customers and
// an operator.
type env struct {
	t     testing.TB
	kafka *fakeKafka
	rm    *api.ReadModel
	api   *api.Server
	h     http.Handler
	clock *clock
	alice string // customer "alice"
	bob   string // customer "bob"
	admin string // operator key (customer "ops")
	// checkSpec validates every exchange against docs/swagger.json.
	checkSpec bool
}

func newEnv(t testing.TB, cfg api.Config) *env {
	t.Helper()
	if cfg.Catalog.Sizes == nil {
		cfg.Catalog = testCatalog()
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit, cfg.RateBurst = 1e6, 1e6
	}
	e := &env{t: t, kafka: newFakeKafka(), rm: api.NewReadModel(), clock: &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}, checkSpec: true}
	e.kafka.attach(e.rm)
	e.api = api.New(cfg, nil, e.rm, nil, e.kafka, e.kafka)
	e.api.SetClock(e.clock.Now)
	e.h = e.api.Handler()
	e.alice = e.addKey("alice", false)
	e.bob = e.addKey("bob", false)
	e.admin = e.addKey("ops", true)
	e.rm.MarkCaughtUp()
	return e
}

// testCatalog has a 2-vCPU size besides the default ones, for quotas.
func testCatalog() cloudservers.Catalog {
	c := cloudservers.DefaultCatalog()
	c.Sizes = append(c.Sizes, cloudservers.Size{Name: "s-2vcpu-256mb", Flavor: "m1.medium", VCPUs: 2, MemoryMB: 256, DiskGB: 4})
	return c
}

func (e *env) addKey(customer string, admin bool) string {
	secret, rec, err := api.NewAPIKey(customer, "test", admin, e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := json.Marshal(rec)
	if err := e.kafka.Send(context.Background(), cloudservers.TopicAPIKeys, []byte(rec.Hash), b); err != nil {
		e.t.Fatal(err)
	}
	return secret
}

// req describes a request; body is marshalled unless it is a string or
// []byte (sent as is).
type req struct {
	method, path, key string
	body              any
	header            map[string]string
}

func (e *env) do(r req) *httptest.ResponseRecorder {
	e.t.Helper()
	var body []byte
	switch b := r.body.(type) {
	case nil:
	case string:
		body = []byte(b)
	case []byte:
		body = b
	default:
		body, _ = json.Marshal(b)
	}
	hr := httptest.NewRequest(r.method, r.path, bytes.NewReader(body))
	if r.body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if r.key != "" {
		hr.Header.Set("Authorization", "Bearer "+r.key)
	}
	for k, v := range r.header {
		if v == "" {
			hr.Header.Del(k)
		} else {
			hr.Header.Set(k, v)
		}
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, hr)
	checkProblem(e.t, r, rec)
	if e.checkSpec {
		checkAgainstSpec(e.t, hr, body, rec)
	}
	return rec
}

// checkProblem: every error is a problem document with a known code whose
// status is the answer's, and never a 5xx unless the test made Kafka fail.
func checkProblem(t testing.TB, r req, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code < 400 {
		return
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s %s: %d with Content-Type %q, want application/problem+json", r.method, r.path, rec.Code, ct)
		return
	}
	var p api.Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Errorf("%s %s: problem does not decode: %v", r.method, r.path, err)
		return
	}
	if st, ok := api.Codes()[p.Code]; !ok || st != rec.Code || p.Status != rec.Code {
		t.Errorf("%s %s: answer %d with problem %+v", r.method, r.path, rec.Code, p)
	}
	if p.Type == "" || p.Title == "" || p.Detail == "" {
		t.Errorf("%s %s: incomplete problem %+v", r.method, r.path, p)
	}
	input := fmt.Sprint(r.path, r.body)
	for _, leak := range []string{"goroutine", ".go:", "cloudservers.", "api.", "workflows.", "sarama", "panic"} {
		if strings.Contains(p.Detail, leak) && !strings.Contains(input, leak) {
			t.Errorf("%s %s: problem detail leaks %q: %s", r.method, r.path, leak, p.Detail)
		}
	}
}

// expect checks the status (and, for errors, the code and fields) of an
// answer and decodes its body into v when v is not nil.
func expect(t testing.TB, rec *httptest.ResponseRecorder, status int, code string, v any, fields ...string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d: %s", rec.Code, status, rec.Body.String())
	}
	if code != "" {
		var p api.Problem
		_ = json.Unmarshal(rec.Body.Bytes(), &p)
		if p.Code != code {
			t.Fatalf("code %q, want %q: %s", p.Code, code, rec.Body.String())
		}
		if len(fields) > 0 && strings.Join(p.Fields, ",") != strings.Join(fields, ",") {
			t.Fatalf("fields %v, want %v: %s", p.Fields, fields, p.Detail)
		}
	}
	if v != nil {
		reflect.ValueOf(v).Elem().SetZero() // no leftovers of an earlier answer
		if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
			t.Fatalf("decode %s: %v", rec.Body.String(), err)
		}
	}
}

var validServer = map[string]any{"name": "web-1", "size": "s-1vcpu-64mb", "image": "tiny", "region": "region-one"}

func withField(m map[string]any, k string, v any) map[string]any {
	out := map[string]any{}
	for a, b := range m {
		out[a] = b
	}
	if v == nil {
		delete(out, k)
	} else {
		out[k] = v
	}
	return out
}

// create creates a server for the key and returns its operation.
func (e *env) create(key, name string) api.OperationView {
	e.t.Helper()
	var op api.OperationView
	expect(e.t, e.do(req{method: "POST", path: "/v1/servers", key: key, body: withField(validServer, "name", name)}), 202, "", &op)
	return op
}

// server returns the read model's record of a server.
func (e *env) server(id string) cloudservers.Server {
	e.t.Helper()
	s, ok := e.rm.Server(id)
	if !ok {
		e.t.Fatalf("server %s not in the read model", id)
	}
	return s
}

// lifecycle publishes what the server's lifecycle workflow would: the
// server's new state (a higher version), and the operation's.
func (e *env) lifecycle(serverID string, status cloudservers.ServerStatus, opID string, opStatus cloudservers.OperationStatus) {
	e.t.Helper()
	s := e.server(serverID)
	s.Status, s.Version, s.UpdatedAt = status, s.Version+1, e.clock.Now()
	s.OperationID = ""
	if opStatus == cloudservers.OperationRunning {
		s.OperationID = opID
	}
	if status == cloudservers.StatusActive {
		s.PrivateIPv4, s.PublicIPv4, s.NovaInstanceID = "10.0.0.5", "172.24.4.5", "nova-"+serverID
	}
	b, _ := json.Marshal(s)
	if err := e.kafka.Send(context.Background(), cloudservers.TopicServers, []byte(s.ID), b); err != nil {
		e.t.Fatal(err)
	}
	if opID == "" {
		return
	}
	o, ok := e.rm.Operation(opID)
	if !ok {
		e.t.Fatalf("operation %s not in the read model", opID)
	}
	o.Status, o.UpdatedAt, o.Version = opStatus, e.clock.Now(), e.clock.Now().UnixNano()+o.Version+1
	if opStatus == cloudservers.OperationSucceeded || opStatus == cloudservers.OperationFailed {
		now := e.clock.Now()
		o.CompletedAt = &now
	}
	b, _ = json.Marshal(o)
	if err := e.kafka.Send(context.Background(), cloudservers.TopicOperations, []byte(o.ID), b); err != nil {
		e.t.Fatal(err)
	}
}

// activeServer creates a server and runs its create to completion.
func (e *env) activeServer(key, name string) string {
	e.t.Helper()
	op := e.create(key, name)
	e.lifecycle(op.ServerID, cloudservers.StatusCreating, op.ID, cloudservers.OperationRunning)
	e.lifecycle(op.ServerID, cloudservers.StatusActive, op.ID, cloudservers.OperationSucceeded)
	return op.ServerID
}

var errKafkaDown = errors.New("kafka: brokers unreachable")

func readAll(t testing.TB, r io.Reader) string {
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
