//go:build recordhistories

package workflows_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/activities"
	"github.com/cloudservers/cloudservers/workflows"
	"github.com/cloudservers/cloudservers/workflows/sagatest"
)

// TestRecordHistories runs every saga, and the lifecycle, on a real
// Temporal dev server with the sagatest Cloud standing in for OpenStack,
// and writes each workflow's history to testdata/histories/latest/<name>.json
// for TestReplayRecordedHistories. See testdata/README.md.
//
//	go test -tags recordhistories -run TestRecordHistories -count=1 ./workflows/
func TestRecordHistories(t *testing.T) {
	c := devServer(t)
	dir := filepath.Join("testdata", "histories", "latest")
	require.NoError(t, os.MkdirAll(dir, 0o755))

	for _, sc := range sagaScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			r := newRecorder(t, c, nil)
			if sc.prepare != nil {
				sc.prepare(r.cloud)
			}
			id := workflows.OperationWorkflowID("rec-" + sc.name)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue}, sc.saga.Workflow, levelled(sc.input()))
			require.NoError(t, err)
			if sc.cancelAfter != "" {
				waitFor(t, func() bool { return r.cloud.Count(sc.cancelAfter) > 0 })
				time.Sleep(300 * time.Millisecond)
				require.NoError(t, c.CancelWorkflow(ctx, id, ""))
			}
			var res workflows.OperationResult
			err = run.Get(ctx, &res)
			if sc.wantStep == "" {
				require.NoError(t, err)
			} else {
				f := sagatest.RequireStepFailure(t, err)
				assert.Equal(t, sc.wantStep, f.Step)
				assert.Equal(t, sc.wantUndone, f.Compensations)
			}
			if sc.wantCalls != nil {
				assert.Equal(t, sc.wantCalls, r.cloud.OpenStackCalls())
			}
			r.deliver.Wait()
			save(t, c, dir, sc.name, id, run.GetRunID())
		})
	}

	t.Run("lifecycle-create-reboot", func(t *testing.T) {
		srv := "rec-srv-two-ops"
		r := newRecorder(t, c, nil) // the router signals the saga
		create := recRequest(srv, "rec-op-create", cloudservers.OpCreate, createParams)
		reboot := recRequest(srv, "rec-op-reboot", cloudservers.OpReboot, cloudservers.RebootParams{Type: "soft"})
		lifecycleID := startLifecycle(t, c, srv, create)
		time.Sleep(50 * time.Millisecond) // the reboot arrives while the create runs
		signalRequest(t, c, srv, reboot)
		waitForOp(t, r.cloud, reboot.OperationID, cloudservers.OperationSucceeded)
		assert.Equal(t, []string{"CreatePort", "CreateNovaServer", "AllocateFloatingIP", "AssociateFloatingIP", "RebootNovaServer"}, r.cloud.OpenStackCalls())
		r.deliver.Wait()
		saveOpen(t, c, dir, "lifecycle-create-reboot", lifecycleID)
		save(t, c, dir, "lifecycle-create-reboot.op-create", workflows.OperationWorkflowID(create.OperationID), "")
		save(t, c, dir, "lifecycle-create-reboot.op-reboot", workflows.OperationWorkflowID(reboot.OperationID), "")
		terminate(t, c, lifecycleID)
	})

	t.Run("lifecycle-op-cancelled", func(t *testing.T) {
		// Support cancels op/<id> while the build waits: the saga
		// compensates, the lifecycle records the failure and the server
		// in error. (The test environment cannot show this: it completes
		// a cancelled child at once.)
		srv := "rec-srv-cancel"
		r := newRecorder(t, c, nil)        // the router signals the saga
		r.cloud.Notify("CreateNovaServer") // the build never reports
		create := recRequest(srv, "rec-op-cancelled", cloudservers.OpCreate, createParams)
		lifecycleID := startLifecycle(t, c, srv, create)
		waitFor(t, func() bool { return r.cloud.Count("CreateNovaServer") > 0 })
		time.Sleep(300 * time.Millisecond)
		require.NoError(t, c.CancelWorkflow(context.Background(), workflows.OperationWorkflowID(create.OperationID), ""))
		op := waitForOp(t, r.cloud, create.OperationID, cloudservers.OperationFailed)
		assert.Equal(t, "WaitForNovaBuild", op.FailedStep)
		assert.Equal(t, "cancelled", op.Error)
		assert.Equal(t, []string{"CreatePort", "CreateNovaServer", "DeleteNovaServer", "DeletePort"}, r.cloud.OpenStackCalls())
		servers := r.cloud.PublishedServers()
		assert.Equal(t, cloudservers.StatusError, servers[len(servers)-1].Status)
		r.deliver.Wait()
		saveOpen(t, c, dir, "lifecycle-op-cancelled", lifecycleID)
		save(t, c, dir, "lifecycle-op-cancelled.op-create", workflows.OperationWorkflowID(create.OperationID), "")
		terminate(t, c, lifecycleID)
	})
}

