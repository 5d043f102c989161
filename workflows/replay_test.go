package workflows_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/cloudservers/cloudservers/workflows"
)

// TestReplayRecordedHistories replays the histories recorded from a real
// Temporal server (testdata/histories, see testdata/README.md) against the
// current workflow code: a change that would break a running workflow
// (another activity, a reordered step, a new timer...) fails here. A change
// that is meant to do that needs workflow.GetVersion, or new recordings
// once no old workflow can still be running.
func TestReplayRecordedHistories(t *testing.T) {
	// One folder per recording: latest/ from the current code, older ones
	// (named by the day they were recorded) from code still in production
	// then, whose workflows the GetVersion branches keep replaying.
	files, err := filepath.Glob(filepath.Join("testdata", "histories", "*", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no recorded histories: see testdata/README.md")
	for _, f := range files {
		name := filepath.Base(filepath.Dir(f)) + "/" + strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			workflows.Register(r)
			require.NoError(t, r.ReplayWorkflowHistoryFromJSONFile(quietLogger(), f))
		})
	}
}

// Every saga of the registry has a recorded history in latest/: a new
// operation is not done until `make histories` recorded it, and its replay
// guards it from then on.
func TestEverySagaHasARecordedHistory(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "histories", "latest", "*.json"))
	require.NoError(t, err)
	recorded := map[string]bool{}
	for _, f := range files {
		recorded[startedType(t, f)] = true
	}
	for _, d := range workflows.Registry() {
		assert.True(t, recorded[d.Name()], "no history of %s (operation %s) in testdata/histories/latest: add a scenario to sagaScenarios and run make histories ONLY=<its name>", d.Name(), d.Operation)
	}
	assert.True(t, recorded["ServerWorkflow"], "no history of the lifecycle in testdata/histories/latest")
}

// startedType is the workflow type of a recorded history.
func startedType(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	var h struct {
		Events []struct {
			Started *struct {
				WorkflowType struct{ Name string } `json:"workflowType"`
			} `json:"workflowExecutionStartedEventAttributes"`
		} `json:"events"`
	}
	require.NoError(t, json.Unmarshal(b, &h), file)
	require.NotEmpty(t, h.Events, file)
	require.NotNil(t, h.Events[0].Started, "%s: the first event is the start", file)
	return h.Events[0].Started.WorkflowType.Name
}

func quietLogger() log.Logger {
	return log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
}
