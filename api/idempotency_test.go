package api_test

import (
	"strings"
	"testing"
	"time"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/api"
)

func idem(k string) map[string]string { return map[string]string{"Idempotency-Key": k} }

func TestIdempotencyEveryMutation(t *testing.T) {
	e := newEnv(t, api.Config{})
	server := e.activeServer(e.alice, "base")
	other := e.activeServer(e.alice, "other")
	third := e.activeServer(e.alice, "third")
	for _, tc := range []struct {
		name          string
		method, path  string
		body, another any
	}{
		{"create server", "POST", "/v1/servers", withField(validServer, "name", "x1"), withField(validServer, "name", "x2")},
		{"action", "POST", "/v1/servers/" + server + "/actions", map[string]any{"type": "reboot"}, map[string]any{"type": "reboot", "reboot_type": "hard"}},
		{"delete server", "DELETE", "/v1/servers/" + other, nil, nil},
		{"create SSH key", "POST", "/v1/ssh_keys", map[string]any{"name": "k1", "public_key": testKeys[0]}, map[string]any{"name": "k2", "public_key": testKeys[1]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "key-" + tc.name
			first := e.do(req{method: tc.method, path: tc.path, key: e.alice, body: tc.body, header: idem(key)})
			if first.Code >= 300 {
				t.Fatalf("first: %d %s", first.Code, first.Body)
			}
			n := len(e.kafka.log)
			// The same request again gets the same answer, without a
			// second write, even though the server is now locked.
			again := e.do(req{method: tc.method, path: tc.path, key: e.alice, body: tc.body, header: idem(key)})
			if again.Code != first.Code || again.Body.String() != first.Body.String() || again.Header().Get("Location") != first.Header().Get("Location") {
				t.Fatalf("replay: %d %s, first %d %s", again.Code, again.Body, first.Code, first.Body)
			}
			if again.Header().Get("Idempotent-Replayed") != "true" {
				t.Error("no Idempotent-Replayed header")
			}
			if len(e.kafka.log) != n {
				t.Errorf("the replay wrote %d records", len(e.kafka.log)-n)
			}
			// The same key on another request is refused.
			if tc.another != nil {
				expect(t, e.do(req{method: tc.method, path: tc.path, key: e.alice, body: tc.another, header: idem(key)}), 422, api.CodeIdempotencyReuse, nil, "Idempotency-Key")
			}
			expect(t, e.do(req{method: "POST", path: "/v1/servers/" + other + "/actions", key: e.alice, body: map[string]any{"type": "power_off"}, header: idem(key)}), 422, api.CodeIdempotencyReuse, nil)
			expect(t, e.do(req{method: "DELETE", path: "/v1/servers/" + third, key: e.alice, header: idem(key)}), 422, api.CodeIdempotencyReuse, nil)
			// Keys are per customer: bob's same key is his own.
			if tc.method == "POST" && !strings.Contains(tc.path, "actions") {
				expect(t, e.do(req{method: tc.method, path: tc.path, key: e.bob, body: tc.body, header: idem(key)}), first.Code, "", nil)
			}
		})
	}
	t.Run("SSH key delete", func(t *testing.T) {
		expect(t, e.do(req{method: "POST", path: "/v1/ssh_keys", key: e.alice, body: map[string]any{"name": "gone", "public_key": testKeys[2]}}), 201, "", nil)
		expect(t, e.do(req{method: "DELETE", path: "/v1/ssh_keys/gone", key: e.alice, header: idem("del")}), 204, "", nil)
		r := e.do(req{method: "DELETE", path: "/v1/ssh_keys/gone", key: e.alice, header: idem("del")})
		expect(t, r, 204, "", nil)
		if r.Header().Get("Idempotent-Replayed") != "true" {
			t.Error("not a replay")
		}
		expect(t, e.do(req{method: "DELETE", path: "/v1/ssh_keys/gone", key: e.alice}), 404, api.CodeNotFound, nil)
		expect(t, e.do(req{method: "DELETE", path: "/v1/ssh_keys/k1", key: e.alice, header: idem("del")}), 422, api.CodeIdempotencyReuse, nil)
	})
}

func TestIdempotencyKeyFormat(t *testing.T) {
	e := newEnv(t, api.Config{})
	for _, bad := range []string{strings.Repeat("k", 256), "tab\tkey", "é"} {
		r := e.do(req{method: "POST", path: "/v1/servers", key: e.alice, body: validServer, header: idem(bad)})
		expect(t, r, 400, api.CodeInvalidRequest, nil, "Idempotency-Key")
	}
	expect(t, e.do(req{method: "POST", path: "/v1/servers", key: e.alice, body: validServer, header: idem(strings.Repeat("k", 255))}), 202, "", nil)
}

