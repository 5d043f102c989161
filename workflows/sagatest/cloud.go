// Package sagatest makes every failure path of a saga cheap to test.
//
// It has two parts:
//
//   - Cloud, a fake OpenStack that answers every activity of
//     activities.Activities, records the calls in the order they were made,
//     and publishes the Nova notifications that end each Nova action (as
//     workflows.SignalNovaEvent signals) the way Nova does: an
//     instance.update, then the action's .end, carrying the action's
//     request ID. Faults are injected per call: an activity error
//     (Cloud.Fail), other notifications or none at all (Cloud.Notify), the
//     answer of the one reconciliation read (Cloud.AnswerGet).
//     Install puts it on a Temporal test environment, Register on a real
//     worker (used to record replay histories against a real Temporal
//     server), under the names of activities.Activities' methods.
//
//   - Saga, a table of a saga's steps and compensations from which Run*
//     generate the tests every saga needs: the happy path; for every step N,
//     "step N fails" (with a non-retryable activity error, and in every
//     other way the step's Failures list) -> exactly the compensations of
//     steps N-1..1 ran, in that order, no other call was made, and the
//     saga returned a workflows.ErrStepFailed error whose
//     workflows.StepFailure names the step and the compensations; for
//     every step that calls an activity, a retryable error that succeeds on
//     retry -> the saga succeeds and nothing was undone; for every step
//     that waits for Nova, a cancellation during the wait -> the same
//     compensations still ran.
//
// Adding a saga? Describe it as a Saga and call its Run methods from the
// saga's test file:
//
//	var rebuildSaga = sagatest.Saga{
//		Workflow: workflows.RebuildServerWorkflow,
//		Input:    input(request("op-rebuild", cloudservers.OpRebuild, cloudservers.RebuildParams{Image: "tiny"}), activeServer()),
//		Steps: []sagatest.Step{
//			{Activity: "RebuildNovaServer"}, // named after its activity
//			{Waits: "RebuildNovaServer", Failures: []sagatest.Failure{ // named workflows.WaitStep("RebuildNovaServer")
//				sagatest.EventFailure("RebuildNovaServer", "instance.rebuild.error", "Virtual Interface creation failed"),
//				sagatest.LostFailure("RebuildNovaServer", activities.NovaServer{Status: "REBUILD", TaskState: "rebuild_spawning"}),
//			}},
//		},
//	}
//	func TestRebuildSaga(t *testing.T) {
//		t.Run("succeeds", rebuildSaga.RunSuccess)
//		t.Run("step fails", rebuildSaga.RunFailures)
//		t.Run("retry", rebuildSaga.RunRetries)
//		t.Run("cancelled", rebuildSaga.RunCancellations)
//	}
//
// (workflows/rebuild_test.go is this saga's real test file.)
//
// Then record its history for the replay test (workflows/testdata/README.md).
//
// A new activity needs its method on Cloud (TestCloudStandsForEveryActivity);
// a Nova action's method passes nova the notification that ends it.
package sagatest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/activities"
	"github.com/cloudservers/cloudservers/internal/notification"
	"github.com/cloudservers/cloudservers/workflows"
)

// Deliverer sends the notifications the Cloud publishes to the workflows.
type Deliverer interface {
	// Deliver signals workflows.SignalNovaEvent after the delay. The event
	// is built at delivery time (event(now)). workflowID is the workflow
	// whose activity asked Nova for the action.
	Deliver(workflowID string, after time.Duration, event func(now time.Time) notification.Event)
	// Now is the time as the workflows see it.
	Now() time.Time
}

// EnvDeliverer delivers notifications in a Temporal test environment: a
// delayed callback (on the environment's skipping clock) signals the root
// workflow, the saga under test or the lifecycle that forwards them.
type EnvDeliverer struct {
	Env *testsuite.TestWorkflowEnvironment
	// Direct signals the workflow whose activity asked Nova (the saga, as
	// the router does) instead of the workflow under test (a lifecycle
	// forwards to its running saga, as for routers before level 1).
	Direct bool
}

