package bridge

import (
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
	lru "github.com/hashicorp/golang-lru/v2"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/internal/notification"
	"github.com/cloudservers/cloudservers/workflows"
)

// RouterGroup is the Kafka group under which the router commits offsets.
const RouterGroup = "cloudservers-router"

// DefaultRouterCommitEvery bounds what a new router delivers a second time
// after the old one died without its last commit.
const DefaultRouterCommitEvery = 500 * time.Millisecond

// Router turns OpenStack notifications into signals to server lifecycles.
type Router struct {
	// Kafka carries the offset commits; Consumer (on a client of its own)
	// fetches the notification topics.
	Kafka    sarama.Client
	Consumer sarama.Consumer

	Temporal    Temporal
	DeadLetters DeadLetters
	Log         *slog.Logger
	Stats       *Stats
	Topics      []string // default cloudservers.NotificationTopics
	Group       string   // commits the offsets; default RouterGroup
	Fresh       FreshStart
	// CommitEvery is how often the offsets of the notifications handled
	// are committed; default DefaultRouterCommitEvery.
	CommitEvery time.Duration
	// Visibility finds the server of an instance in Temporal (by the
	// NovaInstanceId search attribute) for notifications that carry only
	// the instance's UUID; nil disables that fallback.
	Visibility Visibility

	once      sync.Once
	instances *lru.Cache[string, string] // Nova instance UUID -> server ID
}

// Visibility is the part of the Temporal client that lists workflows.
type Visibility interface {
	ListWorkflow(ctx context.Context, request *workflowservice.ListWorkflowExecutionsRequest) (*workflowservice.ListWorkflowExecutionsResponse, error)
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
	ev, err := notification.Decode(msg.Value)
	if err != nil {
		r.Log.Error("notification sent to the dead-letter topic", "topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset, "error", err)
		if err := deadLetter(ctx, r.DeadLetters, msg, err, time.Now()); err != nil {
			return fmt.Errorf("dead-letter: %w", err)
		}
		r.Stats.DeadLetters.Add(1)
		return nil
	}
	serverID, ok := r.serverOf(ctx, ev)
	if !ok {
		r.Stats.Skipped.Add(1)
		return nil
	}
	err = r.Temporal.SignalWorkflow(ctx, workflows.ServerWorkflowID(serverID), "", workflows.SignalNovaEvent, ev)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		// The lifecycle has ended (server deleted long ago): nothing waits.
		r.Stats.Skipped.Add(1)
		return nil
	}
	if err != nil {
		return fmt.Errorf("signal %s of server %s: %w", ev.EventType, serverID, err)
	}
	r.Stats.Delivered.Add(1)
	r.Log.Debug("routed", "event", ev.EventType, "server", serverID, "instance", ev.InstanceID)
	return nil
}

// serverOf finds the server of a notification. Most carry the instance's
// name or metadata; some (compute_task.build_instances.error, which tells
// why a build found no host) carry only the instance UUID. Those are
// resolved from the instances seen before, then from Temporal, where the
// create saga records the NovaInstanceId as soon as Nova answers.
func (r *Router) serverOf(ctx context.Context, ev notification.Event) (string, bool) {
	r.once.Do(func() { r.instances, _ = lru.New[string, string](100_000) })
	if id, ok := ServerOf(ev); ok {
		if ev.InstanceID != "" {
			r.instances.Add(ev.InstanceID, id)
		}
		return id, true
	}
	if ev.InstanceID == "" {
		return "", false
	}
	if id, ok := r.instances.Get(ev.InstanceID); ok {
		return id, true
	}
	if r.Visibility == nil {
		return "", false
	}
	id, err := r.lookupInstance(ctx, ev.InstanceID)
	if err != nil {
		r.Log.Warn("cannot look up the server of an instance", "instance", ev.InstanceID, "event", ev.EventType, "error", err)
		return "", false
	}
	if id == "" {
		return "", false
	}
	r.instances.Add(ev.InstanceID, id)
	return id, true
}

func (r *Router) lookupInstance(ctx context.Context, instanceID string) (string, error) {
	if _, err := uuid.Parse(instanceID); err != nil {
		return "", nil // not a Nova UUID: not ours, and not safe to put in a query
	}
	resp, err := r.Visibility.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query:    fmt.Sprintf("NovaInstanceId = '%s'", instanceID),
		PageSize: 1,
	})
	if err != nil {
		return "", err
	}
	for _, e := range resp.GetExecutions() {
		p := e.GetSearchAttributes().GetIndexedFields()["ServerId"]
		var id string
		if p != nil && converter.GetDefaultDataConverter().FromPayload(p, &id) == nil && id != "" {
			return id, nil
		}
	}
	return "", nil
}
