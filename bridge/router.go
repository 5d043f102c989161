package bridge

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/google/uuid"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/grpc"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/internal/notification"
	"github.com/cloudservers/cloudservers/workflows"
)

// RouterGroup is the Kafka group under which the router commits offsets.
const RouterGroup = "cloudservers-router"

// DefaultRouterCommitEvery bounds what a new router delivers a second time
// after the old one died without its last commit.
const DefaultRouterCommitEvery = 500 * time.Millisecond

// Router turns OpenStack notifications into signals to the operations
// waiting for them.
type Router struct {
	// Kafka carries the offset commits; Consumer (on a client of its own)
	// fetches the notification topics.
	Kafka    sarama.Client
	Consumer sarama.Consumer

	// Signals delivers signals (client.Client's WorkflowService()) in
	// Namespace.
	Signals   Signaller
	Namespace string
	// Routes tells which operation runs on a server and which server an
	// instance belongs to; its Run must be running while the router
	// routes.
	Routes *Routes

	DeadLetters DeadLetters
	Log         *slog.Logger
	Stats       *Stats
	Topics      []string // default cloudservers.NotificationTopics
	Group       string   // commits the offsets; default RouterGroup
	Fresh       FreshStart
	// CommitEvery is how often the offsets of the notifications handled
	// are committed; default DefaultRouterCommitEvery.
	CommitEvery time.Duration
}

// Signaller is the part of Temporal's workflow service the router uses: a
// signal with a request ID of the router's choosing, by which Temporal
// drops a second delivery of the same fact (the versioned and legacy copies
// of one Nova event, a notification redelivered after a takeover).
type Signaller interface {
	SignalWorkflowExecution(ctx context.Context, in *workflowservice.SignalWorkflowExecutionRequest, opts ...grpc.CallOption) (*workflowservice.SignalWorkflowExecutionResponse, error)
}