// Deliver implements Deliverer.
func (d EnvDeliverer) Deliver(workflowID string, after time.Duration, event func(time.Time) notification.Event) {
	d.Env.RegisterDelayedCallback(func() {
		if d.Direct {
			// A saga that has ended takes no signal: what the router
			// sees as NotFound and skips.
			_ = d.Env.SignalWorkflowByID(workflowID, workflows.SignalNovaEvent, event(d.Env.Now()))
			return
		}
		d.Env.SignalWorkflow(workflows.SignalNovaEvent, event(d.Env.Now()))
	}, after)
}

// Now implements Deliverer.
func (d EnvDeliverer) Now() time.Time { return d.Env.Now() }

// Call is one activity call the Cloud answered.
type Call struct {
	Name string
	Arg  any
	At   time.Time // workflow time
	Err  error     // what the Cloud answered
}

// Emit is one notification Nova publishes after an action.
type Emit struct {
	// After is the delay after the action's activity returned.
	After time.Duration
	// Event is the notification. Empty InstanceID and RequestID are the
	// action's, a zero Timestamp is the delivery time, an empty Format is
	// "versioned".
	Event notification.Event
	// Fails marks the event as the failure of the step under test: calls
	// made after its delivery are the compensations.
	Fails bool
}

// End is the notification that ends an action successfully, two seconds
// after it was asked for (after the Update the Cloud sends at one).
func End(eventType string) Emit {
	return Emit{After: 2 * time.Second, Event: notification.Event{EventType: eventType, Priority: "INFO"}}
}

// ErrorEvent is a notification of an action's failure carrying a fault.
func ErrorEvent(eventType, fault string) Emit {
	return Emit{After: 2 * time.Second, Event: notification.Event{EventType: eventType, Priority: "ERROR", Fault: fault, State: "error"}, Fails: true}
}

// Update is an instance.update notification with the vm and task state
// after the change.
func Update(state, task string) Emit {
	return Emit{After: time.Second, Event: notification.Event{EventType: "instance.update", Priority: "INFO", State: state, TaskState: task}}
}

// At returns e delivered after d.
func (e Emit) At(d time.Duration) Emit { e.After = d; return e }

// Legacy returns the legacy-format twin of e (Nova publishes both when
// notification_format is "both"; the decoder normalises the type).
func (e Emit) Legacy() Emit {
	e.Event.Format = "legacy"
	e.Event.RawEventType = "compute." + e.Event.EventType
	return e
}

// ForRequest returns e carrying another request ID (a late notification of
// an earlier action).
func (e Emit) ForRequest(id string) Emit { e.Event.RequestID = id; return e }

// ForInstance returns e about another instance.
func (e Emit) ForInstance(id string) Emit { e.Event.InstanceID = id; return e }

// Stamped returns e with Nova's timestamp set.
func (e Emit) Stamped(t time.Time) Emit { e.Event.Timestamp = t; return e }

// novaAction is what Nova does when asked: the notification that ends the
// action, the vm state it leaves, and the status a GET shows after.
type novaAction struct {
	end    string
	state  string
	status string
}

// Cloud is a fake OpenStack. Its methods have the signatures of the
// activities; it is safe for concurrent use.
type Cloud struct {
	deliver Deliverer

	mu        sync.Mutex
	calls     []Call
	failedAt  int // index in calls where the failure under test happened; -1 before
	errs      map[string][]error
	scripts   map[string][][]Emit
	done      map[string]int // activity -> how many next calls answer AlreadyDone
	gets      []getAnswer
	status    map[string]string // instance -> status a GET shows
	resized   map[string]string // instance -> status before its resize (a confirm or revert returns to it)
	leftover  activities.FloatingIP
	delivered []notification.Event
	servers   []cloudservers.Server
	ops       []cloudservers.Operation
	seq       int
	onCall    func(Call)
}

type getAnswer struct {
	s     activities.NovaServer
	fails bool
}

// NewCloud returns a Cloud whose notifications go through d.
func NewCloud(d Deliverer) *Cloud {
	return &Cloud{
		deliver: d, failedAt: -1,
		errs: map[string][]error{}, scripts: map[string][][]Emit{}, done: map[string]int{}, status: map[string]string{}, resized: map[string]string{},
	}
}

// NewEnvCloud returns a Cloud that answers the activities of env.
func NewEnvCloud(env *testsuite.TestWorkflowEnvironment) *Cloud {
	c := NewCloud(EnvDeliverer{Env: env})
	c.Install(env)
	return c
}

