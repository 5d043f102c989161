package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/cloudservers/cloudservers/activities"
	"github.com/cloudservers/cloudservers/internal/notification"
)

// Expectation describes the notification that ends a Nova action.
type Expectation struct {
	// What names the wait for messages ("build of Nova server X").
	What string
	// Action is what the activity that asked Nova learnt: the instance and
	// the request ID the notifications will carry.
	Action activities.NovaAction
	// Success and Failure list the (normalised, versioned) event types that
	// end the wait.
	Success []string
	Failure []string
	// Provisional lists failure events that are not final: Nova sends
	// instance.create.error for each host a build failed on, then
	// reschedules. Their fault is kept for the report; the wait ends when
	// the instance goes to ERROR (or a Failure event comes).
	Provisional []string
	// Reconcile judges the one read made when no notification came in time:
	// nil means the action completed and its notification was lost.
	Reconcile func(activities.NovaServer) error
}

// Await waits for the notification that ends a Nova action, delivered as a
// SignalNovaEvent signal. Notifications of other instances and of other
// requests (a late duplicate of an earlier reboot, say) are ignored, as are
// duplicates: the first event that ends the action decides. When none comes
// within timeout, Await makes exactly one reconciliation read.
func Await(ctx workflow.Context, exp Expectation, timeout time.Duration) error {
	if exp.Action.AlreadyDone {
		return nil
	}
	for _, e := range slices.Concat(exp.Success, exp.Failure, exp.Provisional) {
		if !Routed(e, "") {
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
				"%s: no saga in the registry lists %s in its Awaits, so the router would never deliver it", exp.What, e), "UnroutedEvent", nil)
		}
	}
	if timeout <= 0 {
		timeout = DefaultEventTimeout
	}
	ch := workflow.GetSignalChannel(ctx, SignalNovaEvent)
	timerCtx, cancelTimer := workflow.WithCancel(ctx)
	defer cancelTimer()
	timer := workflow.NewTimer(timerCtx, timeout)
	var latest *notification.Event // the newest relevant instance.update, by Nova's timestamp
	var provisional *notification.Event
	// failed is the event that ended the action in failure while the wait
	// lingers (errored running) for the event that says why: an update to
	// ERROR rarely carries the fault, and a build's last error can arrive
	// after compute_task's summary (other partition, no order between them).
	var failed *notification.Event
	var errored workflow.Future
	linger := func(ev notification.Event) {
		e := ev
		failed = &e
		if errored == nil {
			errored = workflow.NewTimer(timerCtx, min(errorFaultGrace, timeout))
		}
	}
	for {
		var (
			ev           notification.Event
			got          bool
			timedOut     bool
			graceExpired bool
		)
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(ch, func(c workflow.ReceiveChannel, _ bool) {
			c.Receive(ctx, &ev)
			got = true
		})
		sel.AddFuture(timer, func(workflow.Future) { timedOut = true })
		if errored != nil {
			sel.AddFuture(errored, func(workflow.Future) { graceExpired = true })
		}
		sel.Select(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		if graceExpired {
			return exp.failure(faultFromRead(ctx, exp, *failed), nil)
		}
		if timedOut {
			return reconcile(ctx, exp, timeout, latest)
		}
		if !got || !exp.matches(ev) {
			continue
		}
		if slices.Contains(exp.Provisional, ev.EventType) &&
			changed(ctx, "provisional-build-errors") {
			e := ev
			provisional = &e
			if failed != nil {
				// The instance is already in ERROR: this is its reason.
				return exp.failure(*failed, provisional)
			}
			continue
		}
		switch {
		case slices.Contains(exp.Success, ev.EventType):
			return nil
		case slices.Contains(exp.Failure, ev.EventType):
			if provisional == nil && len(exp.Provisional) > 0 &&
				changed(ctx, "failure-waits-for-build-error") {
				linger(ev)
				continue
			}
			return exp.failure(ev, provisional)
		case ev.EventType == "instance.update":
			// Updates can arrive out of order (and legacy twins duplicate
			// them): keep the newest by Nova's own timestamp. An update to
			// ERROR ends the wait even when the .error event is lost.
			if latest == nil || ev.Timestamp.After(latest.Timestamp) {
				e := ev
				latest = &e
				if ev.State == "error" {
					if provisional != nil {
						return exp.failure(ev, provisional)
					}
					// Histories from before the lingering failed at once.
					if ev.Fault != "" || !changed(ctx, "error-update-waits-for-fault") {
						return exp.failure(ev, nil)
					}
					if failed == nil {
						linger(ev)
					}
				}
			}
		}
	}
}

