package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/cloudservers/cloudservers/activities"
)

// PowerOffServerWorkflow stops a server: StopNovaServer, then wait for
// instance.power_off.end.
func PowerOffServerWorkflow(ctx workflow.Context, in OperationInput) (OperationResult, error) {
	var a *activities.Activities
	return runNovaAction(ctx, in, novaAction{
		step: "StopNovaServer", activity: a.StopNovaServer, arg: in.Server.NovaInstanceID,
		what:    "power off",
		success: []string{"instance.power_off.end"}, failure: []string{"instance.power_off.error"},
		status: "SHUTOFF",
	})
}
