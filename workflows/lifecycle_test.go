package workflows_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/activities"
	"github.com/cloudservers/cloudservers/workflows"
	"github.com/cloudservers/cloudservers/workflows/sagatest"
)

// lifecycleRun runs ServerWorkflow with the real sagas as children and the
// Cloud as OpenStack; notifications go straight to the running saga, as the
// router sends them (or, with relay, to the lifecycle, which must forward
// them, as for routers before level 1).
type lifecycleRun struct {
	env   *testsuite.TestWorkflowEnvironment
	cloud *sagatest.Cloud
	start time.Time

	mu     sync.Mutex
	events []childEvent
}

type childEvent struct {
	what string // "start" or "end"
	id   string // op/<operation id>
	at   time.Time
	err  error
}

// runLimit ends a lifecycle that is still waiting for requests: a lifecycle
// only ends by itself after its server is deleted.
const runLimit = 6 * time.Hour

func newLifecycle(t *testing.T) *lifecycleRun { return newLifecycleWith(t, false) }

func newLifecycleWith(t *testing.T, relay bool) *lifecycleRun {
	env := sagatest.NewEnv()
	workflows.Register(env)
	cloud := sagatest.NewCloud(sagatest.EnvDeliverer{Env: env, Direct: !relay})
	cloud.Install(env)
	r := &lifecycleRun{env: env, cloud: cloud, start: env.Now()}
	env.SetWorkflowRunTimeout(runLimit)
	env.SetOnChildWorkflowStartedListener(func(info *workflow.Info, _ workflow.Context, _ converter.EncodedValues) {
		r.record(childEvent{what: "start", id: info.WorkflowExecution.ID, at: env.Now()})
	})
	env.SetOnChildWorkflowCompletedListener(func(info *workflow.Info, _ converter.EncodedValue, err error) {
		r.record(childEvent{what: "end", id: info.WorkflowExecution.ID, at: env.Now(), err: err})
	})
	return r
}

func (r *lifecycleRun) record(e childEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *lifecycleRun) children() []childEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]childEvent(nil), r.events...)
}

// sequence is the children's starts and ends, in order ("start op/a").
func (r *lifecycleRun) sequence() []string {
	var out []string
	for _, e := range r.children() {
		out = append(out, e.what+" "+e.id)
	}
	return out
}

func (r *lifecycleRun) signalAt(d time.Duration, req cloudservers.Request) {
	r.env.RegisterDelayedCallback(func() { r.env.SignalWorkflow(workflows.SignalRequest, req) }, d)
}

// run runs the lifecycle; the error is nil when it ended by itself, and
// the run-limit timeout when it was still waiting for requests.
func (r *lifecycleRun) run(t *testing.T, in workflows.LifecycleInput) error {
	t.Helper()
	if in.ServerID == "" {
		in.ServerID, in.CustomerID = serverID, customerID
	}
	if in.EventTimeout == 0 {
		in.EventTimeout = eventTimeout
	}
	if in.Server != nil && in.Server.NovaInstanceID != "" {
		status := "ACTIVE"
		if in.Server.Status == cloudservers.StatusOff {
			status = "SHUTOFF"
		}
		r.cloud.SetNovaStatus(in.Server.NovaInstanceID, status)
	}
	r.env.ExecuteWorkflow(workflows.ServerWorkflow, in)
	require.True(t, r.env.IsWorkflowCompleted())
	return r.env.GetWorkflowError()
}

func (r *lifecycleRun) opStatuses() []string {
	var out []string
	for _, o := range r.cloud.PublishedOperations() {
		out = append(out, o.ID+" "+string(o.Status))
	}
	return out
}

func (r *lifecycleRun) serverStatuses() []cloudservers.ServerStatus {
	var out []cloudservers.ServerStatus
	for _, s := range r.cloud.PublishedServers() {
		out = append(out, s.Status)
	}
	return out
}

func stillWaiting(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err, "the lifecycle of a server that exists does not end")
	require.Contains(t, err.Error(), "deadline exceeded", "the lifecycle was still waiting for requests when the test's run limit hit: %v", err)
}

func withServer(s cloudservers.Server) workflows.LifecycleInput {
	return workflows.LifecycleInput{Server: &s}
}