// Install puts the Cloud on env under the names of the activities it
// stands for: every activity of activities.Activities but the reaper's
// (notFaked).
func (c *Cloud) Install(env *testsuite.TestWorkflowEnvironment) {
	c.Register(env)
}

// Register registers the Cloud's methods on a real worker, or a test
// environment, under the names of the activities they stand for.
func (c *Cloud) Register(r worker.ActivityRegistry) {
	fakes, err := fakesOf(c)
	if err != nil {
		panic(err)
	}
	for name, fn := range fakes {
		r.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}

// notFaked are the activities the Cloud does not stand for: the reaper's,
// whose tests answer them (workflows/reap_test.go).
var notFaked = map[string]bool{"ListMarkedPage": true, "ListMarkedResources": true}

// fakesOf maps the name of every activity of activities.Activities to the
// fake's method of the same name and signature. A new activity needs its
// method on the Cloud (and nothing else here): fakesOf fails until it has
// one.
func fakesOf(fake any) (map[string]any, error) {
	acts := reflect.TypeOf((*activities.Activities)(nil))
	cloud := reflect.ValueOf(fake)
	out := map[string]any{}
	var missing []string
	for i := range acts.NumMethod() {
		m := acts.Method(i)
		if notFaked[m.Name] {
			continue
		}
		fake := cloud.MethodByName(m.Name)
		if !fake.IsValid() {
			missing = append(missing, m.Name+" (no method)")
			continue
		}
		if want := boundType(m.Type); fake.Type() != want {
			missing = append(missing, fmt.Sprintf("%s (is %s, want %s)", m.Name, fake.Type(), want))
			continue
		}
		out[m.Name] = fake.Interface()
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("sagatest: the Cloud does not stand for activities %s: add a method of the activity's signature to Cloud", strings.Join(missing, ", "))
	}
	return out, nil
}

// boundType is the type of a method value of a method whose type (with its
// receiver first) is t.
func boundType(t reflect.Type) reflect.Type {
	in := make([]reflect.Type, 0, t.NumIn()-1)
	for i := 1; i < t.NumIn(); i++ {
		in = append(in, t.In(i))
	}
	out := make([]reflect.Type, 0, t.NumOut())
	for i := range t.NumOut() {
		out = append(out, t.Out(i))
	}
	return reflect.FuncOf(in, out, t.IsVariadic())
}

// NonRetryable is an error retrying cannot fix (the step fails at once).
func NonRetryable(msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, activities.ErrInvalidRequest, nil)
}

// Retryable is an error a retry can fix (a 503, a timeout).
func Retryable(msg string) error {
	return errors.New(msg)
}

// Fail makes the next calls of activity answer errs, in order (a nil entry
// lets that call succeed). A non-retryable error marks the failure under
// test.
func (c *Cloud) Fail(activity string, errs ...error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs[activity] = append(c.errs[activity], errs...)
}

// Notify replaces what Nova publishes after the next successful call of
// the Nova action activity (CreateNovaServer, RebootNovaServer...). No
// emits: the notification is lost. Each call of Notify scripts one more
// call of the activity; later calls get the default notifications.
func (c *Cloud) Notify(activity string, emits ...Emit) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scripts[activity] = append(c.scripts[activity], emits)
}

// AlreadyDone makes the next call of the Nova action activity answer that
// the instance already is where the action leads (no notification comes).
func (c *Cloud) AlreadyDone(activity string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done[activity]++
}

// AnswerGet sets the answer of the next GetNovaServer call (the
// reconciliation read); fails marks the answer as the failure under test.
// Without it a GET shows the state the last action left.
func (c *Cloud) AnswerGet(s activities.NovaServer, fails bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gets = append(c.gets, getAnswer{s: s, fails: fails})
}

// SetNovaStatus sets the status a GET of an existing instance shows (ACTIVE,
// SHUTOFF).
func (c *Cloud) SetNovaStatus(instance, status string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status[instance] = status
}

// LeftoverFloatingIP makes FindFloatingIP find fip (left by a create that
// failed half-way).
func (c *Cloud) LeftoverFloatingIP(fip activities.FloatingIP) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leftover = fip
}

