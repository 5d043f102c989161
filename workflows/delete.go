package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/cloudservers/cloudservers/activities"
)

// DeleteServerWorkflow removes a server and everything it holds:
//
//  1. DisassociateFloatingIP and ReleaseFloatingIP
//  2. DeleteNovaServer, then wait for instance.delete.end
//  3. DeletePort
//
// Deletion only goes forward: there is nothing to compensate, and every step
// treats "already gone" as done, so a failed delete can be retried as is.
func DeleteServerWorkflow(ctx workflow.Context, in OperationInput) (res OperationResult, err error) {
	var a *activities.Activities
	ctx = WithActivityOptions(ctx)
	srv := in.Server
	saga := NewSaga(ctx, "delete server "+srv.ID)
	defer saga.Finish(&err)

	fipID := srv.FloatingIPID
	if fipID == "" {
		// A create that failed half-way may have left one behind.
		fip, err := Step(saga, "FindFloatingIP", func(ctx workflow.Context) (activities.FloatingIP, error) {
			var fip activities.FloatingIP
			err := workflow.ExecuteActivity(ctx, a.FindFloatingIP, srv.ID).Get(ctx, &fip)
			return fip, err
		}, "", nil)
		if err != nil {
			return res, err
		}
		fipID = fip.ID
	}
	if fipID != "" {
		if _, err = Step(saga, "DisassociateFloatingIP", activity0(a.DisassociateFloatingIP, fipID), "", nil); err != nil {
			return res, err
		}
		if _, err = Step(saga, "ReleaseFloatingIP", activity0(a.ReleaseFloatingIP, fipID), "", nil); err != nil {
			return res, err
		}
	}
	if srv.NovaInstanceID != "" {
		if _, err = Step(saga, "DeleteNovaServer", func(ctx workflow.Context) (struct{}, error) {
			return struct{}{}, deleteNovaServer(ctx, srv.NovaInstanceID, in.EventTimeout)
		}, "", nil); err != nil {
			return res, err
		}
	}
	if srv.PortID != "" {
		if _, err = Step(saga, "DeletePort", activity0(a.DeletePort, srv.PortID), "", nil); err != nil {
			return res, err
		}
	}
	srv.PublicIPv4, srv.FloatingIPID = "", ""
	srv.PrivateIPv4, srv.PortID = "", ""
	return OperationResult{Server: srv}, nil
}

// activity0 adapts an activity with one argument and no result to a step.
func activity0(activity any, arg any) func(ctx workflow.Context) (struct{}, error) {
	return func(ctx workflow.Context) (struct{}, error) {
		return struct{}{}, workflow.ExecuteActivity(ctx, activity, arg).Get(ctx, nil)
	}
}
