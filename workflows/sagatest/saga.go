package sagatest

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/activities"
	"github.com/cloudservers/cloudservers/workflows"
)

// Saga describes a saga for the generated tests.
type Saga struct {
	// Workflow is the saga's workflow function.
	Workflow any
	// Input is what the saga runs with.
	Input workflows.OperationInput
	// Steps are the saga's steps, in order.
	Steps []Step
	// Setup, when set, prepares the Cloud of every run (a leftover floating
	// IP, say).
	Setup func(*Cloud)
}

// Step is one step of a saga.
type Step struct {
	// Name is the step's name as workflows.StepFailure.Step reports it;
	// default: the Activity's name, or for a step that only waits,
	// workflows.WaitStep(Waits). A saga whose step has another name
	// exports it as a constant (workflows.StepWaitForNovaBuild).
	Name string
	// Activity is the activity the step calls ("" for a step that only
	// waits for a notification). The generated tests make it fail with a
	// non-retryable error, and once with a retryable one.
	Activity string
	// Undo is the name of the compensation registered when the step
	// succeeds ("" for none).
	Undo string
	// UndoCalls are the activities the compensation calls; default
	// []string{Undo}.
	UndoCalls []string
	// Failures are the other ways the step can fail (notifications, the
	// reconciliation read).
	Failures []Failure
	// Waits names the Nova action (CreateNovaServer, ConfirmResize...)
	// whose notification the step waits for, if it does: RunCancellations
	// cancels the saga during that wait.
	Waits string
}

// StepName is the step's name as workflows.StepFailure.Step reports it.
func (st Step) StepName() string {
	switch {
	case st.Name != "":
		return st.Name
	case st.Activity != "":
		return st.Activity
	}
	return workflows.WaitStep(st.Waits)
}

// check fails t when a step names an activity that does not exist: the
// names of the table are checked against activities.Activities, not
// repeated by hand.
func (s Saga) check(t testing.TB) {
	t.Helper()
	acts := reflect.TypeOf((*activities.Activities)(nil))
	known := func(what, name string) {
		if _, ok := acts.MethodByName(name); name != "" && !ok {
			t.Fatalf("sagatest: %s %q is not an activity of activities.Activities", what, name)
		}
	}
	for _, st := range s.Steps {
		known("step activity", st.Activity)
		known("step waits", st.Waits)
		for _, u := range st.UndoCalls {
			known("undo call", u)
		}
		if len(st.UndoCalls) == 0 {
			known("undo", st.Undo)
		}
		if st.Activity == "" && st.Waits == "" && st.Name == "" {
			t.Fatalf("sagatest: a step needs an Activity, Waits or a Name")
		}
	}
}

// Failure is one way to make a step fail.
type Failure struct {
	Name string
	// Inject configures the Cloud to make the step fail. It must mark the
	// failure (a non-retryable error, an Emit with Fails, a failing
	// AnswerGet, or MarkFailure).
	Inject func(*Cloud)
	// Message is a part of the StepFailure's message.
	Message string
	// Calls are the activities the failing step calls after its Activity
	// (GetNovaServer for a lost notification).
	Calls []string
}

// ActivityFailure makes the activity fail with a non-retryable error.
func ActivityFailure(activity string) Failure {
	msg := activity + " refused by OpenStack (injected)"
	return Failure{
		Name:    "non-retryable error",
		Inject:  func(c *Cloud) { c.Fail(activity, NonRetryable(msg)) },
		Message: msg,
	}
}

// EventFailure makes Nova answer the action with an error notification.
func EventFailure(action, eventType, fault string) Failure {
	return Failure{
		Name:    eventType,
		Inject:  func(c *Cloud) { c.Notify(action, Update("building", ""), ErrorEvent(eventType, fault)) },
		Message: "Nova reported " + eventType + ": " + fault,
	}
}

// BuildFailure is how Nova reports a build that failed on its last host:
// instance.create.error with that host's fault (Nova sends one for every
// host it tries before rescheduling, so it does not end the wait), then an
// instance.update to vm state error, which does.
func BuildFailure(action, fault string) Failure {
	e := ErrorEvent("instance.create.error", fault)
	e.Fails = false
	u := Update("error", "").At(3 * time.Second)
	u.Fails = true
	return Failure{
		Name:    "instance.create.error then ERROR",
		Inject:  func(c *Cloud) { c.Notify(action, Update("building", ""), e, u) },
		Message: "Nova reported instance.create.error: " + fault,
	}
}

