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
	"go.temporal.io/api/serviceerror"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/internal/notification"
	"github.com/cloudservers/cloudservers/workflows"
)

// RouterGroup is the Kafka group under which the router commits offsets.
const RouterGroup = "cloudservers-router"

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
}

// Run consumes every partition of the notification topics until ctx ends,
// resuming from the committed offsets, so a router taking over from another
// loses nothing.
func (r *Router) Run(ctx context.Context) error {
	topics := r.Topics
	if len(topics) == 0 {
		topics = cloudservers.NotificationTopics
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, topic := range topics {
		parts, err := r.Kafka.Partitions(topic)
		if err != nil {
			return fmt.Errorf("partitions of %s: %w", topic, err)
		}
		for _, p := range parts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := consumePartition(ctx, r.Consumer, r.Kafka, cmp.Or(r.Group, RouterGroup), topic, p, "", r.Fresh, r.handle, r.Log); err != nil {
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
	serverID, ok := ServerOf(ev)
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
