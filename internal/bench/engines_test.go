package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
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
	got, err := persistenceRequests(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if got["UpdateWorkflowExecution"] != 12 || got["GetWorkflowExecution"] != 3 || len(got) != 2 {
		t.Fatalf("got %v, want UpdateWorkflowExecution 12, GetWorkflowExecution 3", got)
	}
}

func TestPersistenceRequestsRefusesGarbage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("persistence_requests{operation=\"x\" 1 2 3\n"))
	}))
	defer srv.Close()
	if _, err := persistenceRequests(context.Background(), srv.URL); err == nil || !strings.Contains(err.Error(), srv.URL) {
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
	if use.persistenceTotal() != 6 || use.persistence["A"] != 4 || use.persistence["C"] != 2 {
		t.Fatalf("persistence over the burst = %v, want A 4, C 2", use.persistence)
	}
	raw := engineUse{persistence: map[string]float64{"A": 2}}
	if got := topPersistence(use, raw, 2, 1, 1); got != "A 2.0 (raw 2.0)" {
		t.Fatalf("topPersistence = %q", got)
	}
}
