//go:build integration

package bridge

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/cloudservers/cloudservers/internal/devstack"
	"github.com/cloudservers/cloudservers/internal/notification"
	"github.com/cloudservers/cloudservers/workflows"
)

// The versioned and legacy copies of one Nova event reach a workflow once:
// the router signals both with one request ID, and the real Temporal
// records the first and drops the second (no event, no workflow task). A
// different event (another request ID) is recorded.
func TestTemporalDropsASignalWithTheSameRequestID(t *testing.T) {
	ends := devstack.TestEndpoints(t)
	tc, err := client.Dial(client.Options{HostPort: ends.Temporal, Namespace: ends.TemporalNamespace})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A workflow no worker runs: it only has to exist to take signals.
	id := workflows.OperationWorkflowID("dedupe-" + uuid.NewString())
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "nobody-polls-" + uuid.NewString()[:8]}, "NobodyRunsMe")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tc.TerminateWorkflow(context.Background(), id, run.GetRunID(), "test done") }()

	r := &Router{Signals: tc.WorkflowService(), Namespace: ends.TemporalNamespace}
	instance, req := uuid.NewString(), "req-"+uuid.NewString()
	versioned := notification.Event{Format: notification.FormatVersioned, EventType: "instance.reboot.end", InstanceID: instance, RequestID: req, State: "active", Publisher: "nova-compute:host1"}
	legacy := versioned
	legacy.Format, legacy.Publisher, legacy.RawEventType = notification.FormatLegacy, "compute.host1", "compute.instance.reboot.end"
	other := versioned
	other.EventType, other.RequestID = "instance.power_off.end", "req-"+uuid.NewString()
	for _, ev := range []notification.Event{versioned, legacy, versioned, other} {
		if err := r.signal(ctx, id, ev); err != nil {
			t.Fatal(err)
		}
	}
	signals := 0
	it := tc.GetWorkflowHistory(ctx, id, run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if e.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED {
			signals++
		}
	}
	if signals != 2 {
		t.Fatalf("%d signals in the history, want 2: the reboot's two copies (and its redelivery) once, the power-off once", signals)
	}
}
