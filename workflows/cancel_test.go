package workflows_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/cloudservers/cloudservers/workflows/sagatest"
)

// cancelAt cancels the saga after d (while it waits for a notification that
// never comes) and marks that moment as the failure.
func cancelAt(d time.Duration, action string) func(*testsuite.TestWorkflowEnvironment, *sagatest.Cloud) {
	return func(env *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
		c.Notify(action) // lost: the saga is still waiting when cancelled
		env.RegisterDelayedCallback(func() {
			c.MarkFailure()
			env.CancelWorkflow()
		}, d)
	}
}

// TestCancellationRunsCompensations cancels sagas mid-way: the
// compensations still run (on a disconnected context), their activities
// are called, and the compensations' own waits for Nova still work.
func TestCancellationRunsCompensations(t *testing.T) {
	t.Run("create, while waiting for the build", func(t *testing.T) {
		o := createSaga.Run(t, cancelAt(10*time.Second, "CreateNovaServer"))
		f := sagatest.RequireStepFailure(t, o.Err)
		assert.Equal(t, "WaitForNovaBuild", f.Step)
		assert.Equal(t, "cancelled", f.Message)
		assert.Equal(t, []string{"DeleteNovaServer", "DeletePort"}, f.Compensations)
		assert.Empty(t, f.CompensationErrors)
		// A real server closes a workflow whose error wraps a CanceledError
		// as Canceled and drops the error: the report above would be lost.
		assert.False(t, temporal.IsCanceledError(o.Err), "the saga's error must not wrap the cancellation: %v", o.Err)
		after, ok := o.Cloud.CallsAfterFailure()
		require.True(t, ok)
		assert.Equal(t, []string{"DeleteNovaServer", "DeletePort"}, after, "compensation activities called after the cancellation")
		assert.Equal(t, 0, o.Cloud.Count("GetNovaServer"), "the compensation's wait got instance.delete.end")

		var deletedInstance, deletedPort any
		for _, call := range o.Cloud.Calls() {
			switch call.Name {
			case "DeleteNovaServer":
				deletedInstance = call.Arg
			case "DeletePort":
				deletedPort = call.Arg
			}
		}
		assert.Equal(t, sagatest.InstanceID(serverID), deletedInstance)
		assert.Equal(t, sagatest.PortID(serverID), deletedPort)
	})

	t.Run("create, the compensation's own notification lost: it still makes its one read", func(t *testing.T) {
		o := createSaga.Run(t, func(env *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			cancelAt(10*time.Second, "CreateNovaServer")(env, c)
			c.Notify("DeleteNovaServer")
		})
		f := sagatest.RequireStepFailure(t, o.Err)
		assert.Equal(t, "cancelled", f.Message)
		assert.Empty(t, f.CompensationErrors, "the read shows the instance DELETED")
		after, _ := o.Cloud.CallsAfterFailure()
		assert.Equal(t, []string{"DeleteNovaServer", "GetNovaServer", "DeletePort"}, after)
	})

	t.Run("resize, while waiting for the resize: reverted", func(t *testing.T) {
		o := resizeSaga(activeServer()).Run(t, cancelAt(10*time.Second, "ResizeNovaServer"))
		f := sagatest.RequireStepFailure(t, o.Err)
		assert.Equal(t, "WaitForNovaResize", f.Step)
		assert.Equal(t, "cancelled", f.Message)
		assert.Equal(t, []string{"RevertResize"}, f.Compensations)
		after, _ := o.Cloud.CallsAfterFailure()
		assert.Equal(t, []string{"RevertResize"}, after)
	})

	t.Run("reboot: nothing to undo", func(t *testing.T) {
		o := rebootSaga("soft").Run(t, cancelAt(10*time.Second, "RebootNovaServer"))
		f := sagatest.RequireStepFailure(t, o.Err)
		assert.Equal(t, "WaitForRebootNovaServer", f.Step)
		assert.Equal(t, "cancelled", f.Message)
		assert.Empty(t, f.Compensations)
		assert.Equal(t, []string{"RebootNovaServer"}, o.Cloud.OpenStackCalls())
	})
}
