package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestPersistenceRequestsSumsByOperation(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`# HELP persistence_requests persistence_requests counter
# TYPE persistence_requests counter
persistence_requests{operation="UpdateWorkflowExecution",service_name="history"} 10
persistence_requests{operation="UpdateWorkflowExecution",service_name="matching"} 2
persistence_requests{operation="GetWorkflowExecution",service_name="history"} 3
# TYPE other_requests counter
other_requests{operation="UpdateWorkflowExecution"} 100
`))
	}))
	defer srv.Close()
	families, err := scrape(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	got := byOperation(families, "persistence_requests")
	if got["UpdateWorkflowExecution"] != 12 || got["GetWorkflowExecution"] != 3 || len(got) != 2 {
		t.Fatalf("got %v, want UpdateWorkflowExecution 12, GetWorkflowExecution 3", got)
	}
}

func TestPersistenceRequestsRefusesGarbage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("persistence_requests{operation=\"x\" 1 2 3\n"))
	}))
	defer srv.Close()
	if _, err := scrape(context.Background(), srv.URL); err == nil || !strings.Contains(err.Error(), srv.URL) {
		t.Fatalf("err = %v, want a parse error naming the endpoint", err)
	}
}

func TestEngineUseOverABurst(t *testing.T) {
	pids := map[string]int{"self": os.Getpid(), "gone": 1 << 30}
	before, err := snapshotEngines(context.Background(), pids, "")
	if err != nil {
		t.Fatal(err)
	}
	// Burn some CPU so the difference is positive.
	x := 0
	for i := range 50_000_000 {
		x ^= i
	}
	_ = x
	after, _ := snapshotEngines(context.Background(), pids, "")
	use := after.since(before)
	if _, ok := use.cpu["gone"]; ok {
		t.Fatal("a process that does not exist has a CPU time")
	}
	if use.cpu["self"] <= 0 {
		t.Fatalf("CPU of this process over a busy loop = %v, want > 0", use.cpu["self"])
	}
	before.persistence = map[string]float64{"A": 5, "B": 1}
	after.persistence = map[string]float64{"A": 9, "B": 1, "C": 2}
	use = after.since(before)
	if total(use.persistence) != 6 || use.persistence["A"] != 4 || use.persistence["C"] != 2 {
		t.Fatalf("persistence over the burst = %v, want A 4, C 2", use.persistence)
	}
	raw := engineUse{persistence: map[string]float64{"A": 2}}
	if got := top(use.persistence, raw.persistence, 2, 1, 1); got != "A 2.0 (raw 2.0)" {
		t.Fatalf("top = %q", got)
	}
}

func TestTaskWaitSumsScheduledToStarted(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	at := func(ms int) *timestamppb.Timestamp {
		return timestamppb.New(t0.Add(time.Duration(ms) * time.Millisecond))
	}
	events := []*historypb.HistoryEvent{
		{EventId: 2, EventType: enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, EventTime: at(0)},
		{EventId: 3, EventType: enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED, EventTime: at(40),
			Attributes: &historypb.HistoryEvent_WorkflowTaskStartedEventAttributes{WorkflowTaskStartedEventAttributes: &historypb.WorkflowTaskStartedEventAttributes{ScheduledEventId: 2}}},
		{EventId: 5, EventType: enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, EventTime: at(50)},
		{EventId: 6, EventType: enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED, EventTime: at(150),
			Attributes: &historypb.HistoryEvent_ActivityTaskStartedEventAttributes{ActivityTaskStartedEventAttributes: &historypb.ActivityTaskStartedEventAttributes{ScheduledEventId: 5}}},
		{EventId: 7, EventType: enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, EventTime: at(900)},
	}
	if got := taskWait(events); got != 140*time.Millisecond {
		t.Fatalf("taskWait = %v, want 140ms (40 for the workflow task, 100 for the activity)", got)
	}
}
