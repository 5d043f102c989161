package workflows_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/cloudservers/cloudservers/activities"
	"github.com/cloudservers/cloudservers/workflows/sagatest"
)

// The sagas wait for Nova's notifications; these tests deliver them
// duplicated, late, reordered, lost, or about another instance.

func TestNotificationDuplicates(t *testing.T) {
	t.Run("the same .end twice and its legacy twin: one success, nothing more", func(t *testing.T) {
		end := sagatest.End("instance.create.end")
		o := createSaga.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			c.Notify("CreateNovaServer", sagatest.Update("building", "spawning"), end, end.Legacy().At(3*time.Second), end.At(4*time.Second))
		})
		require.NoError(t, o.Err)
		assert.Equal(t, createSaga.HappyCalls(), o.Cloud.OpenStackCalls())
	})

	t.Run("a build that fails on one host and succeeds on the next: not a failure", func(t *testing.T) {
		e := sagatest.ErrorEvent("instance.create.error", "PortBindingFailed: Binding failed on host compute-1")
		e.Fails = false
		o := createSaga.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			c.Notify("CreateNovaServer", sagatest.Update("building", "spawning"), e, sagatest.Update("building", "scheduling").At(3*time.Second),
				sagatest.End("instance.create.end").At(5*time.Second))
		})
		require.NoError(t, o.Err)
		assert.Equal(t, createSaga.HappyCalls(), o.Cloud.OpenStackCalls())
	})

	t.Run("a build error on the last host, then ERROR: the step fails with that host's fault", func(t *testing.T) {
		e := sagatest.ErrorEvent("instance.create.error", "PortBindingFailed: Binding failed for port p1")
		e.Fails = false
		u := sagatest.Update("error", "").At(3 * time.Second)
		u.Fails = true
		o := createSaga.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			c.Notify("CreateNovaServer", e, u)
		})
		f := sagatest.RequireStepFailure(t, o.Err)
		assert.Equal(t, "WaitForNovaBuild", f.Step)
		assert.Contains(t, f.Message, "PortBindingFailed: Binding failed for port p1")
		assert.Equal(t, []string{"DeleteNovaServer", "DeletePort"}, f.Compensations)
	})

	t.Run("ERROR and no event with the reason within the grace: one read gives Nova's fault", func(t *testing.T) {
		u := sagatest.Update("error", "").At(2 * time.Second)
		u.Fails = true
		o := createSaga.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			c.Notify("CreateNovaServer", u)
			c.AnswerGet(activities.NovaServer{Status: "ERROR", Fault: "Exceeded maximum number of retries. Exhausted all hosts available for retrying build failures for instance inst-srv-1."}, true)
		})
		f := sagatest.RequireStepFailure(t, o.Err)
		assert.Equal(t, "WaitForNovaBuild", f.Step)
		assert.Equal(t, "build of Nova server inst-srv-1: Nova put the instance in ERROR: Exceeded maximum number of retries. Exhausted all hosts available for retrying build failures for instance inst-srv-1.", f.Message)
		assert.Equal(t, 1, o.Cloud.Count("GetNovaServer"), "one read for the reason, no polling")
		assert.Equal(t, []string{"DeleteNovaServer", "DeletePort"}, f.Compensations)
	})

	t.Run("ERROR, no reason, and the read fails too: the step still fails, saying no fault was given", func(t *testing.T) {
		u := sagatest.Update("error", "").At(2 * time.Second)
		u.Fails = true
		o := createSaga.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			c.Notify("CreateNovaServer", u)
			c.Fail("GetNovaServer", sagatest.NonRetryable("get Nova server inst-srv-1: OpenStack answered 503"))
		})
		f := sagatest.RequireStepFailure(t, o.Err)
		assert.Equal(t, "build of Nova server inst-srv-1: Nova put the instance in ERROR: no fault given", f.Message)
		assert.Equal(t, []string{"DeleteNovaServer", "DeletePort"}, f.Compensations)
	})

	t.Run("compute_task's summary before the host's error (another partition): the step fails with the host's reason", func(t *testing.T) {
		summary := sagatest.ErrorEvent("compute_task.build_instances.error", "MaxRetriesExceeded: Exceeded maximum number of retries.").At(2 * time.Second)
		host := sagatest.ErrorEvent("instance.create.error", "PortBindingFailed: Binding failed for port p1").At(2*time.Second + 300*time.Millisecond)
		host.Fails = false
		o := createSaga.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			c.Notify("CreateNovaServer", summary, host)
		})
		f := sagatest.RequireStepFailure(t, o.Err)
		assert.Contains(t, f.Message, "instance.create.error: PortBindingFailed: Binding failed for port p1")
		assert.Contains(t, f.Message, "then compute_task.build_instances.error: MaxRetriesExceeded")
		assert.Equal(t, []string{"DeleteNovaServer", "DeletePort"}, f.Compensations)
	})

	t.Run("an .error and its legacy twin: the step fails once, each compensation runs once", func(t *testing.T) {
		e := sagatest.ErrorEvent("compute_task.build_instances.error", "No valid host was found.")
		o := createSaga.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			c.Notify("CreateNovaServer", e, e.Legacy().At(2*time.Second+time.Millisecond), e.At(3*time.Second))
		})
		f := sagatest.RequireStepFailure(t, o.Err)
		assert.Equal(t, "WaitForNovaBuild", f.Step)
		assert.Equal(t, []string{"DeleteNovaServer", "DeletePort"}, f.Compensations)
		assert.Equal(t, []string{"CreatePort", "CreateNovaServer", "DeleteNovaServer", "DeletePort"}, o.Cloud.OpenStackCalls())
	})

	t.Run("resize: the .end's twin arriving during the confirmation does not end it", func(t *testing.T) {
		s := resizeSaga(activeServer())
		o := s.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			end := sagatest.End("instance.resize_finish.end")
			c.Notify("ResizeNovaServer", end, end.Legacy().At(time.Minute/2))
			// The confirmation's own notification is lost and Nova still
			// shows VERIFY_RESIZE: if the twin had ended the wait, no
			// reconciliation read would happen and the saga would succeed.
			c.Notify("ConfirmResize")
			c.AnswerGet(activities.NovaServer{Status: "VERIFY_RESIZE"}, true)
		})
		f := sagatest.RequireStepFailure(t, o.Err)
		assert.Equal(t, "ConfirmResize", f.Step)
		assert.Equal(t, 1, o.Cloud.Count("GetNovaServer"))
	})
}