var (
	createReq   = request("op-create", cloudservers.OpCreate, createParams)
	rebootReq   = request("op-reboot", cloudservers.OpReboot, cloudservers.RebootParams{Type: "soft"})
	powerOffReq = request("op-off", cloudservers.OpPowerOff, nil)
	powerOnReq  = request("op-on", cloudservers.OpPowerOn, nil)
	deleteReq   = request("op-delete", cloudservers.OpDelete, nil)
)

func TestLifecycleRunsOperationsOneAtATimeInArrivalOrder(t *testing.T) {
	r := newLifecycle(t)
	r.signalAt(0, createReq)
	r.signalAt(time.Second, rebootReq)             // while the create runs
	r.signalAt(1500*time.Millisecond, powerOffReq) // after the reboot, before either ran
	stillWaiting(t, r.run(t, workflows.LifecycleInput{}))

	assert.Equal(t, []string{
		"start op/op-create", "end op/op-create",
		"start op/op-reboot", "end op/op-reboot",
		"start op/op-off", "end op/op-off",
	}, r.sequence())
	ev := r.children()
	assert.True(t, ev[1].at.After(ev[0].at), "the create took time: the reboot really waited for it")
	assert.False(t, ev[2].at.Before(ev[1].at), "the reboot started only after the create completed")
	for _, e := range ev {
		assert.NoError(t, e.err, e.id)
	}
	assert.Equal(t, []string{
		"CreatePort", "CreateNovaServer", "AllocateFloatingIP", "AssociateFloatingIP",
		"RebootNovaServer",
		"StopNovaServer",
	}, r.cloud.OpenStackCalls())
	assert.Equal(t, []string{
		"op-create running", "op-create succeeded",
		"op-reboot running", "op-reboot succeeded",
		"op-off running", "op-off succeeded",
	}, r.opStatuses())
}

// Routers before level 1 signalled the lifecycle, which still forwards a
// notification to its running saga (during a rolling upgrade, say).
func TestLifecycleForwardsNotificationsToTheRunningSaga(t *testing.T) {
	r := newLifecycleWith(t, true)
	r.signalAt(0, createReq)
	stillWaiting(t, r.run(t, workflows.LifecycleInput{}))

	assert.NotEmpty(t, r.cloud.Delivered(), "notifications were signalled to the lifecycle")
	assert.Equal(t, 0, r.cloud.Count("GetNovaServer"), "the saga got them: it never timed out into a reconciliation read")
	ev := r.children()
	require.Len(t, ev, 2)
	assert.NoError(t, ev[1].err)
	assert.Less(t, ev[1].at.Sub(ev[0].at), eventTimeout, "the build ended on the forwarded .end, not on the timeout")
}

// The router finds a server's running operation in the servers topic and
// signals it directly: so the saga publishes its server (with the
// operation's ID) and the operation as running before it asks OpenStack
// for anything, and a notification sent straight to op/<id> ends its wait.
func TestSagaPublishesItsStartBeforeCallingOpenStack(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  cloudservers.Request
		in   workflows.LifecycleInput
	}{
		{"create", createReq, workflows.LifecycleInput{}},
		{"reboot", rebootReq, withServer(activeServer())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newLifecycle(t)
			r.signalAt(0, tc.req)
			stillWaiting(t, r.run(t, tc.in))

			names := r.cloud.Names()
			require.NotEmpty(t, names)
			assert.Equal(t, "PublishState", names[0], "the start state first: %v", names)
			assert.Equal(t, "PublishState", names[len(names)-1], "the finish in one publication: %v", names)
			assert.Equal(t, 2, r.cloud.Count("PublishState"))
			assert.Zero(t, r.cloud.Count("PublishServer")+r.cloud.Count("PublishOperation"), "no publication activity of its own")
			start := r.cloud.PublishedServers()[0]
			assert.Equal(t, tc.req.OperationID, start.OperationID, "the server names the operation the router signals")
			assert.Equal(t, cloudservers.OperationRunning, r.cloud.PublishedOperations()[0].Status)
			assert.Equal(t, 0, r.cloud.Count("GetNovaServer"), "the directly signalled notification ended the wait")
			assert.Equal(t, []string{tc.req.OperationID + " running", tc.req.OperationID + " succeeded"}, r.opStatuses())
		})
	}
}

