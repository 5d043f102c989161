package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/activities"
)

// StepWaitForNovaBuild is the create saga's wait for the build (named before
// WaitStep; support knows it by this name).
const StepWaitForNovaBuild = "WaitForNovaBuild"

// CreateServerWorkflow provisions a server:
//
//  1. CreatePort            (undo: DeletePort)
//     ImportKeyPair         when an SSH key was given (shared by the customer's servers: no undo)
//  2. CreateNovaServer      (undo: DeleteNovaServer, waiting for instance.delete.end)
//  3. WaitForNovaBuild      instance.create.end, or .error
//  4. AllocateFloatingIP    (undo: ReleaseFloatingIP)
//  5. AssociateFloatingIP   (undo: DisassociateFloatingIP)
func CreateServerWorkflow(ctx workflow.Context, in OperationInput) (res OperationResult, err error) {
	var a *activities.Activities
	ctx = WithActivityOptions(ctx)
	srv := in.Server
	var p cloudservers.CreateParams
	if err := decodeParams(in.Request.Params, &p); err != nil {
		return res, err
	}
	saga := NewSaga(ctx, "create server "+srv.ID)
	defer saga.Finish(&err)

	port, err := Step(saga, "CreatePort", func(ctx workflow.Context) (activities.Port, error) {
		var port activities.Port
		err := workflow.ExecuteActivity(ctx, a.CreatePort, activities.CreatePortInput{ServerID: srv.ID, CustomerID: srv.CustomerID, Region: p.Region}).Get(ctx, &port)
		return port, err
	}, "DeletePort", func(ctx workflow.Context, port activities.Port) error {
		return workflow.ExecuteActivity(ctx, a.DeletePort, port.ID).Get(ctx, nil)
	})
	if err != nil {
		return res, err
	}
	srv.PortID, srv.PrivateIPv4 = port.ID, port.IP

	if p.KeyName != "" {
		// Keypairs are shared by the customer's servers: nothing to undo.
		if _, err = Step(saga, "ImportKeyPair", activity0(a.ImportKeyPair, activities.ImportKeyPairInput{Name: p.KeyName, PublicKey: p.SSHKey}), "", nil); err != nil {
			return res, err
		}
	}

	nova, err := Step(saga, "CreateNovaServer", func(ctx workflow.Context) (activities.NovaAction, error) {
		var act activities.NovaAction
		err := workflow.ExecuteActivity(ctx, a.CreateNovaServer, activities.CreateNovaServerInput{
			ServerID: srv.ID, CustomerID: srv.CustomerID, Size: p.Size, Image: p.Image, PortID: port.ID, KeyName: p.KeyName,
		}).Get(ctx, &act)
		return act, err
	}, "DeleteNovaServer", func(ctx workflow.Context, act activities.NovaAction) error {
		return deleteNovaServer(ctx, act.InstanceID, in.EventTimeout)
	})
	if err != nil {
		return res, err
	}
	srv.NovaInstanceID = nova.InstanceID
	_ = workflow.UpsertTypedSearchAttributes(ctx, AttrNovaInstanceID.ValueSet(nova.InstanceID))

	if _, err = Step(saga, StepWaitForNovaBuild, func(ctx workflow.Context) (struct{}, error) {
		return struct{}{}, Await(ctx, Expectation{
			What:    "build of Nova server " + nova.InstanceID,
			Action:  nova,
			Success: []string{"instance.create.end"},
			Failure: []string{"instance.create.error", "compute_task.build_instances.error"},
			// One host failing the build is not the end: Nova reschedules.
			Provisional: []string{"instance.create.error"},
			Reconcile:   wantStatus("ACTIVE"),
		}, in.EventTimeout)
	}, "", nil); err != nil {
		return res, err
	}

	fip, err := Step(saga, "AllocateFloatingIP", func(ctx workflow.Context) (activities.FloatingIP, error) {
		var fip activities.FloatingIP
		err := workflow.ExecuteActivity(ctx, a.AllocateFloatingIP, activities.AllocateFloatingIPInput{ServerID: srv.ID, Region: p.Region}).Get(ctx, &fip)
		return fip, err
	}, "ReleaseFloatingIP", func(ctx workflow.Context, fip activities.FloatingIP) error {
		return workflow.ExecuteActivity(ctx, a.ReleaseFloatingIP, fip.ID).Get(ctx, nil)
	})
	if err != nil {
		return res, err
	}

	if _, err = Step(saga, "AssociateFloatingIP", func(ctx workflow.Context) (struct{}, error) {
		return struct{}{}, workflow.ExecuteActivity(ctx, a.AssociateFloatingIP, activities.AssociateFloatingIPInput{FloatingIPID: fip.ID, PortID: port.ID}).Get(ctx, nil)
	}, "DisassociateFloatingIP", func(ctx workflow.Context, _ struct{}) error {
		return workflow.ExecuteActivity(ctx, a.DisassociateFloatingIP, fip.ID).Get(ctx, nil)
	}); err != nil {
		return res, err
	}

	srv.FloatingIPID, srv.PublicIPv4 = fip.ID, fip.Address
	return OperationResult{Server: srv}, nil
}

// deleteNovaServer deletes an instance and waits for Nova to say it is gone,
// so that the port it used can be deleted after it.
func deleteNovaServer(ctx workflow.Context, instanceID string, timeout time.Duration) error {
	var a *activities.Activities
	var act activities.NovaAction
	if err := workflow.ExecuteActivity(ctx, a.DeleteNovaServer, instanceID).Get(ctx, &act); err != nil {
		return err
	}
	return Await(ctx, Expectation{
		What:      "deletion of Nova server " + instanceID,
		Action:    act,
		Success:   []string{"instance.delete.end"},
		Failure:   []string{"instance.delete.error"},
		Reconcile: wantStatus("DELETED"),
	}, timeout)
}
