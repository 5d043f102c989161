package sagatest_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/cloudservers/cloudservers/activities"
	"github.com/cloudservers/cloudservers/workflows"
	"github.com/cloudservers/cloudservers/workflows/sagatest"
)

// The harness must catch a saga that gets its failure path wrong; these
// tests feed it deliberately broken sagas.

var a *activities.Activities

func createPort(ctx workflow.Context) (activities.Port, error) {
	var p activities.Port
	err := workflow.ExecuteActivity(ctx, a.CreatePort, activities.CreatePortInput{ServerID: "s"}).Get(ctx, &p)
	return p, err
}

func deletePort(ctx workflow.Context, p activities.Port) error {
	return workflow.ExecuteActivity(ctx, a.DeletePort, p.ID).Get(ctx, nil)
}

func allocate(ctx workflow.Context) (activities.FloatingIP, error) {
	var f activities.FloatingIP
	err := workflow.ExecuteActivity(ctx, a.AllocateFloatingIP, activities.AllocateFloatingIPInput{ServerID: "s"}).Get(ctx, &f)
	return f, err
}

func release(ctx workflow.Context, f activities.FloatingIP) error {
	return workflow.ExecuteActivity(ctx, a.ReleaseFloatingIP, f.ID).Get(ctx, nil)
}

func associate(ctx workflow.Context) (struct{}, error) {
	return struct{}{}, workflow.ExecuteActivity(ctx, a.AssociateFloatingIP, activities.AssociateFloatingIPInput{}).Get(ctx, nil)
}

// GoodSaga: CreatePort (undo DeletePort), AllocateFloatingIP (undo
// ReleaseFloatingIP), AssociateFloatingIP.
func GoodSaga(ctx workflow.Context, _ workflows.OperationInput) (res workflows.OperationResult, err error) {
	ctx = workflows.WithActivityOptions(ctx)
	saga := workflows.NewSaga(ctx, "test")
	defer saga.Finish(&err)
	if _, err = workflows.Step(saga, "CreatePort", createPort, "DeletePort", deletePort); err != nil {
		return res, err
	}
	if _, err = workflows.Step(saga, "AllocateFloatingIP", allocate, "ReleaseFloatingIP", release); err != nil {
		return res, err
	}
	_, err = workflows.Step(saga, "AssociateFloatingIP", associate, "", nil)
	return res, err
}

// ForgetfulSaga forgets the floating IP's compensation.
func ForgetfulSaga(ctx workflow.Context, _ workflows.OperationInput) (res workflows.OperationResult, err error) {
	ctx = workflows.WithActivityOptions(ctx)
	saga := workflows.NewSaga(ctx, "test")
	defer saga.Finish(&err)
	if _, err = workflows.Step(saga, "CreatePort", createPort, "DeletePort", deletePort); err != nil {
		return res, err
	}
	if _, err = workflows.Step(saga, "AllocateFloatingIP", allocate, "", nil); err != nil {
		return res, err
	}
	_, err = workflows.Step(saga, "AssociateFloatingIP", associate, "", nil)
	return res, err
}

// MisorderedSaga undoes by hand, first step first, and reports the right
// order: only the recorded calls give it away.
func MisorderedSaga(ctx workflow.Context, _ workflows.OperationInput) (res workflows.OperationResult, err error) {
	ctx = workflows.WithActivityOptions(ctx)
	port, err := createPort(ctx)
	if err != nil {
		return res, err
	}
	fip, err := allocate(ctx)
	if err != nil {
		_ = deletePort(ctx, port)
		return res, failed("AllocateFloatingIP", "DeletePort")
	}
	if _, err = associate(ctx); err != nil {
		_ = deletePort(ctx, port)
		_ = release(ctx, fip)
		return res, failed("AssociateFloatingIP", "ReleaseFloatingIP", "DeletePort")
	}
	return res, nil
}

// LeakySaga skips its compensations when cancelled.
func LeakySaga(ctx workflow.Context, _ workflows.OperationInput) (res workflows.OperationResult, err error) {
	ctx = workflows.WithActivityOptions(ctx)
	saga := workflows.NewSaga(ctx, "test")
	defer func() {
		if !temporal.IsCanceledError(err) {
			saga.Finish(&err)
		} else {
			err = failed("Wait")
		}
	}()
	if _, err = workflows.Step(saga, "CreatePort", createPort, "DeletePort", deletePort); err != nil {
		return res, err
	}
	_, err = workflows.Step(saga, "Wait", func(ctx workflow.Context) (struct{}, error) {
		return struct{}{}, workflow.Sleep(ctx, time.Hour)
	}, "", nil)
	return res, err
}