func TestLifecycleLateNotificationOfThePreviousOperation(t *testing.T) {
	// The first reboot's legacy twin arrives during the second reboot and is
	// forwarded to it: it carries the first reboot's request ID and must not
	// end the second, whose own notification is lost while Nova still shows
	// it rebooting.
	r := newLifecycle(t)
	end := sagatest.End("instance.reboot.end")
	r.cloud.Notify("RebootNovaServer", end, end.Legacy().At(30*time.Second))
	r.cloud.Notify("RebootNovaServer")
	r.cloud.AnswerGet(activities.NovaServer{Status: "REBOOT", TaskState: "reboot_started"}, true)
	second := request("op-reboot-2", cloudservers.OpReboot, cloudservers.RebootParams{Type: "hard"})
	r.signalAt(0, rebootReq)
	r.signalAt(10*time.Second, second)
	stillWaiting(t, r.run(t, withServer(activeServer())))

	assert.Equal(t, []string{"op-reboot running", "op-reboot succeeded", "op-reboot-2 running", "op-reboot-2 failed"}, r.opStatuses())
	ops := r.cloud.PublishedOperations()
	assert.Equal(t, "WaitForRebootNovaServer", ops[3].FailedStep)
	assert.Contains(t, ops[3].Error, "no notification within")
	assert.Equal(t, 1, r.cloud.Count("GetNovaServer"))
}

func TestLifecycleDuplicateRequestHasNoSecondEffect(t *testing.T) {
	r := newLifecycle(t)
	r.signalAt(0, createReq)
	r.signalAt(time.Second, createReq) // while it runs
	r.signalAt(time.Hour, createReq)   // long after it completed
	stillWaiting(t, r.run(t, workflows.LifecycleInput{}))

	assert.Equal(t, []string{"start op/op-create", "end op/op-create"}, r.sequence(), "one saga")
	assert.Equal(t, 1, r.cloud.Count("CreatePort"))
	assert.Equal(t, 1, r.cloud.Count("CreateNovaServer"))
	assert.Equal(t, []string{"op-create running", "op-create succeeded"}, r.opStatuses(), "not even a rejection is published")
}

