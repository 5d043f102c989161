package workflows

import (
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"sync"

	"go.temporal.io/sdk/workflow"

	"github.com/cloudservers/cloudservers"
)

// SagaDef ties an operation of cloudservers.Operations to its saga. The
// worker registers the workflows; the router delivers the events of Awaits.
type SagaDef struct {
	Operation cloudservers.OperationType
	// Workflow is func(workflow.Context, OperationInput) (OperationResult, error).
	Workflow any
	// Awaits lists the Nova event types the saga's waits (Await) end on,
	// its compensations' included: the router delivers those, and no
	// others, to a running operation (see Routed). An Await for an event
	// that no saga lists fails at once, so a missing entry shows in the
	// saga's first test.
	Awaits []string
}

// Registry lists the saga of every operation of cloudservers.Operations
// (TestRegistryCoversTheOperations). Adding an operation is one file with
// its workflow, one entry in cloudservers.Operations and one line here (see
// docs/writing-a-saga.md).
func Registry() []SagaDef {
	return []SagaDef{
		{Operation: cloudservers.OpCreate, Workflow: CreateServerWorkflow,
			Awaits: []string{"instance.create.end", "instance.create.error", "compute_task.build_instances.error", "instance.delete.end", "instance.delete.error"}},
		{Operation: cloudservers.OpDelete, Workflow: DeleteServerWorkflow,
			Awaits: []string{"instance.delete.end", "instance.delete.error"}},
		{Operation: cloudservers.OpReboot, Workflow: RebootServerWorkflow,
			Awaits: []string{"instance.reboot.end", "instance.reboot.error"}},
		{Operation: cloudservers.OpPowerOff, Workflow: PowerOffServerWorkflow,
			Awaits: []string{"instance.power_off.end", "instance.power_off.error"}},
		{Operation: cloudservers.OpPowerOn, Workflow: PowerOnServerWorkflow,
			Awaits: []string{"instance.power_on.end", "instance.power_on.error"}},
		{Operation: cloudservers.OpResize, Workflow: ResizeServerWorkflow,
			Awaits: []string{"instance.resize_finish.end", "instance.resize.error", "instance.resize_prep.error", "instance.resize_finish.error",
				"compute_task.migrate_server.error", "instance.resize_confirm.end", "instance.resize_confirm.error",
				"instance.resize_revert.end", "instance.resize_revert.error"}},
		{Operation: cloudservers.OpRebuild, Workflow: RebuildServerWorkflow, Awaits: []string{"instance.rebuild.end", "instance.rebuild.error"}},
		{Operation: cloudservers.OpRename, Workflow: RenameServerWorkflow},
	}
}

// Routed reports whether the router delivers a notification to the
// operation running on its server: the event types some saga awaits (the
// registry's Awaits), and an instance.update to ERROR, which ends any wait.
// The rest (.start events, instance.update chatter, instance.exists audits)
// no saga uses, and costs no signal and no workflow task.
func Routed(eventType, state string) bool {
	if eventType == "instance.update" {
		return state == "error"
	}
	awaitedOnce.Do(func() {
		awaited = map[string]bool{}
		for _, d := range Registry() {
			for _, e := range d.Awaits {
				awaited[e] = true
			}
		}
	})
	return awaited[eventType]
}

// awaited is the set of the registry's Awaits, built once: Routed runs for
// every notification the router decodes. (Built on first use: a package
// variable's initializer cannot refer to the registry, whose sagas call
// Routed.)
var (
	awaitedOnce sync.Once
	awaited     map[string]bool
)

// Name is the workflow type the saga is registered and started as.
func (d SagaDef) Name() string { return functionName(d.Workflow) }

// sagaFunc is the signature of every saga.
type sagaFunc = func(workflow.Context, OperationInput) (OperationResult, error)

// Register registers, on a worker or a test environment, the lifecycle, the
// reap workflow and every saga of the registry, each saga under its own
// function's name (the name the lifecycle starts it by) and wrapped by
// startSaga.
func Register(r interface {
	RegisterWorkflow(w any)
	RegisterWorkflowWithOptions(w any, options workflow.RegisterOptions)
}) {
	r.RegisterWorkflow(ServerWorkflow)
	r.RegisterWorkflow(ReapWorkflow)
	for _, d := range Registry() {
		fn, ok := d.Workflow.(sagaFunc)
		if !ok {
			panic(fmt.Sprintf("workflows: the saga of %s is a %T, want func(workflow.Context, OperationInput) (OperationResult, error)", d.Operation, d.Workflow))
		}
		r.RegisterWorkflowWithOptions(startSaga(fn), workflow.RegisterOptions{Name: functionName(d.Workflow)})
	}
}

// startSaga runs a saga at the level its input carries, after publishing
// the state the lifecycle left to it (OperationInput.Started).
func startSaga(fn sagaFunc) sagaFunc {
	return func(ctx workflow.Context, in OperationInput) (OperationResult, error) {
		ctx = withLevel(ctx, in.Level)
		if in.Started != nil {
			if err := publishState(ctx, *in.Started); err != nil {
				return OperationResult{}, err
			}
		}
		return fn(ctx, in)
	}
}

// functionName is the name the SDK registers and starts a workflow
// function by: the last element of its qualified name.
func functionName(fn any) string {
	name := runtime.FuncForPC(reflect.ValueOf(fn).Pointer()).Name()
	if i := strings.LastIndex(name, "."); i >= 0 {
		name = name[i+1:]
	}
	return strings.TrimSuffix(name, "-fm")
}

// Lookup returns the saga of an operation.
func Lookup(op cloudservers.OperationType) (SagaDef, bool) {
	for _, d := range Registry() {
		if d.Operation == op {
			return d, true
		}
	}
	return SagaDef{}, false
}

// decodeParams decodes a request's parameters strictly (see
// cloudservers.DecodeParams).
func decodeParams(params json.RawMessage, v any) error { return cloudservers.DecodeParams(params, v) }
