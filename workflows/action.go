package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/cloudservers/cloudservers/activities"
)

// novaAction is the shape shared by the single-action sagas (reboot, power
// off, power on): ask Nova, then wait for the action's notification. There
// is nothing to compensate: the action either happened or did not.
type novaAction struct {
	step     string // activity name, shown as the failed step
	activity any
	arg      any
	what     string
	success  []string
	failure  []string
	status   string // Nova status that means done, for reconciliation
}

// WaitStep is the name of the step that waits for the notification of the
// Nova action an activity asked for: WaitForRebootNovaServer.
func WaitStep(activity string) string { return "WaitFor" + activity }

func runNovaAction(ctx workflow.Context, in OperationInput, act novaAction) (res OperationResult, err error) {
	ctx = WithActivityOptions(ctx)
	srv := in.Server
	saga := NewSaga(ctx, string(in.Request.Operation)+" server "+srv.ID)
	defer saga.Finish(&err)
	nova, err := Step(saga, act.step, func(ctx workflow.Context) (activities.NovaAction, error) {
		var out activities.NovaAction
		err := workflow.ExecuteActivity(ctx, act.activity, act.arg).Get(ctx, &out)
		return out, err
	}, "", nil)
	if err != nil {
		return res, err
	}
	if _, err = Step(saga, WaitStep(act.step), func(ctx workflow.Context) (struct{}, error) {
		return struct{}{}, Await(ctx, Expectation{
			What:      act.what + " of Nova server " + srv.NovaInstanceID,
			Action:    nova,
			Success:   act.success,
			Failure:   act.failure,
			Reconcile: wantStatus(act.status),
		}, in.EventTimeout)
	}, "", nil); err != nil {
		return res, err
	}
	return OperationResult{Server: srv}, nil
}
