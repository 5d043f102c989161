//go:build integration

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/grpc"

	"github.com/cloudservers/cloudservers/bridge"
	"github.com/cloudservers/cloudservers/internal/notification"
	"github.com/cloudservers/cloudservers/workflows"
)

// opTrace is what one operation's saga did, read back from its workflow
// history (op/<id>) and the call log: the activities with the request IDs
// Nova answered, the notifications delivered to it, and the OpenStack calls
// made while it ran.
type opTrace struct {
	Operation  string         `json:"operation"`
	Seconds    float64        `json:"seconds"`      // API request to operation succeeded, as the customer sees it
	Saga       float64        `json:"saga_seconds"` // the saga's workflow, first to last event
	Activities []activityStep `json:"activities"`
	Signals    []signalSeen   `json:"notifications"`
	Calls      []string       `json:"openstack_calls"`
	CallLog    []callAt       `json:"openstack_call_log"`
}

type activityStep struct {
	Name      string  `json:"name"`
	At        float64 `json:"at"` // seconds since the saga started, when it completed
	RequestID string  `json:"request_id,omitempty"`
	Already   bool    `json:"already_done,omitempty"`
	Failed    string  `json:"failed,omitempty"`
	// Result is the activity's result (an object), e.g. the NovaServer a
	// reconciliation read made of Nova's answer.
	Result map[string]any `json:"result,omitempty"`
}

type signalSeen struct {
	At        float64 `json:"at"` // seconds since the saga started
	EventType string  `json:"event_type"`
	Format    string  `json:"format"`
	Publisher string  `json:"publisher"`
	// RequestID is the notification's; SameRequest whether it is the one
	// Nova answered the saga's call with ("" when the event has none).
	RequestID   string `json:"request_id,omitempty"`
	SameRequest string `json:"same_request"`
	State       string `json:"state,omitempty"`
	TaskState   string `json:"task_state,omitempty"`
}

// traceOperation reads the saga of an operation from Temporal.
func traceOperation(t *testing.T, s *system, opType, opID string, began, ended time.Time) opTrace {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr := opTrace{Operation: opType, Seconds: ended.Sub(began).Seconds()}
	iter := s.temporal.GetWorkflowHistory(ctx, workflows.OperationWorkflowID(opID), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	dc := converter.GetDefaultDataConverter()
	var start, last time.Time
	scheduled := map[int64]string{}
	var requestIDs []string
	for iter.HasNext() {
		ev, err := iter.Next()
		must(t, err)
		at := ev.GetEventTime().AsTime()
		if start.IsZero() {
			start = at
		}
		last = at
		rel := at.Sub(start).Seconds()
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			scheduled[ev.GetEventId()] = ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName()
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			a := ev.GetActivityTaskCompletedEventAttributes()
			step := activityStep{Name: scheduled[a.GetScheduledEventId()], At: rel}
			if strings.HasPrefix(step.Name, "Publish") {
				continue
			}
			var res map[string]any
			if p := a.GetResult(); p != nil && len(p.GetPayloads()) > 0 && dc.FromPayload(p.GetPayloads()[0], &res) == nil {
				step.Result = res
				step.RequestID, _ = res["request_id"].(string)
				step.Already, _ = res["already_done"].(bool)
			}
			if step.RequestID != "" {
				requestIDs = append(requestIDs, step.RequestID)
			}
			tr.Activities = append(tr.Activities, step)
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED:
			a := ev.GetActivityTaskFailedEventAttributes()
			tr.Activities = append(tr.Activities, activityStep{Name: scheduled[a.GetScheduledEventId()], At: rel, Failed: a.GetFailure().GetMessage()})
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
			a := ev.GetWorkflowExecutionSignaledEventAttributes()
			if a.GetSignalName() != workflows.SignalNovaEvent {
				continue
			}
			var n notification.Event
			if err := dc.FromPayloads(a.GetInput(), &n); err != nil {
				t.Errorf("signal %s: %v", a.GetSignalName(), err)
				continue
			}
			tr.Signals = append(tr.Signals, signalSeen{At: rel, EventType: n.EventType, Format: n.Format, Publisher: n.Publisher,
				RequestID: n.RequestID, State: n.State, TaskState: n.TaskState})
		}
	}
	tr.Saga = last.Sub(start).Seconds()
	// Judged once the whole history is read: a notification can reach the
	// saga before the activity that caused it has completed (Nova deletes
	// an instance without a host inside the API call).
	for i, sig := range tr.Signals {
		switch {
		case sig.RequestID == "":
			tr.Signals[i].SameRequest = "no request id"
		case slices.Contains(requestIDs, sig.RequestID):
			tr.Signals[i].SameRequest = "yes"
		default:
			tr.Signals[i].SameRequest = "other request"
		}
	}
	calls := callsBetween(s.calls, began, ended)
	tr.Calls = summary(calls)
	for _, c := range calls {
		tr.CallLog = append(tr.CallLog, callAt{At: c.Time.Sub(start).Seconds(), Took: c.Duration.Seconds(), Call: c.key(), Status: c.Status})
	}
	return tr
}

