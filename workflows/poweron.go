package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/cloudservers/cloudservers/activities"
)

// PowerOnServerWorkflow starts a stopped server: StartNovaServer, then wait
// for instance.power_on.end.
func PowerOnServerWorkflow(ctx workflow.Context, in OperationInput) (OperationResult, error) {
	var a *activities.Activities
	return runNovaAction(ctx, in, novaAction{
		step: "StartNovaServer", activity: a.StartNovaServer, arg: in.Server.NovaInstanceID,
		what:    "power on",
		success: []string{"instance.power_on.end"}, failure: []string{"instance.power_on.error"},
		status: "ACTIVE",
	})
}