// ErrorStateFailure makes Nova answer the action with only an
// instance.update to vm state error (the .error notification is lost).
func ErrorStateFailure(action, fault string) Failure {
	u := Update("error", "")
	u.Event.Fault, u.Fails = fault, true
	return Failure{
		Name:    "instance.update state=error",
		Inject:  func(c *Cloud) { c.Notify(action, u) },
		Message: "Nova put the instance in ERROR: " + fault,
	}
}

// LostFailure loses the action's notifications; the one reconciliation
// read shows shows, which is not what the step waits for.
func LostFailure(action string, shows activities.NovaServer) Failure {
	return Failure{
		Name: fmt.Sprintf("lost notification, Nova shows %s %s", shows.Status, shows.TaskState),
		Inject: func(c *Cloud) {
			c.Notify(action)
			c.AnswerGet(shows, true)
		},
		Message: "no notification within",
		Calls:   []string{"GetNovaServer"},
	}
}

// Outcome is what a run of the saga did.
type Outcome struct {
	Env    *testsuite.TestWorkflowEnvironment
	Cloud  *Cloud
	Result workflows.OperationResult
	Err    error
}

// NewEnv returns a test environment with a quiet logger (SAGATEST_LOG=1
// shows the workflows' logs).
func NewEnv() *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	var w io.Writer = io.Discard
	if os.Getenv("SAGATEST_LOG") != "" {
		w = os.Stderr
	}
	s.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	return s.NewTestWorkflowEnvironment()
}

// Run runs the saga once in a fresh test environment; prepare, when set,
// configures the environment and the Cloud first (inject faults, schedule a
// cancellation...).
func (s Saga) Run(t testing.TB, prepare func(env *testsuite.TestWorkflowEnvironment, c *Cloud)) Outcome {
	t.Helper()
	s.check(t)
	env := NewEnv()
	env.RegisterWorkflow(s.Workflow)
	c := NewEnvCloud(env)
	if id := s.Input.Server.NovaInstanceID; id != "" {
		status := "ACTIVE"
		if s.Input.Server.Status == cloudservers.StatusOff {
			status = "SHUTOFF"
		}
		c.SetNovaStatus(id, status)
	}
	if s.Setup != nil {
		s.Setup(c)
	}
	if prepare != nil {
		prepare(env, c)
	}
	env.ExecuteWorkflow(s.Workflow, s.Input)
	require.True(t, env.IsWorkflowCompleted(), "the saga did not complete")
	o := Outcome{Env: env, Cloud: c, Err: env.GetWorkflowError()}
	if o.Err == nil {
		require.NoError(t, env.GetWorkflowResult(&o.Result))
	}
	return o
}

// HappyCalls are the OpenStack calls of a successful run, in order.
func (s Saga) HappyCalls() []string {
	var calls []string
	for _, st := range s.Steps {
		if st.Activity != "" {
			calls = append(calls, st.Activity)
		}
	}
	return calls
}

// RunSuccess checks the happy path: the saga succeeds, calls every step's
// activity once in order, and makes no reconciliation read.
func (s Saga) RunSuccess(t *testing.T) {
	o := s.Run(t, nil)
	require.NoError(t, o.Err)
	assert.Equal(t, s.HappyCalls(), o.Cloud.OpenStackCalls())
}

// RunFailures runs, for every step and every way it can fail, the saga with
// that failure and checks that exactly the compensations of the steps
// before ran, in reverse order, and that the error says so.
func (s Saga) RunFailures(t *testing.T) {
	for i, st := range s.Steps {
		failures := slices.Clone(st.Failures)
		if st.Activity != "" {
			failures = append([]Failure{ActivityFailure(st.Activity)}, failures...)
		}
		if len(failures) == 0 {
			t.Errorf("step %s has no way to fail: give it an Activity or Failures", st.StepName())
		}
		for _, f := range failures {
			t.Run(fmt.Sprintf("%d_%s/%s", i+1, st.StepName(), f.Name), func(t *testing.T) {
				o := s.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *Cloud) { f.Inject(c) })
				s.CheckFailure(t, o, i, f)
			})
		}
	}
}

// Compensations returns the compensations that must run when step i (from
// 0) fails, in the order they must run, and the activities they call.
func (s Saga) Compensations(i int) (names, calls []string) {
	names, calls = []string{}, []string{}
	for j := i - 1; j >= 0; j-- {
		st := s.Steps[j]
		if st.Undo == "" {
			continue
		}
		names = append(names, st.Undo)
		if st.UndoCalls != nil {
			calls = append(calls, st.UndoCalls...)
		} else {
			calls = append(calls, st.Undo)
		}
	}
	return names, calls
}