type sagaScenario struct {
	name        string
	saga        sagatest.Saga
	timeout     time.Duration // the saga's EventTimeout; default 10s
	prepare     func(*sagatest.Cloud)
	cancelAfter string // cancel the saga once this activity was called
	wantStep    string // the step that fails; "" for success
	wantUndone  []string
	wantCalls   []string
}

func (sc sagaScenario) input() workflows.OperationInput {
	in := sc.saga.Input
	in.EventTimeout = sc.timeout
	if in.EventTimeout == 0 {
		in.EventTimeout = 10 * time.Second
	}
	return in
}

func sagaScenarios() []sagaScenario {
	return []sagaScenario{
		{name: "create", saga: createSaga, wantCalls: createSaga.HappyCalls()},
		{name: "create-associate-fails", saga: createSaga,
			prepare:  func(c *sagatest.Cloud) { c.Fail("AssociateFloatingIP", sagatest.NonRetryable("port has no fixed IP")) },
			wantStep: "AssociateFloatingIP", wantUndone: []string{"ReleaseFloatingIP", "DeleteNovaServer", "DeletePort"}},
		{name: "create-build-error", saga: createSaga,
			prepare: func(c *sagatest.Cloud) {
				// The host's error (Nova reschedules), then the instance in ERROR.
				c.Notify("CreateNovaServer", sagatest.Update("building", "spawning"), sagatest.ErrorEvent("instance.create.error", "PortBindingFailed: Binding failed"),
					sagatest.Update("error", "").At(3*time.Second))
			},
			wantStep: "WaitForNovaBuild", wantUndone: []string{"DeleteNovaServer", "DeletePort"}},
		{name: "create-notification-lost", saga: createSaga, timeout: 2 * time.Second,
			prepare:   func(c *sagatest.Cloud) { c.Notify("CreateNovaServer") },
			wantCalls: []string{"CreatePort", "CreateNovaServer", "GetNovaServer", "AllocateFloatingIP", "AssociateFloatingIP"}},
		{name: "create-retried-step", saga: createSaga,
			prepare:   func(c *sagatest.Cloud) { c.Fail("CreatePort", sagatest.Retryable("neutron 503")) },
			wantCalls: []string{"CreatePort", "CreatePort", "CreateNovaServer", "AllocateFloatingIP", "AssociateFloatingIP"}},
		{name: "create-cancelled", saga: createSaga, timeout: time.Minute,
			prepare: func(c *sagatest.Cloud) { c.Notify("CreateNovaServer") }, cancelAfter: "CreateNovaServer",
			wantStep: "WaitForNovaBuild", wantUndone: []string{"DeleteNovaServer", "DeletePort"}},
		{name: "create-cancelled-during-activity", saga: createSaga, timeout: time.Minute,
			prepare: func(c *sagatest.Cloud) {
				// The allocation takes 2 s; the cancel comes 300 ms in.
				c.OnCall(func(call sagatest.Call) {
					if call.Name == "AllocateFloatingIP" {
						time.Sleep(2 * time.Second)
					}
				})
			},
			cancelAfter: "AllocateFloatingIP",
			wantStep:    "AssociateFloatingIP", wantUndone: []string{"ReleaseFloatingIP", "DeleteNovaServer", "DeletePort"}},
		{name: "create-error-fault-read", saga: createSaga,
			prepare: func(c *sagatest.Cloud) {
				u := sagatest.Update("error", "")
				u.Fails = true
				c.Notify("CreateNovaServer", sagatest.Update("building", "spawning"), u)
				c.AnswerGet(activities.NovaServer{Status: "ERROR", Fault: "Exceeded maximum number of retries."}, true)
			},
			wantStep: "WaitForNovaBuild", wantUndone: []string{"DeleteNovaServer", "DeletePort"}},
		{name: "delete", saga: deleteSaga, wantCalls: deleteSaga.HappyCalls()},
		{name: "delete-leftover-floating-ip", saga: func() sagatest.Saga {
			s := deleteSaga
			s.Input.Server.FloatingIPID = ""
			return s
		}(),
			prepare: func(c *sagatest.Cloud) {
				c.LeftoverFloatingIP(activities.FloatingIP{ID: "fip-leftover", Address: "203.0.113.99"})
			},
			wantCalls: []string{"FindFloatingIP", "DisassociateFloatingIP", "ReleaseFloatingIP", "DeleteNovaServer", "DeletePort"}},
		{name: "reboot-soft", saga: rebootSaga("soft"), wantCalls: []string{"RebootNovaServer"}},
		{name: "reboot-hard-late-notification", saga: rebootSaga("hard"),
			prepare: func(c *sagatest.Cloud) {
				c.Notify("RebootNovaServer",
					sagatest.End("instance.reboot.end").ForRequest("req-previous").At(time.Second),
					sagatest.End("instance.reboot.end").At(3*time.Second),
					sagatest.End("instance.reboot.end").Legacy().At(3*time.Second))
			},
			wantCalls: []string{"RebootNovaServer"}},
		{name: "power-off", saga: powerOffSaga, wantCalls: []string{"StopNovaServer"}},
		{name: "power-on", saga: powerOnSaga, wantCalls: []string{"StartNovaServer"}},
		{name: "resize", saga: resizeSaga(activeServer()), wantCalls: []string{"ResizeNovaServer", "ConfirmResize"}},
		{name: "resize-failed-reverted", saga: resizeSaga(offServer()),
			prepare: func(c *sagatest.Cloud) {
				c.Notify("ResizeNovaServer", sagatest.ErrorEvent("instance.resize.error", "No valid host was found."))
			},
			wantStep: "WaitForNovaResize", wantUndone: []string{"RevertResize"}},
		{name: "rebuild", saga: rebuildSaga, wantCalls: []string{"RebuildNovaServer"}},
		{name: "rename", saga: renameSaga}, // no OpenStack call (TestRenameSaga)
		{name: "rebuild-error", saga: rebuildSaga,
			prepare: func(c *sagatest.Cloud) {
				c.Notify("RebuildNovaServer", sagatest.Update("rebuilding", "rebuild_spawning"), sagatest.ErrorEvent("instance.rebuild.error", "Virtual Interface creation failed"))
			},
			wantStep: workflows.WaitStep("RebuildNovaServer"), wantUndone: nil},
	}
}