func failed(step string, undone ...string) error {
	return temporal.NewNonRetryableApplicationError("failed", workflows.ErrStepFailed, nil,
		workflows.StepFailure{Step: step, Message: "failed", Compensations: undone})
}

func table(wf any) sagatest.Saga {
	return sagatest.Saga{
		Workflow: wf,
		Input:    workflows.OperationInput{EventTimeout: time.Minute},
		Steps: []sagatest.Step{
			{Name: "CreatePort", Activity: "CreatePort", Undo: "DeletePort"},
			{Name: "AllocateFloatingIP", Activity: "AllocateFloatingIP", Undo: "ReleaseFloatingIP"},
			{Name: "AssociateFloatingIP", Activity: "AssociateFloatingIP"},
		},
	}
}

// spy stands in for a *testing.T to see whether the harness complains.
type spy struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

type failNow struct{}

func (s *spy) Helper() {}
func (s *spy) Errorf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errors = append(s.errors, strings.Join(strings.Fields(fmt.Sprintf(format, args...)), " "))
}
func (s *spy) FailNow()                          { panic(failNow{}) }
func (s *spy) Fatalf(format string, args ...any) { s.Errorf(format, args...); s.FailNow() }

// complaints runs check against a spy and returns what the harness
// reported.
func complaints(t *testing.T, check func(testing.TB)) []string {
	s := &spy{TB: t}
	func() {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(failNow); !ok {
					panic(r)
				}
				s.errors = append(s.errors, "FailNow")
			}
		}()
		check(s)
	}()
	return s.errors
}

func failAt(s sagatest.Saga, step int) func(testing.TB) {
	return func(tb testing.TB) {
		f := sagatest.ActivityFailure(s.Steps[step].Activity)
		o := s.Run(tb, func(_ *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) { f.Inject(c) })
		s.CheckFailure(tb, o, step, f)
	}
}

func TestHarnessPassesACorrectSaga(t *testing.T) {
	s := table(GoodSaga)
	for step := range s.Steps {
		assert.Empty(t, complaints(t, failAt(s, step)), "step %d", step+1)
	}
}

func TestHarnessCatchesAMissingCompensation(t *testing.T) {
	assert.NotEmpty(t, complaints(t, failAt(table(ForgetfulSaga), 2)))
}

func TestHarnessCatchesCompensationsInTheWrongOrder(t *testing.T) {
	got := complaints(t, failAt(table(MisorderedSaga), 2))
	assert.NotEmpty(t, got)
	assert.Contains(t, strings.Join(got, "\n"), "calls after the failure (the compensations)", "the report is right: only the calls give it away")
}

func TestHarnessCatchesSkippedCompensationsOnCancel(t *testing.T) {
	s := sagatest.Saga{
		Workflow: LeakySaga,
		Input:    workflows.OperationInput{EventTimeout: time.Minute},
		Steps: []sagatest.Step{
			{Name: "CreatePort", Activity: "CreatePort", Undo: "DeletePort"},
			{Name: "Wait", Failures: []sagatest.Failure{{Name: "x", Inject: func(*sagatest.Cloud) {}}}},
		},
	}
	got := complaints(t, func(tb testing.TB) {
		o := s.Run(tb, func(env *testsuite.TestWorkflowEnvironment, c *sagatest.Cloud) {
			env.RegisterDelayedCallback(func() { c.MarkFailure(); env.CancelWorkflow() }, time.Minute)
		})
		s.CheckFailure(tb, o, 1, sagatest.Failure{Message: "cancelled"})
	})
	assert.NotEmpty(t, got)
}

func TestHarnessCatchesAFailureThatNeverHappened(t *testing.T) {
	s := table(GoodSaga)
	got := complaints(t, func(tb testing.TB) {
		o := s.Run(tb, nil) // nothing injected: the saga succeeds
		s.CheckFailure(tb, o, 1, sagatest.ActivityFailure("AllocateFloatingIP"))
	})
	assert.Contains(t, got, "FailNow")
}
