//go:build integration

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cloudservers/cloudservers/api"
	"github.com/cloudservers/cloudservers/internal/openstacksim"
	"github.com/cloudservers/cloudservers/workflows"
)

// TestCancelDuringAnActivityLeavesNothing cancels a create while Neutron
// is still answering the floating IP's allocation (the simulator holds the
// call for 3 s): the saga waits for the activity's result, so the floating
// IP that call makes is released with the instance and port before it, and
// OpenStack is left with nothing of the server. (Without the wait the saga
// undid the instance and the port at once, and the floating IP appeared
// afterwards, owned by no one until the reaper came.)
func TestCancelDuringAnActivityLeavesNothing(t *testing.T) {
	needsSimulator(t, "holding Neutron's answer needs the simulator's latency fault")
	s := startSystem(t, options{sim: openstacksim.Config{BootTime: 300 * time.Millisecond, DeleteTime: 200 * time.Millisecond}})
	s.sim.Faults().AddHTTP(openstacksim.HTTPFault{Method: "POST", Path: "/network/v2.0/floatingips", Latency: openstacksim.Duration(3 * time.Second), Count: 1})

	var op api.OperationView
	if code := s.call("POST", "/v1/servers", createBody("cancelled"), &op); code != 202 {
		t.Fatalf("create answered %d", code)
	}
	ctx := context.Background()
	opID := workflows.OperationWorkflowID(op.ID)
	eventually(t, 30*time.Second, "AllocateFloatingIP in progress", func() error {
		d, err := s.temporal.DescribeWorkflowExecution(ctx, opID, "")
		if err != nil {
			return err
		}
		for _, a := range d.PendingActivities {
			if a.ActivityType.GetName() == "AllocateFloatingIP" && a.Attempt == 1 && a.LastStartedTime != nil {
				return nil
			}
		}
		return fmt.Errorf("pending activities: %v", d.PendingActivities)
	})
	if err := s.temporal.CancelWorkflow(ctx, opID, ""); err != nil {
		t.Fatal(err)
	}
	got := s.waitOperation(op.ID, 60*time.Second)
	if got.Status != "failed" || !strings.Contains(got.Error, "cancelled") {
		t.Fatalf("operation after the cancel: %+v", got)
	}
	t.Logf("the customer sees: %s (step %s)", got.Error, got.FailedStep)
	// Look for leftovers only once the held call has been answered: what
	// it made exists from then on.
	eventually(t, 30*time.Second, "the held allocation answered", func() error {
		if s.calls.Count("POST /network/v2.0/floatingips") == 0 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	assertNothingLeft(t, s, op.ServerID)
	if n := s.calls.Count("DELETE /network/v2.0/floatingips/{id}"); n != 1 {
		t.Errorf("the floating IP the cancelled call made was released %d times, want 1", n)
	}
}