// OnCall sets a function called after every call is recorded (outside the
// Cloud's lock): a test can react to a call, e.g. signal a workflow at the
// very moment an activity runs.
func (c *Cloud) OnCall(f func(Call)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onCall = f
}

// MarkFailure marks now as the failure under test (a cancellation, say):
// calls after it are the compensations.
func (c *Cloud) MarkFailure() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.markLocked()
}

func (c *Cloud) markLocked() {
	if c.failedAt < 0 {
		c.failedAt = len(c.calls)
	}
}

// Calls returns every call made, in order.
func (c *Cloud) Calls() []Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

// Names returns the names of the calls made, in order; with no argument
// all, otherwise only those named.
func (c *Cloud) Names(only ...string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, call := range c.calls {
		if len(only) == 0 || slices.Contains(only, call.Name) {
			out = append(out, call.Name)
		}
	}
	return out
}

// OpenStackCalls returns the names of the calls made to OpenStack (every
// activity but the state publications), in order.
func (c *Cloud) OpenStackCalls() []string {
	var out []string
	for _, n := range c.Names() {
		if !isPublication(n) {
			out = append(out, n)
		}
	}
	return out
}

// Count returns how many times activity was called.
func (c *Cloud) Count(activity string) int { return len(c.Names(activity)) }

// CallsAfterFailure returns the names of the calls made after the failure
// under test (an activity's non-retryable error, a failure notification's
// delivery, a failing reconciliation answer, MarkFailure), in order; ok is
// false when no failure happened.
func (c *Cloud) CallsAfterFailure() (names []string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failedAt < 0 {
		return nil, false
	}
	names = []string{}
	for _, call := range c.calls[c.failedAt:] {
		if !isPublication(call.Name) {
			names = append(names, call.Name)
		}
	}
	return names, true
}

// Delivered returns the notifications delivered so far.
func (c *Cloud) Delivered() []notification.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.delivered)
}

// PublishedServers returns the server records published, in order.
func (c *Cloud) PublishedServers() []cloudservers.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.servers)
}

// PublishedOperations returns the operation records published, in order.
func (c *Cloud) PublishedOperations() []cloudservers.Operation {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ops)
}

// call records a call and returns the injected error, if any.
func (c *Cloud) call(name string, arg any) error {
	now := c.deliver.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	if q := c.errs[name]; len(q) > 0 {
		err, c.errs[name] = q[0], q[1:]
	}
	call := Call{Name: name, Arg: arg, At: now, Err: err}
	c.calls = append(c.calls, call)
	var app *temporal.ApplicationError
	if err != nil && errors.As(err, &app) && app.NonRetryable() {
		c.markLocked()
	}
	if f := c.onCall; f != nil {
		c.mu.Unlock()
		f(call)
		c.mu.Lock()
	}
	return err
}