// Run routes every partition of the notification topics until ctx ends,
// resuming from the committed offsets: one router for the whole cloud
// (tests and benchmarks; the bridge routes per partition, RoutePartition).
func (r *Router) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, topic := range r.NotificationTopics() {
		parts, err := r.Kafka.Partitions(topic)
		if err != nil {
			return fmt.Errorf("partitions of %s: %w", topic, err)
		}
		for _, p := range parts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := r.RoutePartition(ctx, topic, p, ""); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// NotificationTopics are the topics the router reads: Topics, or
// cloudservers.NotificationTopics.
func (r *Router) NotificationTopics() []string {
	if len(r.Topics) == 0 {
		return cloudservers.NotificationTopics
	}
	return r.Topics
}

// RoutePartition routes one partition of a notification topic until ctx
// ends, from the router group's committed offset, so a router taking the
// partition over from another loses nothing (and delivers at most
// CommitEvery's worth again: harmless, a saga ignores a notification it
// already had). meta (owner and fencing token of the tenure, as the
// request consumer writes them) goes with every commit.
func (r *Router) RoutePartition(ctx context.Context, topic string, partition int32, meta string) error {
	return consumePartition(ctx, r.Consumer, r.Kafka, cmp.Or(r.Group, RouterGroup), topic, partition, meta, r.Fresh,
		cmp.Or(r.CommitEvery, DefaultRouterCommitEvery), r.handle, r.Log)
}

// ServerOf returns the ID of the server a notification is about, from what
// real notifications carry: the instance's metadata (versioned, legacy and
// Ceilometer payloads have it) or its display name cs-<server id>.
func ServerOf(ev notification.Event) (string, bool) {
	if id := ev.Metadata[cloudservers.MetadataServerID]; id != "" {
		return id, true
	}
	if id, ok := strings.CutPrefix(ev.DisplayName, cloudservers.NovaNamePrefix); ok && id != "" {
		return id, true
	}
	return "", false
}

func (r *Router) handle(ctx context.Context, msg *sarama.ConsumerMessage) error {
	r.Stats.Consumed.Add(1)
	if foreignAtAGlance(msg.Value) || unroutedAtAGlance(msg.Value) {
		r.Stats.Skipped.Add(1)
		return nil
	}
	ev, err := notification.Decode(msg.Value)
	if err != nil {
		r.Log.Error("notification sent to the dead-letter topic", "topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset, "error", err)
		if err := deadLetter(ctx, r.DeadLetters, msg, err, time.Now()); err != nil {
			return fmt.Errorf("dead-letter: %w", err)
		}
		r.Stats.DeadLetters.Add(1)
		return nil
	}
	r.Stats.Decoded.Add(1)
	// What no saga waits for costs nothing more: most of the stream
	// (.start events, instance.update chatter, audits) ends here.
	if !workflows.Routed(ev.EventType, ev.State) {
		r.Stats.Skipped.Add(1)
		return nil
	}
	serverID, ok, err := r.serverOf(ctx, ev, msg.Timestamp)
	if err != nil {
		return err // the topics cannot be read: retried, never dropped
	}
	if !ok {
		r.Stats.Skipped.Add(1)
		return nil
	}
	opID, ok, err := r.Routes.Operation(ctx, serverID, msg.Timestamp)
	if err != nil {
		return err
	}
	if !ok {
		// Nothing runs on the server: the event is of a past action (or
		// of one Nova made by itself), and no saga waits for it.
		r.Stats.Skipped.Add(1)
		return nil
	}
	if err := r.signal(ctx, workflows.OperationWorkflowID(opID), ev); err != nil {
		var notFound *serviceerror.NotFound
		if errors.As(err, &notFound) {
			// The operation has just ended: nothing waits any more.
			r.Stats.Skipped.Add(1)
			return nil
		}
		return fmt.Errorf("signal %s of server %s to operation %s: %w", ev.EventType, serverID, opID, err)
	}
	r.Stats.Delivered.Add(1)
	r.Stats.observeSignal(msg.Timestamp)
	r.Log.Debug("routed", "event", ev.EventType, "format", ev.Format, "server", serverID, "operation", opID, "instance", ev.InstanceID)
	return nil
}

// signal delivers ev to the workflow with a request ID derived from the
// event's identity, the same for its versioned and legacy copies: Temporal
// records the first and drops the second, so one Nova event costs one
// signal in a cloud that sends both formats, and still arrives in a cloud
// that sends one.
func (r *Router) signal(ctx context.Context, workflowID string, ev notification.Event) error {
	input, err := converter.GetDefaultDataConverter().ToPayloads(ev)
	if err != nil {
		return err
	}
	_, err = r.Signals.SignalWorkflowExecution(ctx, &workflowservice.SignalWorkflowExecutionRequest{
		Namespace:         r.Namespace,
		WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: workflowID},
		SignalName:        workflows.SignalNovaEvent,
		Input:             input,
		Identity:          "cloudservers-router",
		RequestId:         SignalRequestID(workflowID, ev),
	})
	return err
}

// SignalRequestID names one Nova event for one workflow: what its versioned
// and legacy copies share (the instance, the normalised event type, the
// request ID of the API call behind it, the state it led to and the
// exception of its fault). Two different events of one request differ in
// type, state or exception.
func SignalRequestID(workflowID string, ev notification.Event) string {
	key := strings.Join([]string{workflowID, ev.InstanceID, ev.EventType, ev.RequestID, ev.State, ev.FaultException}, "\x00")
	return uuid.NewSHA1(signalNamespace, []byte(key)).String()
}

var signalNamespace = uuid.MustParse("5b0c7e0e-4f3a-4c57-9d65-2f1c0a8d6c11")

// foreignAtAGlance reports, without decoding, that a record is about
// another tenant's instance: it gives its instance a name (as Nova's
// versioned and legacy instance notifications do) and holds neither of the
// system's marks (the cs- name prefix, the server-ID metadata key), which
// is what serverOf would decide after decoding it. Decoding costs about 90
// µs a notification, this look about a microsecond; in a shared cloud most
// notifications are other tenants'. What it is not sure of (Ceilometer
// events, UUID-only events, anything with a mark) is decoded. A malformed
// record that looks foreign is skipped rather than dead-lettered.
func foreignAtAGlance(v []byte) bool {
	if bytes.Contains(v, markName) || bytes.Contains(v, markMetadata) {
		return false
	}
	name, ok := valueAfter(v, displayNameKey)
	return ok && len(name) > 0
}

// unroutedAtAGlance reports, without decoding, that a record is of a kind
// no saga waits for (scheduler.*, .start events, audits, an instance.update
// that does not say ERROR), read from its event_type when the record names
// one type, once, and for instance.update from its states. Other
// instance.updates, compute_task.* and Ceilometer records are decoded.
func unroutedAtAGlance(v []byte) bool {
	if bytes.Index(v, eventTypeKey) != bytes.LastIndex(v, eventTypeKey) || bytes.Contains(v, ceilometerTraits) {
		return false
	}
	t, ok := valueAfter(v, eventTypeKey)
	if !ok || len(t) == 0 {
		return false
	}
	typ := notification.NormalizeEventType(string(t))
	if typ == "instance.update" {
		return !stateMayBeError(v)
	}
	return !strings.HasPrefix(typ, "compute_task.") && !workflows.Routed(typ, "")
}

// valueAfter reads the string value of the first key in a record, bare or
// inside the oslo.message string (escaped), with Python's separators or
// Go's; ok is false when it is not a plain string there (null, an escape
// inside it, another shape), which the caller leaves to decoding.
func valueAfter(v, key []byte) (value []byte, ok bool) {
	for off := 0; ; {
		i := bytes.Index(v[off:], key)
		if i < 0 {
			return nil, false
		}
		i += off
		off = i + len(key)
		if i == 0 || v[i-1] != '"' {
			continue // the end of a longer key (old_display_name)
		}
		return stringValue(v[off:])
	}
}

// stringValue reads the plain string value that follows a key's closing
// quote (rest starts there): ok is false for anything else.
func stringValue(rest []byte) (value []byte, ok bool) {
	for _, sep := range separators {
		if !bytes.HasPrefix(rest, sep.open) {
			continue
		}
		rest = rest[len(sep.open):]
		end := bytes.IndexByte(rest, sep.close)
		switch {
		case end < 0:
			return nil, false
		case sep.close == '"' && bytes.IndexByte(rest[:end], '\\') >= 0:
			return nil, false // an escape inside the value: decode
		case sep.close == '\\' && !bytes.HasPrefix(rest[end:], []byte(`\"`)):
			return nil, false
		}
		return rest[:end], true
	}
	return nil, false
}

// stateMayBeError reports whether a record may say that an instance went
// to ERROR: false only when every "state" key in it (the payload's state,
// the versioned state_update's) holds a plain string other than "error".
// Decoding takes the event's state from one of those keys, so what this
// clears, decoding would not route either.
func stateMayBeError(v []byte) bool {
	for off := 0; ; {
		i := bytes.Index(v[off:], stateKey)
		if i < 0 {
			return false
		}
		i += off
		off = i + len(stateKey)
		if i == 0 || v[i-1] != '"' {
			continue // old_state, vm_state, ...
		}
		if off == len(v) {
			return true
		}
		if c := v[off]; c != '"' && c != '\\' {
			continue // a longer key: state_update, state_description
		}
		state, ok := stringValue(v[off:])
		if !ok || string(state) == "error" {
			return true
		}
	}
}

var (
	markName         = []byte(cloudservers.NovaNamePrefix)
	markMetadata     = []byte(cloudservers.MetadataServerID)
	displayNameKey   = []byte("display_name")
	eventTypeKey     = []byte("event_type")
	stateKey         = []byte("state")
	ceilometerTraits = []byte("traits")
	// separators are what comes between a key and its string value, and
	// the byte that ends the value: inside the oslo.message string the
	// quotes are escaped.
	separators = []struct {
		open  []byte
		close byte
	}{
		{[]byte(`\": \"`), '\\'}, {[]byte(`\":\"`), '\\'},
		{[]byte(`": "`), '"'}, {[]byte(`":"`), '"'},
	}
)

// serverOf finds the server of a notification. Most carry the instance's
// name or metadata: those that carry neither mark are of other tenants'
// instances (a shared cloud's other users, its operators' own) and are
// decided without any lookup. A few (compute_task.build_instances.error,
// which tells why a build found no host) carry only the instance UUID:
// those are mapped through the instances topic.
func (r *Router) serverOf(ctx context.Context, ev notification.Event, at time.Time) (string, bool, error) {
	if id, ok := ServerOf(ev); ok {
		return id, true, nil
	}
	if ev.DisplayName != "" || len(ev.Metadata) > 0 || ev.InstanceID == "" {
		return "", false, nil
	}
	return r.Routes.Server(ctx, ev.InstanceID, at)
}