// failure reports the event that ended an action in failure, with the
// provisional error that gives the reason when there is one: "Nova reported
// instance.create.error: PortBindingFailed: ... (then
// compute_task.build_instances.error: MaxRetriesExceeded: ...)".
func (exp Expectation) failure(ev notification.Event, provisional *notification.Event) error {
	inError := ev.EventType == "instance.update" || ev.State == "error"
	describe := func(e notification.Event) string {
		if e.EventType == "instance.update" {
			return "Nova put the instance in ERROR: " + faultOf(e)
		}
		return "Nova reported " + e.EventType + ": " + faultOf(e)
	}
	if provisional == nil {
		return markInError(inError, fmt.Errorf("%s: %s", exp.What, describe(ev)))
	}
	msg := fmt.Sprintf("%s: %s", exp.What, describe(*provisional))
	if ev.EventType != "instance.update" && ev.Fault != "" && ev.Fault != provisional.Fault {
		msg += fmt.Sprintf(" (then %s: %s)", ev.EventType, faultOf(ev))
	}
	return markInError(inError, errors.New(msg))
}

// instanceInError marks the failure of a wait that ended with the instance
// in ERROR (an instance.update to error, a failure event whose state is
// error, or the reconciliation read).
type instanceInError struct{ error }

func (e instanceInError) Unwrap() error { return e.error }

func markInError(inError bool, err error) error {
	if inError {
		return instanceInError{err}
	}
	return err
}

// errorFaultGrace is how long a failure waits for the event that carries
// its reason (notifications on different partitions arrive in any order,
// usually within a second of each other).
const errorFaultGrace = 5 * time.Second

func (exp Expectation) matches(ev notification.Event) bool {
	if ev.InstanceID != "" && ev.InstanceID != exp.Action.InstanceID {
		return false
	}
	// A request ID on both sides must agree: this is what tells this
	// reboot's .end from the late duplicate of the previous one's.
	if exp.Action.RequestID != "" && ev.RequestID != "" && ev.RequestID != exp.Action.RequestID {
		return false
	}
	return true
}

// faultFromRead fills in the reason for a failure whose notifications never
// gave one (the event that carries the fault was lost or is still on its
// way on another partition when the grace ends): Nova keeps the instance's
// fault on the server, and one read shows it. A failed read leaves the
// event as it was; the failure stands either way.
func faultFromRead(ctx workflow.Context, exp Expectation, ev notification.Event) notification.Event {
	if ev.Fault != "" || !changed(ctx, "fault-read-after-grace") {
		return ev
	}
	var a *activities.Activities
	var s activities.NovaServer
	if err := workflow.ExecuteActivity(WithActivityOptions(ctx), a.GetNovaServer, exp.Action.InstanceID).Get(ctx, &s); err != nil {
		workflow.GetLogger(ctx).Warn("reading the fault of a failed action failed", "what", exp.What, "error", err)
		return ev
	}
	if s.Fault != "" {
		ev.Fault, ev.FaultException = s.Fault, ""
	}
	return ev
}

func faultOf(ev notification.Event) string {
	if ev.Fault != "" && ev.FaultException != "" {
		return ev.FaultException + ": " + ev.Fault
	}
	if ev.Fault != "" {
		return ev.Fault
	}
	return "no fault given"
}

func reconcile(ctx workflow.Context, exp Expectation, timeout time.Duration, latest *notification.Event) error {
	var a *activities.Activities
	var s activities.NovaServer
	// The messages below are what the saga's failure reports (rootMessage
	// keeps the outermost ApplicationError's message, else the innermost
	// error's): they must say what timed out, not only what the read saw.
	if err := workflow.ExecuteActivity(WithActivityOptions(ctx), a.GetNovaServer, exp.Action.InstanceID).Get(ctx, &s); err != nil {
		return temporal.NewApplicationErrorWithCause(fmt.Sprintf("%s: no notification within %s, and the reconciliation read failed: %s", exp.What, timeout, rootMessage(err)), "ReconciliationFailed", err)
	}
	if err := exp.Reconcile(s); err != nil {
		return markInError(s.Status == "ERROR", fmt.Errorf("%s: no notification within %s; Nova shows status %s task %q: %v", exp.What, timeout, s.Status, s.TaskState, err))
	}
	workflow.GetLogger(ctx).Warn("notification lost; reconciliation read shows the action done", "what", exp.What, "status", s.Status)
	return nil
}

// wantStatus is a Reconcile function that accepts a Nova status with no
// task in progress.
func wantStatus(status string) func(activities.NovaServer) error {
	return func(s activities.NovaServer) error {
		if s.Status == status && s.TaskState == "" {
			return nil
		}
		if s.Status == "ERROR" {
			return fmt.Errorf("instance in ERROR: %s", s.Fault)
		}
		return fmt.Errorf("want %s", status)
	}
}