// devServer starts a Temporal dev server (in memory, free port) from the
// CLI at $TEMPORAL_CLI or ~/.cache/cloudservers/bin/temporal.
func devServer(t *testing.T) client.Client {
	cli := os.Getenv("TEMPORAL_CLI")
	if cli == "" {
		home, _ := os.UserHomeDir()
		cli = filepath.Join(home, ".cache", "cloudservers", "bin", "temporal")
	}
	if _, err := os.Stat(cli); err != nil {
		t.Fatalf("no Temporal CLI at %s (set TEMPORAL_CLI): %v", cli, err)
	}
	var args []string
	for _, a := range []string{"CustomerId", "ServerId", "OperationId", "Operation", "NovaInstanceId"} {
		args = append(args, "--search-attribute", a+"=Keyword")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:  cli,
		ClientOptions: &client.Options{Namespace: "cloudservers", Logger: quietLogger()},
		LogLevel:      "error",
		ExtraArgs:     args,
		Stdout:        io.Discard,
		Stderr:        io.Discard,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Stop() })
	return srv.Client()
}

type recorder struct {
	cloud   *sagatest.Cloud
	deliver *sagatest.ClientDeliverer
}

// newRecorder starts a worker hosting the current workflows with a fresh
// Cloud as its activities; it stops when the test ends.
func newRecorder(t *testing.T, c client.Client, target func(string) string) *recorder {
	d := &sagatest.ClientDeliverer{Client: c, Target: target, Scale: 0.1}
	cloud := sagatest.NewCloud(d)
	w := worker.New(c, workflows.TaskQueue, worker.Options{})
	workflows.Register(w)
	cloud.Register(w)
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
	return &recorder{cloud: cloud, deliver: d}
}

