package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/activities"
	"github.com/cloudservers/cloudservers/internal/notification"
)

// seenLimit bounds the operation IDs a lifecycle remembers for
// deduplication; older duplicates are still stopped by the op/<id> child
// workflow ID, which Temporal refuses to reuse.
const seenLimit = 256

// deletedLinger is how long the lifecycle of a deleted server stays to
// absorb late duplicate requests before it ends.
const deletedLinger = 10 * time.Minute

// historyLimit is the history length after which the lifecycle continues as
// new (Temporal also suggests it when the history grows large).
const historyLimit = 10000

// publishOptions apply to the state publications: Kafka may be briefly
// away; the record must get there eventually.
var publishOptions = workflow.ActivityOptions{
	StartToCloseTimeout: 15 * time.Second,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval:    500 * time.Millisecond,
		BackoffCoefficient: 2,
		MaximumInterval:    30 * time.Second,
	},
}

// publishRetryFor is how long a state publication is retried while Kafka
// does not take it (an outage of the cluster longer than that fails it).
const publishRetryFor = time.Hour

// ServerWorkflow is the lifecycle of one server and the single writer of its
// state. It receives requests (SignalRequest) and runs their sagas one at a
// time in arrival order as child workflows op/<operation id>; it forwards
// Nova notifications (SignalNovaEvent) to the running saga; it publishes
// every change of the server and its operations to Kafka. A request seen
// before (same operation ID) has no second effect. It ends once the server
// is deleted and nothing is queued.
func ServerWorkflow(ctx workflow.Context, in LifecycleInput) error {
	l := &lifecycle{in: in, server: in.Server, queue: in.Queue, seen: in.Seen}
	return l.run(withLevel(ctx, in.Level))
}

type lifecycle struct {
	in      LifecycleInput
	server  *cloudservers.Server
	queue   []cloudservers.Request
	seen    []string
	current *runningOp
	// instanceAttr is the NovaInstanceId search attribute as this run
	// last set it.
	instanceAttr string
}

type runningOp struct {
	req    cloudservers.Request
	def    cloudservers.OperationDef
	op     cloudservers.Operation
	before cloudservers.ServerStatus
	future workflow.ChildWorkflowFuture
}

func (l *lifecycle) run(ctx workflow.Context) error {
	requests := workflow.GetSignalChannel(ctx, SignalRequest)
	events := workflow.GetSignalChannel(ctx, SignalNovaEvent)
	var lingerTimer workflow.Future
	lingerDone := false
	for {
		for l.current == nil && len(l.queue) > 0 {
			req := l.queue[0]
			l.queue = l.queue[1:]
			l.start(ctx, req)
		}
		var linger workflow.Future
		if l.current == nil {
			if l.server != nil && l.server.Status == cloudservers.StatusDeleted {
				// Stay a while to absorb late duplicates of the delete,
				// then end: the workflow ID is never reused, so a request
				// for this server after that is refused by the bridge.
				if lingerDone && requests.Len() == 0 {
					return nil
				}
				if lingerTimer == nil {
					lingerTimer = workflow.NewTimer(ctx, deletedLinger)
				}
				linger = lingerTimer
			}
			info := workflow.GetInfo(ctx)
			if info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() > historyLimit {
				return l.continueAsNew(ctx, requests, events)
			}
		}
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(requests, func(c workflow.ReceiveChannel, _ bool) {
			var req cloudservers.Request
			c.Receive(ctx, &req)
			l.enqueue(ctx, req)
		})
		sel.AddReceive(events, func(c workflow.ReceiveChannel, _ bool) {
			var ev notification.Event
			c.Receive(ctx, &ev)
			l.forward(ctx, ev)
		})
		if linger != nil {
			sel.AddFuture(linger, func(workflow.Future) { lingerDone = true })
		}
		if l.current != nil {
			sel.AddFuture(l.current.future, func(f workflow.Future) {
				l.finish(ctx, f)
			})
		}
		sel.Select(ctx)
	}
}

func (l *lifecycle) enqueue(ctx workflow.Context, req cloudservers.Request) {
	if slices.Contains(l.seen, req.OperationID) {
		workflow.GetLogger(ctx).Info("duplicate request ignored", "operation", req.OperationID)
		return
	}
	l.seen = append(l.seen, req.OperationID)
	if len(l.seen) > seenLimit {
		l.seen = l.seen[len(l.seen)-seenLimit:]
	}
	l.queue = append(l.queue, req)
}

