package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/cloudservers/cloudservers/activities"
)

// Saga runs the steps of one operation and undoes the completed ones, in
// reverse order, when a later step fails or the operation is cancelled.
//
//	saga := NewSaga(ctx, "create server "+id)
//	defer saga.Finish(&err)
//	port, err := Step(saga, "CreatePort", createPort, deletePort)
//
// Compensations run on a disconnected context, so they still run when the
// workflow is cancelled. A compensation that finds nothing to undo (the
// activities treat 404 as done) has succeeded.
type Saga struct {
	ctx           workflow.Context
	what          string
	current       string
	compensations []compensation
}

type compensation struct {
	name string
	undo func(ctx workflow.Context) error
}

// NewSaga starts a saga; what names the operation and resource for error
// messages ("create server 1234").
func NewSaga(ctx workflow.Context, what string) *Saga {
	return &Saga{ctx: ctx, what: what}
}

// Step runs one step. When it succeeds and undo is not nil, undo is
// registered as its compensation under undoName. When it fails, the step's
// name is remembered for the failure report.
func Step[T any](s *Saga, name string, do func(ctx workflow.Context) (T, error), undoName string, undo func(ctx workflow.Context, done T) error) (T, error) {
	s.current = name
	v, err := do(s.ctx)
	if err != nil {
		return v, err
	}
	if undo != nil {
		s.compensations = append(s.compensations, compensation{name: undoName, undo: func(ctx workflow.Context) error { return undo(ctx, v) }})
	}
	return v, nil
}

// Finish must be deferred right after NewSaga with the workflow's named
// error result. When *errp is set, it runs the compensations in reverse order
// and replaces *errp with a non-retryable StepFailed error whose details
// are a StepFailure.
func (s *Saga) Finish(errp *error) {
	if *errp == nil {
		s.count("succeeded", "")
		return
	}
	cause := *errp
	failure := StepFailure{Operation: s.what, Step: s.current, Message: rootMessage(cause)}
	var inError instanceInError
	failure.InstanceError = errors.As(cause, &inError)
	errs := []error{cause}
	outcome := "failed"
	if temporal.IsCanceledError(cause) {
		outcome = "cancelled"
		failure.Message = "cancelled"
		// Keep the CanceledError out of the returned chain: the SDK closes
		// a workflow whose error wraps one as Canceled and drops this
		// report (which compensations ran, which of them failed).
		errs[0] = errors.New(failure.Message)
	}
	ctx, _ := workflow.NewDisconnectedContext(s.ctx)
	ctx = workflow.WithActivityOptions(ctx, compensationOptions)
	for i := len(s.compensations) - 1; i >= 0; i-- {
		c := s.compensations[i]
		failure.Compensations = append(failure.Compensations, c.name)
		if err := c.undo(ctx); err != nil {
			failure.CompensationErrors = append(failure.CompensationErrors, fmt.Sprintf("%s: %s", c.name, rootMessage(err)))
			errs = append(errs, fmt.Errorf("compensation %s: %w", c.name, err))
		}
	}
	msg := fmt.Sprintf("%s: step %s failed: %s", s.what, failure.Step, failure.Message)
	if len(failure.Compensations) > 0 {
		msg += "; undone: " + strings.Join(failure.Compensations, ", ")
	}
	if len(failure.CompensationErrors) > 0 {
		msg += "; compensation errors: " + strings.Join(failure.CompensationErrors, "; ")
	}
	*errp = temporal.NewNonRetryableApplicationError(msg, ErrStepFailed, errors.Join(errs...), failure)
	s.count(outcome, failure.Step)
}

// SagaOutcomesMetric counts sagas that ended, by operation (the saga's
// workflow type), outcome (succeeded, failed, cancelled) and failed_step.
// It goes through the worker's Temporal metrics handler, which records
// nothing while a workflow replays; Prometheus shows it with the suffix
// _total.
const SagaOutcomesMetric = "cloudservers_saga_outcomes"

func (s *Saga) count(outcome, failedStep string) {
	workflow.GetMetricsHandler(s.ctx).WithTags(map[string]string{
		"operation": workflow.GetInfo(s.ctx).WorkflowType.Name, "outcome": outcome, "failed_step": failedStep,
	}).Counter(SagaOutcomesMetric).Inc(1)
}

// rootMessage is the innermost message of an error chain: what a support
// engineer needs, without the SDK's wrapping ("activity error (type: ...").
func rootMessage(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return app.Message()
	}
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// activityOptions apply to the steps: retries with backoff for what a retry
// can fix, none for what it cannot.
var activityOptions = workflow.ActivityOptions{
	StartToCloseTimeout: 30 * time.Second,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval:        time.Second,
		BackoffCoefficient:     2,
		MaximumInterval:        30 * time.Second,
		MaximumAttempts:        8,
		NonRetryableErrorTypes: activities.NonRetryableErrorTypes,
	},
}

// compensationOptions retry longer: an undo that gives up leaks a resource.
var compensationOptions = workflow.ActivityOptions{
	StartToCloseTimeout:    30 * time.Second,
	ScheduleToCloseTimeout: 15 * time.Minute,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval:        time.Second,
		BackoffCoefficient:     2,
		MaximumInterval:        time.Minute,
		NonRetryableErrorTypes: []string{activities.ErrInvalidRequest},
	},
}

// WithActivityOptions returns ctx with the saga steps' activity options.
//
// A saga cancelled while one of its activities runs waits for that activity
// to finish (WaitForCancellation): the activity does not heartbeat, so it
// runs to its end anyway, and only its result tells the saga what it made.
// A create that finishes after the cancellation then registers its
// compensation like any completed step, and Finish undoes it; without the
// wait the saga would go on at once, undo only the earlier steps, and leave
// what the activity made a moment later (an instance whose port had just
// been deleted, say).
func WithActivityOptions(ctx workflow.Context) workflow.Context {
	opts := activityOptions
	if changed(ctx, "wait-for-cancelled-activities") {
		opts.WaitForCancellation = true
	}
	return workflow.WithActivityOptions(ctx, opts)
}
