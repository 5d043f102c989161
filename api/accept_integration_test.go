//go:build integration

package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/api"
	"github.com/cloudservers/cloudservers/internal/devstack"
)

// syncWithin brings a replica up to date with Kafka, failing the test
// unless it does within d.
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

// requestsOf returns the requests of a customer on the requests topic.
func requestsOf(t *testing.T, ep devstack.Endpoints, customerID string) []cloudservers.Request {
	t.Helper()
	var out []cloudservers.Request
	readTopic(t, ep, cloudservers.TopicRequests, func(msg *sarama.ConsumerMessage) {
		var r cloudservers.Request
		if json.Unmarshal(msg.Value, &r) == nil && r.CustomerID == customerID {
			out = append(out, r)
		}
	})
	return out
}

// A mutation is one record on the requests topic: once Kafka has it, every
// replica reads the server and the operation at once; a write that failed
// leaves nothing; a write that timed out but landed is found by the retry
// with the same Idempotency-Key, on any replica.
func TestAcceptIsOneRequestRecord(t *testing.T) {
	ep := devstack.TestEndpoints(t)
	aliceID, alice, r1, r2 := twoReplicas(t, ep, "a1", "a2")
	body := map[string]any{"name": "acc-1", "size": "s-1vcpu-64mb", "image": "tiny", "region": "region-one"}

	// Kafka refuses the write: 503, and nothing anywhere.
	r1.requests.fail(errors.New("injected: kafka refused the write"), nil)
	code, b, h := r1.callH(t, "POST", "/v1/servers", alice, body, map[string]string{"Idempotency-Key": "refused"})
	if code != 503 || !strings.Contains(string(b), api.CodeUnavailable) || h.Get("Retry-After") == "" {
		t.Fatalf("create with the write refused: %d %s %v", code, b, h)
	}
	syncWithin(t, r2, 2*time.Second)
	for _, r := range []*replica{r1, r2} {
		if all := r.rm.Servers(aliceID, func(cloudservers.Server) bool { return true }); len(all) != 0 {
			t.Errorf("servers of alice on %s after a refused write: %+v", r.name, all)
		}
	}
	if reqs := requestsOf(t, ep, aliceID); len(reqs) != 0 {
		t.Fatalf("requests of alice after a refused write: %+v", reqs)
	}

	// The write lands but the API hears of an error (a produce that timed
	// out): 503; the retry with the same key, on the other replica, finds
	// the request and answers with its operation, publishing nothing new.
	r1.requests.fail(nil, errors.New("injected: the produce timed out after Kafka took it"))
	if code, b := r1.call(t, "POST", "/v1/servers", alice, body, map[string]string{"Idempotency-Key": "landed"}); code != 503 {
		t.Fatalf("create with the acknowledgement lost: %d %s", code, b)
	}
	r1.requests.fail(nil, nil)
	landed := requestsOf(t, ep, aliceID)
	if len(landed) != 1 || landed[0].Idempotency == nil || landed[0].Idempotency.Key != "landed" {
		t.Fatalf("requests of alice after the lost acknowledgement: %+v", landed)
	}
	code, b = r2.call(t, "POST", "/v1/servers", alice, body, map[string]string{"Idempotency-Key": "landed"})
	var retried api.OperationView
	_ = json.Unmarshal(b, &retried)
	if code != 202 || retried.ID != landed[0].OperationID || retried.ServerID != landed[0].ServerID {
		t.Fatalf("retry on a2: %d %s, the landed request %+v", code, b, landed[0])
	}
	if n := countRequests(t, ep, retried.ID); n != 1 {
		t.Errorf("%d requests for operation %s", n, retried.ID)
	}

	// Accepted on a1: readable on a2 at once.
	code, b = r1.call(t, "POST", "/v1/servers", alice, withField(body, "name", "acc-2"), nil)
	if code != 202 {
		t.Fatalf("create: %d %s", code, b)
	}
	var op api.OperationView
	_ = json.Unmarshal(b, &op)
	readsCreate(t, r2, alice, op)

	// Concurrent mutations share the replica's producer; each is visible
	// on the other replica at once.
	var wg sync.WaitGroup
	ops := make([]api.OperationView, 8)
	for i := range ops {
		wg.Go(func() {
			code, b := r1.call(t, "POST", "/v1/servers", alice, withField(body, "name", fmt.Sprintf("acc-c%d", i)), nil)
			if code != 202 {
				t.Errorf("concurrent create %d: %d %s", i, code, b)
			}
			_ = json.Unmarshal(b, &ops[i])
		})
	}
	wg.Wait()
	for _, o := range ops {
		if code, b := r2.call(t, "GET", "/v1/servers/"+o.ServerID, alice, nil, nil); code != 200 || !strings.Contains(string(b), `"queued"`) {
			t.Errorf("server %s on a2: %d %s", o.ServerID, code, b)
		}
	}
	// A replica started now reads the requests of the idempotency window:
	// the queued servers, and the key's record.
	r3 := startReplica(t, ep, "a3")
	if s, ok := r3.rm.Server(op.ServerID); !ok || s.Status != cloudservers.StatusQueued {
		t.Errorf("a new replica's view of the accepted server: %+v %v", s, ok)
	}
	if _, ok := r3.rm.Idempotency(aliceID + "/landed"); !ok {
		t.Error("a new replica lacks the Idempotency-Key's record")
	}
	if _, ok := r3.rm.Idempotency(aliceID + "/refused"); ok {
		t.Error("a new replica has a record of the refused write's key")
	}
}