func TestNotificationLate(t *testing.T) {
	// The previous reboot's notifications (another request ID) arrive
	// while this reboot waits: they must neither end nor fail it.
	previous := "req-previous-reboot"
	late := []sagatest.Emit{
		sagatest.End("instance.reboot.end").ForRequest(previous).At(time.Second),
		sagatest.End("instance.reboot.end").ForRequest(previous).Legacy().At(time.Second),
		sagatest.ErrorEvent("instance.reboot.error", "old failure").ForRequest(previous).At(2 * time.Second),
		sagatest.Update("error", "").ForRequest(previous).At(3 * time.Second),
	}
	s := rebootSaga("soft")

	t.Run("ignored; the saga ends on its own .end", func(t *testing.T) {
		var start time.Time
		o := s.Run(t, func(env *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			start = env.Now()
			c.Notify("RebootNovaServer", append(late, sagatest.End("instance.reboot.end").At(30*time.Second))...)
		})
		require.NoError(t, o.Err)
		assert.Equal(t, []string{"RebootNovaServer"}, o.Cloud.OpenStackCalls(), "no reconciliation read: its own .end came")
		assert.GreaterOrEqual(t, o.Env.Now().Sub(start), 30*time.Second, "the saga kept waiting for its own notification")
		assert.Len(t, o.Cloud.Delivered(), len(late)+1)
	})

	t.Run("ignored; with its own lost, the one reconciliation read decides", func(t *testing.T) {
		o := s.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			c.Notify("RebootNovaServer", late...)
		})
		require.NoError(t, o.Err, "Nova shows ACTIVE after the reboot")
		assert.Equal(t, []string{"RebootNovaServer", "GetNovaServer"}, o.Cloud.OpenStackCalls())
	})
}