// levelled is a saga's input as a lifecycle of this code starts it.
func levelled(in workflows.OperationInput) workflows.OperationInput {
	in.Level = workflows.CodeLevel
	return in
}

func recRequest(srv, opID string, op cloudservers.OperationType, p any) cloudservers.Request {
	r := request(opID, op, p)
	r.ServerID = srv
	return r
}

func startLifecycle(t *testing.T, c client.Client, srv string, first cloudservers.Request) string {
	id := workflows.ServerWorkflowID(srv)
	_, err := c.SignalWithStartWorkflow(context.Background(), id, workflows.SignalRequest, first,
		client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue},
		workflows.ServerWorkflow, workflows.LifecycleInput{ServerID: srv, CustomerID: customerID, EventTimeout: 10 * time.Second, Level: workflows.CodeLevel})
	require.NoError(t, err)
	return id
}

func signalRequest(t *testing.T, c client.Client, srv string, req cloudservers.Request) {
	require.NoError(t, c.SignalWorkflow(context.Background(), workflows.ServerWorkflowID(srv), "", workflows.SignalRequest, req))
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitForOp(t *testing.T, cloud *sagatest.Cloud, opID string, status cloudservers.OperationStatus) cloudservers.Operation {
	t.Helper()
	var found cloudservers.Operation
	waitFor(t, func() bool {
		ops := cloud.PublishedOperations()
		i := slices.IndexFunc(ops, func(o cloudservers.Operation) bool { return o.ID == opID && o.Status == status })
		if i >= 0 {
			found = ops[i]
		}
		return i >= 0
	})
	return found
}

func history(t *testing.T, c client.Client, id, runID string) *historypb.History {
	h := &historypb.History{}
	it := c.GetWorkflowHistory(context.Background(), id, runID, false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		h.Events = append(h.Events, ev)
	}
	return h
}

func write(t *testing.T, dir, name string, h *historypb.History) {
	b, err := temporalproto.CustomJSONMarshalOptions{Indent: " "}.Marshal(h)
	require.NoError(t, err)
	path := filepath.Join(dir, name+".json")
	require.NoError(t, os.WriteFile(path, append(b, '\n'), 0o644))
	t.Logf("wrote %s (%d events)", path, len(h.Events))
}

// save writes the history of a closed workflow.
func save(t *testing.T, c client.Client, dir, name, id, runID string) {
	h := history(t, c, id, runID)
	last := h.Events[len(h.Events)-1].GetEventType()
	require.Contains(t, []enums.EventType{
		enums.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, enums.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
		enums.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED, enums.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
		enums.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT, enums.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
	}, last, "%s is still open", id)
	write(t, dir, name, h)
}

// settled reports whether a history ends with a completed workflow task
// and the commands it made that need nothing more (a local activity's
// marker, a search attribute upsert, a timer started).
func settled(h *historypb.History) bool {
	for i := len(h.Events) - 1; i >= 0; i-- {
		switch h.Events[i].GetEventType() {
		case enums.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
			return true
		case enums.EVENT_TYPE_MARKER_RECORDED, enums.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES, enums.EVENT_TYPE_TIMER_STARTED:
		default:
			return false
		}
	}
	return false
}

// saveOpen writes the history of a workflow still running (a lifecycle
// waiting for requests), once it has settled on a completed workflow task.
func saveOpen(t *testing.T, c client.Client, dir, name, id string) {
	var h *historypb.History
	waitFor(t, func() bool {
		h = history(t, c, id, "")
		return settled(h)
	})
	write(t, dir, name, h)
}

func terminate(t *testing.T, c client.Client, id string) {
	require.NoError(t, c.TerminateWorkflow(context.Background(), id, "", fmt.Sprintf("history recorded by %s", t.Name())))
}