func TestIdempotencyBodyCanonical(t *testing.T) {
	e := newEnv(t, api.Config{})
	a := e.do(req{method: "POST", path: "/v1/servers", key: e.alice, body: `{"name":"w","size":"s-1vcpu-64mb","image":"tiny","region":"region-one"}`, header: idem("c")})
	b := e.do(req{method: "POST", path: "/v1/servers", key: e.alice, body: "{\n  \"name\": \"w\",\n  \"size\": \"s-1vcpu-64mb\", \"image\": \"tiny\", \"region\": \"region-one\"\n}\n", header: idem("c")})
	if a.Code != 202 || b.Body.String() != a.Body.String() {
		t.Errorf("whitespace changed the request: %s / %s", a.Body, b.Body)
	}
}

func TestIdempotencyAfterRestartAndExpiry(t *testing.T) {
	e := newEnv(t, api.Config{IdempotencyTTL: time.Hour})
	first := e.do(req{method: "POST", path: "/v1/servers", key: e.alice, body: validServer, header: idem("restart")})
	expect(t, first, 202, "", nil)

	// A replica started now (its read model rebuilt from Kafka) replays it.
	rm := api.NewReadModel()
	e.kafka.replay(t, rm)
	e2 := *e
	e2.rm = rm
	e2.api = api.New(api.Config{Catalog: testCatalog(), IdempotencyTTL: time.Hour, RateLimit: 1e6, RateBurst: 1e6}, nil, rm, nil, e.kafka, e.kafka)
	e2.api.SetClock(e.clock.Now)
	e2.h = e2.api.Handler()
	e.kafka.attach(rm)
	again := e2.do(req{method: "POST", path: "/v1/servers", key: e.alice, body: validServer, header: idem("restart")})
	if again.Code != 202 || again.Body.String() != first.Body.String() {
		t.Fatalf("after restart: %d %s", again.Code, again.Body)
	}
	expect(t, e2.do(req{method: "POST", path: "/v1/servers", key: e.alice, body: withField(validServer, "name", "x"), header: idem("restart")}), 422, api.CodeIdempotencyReuse, nil)

	// Once expired, the key is free: the same request is a new one.
	e.clock.advance(time.Hour + time.Second)
	var op1, op2 api.OperationView
	expect(t, first, 202, "", &op1)
	expect(t, e2.do(req{method: "POST", path: "/v1/servers", key: e.alice, body: validServer, header: idem("restart")}), 202, "", &op2)
	if op2.ID == op1.ID || op2.ServerID == op1.ServerID {
		t.Errorf("an expired key gave the same IDs: %s %s", op1.ID, op2.ID)
	}
	if n := len(e.kafka.records(cloudservers.TopicRequests)); n != 2 {
		t.Errorf("%d requests", n)
	}
}

func TestIdempotencyLostRecord(t *testing.T) {
	// The request went out but its idempotency record did not (the replica
	// died in between, or Kafka failed just then): the retry derives the
	// same operation ID, finds it, and answers with it instead of
	// publishing a second create.
	e := newEnv(t, api.Config{})
	e.kafka.failTopic(cloudservers.TopicIdempotency, errKafkaDown)
	var op1, op2 api.OperationView
	expect(t, e.do(req{method: "POST", path: "/v1/servers", key: e.alice, body: validServer, header: idem("lost")}), 202, "", &op1)
	e.kafka.failTopic(cloudservers.TopicIdempotency, nil)
	expect(t, e.do(req{method: "POST", path: "/v1/servers", key: e.alice, body: validServer, header: idem("lost")}), 202, "", &op2)
	if op1.ID != op2.ID {
		t.Errorf("retry made operation %s, first %s", op2.ID, op1.ID)
	}
	if n := len(e.kafka.records(cloudservers.TopicRequests)); n != 1 {
		t.Errorf("%d requests published", n)
	}
}

func TestIdempotencyConcurrentReplicas(t *testing.T) {
	// Two replicas given the same request before either recorded it derive
	// the same IDs: the lifecycle deduplicates the two requests.
	e := newEnv(t, api.Config{})
	k2 := newFakeKafka()
	rm2 := api.NewReadModel()
	e.kafka.replay(t, rm2)
	k2.attach(rm2)
	s2 := api.New(api.Config{Catalog: testCatalog(), RateLimit: 1e6, RateBurst: 1e6}, nil, rm2, nil, k2, k2)
	s2.SetClock(e.clock.Now)
	e2 := *e
	e2.kafka, e2.rm, e2.api, e2.h = k2, rm2, s2, s2.Handler()
	var a, b api.OperationView
	expect(t, e.do(req{method: "POST", path: "/v1/servers", key: e.alice, body: validServer, header: idem("twin")}), 202, "", &a)
	expect(t, e2.do(req{method: "POST", path: "/v1/servers", key: e.alice, body: validServer, header: idem("twin")}), 202, "", &b)
	if a.ID != b.ID || a.ServerID != b.ServerID {
		t.Errorf("twins got %s/%s and %s/%s", a.ID, a.ServerID, b.ID, b.ServerID)
	}
	// A different body with the same key derives other IDs.
	var c api.OperationView
	expect(t, e2.do(req{method: "POST", path: "/v1/servers", key: e.bob, body: validServer, header: idem("twin")}), 202, "", &c)
	if c.ID == a.ID {
		t.Error("bob's request got alice's operation ID")
	}
}
