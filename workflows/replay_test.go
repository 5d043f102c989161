package workflows_test

import (
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

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

func quietLogger() log.Logger {
	return log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
}