// nova answers a Nova action on instance and schedules its notifications.
func (c *Cloud) nova(ctx context.Context, name, instance string, arg any, act novaAction) (activities.NovaAction, error) {
	if err := c.call(name, arg); err != nil {
		return activities.NovaAction{}, err
	}
	c.mu.Lock()
	c.seq++
	requestID := fmt.Sprintf("req-%04d", c.seq)
	switch name {
	case "ResizeNovaServer":
		c.resized[instance] = c.status[instance]
		c.status[instance] = act.status
	case "ConfirmResize", "RevertResize":
		// A resized server comes back as it was: on, or off.
		c.status[instance] = "ACTIVE"
		if c.resized[instance] == "SHUTOFF" {
			c.status[instance] = "SHUTOFF"
		}
	default:
		c.status[instance] = act.status
	}
	if c.done[name] > 0 {
		c.done[name]--
		c.mu.Unlock()
		return activities.NovaAction{InstanceID: instance, AlreadyDone: true}, nil
	}
	emits := []Emit{
		Update(act.state, ""),
		End(act.end),
	}
	if q := c.scripts[name]; len(q) > 0 {
		emits, c.scripts[name] = q[0], q[1:]
	}
	c.mu.Unlock()

	workflowID := ""
	if activity.IsActivity(ctx) {
		workflowID = activity.GetInfo(ctx).WorkflowExecution.ID
	}
	for _, e := range emits {
		e := e
		c.deliver.Deliver(workflowID, e.After, func(now time.Time) notification.Event {
			ev := e.Event
			if ev.InstanceID == "" {
				ev.InstanceID = instance
			}
			if ev.RequestID == "" {
				ev.RequestID = requestID
			}
			if ev.Timestamp.IsZero() {
				ev.Timestamp = now
			}
			if ev.Format == "" {
				ev.Format = "versioned"
			}
			if ev.RawEventType == "" {
				ev.RawEventType = ev.EventType
			}
			if ev.Publisher == "" {
				ev.Publisher = "nova-compute:compute-1"
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			ev.MessageID = fmt.Sprintf("msg-%04d", len(c.delivered)+1)
			c.delivered = append(c.delivered, ev)
			if e.Fails {
				c.markLocked()
			}
			return ev
		})
	}
	return activities.NovaAction{InstanceID: instance, RequestID: requestID}, nil
}

// InstanceID is the Nova instance ID the Cloud gives a server's instance.
func InstanceID(serverID string) string { return "inst-" + serverID }

// PortID is the Neutron port ID the Cloud gives a server's port.
func PortID(serverID string) string { return "port-" + serverID }

// FloatingIPID is the floating IP ID the Cloud allocates for a server.
func FloatingIPID(serverID string) string { return "fip-" + serverID }

// PrivateIP and PublicIP are the addresses the Cloud hands out.
const (
	PrivateIP = "10.0.0.5"
	PublicIP  = "203.0.113.7"
)

// CreatePort implements activities.Activities.CreatePort.
func (c *Cloud) CreatePort(_ context.Context, in activities.CreatePortInput) (activities.Port, error) {
	if err := c.call("CreatePort", in); err != nil {
		return activities.Port{}, err
	}
	return activities.Port{ID: PortID(in.ServerID), IP: PrivateIP}, nil
}

// DeletePort implements activities.Activities.DeletePort.
func (c *Cloud) DeletePort(_ context.Context, portID string) error {
	return c.call("DeletePort", portID)
}

// AllocateFloatingIP implements activities.Activities.AllocateFloatingIP.
func (c *Cloud) AllocateFloatingIP(_ context.Context, in activities.AllocateFloatingIPInput) (activities.FloatingIP, error) {
	if err := c.call("AllocateFloatingIP", in); err != nil {
		return activities.FloatingIP{}, err
	}
	return activities.FloatingIP{ID: FloatingIPID(in.ServerID), Address: PublicIP}, nil
}

// FindFloatingIP implements activities.Activities.FindFloatingIP.
func (c *Cloud) FindFloatingIP(_ context.Context, serverID string) (activities.FloatingIP, error) {
	if err := c.call("FindFloatingIP", serverID); err != nil {
		return activities.FloatingIP{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leftover, nil
}

// AssociateFloatingIP implements activities.Activities.AssociateFloatingIP.
func (c *Cloud) AssociateFloatingIP(_ context.Context, in activities.AssociateFloatingIPInput) error {
	return c.call("AssociateFloatingIP", in)
}

// DisassociateFloatingIP implements activities.Activities.DisassociateFloatingIP.
func (c *Cloud) DisassociateFloatingIP(_ context.Context, id string) error {
	return c.call("DisassociateFloatingIP", id)
}

// ImportKeyPair implements activities.Activities.ImportKeyPair.
func (c *Cloud) ImportKeyPair(_ context.Context, in activities.ImportKeyPairInput) error {
	return c.call("ImportKeyPair", in)
}

// ReleaseFloatingIP implements activities.Activities.ReleaseFloatingIP.
func (c *Cloud) ReleaseFloatingIP(_ context.Context, id string) error {
	return c.call("ReleaseFloatingIP", id)
}

// CreateNovaServer implements activities.Activities.CreateNovaServer.
func (c *Cloud) CreateNovaServer(ctx context.Context, in activities.CreateNovaServerInput) (activities.NovaAction, error) {
	return c.nova(ctx, "CreateNovaServer", InstanceID(in.ServerID), in, novaAction{"instance.create.end", "active", "ACTIVE"})
}

// DeleteNovaServer implements activities.Activities.DeleteNovaServer.
func (c *Cloud) DeleteNovaServer(ctx context.Context, id string) (activities.NovaAction, error) {
	return c.nova(ctx, "DeleteNovaServer", id, id, novaAction{"instance.delete.end", "deleted", "DELETED"})
}

// GetNovaServer implements activities.Activities.GetNovaServer.
func (c *Cloud) GetNovaServer(_ context.Context, id string) (activities.NovaServer, error) {
	if err := c.call("GetNovaServer", id); err != nil {
		return activities.NovaServer{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.gets) > 0 {
		g := c.gets[0]
		c.gets = c.gets[1:]
		if g.fails {
			// The failure is decided by this answer: what follows undoes.
			c.markLocked()
		}
		g.s.InstanceID = id
		return g.s, nil
	}
	status := c.status[id]
	if status == "" {
		status = "DELETED"
	}
	return activities.NovaServer{InstanceID: id, Status: status}, nil
}

// RebootNovaServer implements activities.Activities.RebootNovaServer.
func (c *Cloud) RebootNovaServer(ctx context.Context, in activities.RebootInput) (activities.NovaAction, error) {
	return c.nova(ctx, "RebootNovaServer", in.InstanceID, in, novaAction{"instance.reboot.end", "active", "ACTIVE"})
}

// StopNovaServer implements activities.Activities.StopNovaServer.
func (c *Cloud) StopNovaServer(ctx context.Context, id string) (activities.NovaAction, error) {
	return c.nova(ctx, "StopNovaServer", id, id, novaAction{"instance.power_off.end", "stopped", "SHUTOFF"})
}

// StartNovaServer implements activities.Activities.StartNovaServer.
func (c *Cloud) StartNovaServer(ctx context.Context, id string) (activities.NovaAction, error) {
	return c.nova(ctx, "StartNovaServer", id, id, novaAction{"instance.power_on.end", "active", "ACTIVE"})
}

// ResizeNovaServer implements activities.Activities.ResizeNovaServer.
func (c *Cloud) ResizeNovaServer(ctx context.Context, in activities.ResizeInput) (activities.NovaAction, error) {
	return c.nova(ctx, "ResizeNovaServer", in.InstanceID, in, novaAction{"instance.resize_finish.end", "resized", "VERIFY_RESIZE"})
}

// ConfirmResize implements activities.Activities.ConfirmResize.
func (c *Cloud) ConfirmResize(ctx context.Context, id string) (activities.NovaAction, error) {
	return c.nova(ctx, "ConfirmResize", id, id, novaAction{"instance.resize_confirm.end", "active", "ACTIVE"})
}

// RevertResize implements activities.Activities.RevertResize.
func (c *Cloud) RevertResize(ctx context.Context, id string) (activities.NovaAction, error) {
	return c.nova(ctx, "RevertResize", id, id, novaAction{"instance.resize_revert.end", "active", "ACTIVE"})
}

// RebuildNovaServer implements activities.Activities.RebuildNovaServer.
func (c *Cloud) RebuildNovaServer(ctx context.Context, in activities.RebuildInput) (activities.NovaAction, error) {
	return c.nova(ctx, "RebuildNovaServer", in.InstanceID, in, novaAction{"instance.rebuild.end", "active", "ACTIVE"})
}

func isPublication(activity string) bool {
	return activity == "PublishServer" || activity == "PublishOperation" || activity == "PublishState"
}

// PublishState implements activities.Activities.PublishState: it records
// the server and the operation as PublishServer and PublishOperation do.
func (c *Cloud) PublishState(_ context.Context, st activities.State) error {
	if err := c.call("PublishState", st); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st.Server != nil {
		c.servers = append(c.servers, *st.Server)
	}
	if st.Operation != nil {
		c.ops = append(c.ops, *st.Operation)
	}
	return nil
}

// PublishServer implements activities.Activities.PublishServer.
func (c *Cloud) PublishServer(_ context.Context, s cloudservers.Server) error {
	if err := c.call("PublishServer", s); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.servers = append(c.servers, s)
	return nil
}

// PublishOperation implements activities.Activities.PublishOperation.
func (c *Cloud) PublishOperation(_ context.Context, o cloudservers.Operation) error {
	if err := c.call("PublishOperation", o); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ops = append(c.ops, o)
	return nil
}