func TestLifecyclePublishesState(t *testing.T) {
	t.Run("create: creating -> active, running -> succeeded", func(t *testing.T) {
		r := newLifecycle(t)
		r.signalAt(0, createReq)
		stillWaiting(t, r.run(t, workflows.LifecycleInput{}))

		servers := r.cloud.PublishedServers()
		assert.Equal(t, []cloudservers.ServerStatus{cloudservers.StatusCreating, cloudservers.StatusActive}, r.serverStatuses())
		require.Len(t, servers, 2)
		assert.Equal(t, "op-create", servers[0].OperationID, "the operation in flight")
		assert.Equal(t, int64(1), servers[0].Version)
		final := servers[1]
		assert.Equal(t, int64(2), final.Version, "versions grow with every publication")
		assert.Empty(t, final.OperationID)
		assert.Equal(t, sagatest.InstanceID(serverID), final.NovaInstanceID)
		assert.Equal(t, sagatest.PublicIP, final.PublicIPv4)
		assert.Equal(t, requestedAt, final.CreatedAt)
		assert.Equal(t, "web-1", final.Name)

		ops := r.cloud.PublishedOperations()
		require.Len(t, ops, 2)
		assert.Equal(t, cloudservers.OperationRunning, ops[0].Status)
		assert.Nil(t, ops[0].CompletedAt)
		assert.Equal(t, cloudservers.OperationSucceeded, ops[1].Status)
		require.NotNil(t, ops[1].CompletedAt)
		assert.Equal(t, cloudservers.OpCreate, ops[1].Type)
		assert.Equal(t, requestedAt, ops[1].CreatedAt)
		assert.Greater(t, ops[1].Version, ops[0].Version)
	})

	// The status while an operation runs and after it succeeded come from
	// cloudservers.Operations, not from the saga's result.
	resizeReq := request("op-resize", cloudservers.OpResize, cloudservers.ResizeParams{Size: "s-1vcpu-128mb"})
	for _, tc := range []struct {
		name string
		req  cloudservers.Request
		srv  cloudservers.Server
		want []cloudservers.ServerStatus
	}{
		{"reboot", rebootReq, activeServer(), []cloudservers.ServerStatus{cloudservers.StatusRebooting, cloudservers.StatusActive}},
		{"power off", powerOffReq, activeServer(), []cloudservers.ServerStatus{cloudservers.StatusStopping, cloudservers.StatusOff}},
		{"power on", request("op-on", cloudservers.OpPowerOn, nil), offServer(), []cloudservers.ServerStatus{cloudservers.StatusStarting, cloudservers.StatusActive}},
		{"resize of an active server", resizeReq, activeServer(), []cloudservers.ServerStatus{cloudservers.StatusResizing, cloudservers.StatusActive}},
		{"resize of a server that is off", resizeReq, offServer(), []cloudservers.ServerStatus{cloudservers.StatusResizing, cloudservers.StatusOff}},
		{"rename of a server that is off", request("op-rename", cloudservers.OpRename, cloudservers.RenameParams{Name: "web-2"}), offServer(), []cloudservers.ServerStatus{cloudservers.StatusOff, cloudservers.StatusOff}},
	} {
		t.Run(tc.name+": the statuses of the operations table", func(t *testing.T) {
			r := newLifecycle(t)
			r.signalAt(0, tc.req)
			stillWaiting(t, r.run(t, withServer(tc.srv)))
			assert.Equal(t, tc.want, r.serverStatuses())
		})
	}

	t.Run("a failed create: error, with the failed step", func(t *testing.T) {
		r := newLifecycle(t)
		r.cloud.Fail("AllocateFloatingIP", sagatest.NonRetryable("quota exceeded for floating IPs"))
		r.signalAt(0, createReq)
		stillWaiting(t, r.run(t, workflows.LifecycleInput{}))

		assert.Equal(t, []cloudservers.ServerStatus{cloudservers.StatusCreating, cloudservers.StatusError}, r.serverStatuses())
		servers := r.cloud.PublishedServers()
		assert.Equal(t, "quota exceeded for floating IPs", servers[1].Error)
		ops := r.cloud.PublishedOperations()
		require.Len(t, ops, 2)
		assert.Equal(t, cloudservers.OperationFailed, ops[1].Status)
		assert.Equal(t, "AllocateFloatingIP", ops[1].FailedStep)
		assert.Equal(t, "quota exceeded for floating IPs", ops[1].Error)
		assert.Equal(t, []string{"CreatePort", "CreateNovaServer", "AllocateFloatingIP", "DeleteNovaServer", "DeletePort"}, r.cloud.OpenStackCalls())
	})

	// The failure status comes from cloudservers.Operations (InstanceError
	// when the instance is in ERROR), not from a case in the lifecycle.
	leftActive := sagatest.ErrorEvent("instance.reboot.error", "libvirt error")
	leftActive.Event.State = "active" // Nova left the instance as it was
	for _, tc := range []struct {
		name string
		emit sagatest.Emit
		want cloudservers.ServerStatus
		msg  string
	}{
		{"a failed reboot: the server is back to active, the operation failed", leftActive, cloudservers.StatusActive, "Nova reported instance.reboot.error: libvirt error"},
		{"a reboot whose error event says ERROR: the server is error, with the reason", sagatest.ErrorEvent("instance.reboot.error", "libvirt error"), cloudservers.StatusError, "libvirt error"},
		{"a reboot ended by an instance.update to error: the server is error", sagatest.Update("error", ""), cloudservers.StatusError, "Nova put the instance in ERROR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newLifecycle(t)
			r.cloud.Notify("RebootNovaServer", tc.emit)
			r.signalAt(0, rebootReq)
			stillWaiting(t, r.run(t, withServer(activeServer())))

			assert.Equal(t, []cloudservers.ServerStatus{cloudservers.StatusRebooting, tc.want}, r.serverStatuses())
			ops := r.cloud.PublishedOperations()
			require.Len(t, ops, 2)
			assert.Equal(t, cloudservers.OperationFailed, ops[1].Status)
			assert.Equal(t, "WaitForRebootNovaServer", ops[1].FailedStep)
			assert.Contains(t, ops[1].Error, tc.msg)
			assert.Equal(t, ops[1].Error, r.cloud.PublishedServers()[1].Error)
		})
	}
	t.Run("a reboot whose reconciliation read finds the instance in ERROR: the server is error", func(t *testing.T) {
		r := newLifecycle(t)
		r.cloud.Notify("RebootNovaServer") // nothing comes
		r.cloud.AnswerGet(activities.NovaServer{Status: "ERROR", Fault: "host lost"}, true)
		r.signalAt(0, rebootReq)
		stillWaiting(t, r.run(t, withServer(activeServer())))

		assert.Equal(t, []cloudservers.ServerStatus{cloudservers.StatusRebooting, cloudservers.StatusError}, r.serverStatuses())
		assert.Contains(t, r.cloud.PublishedServers()[1].Error, "instance in ERROR: host lost")
	})
	// Support cancelling op/<id> is recorded against a real server (see
	// testdata/README.md): the test environment completes a cancelled child
	// at once instead of letting it compensate.
}