func TestNotificationReordered(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

	t.Run("an older update to error arriving after a newer one is stale", func(t *testing.T) {
		o := createSaga.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			c.Notify("CreateNovaServer",
				sagatest.Update("active", "").Stamped(t0.Add(3*time.Second)).At(time.Second),
				sagatest.Update("error", "").Stamped(t0.Add(time.Second)).At(2*time.Second),
				sagatest.End("instance.create.end").Stamped(t0.Add(4*time.Second)).At(3*time.Second),
			)
		})
		require.NoError(t, o.Err)
		assert.Equal(t, createSaga.HappyCalls(), o.Cloud.OpenStackCalls())
	})

	t.Run("a newer update to error arriving after an older one fails the build", func(t *testing.T) {
		o := createSaga.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			bad := sagatest.Update("error", "").Stamped(t0.Add(3 * time.Second)).At(2 * time.Second)
			bad.Event.Fault, bad.Fails = "disk full", true
			c.Notify("CreateNovaServer", sagatest.Update("building", "spawning").Stamped(t0.Add(time.Second)).At(time.Second), bad)
		})
		f := sagatest.RequireStepFailure(t, o.Err)
		assert.Equal(t, "WaitForNovaBuild", f.Step)
		assert.Contains(t, f.Message, "disk full")
	})

	t.Run(".end before the updates: done at the .end, the stale updates change nothing", func(t *testing.T) {
		o := createSaga.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			c.Notify("CreateNovaServer",
				sagatest.End("instance.create.end").Stamped(t0.Add(3*time.Second)).At(time.Second),
				sagatest.Update("building", "spawning").Stamped(t0.Add(time.Second)).At(2*time.Second),
				sagatest.Update("error", "").Stamped(t0.Add(2*time.Second)).At(2*time.Second),
			)
		})
		require.NoError(t, o.Err)
		assert.Equal(t, createSaga.HappyCalls(), o.Cloud.OpenStackCalls())
	})
}