// CheckFailure checks the outcome of a run in which step i (from 0) failed
// with f.
func (s Saga) CheckFailure(t testing.TB, o Outcome, i int, f Failure) {
	t.Helper()
	st := s.Steps[i]
	wantNames, wantCalls := s.Compensations(i)
	failure := RequireStepFailure(t, o.Err)
	assert.Equal(t, st.StepName(), failure.Step, "failed step")
	assert.Contains(t, failure.Message, f.Message, "failure message")
	assert.Equal(t, wantNames, orEmpty(failure.Compensations), "compensations reported")
	assert.Empty(t, failure.CompensationErrors)

	after, ok := o.Cloud.CallsAfterFailure()
	require.True(t, ok, "the injected failure never happened; calls: %v", o.Cloud.OpenStackCalls())
	assert.Equal(t, wantCalls, after, "calls after the failure (the compensations)")

	// Before the failure: the steps up to the failed one, nothing else.
	var before []string
	for _, prev := range s.Steps[:i+1] {
		if prev.Activity != "" {
			before = append(before, prev.Activity)
		}
	}
	before = append(before, f.Calls...)
	all := o.Cloud.OpenStackCalls()
	assert.Equal(t, before, all[:len(all)-len(after)], "calls up to the failure")

	msg := o.Err.Error()
	assert.Contains(t, msg, "step "+st.StepName()+" failed")
	if len(wantNames) > 0 {
		assert.Contains(t, msg, "undone: "+strings.Join(wantNames, ", "))
	}
}

// RunRetries makes every step's activity fail once with a retryable error:
// the saga must retry it and succeed, undoing nothing.
func (s Saga) RunRetries(t *testing.T) {
	for i, st := range s.Steps {
		if st.Activity == "" {
			continue
		}
		t.Run(fmt.Sprintf("%d_%s", i+1, st.StepName()), func(t *testing.T) {
			o := s.Run(t, func(_ *testsuite.TestWorkflowEnvironment, c *Cloud) {
				c.Fail(st.Activity, Retryable("503 Service Unavailable (injected)"))
			})
			require.NoError(t, o.Err)
			want := s.HappyCalls()
			at := slices.Index(want, st.Activity)
			want = slices.Insert(want, at, st.Activity)
			assert.Equal(t, want, o.Cloud.OpenStackCalls(), "the failed call was retried once, nothing undone")
		})
	}
}

// RunCancellations cancels the saga while each step that waits for Nova
// waits (its notification lost), and checks that the compensations of the
// steps before still ran, in reverse order, and that the saga failed with
// a StepFailure saying "cancelled" - not with an error wrapping the
// cancellation, which a real server would record as Canceled, dropping the
// report.
func (s Saga) RunCancellations(t *testing.T) {
	for i, st := range s.Steps {
		if st.Waits == "" {
			continue
		}
		t.Run(fmt.Sprintf("%d_%s", i+1, st.StepName()), func(t *testing.T) {
			o := s.Run(t, func(env *testsuite.TestWorkflowEnvironment, c *Cloud) {
				c.Notify(st.Waits)
				env.RegisterDelayedCallback(func() {
					c.MarkFailure()
					env.CancelWorkflow()
				}, s.Input.EventTimeout/2)
			})
			require.False(t, temporal.IsCanceledError(o.Err), "the saga's error must not wrap the cancellation: %v", o.Err)
			s.CheckFailure(t, o, i, Failure{Message: "cancelled"})
			assert.Equal(t, "cancelled", RequireStepFailure(t, o.Err).Message)
		})
	}
}

// RequireStepFailure asserts that err is the saga's StepFailed application
// error and returns its details.
func RequireStepFailure(t testing.TB, err error) workflows.StepFailure {
	t.Helper()
	require.Error(t, err)
	var app *temporal.ApplicationError
	require.True(t, errors.As(err, &app), "want an ApplicationError, got %v", err)
	require.Equal(t, workflows.ErrStepFailed, app.Type())
	assert.True(t, app.NonRetryable(), "a saga's failure must not be retried by Temporal")
	var f workflows.StepFailure
	require.True(t, app.HasDetails(), "no StepFailure details")
	require.NoError(t, app.Details(&f))
	return f
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