// callAt is one OpenStack call on the saga's clock.
type callAt struct {
	At     float64 `json:"at"`   // seconds since the saga started
	Took   float64 `json:"took"` // seconds
	Call   string  `json:"call"`
	Status int     `json:"status"`
}

func callsBetween(r *callRecorder, from, to time.Time) []cloudCall {
	var out []cloudCall
	for _, c := range r.Since(from) {
		if c.Time.Before(to) {
			out = append(out, c)
		}
	}
	return out
}

// logTrace logs a trace and, with CLOUDSERVERS_E2E_TRACE_DIR set, writes
// the traces of a test to <dir>/<test>-<sim|real>.json for comparison.
func logTrace(t *testing.T, tr opTrace) {
	t.Helper()
	var sig []string
	for _, x := range tr.Signals {
		sig = append(sig, fmt.Sprintf("%.2fs %s/%s(%s)", x.At, x.EventType, x.Format, x.SameRequest))
	}
	var acts []string
	for _, a := range tr.Activities {
		acts = append(acts, fmt.Sprintf("%.2fs %s", a.At, a.Name))
	}
	t.Logf("%s: %.1fs (saga %.1fs)\n  activities: %s\n  notifications delivered to the saga: %s\n  OpenStack calls: %s",
		tr.Operation, tr.Seconds, tr.Saga, strings.Join(acts, ", "), strings.Join(sig, ", "), strings.Join(tr.Calls, ", "))
}

func writeTraces(t *testing.T, traces []opTrace) {
	dir := os.Getenv("CLOUDSERVERS_E2E_TRACE_DIR")
	if dir == "" {
		return
	}
	which := "sim"
	if realCloud() {
		which = "real"
	}
	b, _ := json.MarshalIndent(traces, "", "  ")
	name := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+"-"+which+".json")
	if err := os.MkdirAll(dir, 0o755); err == nil {
		if err := os.WriteFile(name, b, 0o644); err != nil {
			t.Logf("trace not written: %v", err)
		}
	}
}

// dropSignals stands between the router and Temporal and loses the Nova
// notifications drop selects, as if they never reached Kafka: the same
// loss on the simulator and on a real cloud.
type dropSignals struct {
	bridge.Signaller
	drop func(notification.Event) bool
}

func (d dropSignals) SignalWorkflowExecution(ctx context.Context, in *workflowservice.SignalWorkflowExecutionRequest, opts ...grpc.CallOption) (*workflowservice.SignalWorkflowExecutionResponse, error) {
	var ev notification.Event
	if in.SignalName == workflows.SignalNovaEvent && converter.GetDefaultDataConverter().FromPayloads(in.Input, &ev) == nil && d.drop(ev) {
		return &workflowservice.SignalWorkflowExecutionResponse{}, nil
	}
	return d.Signaller.SignalWorkflowExecution(ctx, in, opts...)
}
