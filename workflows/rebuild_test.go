package workflows_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/activities"
	"github.com/cloudservers/cloudservers/workflows"
	"github.com/cloudservers/cloudservers/workflows/sagatest"
)

var rebuildSaga = sagatest.Saga{
	Workflow: workflows.RebuildServerWorkflow,
	Input:    input(request("op-rebuild", cloudservers.OpRebuild, cloudservers.RebuildParams{Image: "tiny"}), bootedFrom("debian")),
	Steps: []sagatest.Step{
		{Activity: "RebuildNovaServer"},
		{Waits: "RebuildNovaServer", Failures: []sagatest.Failure{
			sagatest.EventFailure("RebuildNovaServer", "instance.rebuild.error", "Virtual Interface creation failed"),
			sagatest.ErrorStateFailure("RebuildNovaServer", "rebuild failed"),
			sagatest.LostFailure("RebuildNovaServer", activities.NovaServer{Status: "REBUILD", TaskState: "rebuild_spawning"}),
			sagatest.LostFailure("RebuildNovaServer", activities.NovaServer{Status: "ERROR", Fault: "rebuild failed"}),
		}},
	},
}

func TestRebuildSaga(t *testing.T) {
	t.Run("succeeds", rebuildSaga.RunSuccess)
	t.Run("step fails", rebuildSaga.RunFailures)
	t.Run("retry", rebuildSaga.RunRetries)
	t.Run("cancelled", rebuildSaga.RunCancellations)
	t.Run("asks Nova for the image and keeps the server's instance and addresses", func(t *testing.T) {
		o := rebuildSaga.Run(t, nil)
		require.NoError(t, o.Err)
		assert.Equal(t, []any{activities.RebuildInput{InstanceID: sagatest.InstanceID(serverID), Image: "tiny"}}, args(o.Cloud, "RebuildNovaServer"))
		assert.Equal(t, bootedFrom("tiny"), o.Result.Server, "the new image; the same instance, port and addresses")
	})
}

func bootedFrom(image string) cloudservers.Server {
	s := activeServer()
	s.Image = image
	return s
}
