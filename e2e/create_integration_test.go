//go:build integration

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/api"
	"github.com/cloudservers/cloudservers/internal/openstacksim"
	"github.com/cloudservers/cloudservers/workflows"
)

const getServer = "GET /compute/v2.1/servers/{id}"

func createBody(name string) map[string]string {
	return map[string]string{"name": name, "size": "s-1vcpu-64mb", "image": "tiny", "region": "region-one"}
}

// TestCreateAndDeleteHopByHop follows one server through every hop: the
// request on Kafka, the workflows in Temporal with their search attributes,
// the OpenStack calls (and no status polling), the notification consumed
// by the router, the state read back through the API; then the same for its
// deletion, after which OpenStack holds nothing of it.
func TestCreateAndDeleteHopByHop(t *testing.T) {
	s := startSystem(t, options{sim: openstacksim.Config{BootTime: 300 * time.Millisecond, DeleteTime: 200 * time.Millisecond}})

	var op api.OperationView
	if code := s.call("POST", "/v1/servers", createBody("web-1"), &op, "Idempotency-Key", "hop-by-hop"); code != 202 {
		t.Fatalf("create answered %d", code)
	}
	if op.Type != "create" || op.Status != "pending" || op.ServerID == "" {
		t.Fatalf("create answered %+v", op)
	}

	// Hop 1: the request is on Kafka, on the partition of the customer's
	// bucket, keyed by the bucket.
	parts, _ := s.kafka.Partitions(cloudservers.TopicRequests)
	p := cloudservers.DefaultBucketMap(int32(len(parts))).Partition(s.customer)
	req, key := findRequest(t, s, p, op.ID)
	if req.ServerID != op.ServerID || req.Operation != cloudservers.OpCreate || req.CustomerID != s.customer {
		t.Fatalf("request on Kafka: %+v", req)
	}
	if key != strconv.Itoa(cloudservers.Bucket(s.customer)) {
		t.Fatalf("request key %q, want the bucket %d", key, cloudservers.Bucket(s.customer))
	}

	// Hops 2-4: the saga ran and the server is active with both addresses.
	srv := s.waitServer(op.ServerID, 60*time.Second, "active", "error")
	if srv.Status != "active" || srv.PrivateIPv4 == "" || srv.PublicIPv4 == "" {
		t.Fatalf("server after create: %+v", srv)
	}
	if got := s.waitOperation(op.ID, 10*time.Second); got.Status != "succeeded" {
		t.Fatalf("create operation: %+v", got)
	}

	// Temporal has the lifecycle and the saga, searchable by customer.
	ids := listWorkflows(t, s, fmt.Sprintf("CustomerId = '%s' AND ServerId = '%s'", s.customer, op.ServerID), 2)
	for _, want := range []string{workflows.ServerWorkflowID(op.ServerID), workflows.OperationWorkflowID(op.ID)} {
		if !ids[want] {
			t.Fatalf("Temporal has %v, want %s", ids, want)
		}
	}
	opIDs := listWorkflows(t, s, fmt.Sprintf("OperationId = '%s' AND Operation = 'create' AND NovaInstanceId IS NOT NULL", op.ID), 1)
	if !opIDs[workflows.OperationWorkflowID(op.ID)] {
		t.Fatalf("op workflow not found by OperationId/Operation/NovaInstanceId: %v", opIDs)
	}

	// OpenStack saw one port, one server, one floating IP — and no poll.
	for tmpl, want := range map[string]int{
		"POST /network/v2.0/ports":       1,
		"POST /compute/v2.1/servers":     1,
		"POST /network/v2.0/floatingips": 1,
		getServer:                        0,
	} {
		if got := s.calls.Count(tmpl); got != want {
			t.Errorf("%s called %d times, want %d (all: %v)", tmpl, got, want, summary(s.calls.Since(time.Time{})))
		}
	}
	// The router consumed Nova's notifications and signalled the workflow.
	if n := s.router.Stats.Delivered.Load(); n == 0 {
		t.Fatal("the router delivered no notification")
	}

	// Delete goes the same way, to deleted, leaving nothing in OpenStack.
	var del api.OperationView
	if code := s.call("DELETE", "/v1/servers/"+op.ServerID, nil, &del); code != 202 {
		t.Fatalf("delete answered %d", code)
	}
	s.waitServer(op.ServerID, 60*time.Second, "deleted")
	if got := s.waitOperation(del.ID, 10*time.Second); got.Status != "succeeded" {
		t.Fatalf("delete operation: %+v", got)
	}
	assertNothingLeft(t, s, op.ServerID)
	if got := s.calls.Count(getServer); got != 0 {
		t.Fatalf("%d status polls (GET /servers/{id}) during create and delete", got)
	}
}

// findRequest reads partition p of the requests topic from where the test
// started until it finds the operation's request.
func findRequest(t *testing.T, s *system, p int32, opID string) (cloudservers.Request, string) {
	t.Helper()
	consumer, err := sarama.NewConsumerFromClient(s.kafka)
	must(t, err)
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(cloudservers.TopicRequests, p, s.startOffsets[p])
	must(t, err)
	defer pc.Close()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case msg := <-pc.Messages():
			var req cloudservers.Request
			t.Logf("requests/%d@%d: %s", p, msg.Offset, msg.Value)
			if json.Unmarshal(msg.Value, &req) == nil && req.OperationID == opID {
				return req, string(msg.Key)
			}
		case <-timeout:
			t.Fatalf("request %s not on partition %d of %s", opID, p, cloudservers.TopicRequests)
		}
	}
}

// listWorkflows waits until the visibility query lists at least min
// workflows and returns their IDs.
func listWorkflows(t *testing.T, s *system, query string, min int) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	eventually(t, 20*time.Second, "Temporal lists "+query, func() error {
		resp, err := s.temporal.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{Query: query})
		if err != nil {
			return err
		}
		ids = map[string]bool{}
		for _, e := range resp.GetExecutions() {
			ids[e.GetExecution().GetWorkflowId()] = true
		}
		if len(ids) < min {
			return fmt.Errorf("%d workflows", len(ids))
		}
		return nil
	})
	return ids
}

// assertNothingLeft checks that OpenStack (the simulator's inventory, or
// the real cloud listed through gophercloud) holds no server, port or
// floating IP of the server.
func assertNothingLeft(t *testing.T, s *system, serverID string) {
	t.Helper()
	var leaked []string
	eventually(t, 30*time.Second, "nothing of server "+serverID+" left in OpenStack", func() error {
		if leaked = s.leftovers(serverID); len(leaked) > 0 {
			return fmt.Errorf("leaked: %s", strings.Join(leaked, ", "))
		}
		return nil
	})
}