func TestLifecycleRejectsWithoutCallingOpenStack(t *testing.T) {
	bad := request("op-bad", cloudservers.OpCreate, nil)
	bad.Params = []byte(`{"name": 7}`)
	for _, c := range []struct {
		name   string
		server *cloudservers.Server
		req    cloudservers.Request
		reason string
	}{
		{"power on while active", ptr(activeServer()), powerOnReq, "cannot power_on a server that is active"},
		{"power off while off", ptr(offServer()), powerOffReq, "cannot power_off a server that is off"},
		{"reboot while off", ptr(offServer()), rebootReq, "cannot reboot a server that is off"},
		{"create of an existing server", ptr(activeServer()), createReq, "server srv-1 already exists"},
		{"reboot of a server never created", nil, rebootReq, "server srv-1 not found"},
		{"an unknown operation", ptr(activeServer()), request("op-x", "migrate", nil), `unknown operation "migrate"`},
		{"create with invalid parameters", nil, bad, "invalid parameters"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newLifecycle(t)
			r.signalAt(0, c.req)
			stillWaiting(t, r.run(t, workflows.LifecycleInput{Server: c.server}))

			assert.Empty(t, r.cloud.OpenStackCalls())
			assert.Empty(t, r.children(), "no saga started")
			assert.Empty(t, r.cloud.PublishedServers(), "the server did not change")
			ops := r.cloud.PublishedOperations()
			require.Len(t, ops, 1)
			assert.Equal(t, c.req.OperationID, ops[0].ID)
			assert.Equal(t, cloudservers.OperationFailed, ops[0].Status)
			assert.Contains(t, ops[0].Error, c.reason)
			assert.NotNil(t, ops[0].CompletedAt)
		})
	}
}

func TestLifecycleEndsAfterDelete(t *testing.T) {
	r := newLifecycle(t)
	r.signalAt(0, deleteReq)
	r.signalAt(time.Minute, deleteReq)                                                                                   // a late duplicate
	r.signalAt(2*time.Minute, request("op-reboot-late", cloudservers.OpReboot, cloudservers.RebootParams{Type: "soft"})) // too late
	require.NoError(t, r.run(t, withServer(activeServer())), "the lifecycle of a deleted server ends")

	assert.GreaterOrEqual(t, r.env.Now().Sub(r.start), 10*time.Minute, "it lingered to absorb late duplicates")
	assert.Equal(t, deleteSaga.HappyCalls(), r.cloud.OpenStackCalls())
	assert.Equal(t, []string{"op-delete running", "op-delete succeeded", "op-reboot-late failed"}, r.opStatuses())
	assert.Equal(t, []cloudservers.ServerStatus{cloudservers.StatusDeleting, cloudservers.StatusDeleted}, r.serverStatuses())
	assert.Contains(t, r.cloud.PublishedOperations()[2].Error, "cannot reboot a server that is deleted")
}

// canInput returns the input a lifecycle continued as new with.
func canInput(t *testing.T, err error) workflows.LifecycleInput {
	t.Helper()
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(err, &can), "want continue-as-new, got %v", err)
	assert.Equal(t, "ServerWorkflow", can.WorkflowType.Name)
	var next workflows.LifecycleInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	return next
}