func TestNotificationLost(t *testing.T) {
	t.Run("one reconciliation read at the timeout; Nova shows the action done: success", func(t *testing.T) {
		var start time.Time
		o := createSaga.Run(t, func(env *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			start = env.Now()
			c.Notify("CreateNovaServer")
		})
		require.NoError(t, o.Err)
		assert.Equal(t, 1, o.Cloud.Count("GetNovaServer"), "exactly one reconciliation read, no polling")
		assert.Equal(t, []string{"CreatePort", "CreateNovaServer", "GetNovaServer", "AllocateFloatingIP", "AssociateFloatingIP"}, o.Cloud.OpenStackCalls())
		for _, call := range o.Cloud.Calls() {
			if call.Name == "GetNovaServer" {
				assert.Equal(t, sagatest.InstanceID(serverID), call.Arg)
				assert.GreaterOrEqual(t, call.At.Sub(start), eventTimeout, "read only after the timeout")
				assert.Less(t, call.At.Sub(start), eventTimeout+10*time.Second)
			}
		}
	})

	t.Run("Nova shows something else: the step fails naming what timed out", func(t *testing.T) {
		o := createSaga.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			c.Notify("CreateNovaServer")
			c.AnswerGet(activities.NovaServer{Status: "BUILD", TaskState: "spawning"}, true)
		})
		f := sagatest.RequireStepFailure(t, o.Err)
		assert.Equal(t, 1, o.Cloud.Count("GetNovaServer"))
		assert.Equal(t, "WaitForNovaBuild", f.Step)
		assert.Equal(t, `build of Nova server inst-srv-1: no notification within 1m0s; Nova shows status BUILD task "spawning": want ACTIVE`, f.Message)
		assert.Equal(t, []string{"DeleteNovaServer", "DeletePort"}, f.Compensations)
	})

	t.Run("the reconciliation read itself fails: the message still says what timed out", func(t *testing.T) {
		o := createSaga.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			c.Notify("CreateNovaServer")
			c.Fail("GetNovaServer", sagatest.NonRetryable("get Nova server inst-srv-1: OpenStack answered 403: forbidden"))
		})
		f := sagatest.RequireStepFailure(t, o.Err)
		assert.Equal(t, 1, o.Cloud.Count("GetNovaServer"))
		assert.Equal(t, "build of Nova server inst-srv-1: no notification within 1m0s, and the reconciliation read failed: get Nova server inst-srv-1: OpenStack answered 403: forbidden", f.Message)
	})

	t.Run("every Nova action's wait: one read, at the timeout", func(t *testing.T) {
		for name, c := range map[string]struct {
			saga   sagatest.Saga
			action string
		}{
			"delete":    {deleteSaga, "DeleteNovaServer"},
			"reboot":    {rebootSaga("hard"), "RebootNovaServer"},
			"power_off": {powerOffSaga, "StopNovaServer"},
			"power_on":  {powerOnSaga, "StartNovaServer"},
			"resize":    {resizeSaga(activeServer()), "ResizeNovaServer"},
			"confirm":   {resizeSaga(offServer()), "ConfirmResize"},
		} {
			t.Run(name, func(t *testing.T) {
				o := c.saga.Run(t, func(_ *testsuite.TestWorkflowEnvironment, cl *sagatest.Cloud) { cl.Notify(c.action) })
				require.NoError(t, o.Err)
				assert.Equal(t, 1, o.Cloud.Count("GetNovaServer"))
				calls := o.Cloud.OpenStackCalls()
				i := indexOf(calls, c.action)
				require.GreaterOrEqual(t, i, 0)
				assert.Equal(t, "GetNovaServer", calls[i+1], "the read follows the action whose notification was lost")
			})
		}
	})

	t.Run("the action was already done: no wait, no read", func(t *testing.T) {
		o := powerOffSaga.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			c.AlreadyDone("StopNovaServer")
			c.Notify("StopNovaServer")
		})
		require.NoError(t, o.Err)
		assert.Equal(t, []string{"StopNovaServer"}, o.Cloud.OpenStackCalls())
	})
}

func TestNotificationOtherInstance(t *testing.T) {
	other := "inst-someone-else"
	t.Run("another instance's events, even with our request ID, are ignored", func(t *testing.T) {
		o := createSaga.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			c.Notify("CreateNovaServer",
				sagatest.ErrorEvent("instance.create.error", "not ours").ForInstance(other).At(time.Second),
				sagatest.Update("error", "").ForInstance(other).At(time.Second),
				sagatest.End("instance.create.end").At(5*time.Second),
			)
		})
		require.NoError(t, o.Err)
		assert.Equal(t, createSaga.HappyCalls(), o.Cloud.OpenStackCalls())
	})

	t.Run("another instance's .end does not end our wait", func(t *testing.T) {
		o := createSaga.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			c.Notify("CreateNovaServer", sagatest.End("instance.create.end").ForInstance(other))
			c.AnswerGet(activities.NovaServer{Status: "BUILD", TaskState: "spawning"}, true)
		})
		f := sagatest.RequireStepFailure(t, o.Err)
		assert.Equal(t, "WaitForNovaBuild", f.Step)
		assert.Equal(t, 1, o.Cloud.Count("GetNovaServer"))
	})
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}
