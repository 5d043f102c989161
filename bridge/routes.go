package bridge

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/internal/kafka"
)

// Routes is what the router knows to deliver a notification without asking
// Temporal: which operation is running on each server (from the servers
// topic, where a saga publishes its server with the operation's ID before
// it asks Nova for anything), and which server each Nova instance belongs
// to (from the instances topic, where CreateNovaServer publishes it as soon
// as Nova answers). Both are compacted topics that survive restarts and
// failovers; every routing process materializes them.
//
// Memory: one entry per server with an operation in flight, and one per
// instance ever created (about 150 bytes each).
type Routes struct {
	// Kafka answers metadata and offsets; Consumer (a client of its own)
	// reads the two topics.
	Kafka    sarama.Client
	Consumer sarama.Consumer
	Log      *slog.Logger
	// SyncTimeout bounds the wait for the topics' ends on a miss; default
	// 5 s.
	SyncTimeout time.Duration
	// ServersTopic and InstancesTopic default to cloudservers.TopicServers
	// and cloudservers.TopicInstances (a benchmark has topics of its own).
	ServersTopic, InstancesTopic string

	once  sync.Once
	table *kafka.Table

	mu        sync.RWMutex
	running   map[string]string // server ID -> ID of the operation running on it
	instances map[string]string // Nova instance UUID -> server ID
	// synced is when the last successful Sync read the topics' ends:
	// everything written before it has been applied.
	synced time.Time
}

// syncMargin covers the clocks of the notification's producer (Nova's host
// stamps the record) and of this process.
const syncMargin = time.Second

func (r *Routes) init() {
	r.once.Do(func() {
		r.running = map[string]string{}
		r.instances = map[string]string{}
		r.ServersTopic = cmp.Or(r.ServersTopic, cloudservers.TopicServers)
		r.InstancesTopic = cmp.Or(r.InstancesTopic, cloudservers.TopicInstances)
		r.table = &kafka.Table{Client: r.Kafka, Consumer: r.Consumer, Log: r.Log,
			Topics: []string{r.ServersTopic, r.InstancesTopic}, Apply: r.apply}
	})
}

// Run reads the topics until ctx ends.
func (r *Routes) Run(ctx context.Context) error {
	r.init()
	return r.table.Run(ctx)
}

func (r *Routes) apply(msg *sarama.ConsumerMessage) {
	switch msg.Topic {
	case r.ServersTopic:
		if msg.Value == nil {
			r.mu.Lock()
			delete(r.running, string(msg.Key))
			r.mu.Unlock()
			return
		}
		var s cloudservers.Server
		if err := json.Unmarshal(msg.Value, &s); err != nil || s.ID == "" {
			r.Log.Warn("servers topic: record skipped", "partition", msg.Partition, "offset", msg.Offset, "error", err)
			return
		}
		// One writer per server, in order (the lifecycle and, at a saga's
		// start, the saga it waits for): the newest record is the truth.
		r.mu.Lock()
		if s.OperationID != "" {
			r.running[s.ID] = s.OperationID
		} else {
			delete(r.running, s.ID)
		}
		if s.NovaInstanceID != "" {
			r.instances[s.NovaInstanceID] = s.ID
		}
		r.mu.Unlock()
	case r.InstancesTopic:
		if msg.Value == nil {
			r.mu.Lock()
			delete(r.instances, string(msg.Key))
			r.mu.Unlock()
			return
		}
		var rec cloudservers.InstanceRecord
		if err := json.Unmarshal(msg.Value, &rec); err != nil || rec.InstanceID == "" || rec.ServerID == "" {
			r.Log.Warn("instances topic: record skipped", "partition", msg.Partition, "offset", msg.Offset, "error", err)
			return
		}
		r.mu.Lock()
		r.instances[rec.InstanceID] = rec.ServerID
		r.mu.Unlock()
	}
}

// lookup answers from what has been read. On a miss it catches up with
// everything written before the notification (at is its Kafka timestamp),
// unless an earlier catch-up already covers it, then answers again: a
// record written before the notification (a saga publishes its operation
// before it calls Nova) is then known. A burst of notifications that miss
// (other tenants' instances, events of past actions) costs one catch-up.
func (r *Routes) lookup(ctx context.Context, at time.Time, find func() (string, bool)) (string, bool, error) {
	r.init()
	r.mu.RLock()
	v, ok := find()
	covered := !at.IsZero() && r.synced.After(at.Add(syncMargin))
	r.mu.RUnlock()
	if ok || covered {
		return v, ok, nil
	}
	if err := r.Sync(ctx); err != nil {
		return "", false, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	v, ok = find()
	return v, ok, nil
}

// Operation returns the operation running on a server.
func (r *Routes) Operation(ctx context.Context, serverID string, at time.Time) (string, bool, error) {
	return r.lookup(ctx, at, func() (string, bool) { id, ok := r.running[serverID]; return id, ok })
}

// Server returns the server a Nova instance belongs to.
func (r *Routes) Server(ctx context.Context, instanceID string, at time.Time) (string, bool, error) {
	return r.lookup(ctx, at, func() (string, bool) { id, ok := r.instances[instanceID]; return id, ok })
}

// Sync waits until everything written to the topics before the call has
// been read.
func (r *Routes) Sync(ctx context.Context) error {
	r.init()
	started := time.Now()
	sctx, cancel := context.WithTimeout(ctx, cmp.Or(r.SyncTimeout, 5*time.Second))
	defer cancel()
	if err := r.table.Sync(sctx); err != nil {
		return fmt.Errorf("catch up with %s and %s: %w", r.ServersTopic, r.InstancesTopic, err)
	}
	r.mu.Lock()
	if started.After(r.synced) {
		r.synced = started
	}
	r.mu.Unlock()
	return nil
}
