package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/activities"
)

// RebuildServerWorkflow rebuilds a server from an image, keeping its ID and
// addresses: RebuildNovaServer, then wait for instance.rebuild.end. There is
// nothing to compensate: the old disk is gone once Nova has started.
func RebuildServerWorkflow(ctx workflow.Context, in OperationInput) (OperationResult, error) {
	var a *activities.Activities
	var p cloudservers.RebuildParams
	if err := decodeParams(in.Request.Params, &p); err != nil {
		return OperationResult{}, err
	}
	res, err := runNovaAction(ctx, in, novaAction{
		step: "RebuildNovaServer", activity: a.RebuildNovaServer,
		arg:     activities.RebuildInput{InstanceID: in.Server.NovaInstanceID, Image: p.Image},
		what:    "rebuild",
		success: []string{"instance.rebuild.end"}, failure: []string{"instance.rebuild.error"},
		status: "ACTIVE",
	})
	if err != nil {
		return res, err
	}
	res.Server.Image = p.Image
	return res, nil
}