// forward hands a Nova notification to the running saga. With no saga
// running there is no one waiting: the notification is of a past action.
func (l *lifecycle) forward(ctx workflow.Context, ev notification.Event) {
	if l.current == nil {
		workflow.GetLogger(ctx).Debug("notification with no operation running", "event", ev.EventType)
		return
	}
	l.current.future.SignalChildWorkflow(ctx, SignalNovaEvent, ev)
}

func (l *lifecycle) start(ctx workflow.Context, req cloudservers.Request) {
	now := workflow.Now(ctx)
	op := cloudservers.Operation{
		ID: req.OperationID, ServerID: req.ServerID, CustomerID: req.CustomerID, Type: req.Operation,
		Status: cloudservers.OperationRunning, CreatedAt: req.RequestedAt, UpdatedAt: now,
	}
	def, known := cloudservers.LookupOperation(req.Operation)
	saga, ok := Lookup(req.Operation)
	if !ok || !known {
		l.reject(ctx, op, fmt.Sprintf("unknown operation %q", req.Operation))
		return
	}
	newServer := len(def.From) == 0 // create: the only operation that starts from no server
	switch {
	case newServer && l.server != nil:
		l.reject(ctx, op, "server "+req.ServerID+" already exists")
		return
	case newServer:
		var p cloudservers.CreateParams
		if err := decodeParams(req.Params, &p); err != nil {
			l.reject(ctx, op, err.Error())
			return
		}
		l.server = &cloudservers.Server{
			ID: req.ServerID, CustomerID: req.CustomerID, Name: p.Name, Status: cloudservers.StatusQueued,
			Size: p.Size, Image: p.Image, Region: p.Region, CreatedAt: req.RequestedAt,
		}
	case l.server == nil:
		l.reject(ctx, op, "server "+req.ServerID+" not found")
		return
	default:
		if err := def.Allowed(l.server.Status); err != nil {
			l.reject(ctx, op, err.Error())
			return
		}
	}
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID: OperationWorkflowID(op.ID),
		// The saga runs on the lifecycle's task queue (the default).
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_REQUEST_CANCEL,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			AttrCustomerID.ValueSet(req.CustomerID),
			AttrServerID.ValueSet(req.ServerID),
			AttrOperationID.ValueSet(op.ID),
			AttrOperation.ValueSet(string(req.Operation)),
			AttrNovaInstanceID.ValueSet(l.server.NovaInstanceID),
		),
	})
	timeout := l.in.EventTimeout
	if timeout <= 0 {
		timeout = DefaultEventTimeout
	}
	before := l.server.Status
	in := OperationInput{Request: req, Server: *l.server, EventTimeout: timeout}
	// Since direct-notifications the saga publishes the server and the
	// operation as running before its first step (so the router finds the
	// operation before Nova can notify about it), and runs at this code's
	// level.
	direct := changed(ctx, "direct-notifications")
	next := *l.server
	next.OperationID, next.Error = op.ID, ""
	if def.Running != "" {
		next.Status = def.Running
	}
	if direct {
		next.Version++
		next.UpdatedAt = now
		op.Version = op.UpdatedAt.UnixNano()
		srv, o := next, op
		in.Level = CodeLevel
		in.Started = &activities.State{Server: &srv, Operation: &o}
	}
	f := workflow.ExecuteChildWorkflow(cctx, saga.Workflow, in)
	if err := f.GetChildWorkflowExecution().Get(ctx, nil); err != nil {
		// op/<id> ran before: a duplicate older than our memory (or than
		// this run). It has had its effect and published its result.
		workflow.GetLogger(ctx).Info("operation not started", "operation", op.ID, "error", err)
		if newServer {
			l.server = nil
		}
		return
	}
	*l.server = next
	if !direct {
		l.publishServer(ctx)
		l.publishOperation(ctx, op)
	}
	l.current = &runningOp{req: req, def: def, op: op, before: before, future: f}
}

// reject records an operation that cannot run, without touching OpenStack.
func (l *lifecycle) reject(ctx workflow.Context, op cloudservers.Operation, reason string) {
	now := workflow.Now(ctx)
	op.Status = cloudservers.OperationFailed
	op.Error = reason
	op.UpdatedAt, op.CompletedAt = now, &now
	l.publishOperation(ctx, op)
}

