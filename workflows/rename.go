package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/cloudservers/cloudservers"
)

// RenameServerWorkflow renames a server. The name is the customer's: the
// Nova instance keeps the name the system gave it
// (cloudservers.NovaServerName), which the router and the reaper recognise
// it by, so OpenStack is not asked anything. It is an operation all the
// same because the lifecycle is the single writer of the server's record,
// and runs it in order with the server's other operations.
func RenameServerWorkflow(_ workflow.Context, in OperationInput) (OperationResult, error) {
	var p cloudservers.RenameParams
	if err := decodeParams(in.Request.Params, &p); err != nil {
		return OperationResult{}, err
	}
	srv := in.Server
	srv.Name = p.Name
	return OperationResult{Server: srv}, nil
}
