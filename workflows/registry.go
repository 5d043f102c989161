package workflows

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/cloudservers/cloudservers"
)

// SagaDef ties an operation name to its saga. The API reads it to know
// which operations exist and validate their parameters, the bridge to
// recognise a request, and the worker to register the workflows.
type SagaDef struct {
	Operation cloudservers.OperationType
	// Workflow is func(workflow.Context, OperationInput) (OperationResult, error).
	Workflow any
	// Running is the server's status while the saga runs.
	Running cloudservers.ServerStatus
	// From lists the statuses the operation may start from; empty means a
	// new server (create).
	From []cloudservers.ServerStatus
	// Validate checks a request's parameters against the catalogue; nil
	// when the operation takes none.
	Validate func(params json.RawMessage, catalog cloudservers.Catalog) error
}

// Registry lists every saga. Adding an operation is one file with its
// workflow and one line here (see docs/writing-a-saga.md).
func Registry() []SagaDef {
	return []SagaDef{
		{Operation: cloudservers.OpCreate, Workflow: CreateServerWorkflow, Running: cloudservers.StatusCreating, Validate: validateCreate},
		{Operation: cloudservers.OpDelete, Workflow: DeleteServerWorkflow, Running: cloudservers.StatusDeleting, From: anyStatus},
		{Operation: cloudservers.OpReboot, Workflow: RebootServerWorkflow, Running: cloudservers.StatusRebooting, From: running, Validate: validateReboot},
		{Operation: cloudservers.OpPowerOff, Workflow: PowerOffServerWorkflow, Running: cloudservers.StatusStopping, From: running},
		{Operation: cloudservers.OpPowerOn, Workflow: PowerOnServerWorkflow, Running: cloudservers.StatusStarting, From: stopped},
		{Operation: cloudservers.OpResize, Workflow: ResizeServerWorkflow, Running: cloudservers.StatusResizing, From: activeOrOff, Validate: validateResize},
	}
}

var (
	running     = []cloudservers.ServerStatus{cloudservers.StatusActive}
	stopped     = []cloudservers.ServerStatus{cloudservers.StatusOff}
	activeOrOff = []cloudservers.ServerStatus{cloudservers.StatusActive, cloudservers.StatusOff}
	anyStatus   = []cloudservers.ServerStatus{cloudservers.StatusActive, cloudservers.StatusOff, cloudservers.StatusError}
)

// Lookup returns the saga of an operation.
func Lookup(op cloudservers.OperationType) (SagaDef, bool) {
	for _, d := range Registry() {
		if d.Operation == op {
			return d, true
		}
	}
	return SagaDef{}, false
}

// Allowed reports whether the operation may start on a server in status;
// the reason says why not, for the customer.
func (d SagaDef) Allowed(status cloudservers.ServerStatus) error {
	if len(d.From) == 0 {
		return fmt.Errorf("%s applies to new servers only", d.Operation)
	}
	for _, s := range d.From {
		if s == status {
			return nil
		}
	}
	return fmt.Errorf("cannot %s a server that is %s", d.Operation, status)
}

// ParamError is a validation error about one parameter.
type ParamError struct {
	Field   string
	Problem string
}

func (e *ParamError) Error() string { return e.Problem }

// decodeParams decodes a request's parameters strictly: unknown fields are
// an error, so a typo never silently falls back to a default.
func decodeParams(params json.RawMessage, v any) error {
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(params))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid parameters: %w", err)
	}
	return nil
}

// noParams validates an operation that takes no parameters.
func noParams(params json.RawMessage, _ cloudservers.Catalog) error {
	var none struct{}
	return decodeParams(params, &none)
}

// ValidateParams checks a request's parameters with the saga's validator.
func (d SagaDef) ValidateParams(params json.RawMessage, catalog cloudservers.Catalog) error {
	if d.Validate == nil {
		return noParams(params, catalog)
	}
	return d.Validate(params, catalog)
}