func (l *lifecycle) finish(ctx workflow.Context, f workflow.Future) {
	cur := l.current
	l.current = nil
	var res OperationResult
	err := f.Get(ctx, &res)
	now := workflow.Now(ctx)
	op := cur.op
	op.UpdatedAt, op.CompletedAt = now, &now

	if err == nil {
		s := res.Server
		s.Version, s.OperationID, s.Error = l.server.Version, "", ""
		s.CreatedAt = l.server.CreatedAt
		s.Status = cur.def.SucceededStatus(cur.before)
		l.server = &s
		op.Status = cloudservers.OperationSucceeded
	} else {
		f := failureOf(err)
		op.Status = cloudservers.OperationFailed
		op.Error, op.FailedStep = f.Message, f.Step
		l.server.OperationID = ""
		l.server.Error = op.Error
		l.server.Status = cur.def.FailedStatus(cur.before, f.InstanceError)
	}
	if !changed(ctx, "direct-notifications") {
		if l.server.NovaInstanceID != "" {
			_ = workflow.UpsertTypedSearchAttributes(ctx, AttrNovaInstanceID.ValueSet(l.server.NovaInstanceID))
		}
		l.publishServer(ctx)
		l.publishOperation(ctx, op)
		return
	}
	if id := l.server.NovaInstanceID; id != "" && id != l.instanceAttr {
		_ = workflow.UpsertTypedSearchAttributes(ctx, AttrNovaInstanceID.ValueSet(id))
		l.instanceAttr = id
	}
	l.server.Version++
	l.server.UpdatedAt = now
	op.Version = op.UpdatedAt.UnixNano()
	srv := *l.server
	if err := publishState(ctx, activities.State{Server: &srv, Operation: &op}); err != nil {
		workflow.GetLogger(ctx).Error("publish the state of a finished operation", "operation", op.ID, "error", err)
	}
}

// publishState publishes server and operation records as a local activity:
// one marker in the history, no workflow task of its own.
//
// A local activity's ScheduleToCloseTimeout, retries included, defaults to
// its StartToCloseTimeout: without one of its own a publish that Kafka did
// not take within 15 s (a broker's death, until the cluster fenced it, on a
// busy machine) failed the saga at its first step, where the activity
// (publishOptions) retries until Kafka is back. Seen in make chaos-ha.
// Changing it changes no history: the marker records only the outcome.
func publishState(ctx workflow.Context, st activities.State) error {
	var a *activities.Activities
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		ScheduleToCloseTimeout: publishRetryFor,
		StartToCloseTimeout:    publishOptions.StartToCloseTimeout,
		RetryPolicy:            publishOptions.RetryPolicy,
	})
	return workflow.ExecuteLocalActivity(lctx, a.PublishState, st).Get(ctx, nil)
}

// failureOf extracts the customer-facing message, the failed step and
// whether the instance is in ERROR from a saga's error.
func failureOf(err error) StepFailure {
	var app *temporal.ApplicationError
	if errors.As(err, &app) && app.Type() == ErrStepFailed {
		var f StepFailure
		if app.HasDetails() && app.Details(&f) == nil {
			return f
		}
		return StepFailure{Message: app.Message()}
	}
	if temporal.IsCanceledError(err) {
		return StepFailure{Message: "operation cancelled"}
	}
	return StepFailure{Message: rootMessage(err)}
}

func (l *lifecycle) publishServer(ctx workflow.Context) {
	l.server.Version++
	l.server.UpdatedAt = workflow.Now(ctx)
	var a *activities.Activities
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, publishOptions), a.PublishServer, *l.server).Get(ctx, nil)
	if err != nil {
		workflow.GetLogger(ctx).Error("publish server state", "error", err)
	}
}

func (l *lifecycle) publishOperation(ctx workflow.Context, op cloudservers.Operation) {
	op.Version = op.UpdatedAt.UnixNano()
	var a *activities.Activities
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, publishOptions), a.PublishOperation, op).Get(ctx, nil)
	if err != nil {
		workflow.GetLogger(ctx).Error("publish operation state", "error", err)
	}
}

// continueAsNew carries the state and every signal not yet handled into a
// fresh run.
func (l *lifecycle) continueAsNew(ctx workflow.Context, requests, events workflow.ReceiveChannel) error {
	for {
		var req cloudservers.Request
		if !requests.ReceiveAsync(&req) {
			break
		}
		l.enqueue(ctx, req)
	}
	for {
		var ev notification.Event
		if !events.ReceiveAsync(&ev) {
			break
		}
	}
	next := l.in
	next.Server, next.Queue, next.Seen = l.server, l.queue, l.seen
	// The next run's history is this code's from its first event.
	next.Level = CodeLevel
	return workflow.NewContinueAsNewError(ctx, ServerWorkflow, next)
}
