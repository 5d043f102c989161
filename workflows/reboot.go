package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/activities"
)

// RebootServerWorkflow reboots a server (soft or hard): RebootNovaServer,
// then wait for instance.reboot.end.
func RebootServerWorkflow(ctx workflow.Context, in OperationInput) (OperationResult, error) {
	var a *activities.Activities
	var p cloudservers.RebootParams
	if err := decodeParams(in.Request.Params, &p); err != nil {
		return OperationResult{}, err
	}
	if p.Type == "" {
		p.Type = "soft"
	}
	return runNovaAction(ctx, in, novaAction{
		step: "RebootNovaServer", activity: a.RebootNovaServer,
		arg:     activities.RebootInput{InstanceID: in.Server.NovaInstanceID, Type: p.Type},
		what:    p.Type + " reboot",
		success: []string{"instance.reboot.end"}, failure: []string{"instance.reboot.error"},
		status: "ACTIVE",
	})
}
