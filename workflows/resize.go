package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/activities"
)

// StepWaitForNovaResize is the resize saga's wait for the resize (named
// before WaitStep; support knows it by this name).
const StepWaitForNovaResize = "WaitForNovaResize"

// ResizeServerWorkflow changes a server's size:
//
//  1. ResizeNovaServer       (undo: RevertResize, waiting for instance.resize_revert.end)
//  2. WaitForNovaResize      instance.resize_finish.end (VERIFY_RESIZE), or instance.resize.error
//  3. ConfirmResize, then wait for instance.resize_confirm.end
//
// The new size is recorded only once the resize is confirmed.
func ResizeServerWorkflow(ctx workflow.Context, in OperationInput) (res OperationResult, err error) {
	var a *activities.Activities
	ctx = WithActivityOptions(ctx)
	srv := in.Server
	var p cloudservers.ResizeParams
	if err := decodeParams(in.Request.Params, &p); err != nil {
		return res, err
	}
	saga := NewSaga(ctx, "resize server "+srv.ID)
	defer saga.Finish(&err)
	id := srv.NovaInstanceID

	resize, err := Step(saga, "ResizeNovaServer", func(ctx workflow.Context) (activities.NovaAction, error) {
		var act activities.NovaAction
		err := workflow.ExecuteActivity(ctx, a.ResizeNovaServer, activities.ResizeInput{InstanceID: id, Size: p.Size}).Get(ctx, &act)
		return act, err
	}, "RevertResize", func(ctx workflow.Context, _ activities.NovaAction) error {
		var act activities.NovaAction
		if err := workflow.ExecuteActivity(ctx, a.RevertResize, id).Get(ctx, &act); err != nil {
			return err
		}
		return Await(ctx, Expectation{
			What: "resize revert of Nova server " + id, Action: act,
			Success: []string{"instance.resize_revert.end"}, Failure: []string{"instance.resize_revert.error"},
			Reconcile: wantStatus(novaStatusOf(in.Server.Status)),
		}, in.EventTimeout)
	})
	if err != nil {
		return res, err
	}
	if _, err = Step(saga, StepWaitForNovaResize, func(ctx workflow.Context) (struct{}, error) {
		return struct{}{}, Await(ctx, Expectation{
			What: "resize of Nova server " + id, Action: resize,
			Success:   []string{"instance.resize_finish.end"},
			Failure:   []string{"instance.resize.error", "instance.resize_prep.error", "instance.resize_finish.error", "compute_task.migrate_server.error"},
			Reconcile: wantStatus("VERIFY_RESIZE"),
		}, in.EventTimeout)
	}, "", nil); err != nil {
		return res, err
	}
	if _, err = Step(saga, "ConfirmResize", func(ctx workflow.Context) (struct{}, error) {
		var act activities.NovaAction
		if err := workflow.ExecuteActivity(ctx, a.ConfirmResize, id).Get(ctx, &act); err != nil {
			return struct{}{}, err
		}
		return struct{}{}, Await(ctx, Expectation{
			What: "resize confirmation of Nova server " + id, Action: act,
			Success: []string{"instance.resize_confirm.end"}, Failure: []string{"instance.resize_confirm.error"},
			Reconcile: wantStatus(novaStatusOf(in.Server.Status)),
		}, in.EventTimeout)
	}, "", nil); err != nil {
		return res, err
	}
	srv.Size = p.Size // a resized server comes back as it was: on, or off (cloudservers.Operations)
	return OperationResult{Server: srv}, nil
}

// novaStatusOf is the Nova status of a server at rest in status.
func novaStatusOf(status cloudservers.ServerStatus) string {
	if status == cloudservers.StatusOff {
		return "SHUTOFF"
	}
	return "ACTIVE"
}