func TestLifecycleContinuesAsNew(t *testing.T) {
	t.Run("carries the server, what it has seen, and the queue; honours carried state", func(t *testing.T) {
		r := newLifecycle(t)
		r.env.SetContinueAsNewSuggested(true)
		srv := activeServer()
		srv.Version = 41
		in := workflows.LifecycleInput{
			Server: &srv,
			Queue:  []cloudservers.Request{rebootReq},         // carried from the previous run
			Seen:   []string{"op-old", rebootReq.OperationID}, // op-old already ran in an earlier run
		}
		r.signalAt(time.Second, request("op-old", cloudservers.OpPowerOff, nil)) // a late duplicate: must be ignored
		r.signalAt(time.Second, powerOffReq)                                     // new: queued behind the reboot
		next := canInput(t, r.run(t, in))

		assert.Equal(t, []string{
			"start op/op-reboot", "end op/op-reboot",
			"start op/op-off", "end op/op-off",
		}, r.sequence(), "the carried queue ran first, the duplicate not at all")
		assert.Equal(t, []string{"RebootNovaServer", "StopNovaServer"}, r.cloud.OpenStackCalls())
		require.NotNil(t, next.Server)
		assert.Equal(t, cloudservers.StatusOff, next.Server.Status)
		assert.Equal(t, int64(45), next.Server.Version, "four publications after version 41")
		assert.Equal(t, []string{"op-old", "op-reboot", "op-off"}, next.Seen)
		assert.Empty(t, next.Queue)
		assert.Equal(t, serverID, next.ServerID)
		assert.Equal(t, eventTimeout, next.EventTimeout)
	})

	t.Run("a request arriving during the last publication is carried in the queue", func(t *testing.T) {
		r := newLifecycle(t)
		r.env.SetCurrentHistoryLength(20000)
		late := request("op-late", cloudservers.OpPowerOff, nil)
		var once sync.Once
		r.cloud.OnCall(func(c sagatest.Call) {
			if st, ok := c.Arg.(activities.State); ok && st.Operation != nil && st.Operation.Status == cloudservers.OperationSucceeded {
				once.Do(func() { r.env.SignalWorkflow(workflows.SignalRequest, late) })
			}
		})
		next := canInput(t, r.run(t, workflows.LifecycleInput{Server: ptr(activeServer()), Queue: []cloudservers.Request{rebootReq}, Seen: []string{rebootReq.OperationID}}))

		assert.Equal(t, []cloudservers.Request{late}, next.Queue)
		assert.Equal(t, []string{"op-reboot", "op-late"}, next.Seen)
		assert.Equal(t, []string{"RebootNovaServer"}, r.cloud.OpenStackCalls(), "the late request runs in the next run")
	})

	t.Run("the next run runs the carried queue", func(t *testing.T) {
		r := newLifecycle(t)
		stillWaiting(t, r.run(t, workflows.LifecycleInput{Server: ptr(activeServer()), Queue: []cloudservers.Request{powerOffReq}, Seen: []string{powerOffReq.OperationID}}))
		assert.Equal(t, []string{"StopNovaServer"}, r.cloud.OpenStackCalls())
		assert.Equal(t, []string{"op-off running", "op-off succeeded"}, r.opStatuses())
	})
}

func ptr[T any](v T) *T { return &v }

func TestLifecycleDuplicateOlderThanItsMemory(t *testing.T) {
	// The lifecycle remembers the last 256 operation IDs; an older
	// duplicate is stopped by Temporal refusing to reuse op/<id>.
	r := newLifecycle(t)
	seen := []string{rebootReq.OperationID}
	for i := range 255 {
		seen = append(seen, fmt.Sprintf("op-filler-%d", i))
	}
	second := request("op-reboot-2", cloudservers.OpReboot, cloudservers.RebootParams{Type: "hard"})
	r.signalAt(time.Minute, second)      // pushes op-reboot out of the memory
	r.signalAt(2*time.Minute, rebootReq) // the old duplicate
	stillWaiting(t, r.run(t, workflows.LifecycleInput{Server: ptr(activeServer()), Queue: []cloudservers.Request{rebootReq}, Seen: seen}))

	assert.Equal(t, 2, r.cloud.Count("RebootNovaServer"), "op-reboot and op-reboot-2, not op-reboot again")
	assert.Equal(t, []string{"op-reboot running", "op-reboot succeeded", "op-reboot-2 running", "op-reboot-2 succeeded"}, r.opStatuses())
	assert.Equal(t, cloudservers.StatusActive, r.cloud.PublishedServers()[len(r.cloud.PublishedServers())-1].Status, "the server is left as it was")
}
