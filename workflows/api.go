// Package workflows holds the deterministic workflow code: the lifecycle
// workflow of each server, one file per saga, the saga helper and the
// registry that ties operation names to sagas.
//
// Identifiers visible in the Temporal UI are built here and nowhere else:
//
//	server/<server id>   the lifecycle workflow of a server (single writer of its state)
//	op/<operation id>    the saga of one operation (a child of the lifecycle)
//
// Search attributes: CustomerId, ServerId, OperationId, Operation,
// NovaInstanceId. Task queue: "cloudservers".
package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/activities"
)

// TaskQueue is the one task queue the worker polls.
const TaskQueue = "cloudservers"

// Signal names.
const (
	// SignalRequest carries a cloudservers.Request to a server's lifecycle.
	SignalRequest = "request"
	// SignalNovaEvent carries a notification.Event about the server's Nova
	// instance. The router sends it to the running operation, op/<id>
	// (lifecycles started before level 1 also took it and forwarded it).
	SignalNovaEvent = "nova-event"
)

// Search attribute keys, registered by the dev stack as Keyword attributes.
var (
	AttrCustomerID     = temporal.NewSearchAttributeKeyKeyword("CustomerId")
	AttrServerID       = temporal.NewSearchAttributeKeyKeyword("ServerId")
	AttrOperationID    = temporal.NewSearchAttributeKeyKeyword("OperationId")
	AttrOperation      = temporal.NewSearchAttributeKeyKeyword("Operation")
	AttrNovaInstanceID = temporal.NewSearchAttributeKeyKeyword("NovaInstanceId")
)

// SearchAttributes lists the search attribute keys above
// (TestDevStackRegistersEverySearchAttribute holds devstack's list to it).
var SearchAttributes = []temporal.SearchAttributeKeyKeyword{AttrCustomerID, AttrServerID, AttrOperationID, AttrOperation, AttrNovaInstanceID}

// ServerWorkflowID is the ID of a server's lifecycle workflow.
func ServerWorkflowID(serverID string) string { return "server/" + serverID }

// OperationWorkflowID is the ID of an operation's saga workflow.
func OperationWorkflowID(operationID string) string { return "op/" + operationID }

// LifecycleInput starts (or continues) a server's lifecycle workflow.
type LifecycleInput struct {
	ServerID   string `json:"server_id"`
	CustomerID string `json:"customer_id"`
	// EventTimeout bounds every wait for a notification before the one
	// reconciliation read; zero means DefaultEventTimeout.
	EventTimeout time.Duration `json:"event_timeout,omitempty"`

	// Level is the workflow code level the run was started at (see
	// CodeLevel); 0 before levels existed.
	Level int `json:"level,omitempty"`

	// Carried across continue-as-new.
	Server *cloudservers.Server   `json:"server,omitempty"`
	Queue  []cloudservers.Request `json:"queue,omitempty"`
	Seen   []string               `json:"seen,omitempty"`
}

// DefaultEventTimeout is how long a saga waits for a notification before it
// makes its one reconciliation read.
const DefaultEventTimeout = 5 * time.Minute

// OperationInput is what every saga receives.
type OperationInput struct {
	Request      cloudservers.Request `json:"request"`
	Server       cloudservers.Server  `json:"server"`
	EventTimeout time.Duration        `json:"event_timeout"`
	// Level is the workflow code level the lifecycle started the saga at.
	Level int `json:"level,omitempty"`
	// Started, when set, is the state the saga publishes before its first
	// step: the server (with the operation's ID) and the operation as
	// running. So both are in Kafka before the saga asks Nova for
	// anything, and the router, which finds a server's running operation
	// in the servers topic, can deliver the notifications straight to it.
	Started *activities.State `json:"started,omitempty"`
}

// OperationResult is what every saga returns: the server as the operation
// left it.
type OperationResult struct {
	Server cloudservers.Server `json:"server"`
}

// StepFailure is the detail of a saga's failure: which step failed, on what,
// and which compensations ran (in the order they ran).
type StepFailure struct {
	Operation     string   `json:"operation"`
	Step          string   `json:"step"`
	Message       string   `json:"message"`
	Compensations []string `json:"compensations"`
	// CompensationErrors is empty when every compensation succeeded; a
	// non-empty list means something may have leaked and the reaper or
	// support must look.
	CompensationErrors []string `json:"compensation_errors,omitempty"`
	// InstanceError says the step failed because Nova put the instance in
	// ERROR: the lifecycle then gives the server the operation's
	// InstanceError status (cloudservers.OperationDef).
	InstanceError bool `json:"instance_error,omitempty"`
}

// ErrStepFailed is the ApplicationError type of a saga's failure; its
// details are a StepFailure.
const ErrStepFailed = "StepFailed"
