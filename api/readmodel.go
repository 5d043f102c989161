package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/cloudservers/cloudservers"
)

// APIKey is a customer's API key as stored: only its SHA-256 hash.
type APIKey struct {
	Hash       string    `json:"hash"`
	CustomerID string    `json:"customer_id"`
	Name       string    `json:"name"`
	Admin      bool      `json:"admin,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	Revoked    bool      `json:"revoked,omitempty"`
}

// IdempotencyRecord remembers the answer to a mutation made with an
// Idempotency-Key, so a retry gets the same answer from any replica.
type IdempotencyRecord struct {
	Key       string          `json:"key"` // customer/Idempotency-Key
	BodyHash  string          `json:"body_hash"`
	Method    string          `json:"method"`
	Path      string          `json:"path"`
	Status    int             `json:"status"`
	Response  json.RawMessage `json:"response"`
	Location  string          `json:"location,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	ExpiresAt time.Time       `json:"expires_at"`
}

// ReadModel materializes the compacted state topics in memory. Every API
// replica has its own and answers reads from it. It is ready once it has
// read each partition up to the end it had when it started.
type ReadModel struct {
	mu       sync.RWMutex
	changed  *sync.Cond
	servers  map[string]cloudservers.Server
	ops      map[string]cloudservers.Operation
	keys     map[string]APIKey
	idem     map[string]IdempotencyRecord
	next     map[topicPartition]int64 // next offset to read
	ready    bool
	watchers []func(topic string, v any)
}

type topicPartition struct {
	topic     string
	partition int32
}

// NewReadModel returns an empty read model.
func NewReadModel() *ReadModel {
	rm := &ReadModel{
		servers: map[string]cloudservers.Server{},
		ops:     map[string]cloudservers.Operation{},
		keys:    map[string]APIKey{},
		idem:    map[string]IdempotencyRecord{},
		next:    map[topicPartition]int64{},
	}
	rm.changed = sync.NewCond(&rm.mu)
	return rm
}

// Run consumes the state topics from their beginning until ctx ends.
func (rm *ReadModel) Run(ctx context.Context, kc sarama.Client, log *slog.Logger) error {
	consumer, err := sarama.NewConsumerFromClient(kc)
	if err != nil {
		return fmt.Errorf("read model consumer: %w", err)
	}
	defer consumer.Close()
	targets, err := endOffsets(kc, cloudservers.StateTopics)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for tp := range targets {
		pc, err := consumer.ConsumePartition(tp.topic, tp.partition, sarama.OffsetOldest)
		if err != nil {
			return fmt.Errorf("consume %s/%d: %w", tp.topic, tp.partition, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer pc.AsyncClose()
			for {
				select {
				case <-ctx.Done():
					return
				case msg, ok := <-pc.Messages():
					if !ok {
						return
					}
					if err := rm.apply(msg); err != nil {
						log.Error("state record skipped", "topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset, "error", err)
					}
				}
			}
		}()
	}
	go func() {
		// Wake waiters when ctx ends so none blocks forever.
		<-ctx.Done()
		rm.mu.Lock()
		rm.changed.Broadcast()
		rm.mu.Unlock()
	}()
	if err := rm.WaitFor(ctx, targets); err == nil {
		rm.mu.Lock()
		rm.ready = true
		rm.mu.Unlock()
		log.Info("read model caught up", "servers", rm.count())
	}
	<-ctx.Done()
	return nil
}

func (rm *ReadModel) count() int {
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	return len(rm.servers)
}

// endOffsets returns the offset after the last message of every partition.
func endOffsets(kc sarama.Client, topics []string) (map[topicPartition]int64, error) {
	out := map[topicPartition]int64{}
	for _, t := range topics {
		parts, err := kc.Partitions(t)
		if err != nil {
			return nil, fmt.Errorf("partitions of %s: %w", t, err)
		}
		for _, p := range parts {
			off, err := kc.GetOffset(t, p, sarama.OffsetNewest)
			if err != nil {
				return nil, fmt.Errorf("end of %s/%d: %w", t, p, err)
			}
			out[topicPartition{t, p}] = off
		}
	}
	return out, nil
}

// WaitFor blocks until every partition has been read up to its target
// offset, or ctx ends.
func (rm *ReadModel) WaitFor(ctx context.Context, targets map[topicPartition]int64) error {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	for {
		done := true
		for tp, off := range targets {
			if rm.next[tp] < off {
				done = false
				break
			}
		}
		if done {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		waitCond(ctx, rm.changed)
	}
}

// waitCond waits on c (whose lock is held) but no longer than ctx allows.
func waitCond(ctx context.Context, c *sync.Cond) {
	stop := context.AfterFunc(ctx, func() {
		c.L.Lock()
		c.Broadcast()
		c.L.Unlock()
	})
	defer stop()
	c.Wait()
}

// Ready reports whether the initial catch-up is complete.
func (rm *ReadModel) Ready() bool {
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	return rm.ready
}

func (rm *ReadModel) apply(msg *sarama.ConsumerMessage) error {
	rm.mu.Lock()
	defer func() {
		tp := topicPartition{msg.Topic, msg.Partition}
		if msg.Offset+1 > rm.next[tp] {
			rm.next[tp] = msg.Offset + 1
		}
		rm.changed.Broadcast()
		rm.mu.Unlock()
	}()
	if msg.Value == nil {
		return nil // tombstone
	}
	switch msg.Topic {
	case cloudservers.TopicServers:
		var s cloudservers.Server
		if err := json.Unmarshal(msg.Value, &s); err != nil {
			return err
		}
		rm.putServer(s)
	case cloudservers.TopicOperations:
		var o cloudservers.Operation
		if err := json.Unmarshal(msg.Value, &o); err != nil {
			return err
		}
		rm.putOperation(o)
	case cloudservers.TopicAPIKeys:
		var k APIKey
		if err := json.Unmarshal(msg.Value, &k); err != nil {
			return err
		}
		rm.keys[k.Hash] = k
	case cloudservers.TopicIdempotency:
		var r IdempotencyRecord
		if err := json.Unmarshal(msg.Value, &r); err != nil {
			return err
		}
		rm.idem[r.Key] = r
	}
	return nil
}

// putServer keeps the newest version of a server (caller holds the lock).
func (rm *ReadModel) putServer(s cloudservers.Server) {
	if old, ok := rm.servers[s.ID]; ok && old.Version > s.Version {
		return
	}
	rm.servers[s.ID] = s
	for _, w := range rm.watchers {
		w(cloudservers.TopicServers, s)
	}
}

func (rm *ReadModel) putOperation(o cloudservers.Operation) {
	if old, ok := rm.ops[o.ID]; ok && old.Version > o.Version {
		return
	}
	rm.ops[o.ID] = o
	for _, w := range rm.watchers {
		w(cloudservers.TopicOperations, o)
	}
}

// Accepted records what this replica just wrote, so that it reads its own
// writes even before its consumer sees them.
func (rm *ReadModel) Accepted(s *cloudservers.Server, o cloudservers.Operation, idem *IdempotencyRecord) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if s != nil {
		rm.putServer(*s)
	}
	rm.putOperation(o)
	if idem != nil {
		rm.idem[idem.Key] = *idem
	}
}

// Server returns a server.
func (rm *ReadModel) Server(id string) (cloudservers.Server, bool) {
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	s, ok := rm.servers[id]
	return s, ok
}

// Operation returns an operation.
func (rm *ReadModel) Operation(id string) (cloudservers.Operation, bool) {
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	o, ok := rm.ops[id]
	return o, ok
}

// Key returns the API key with the given hash.
func (rm *ReadModel) Key(hash string) (APIKey, bool) {
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	k, ok := rm.keys[hash]
	return k, ok
}

// Idempotency returns the record of an idempotency key.
func (rm *ReadModel) Idempotency(key string) (IdempotencyRecord, bool) {
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	r, ok := rm.idem[key]
	return r, ok
}

// Servers returns a customer's servers matching keep, ordered by ID (IDs
// are UUIDv7: time-ordered, so the order is creation order and stable).
func (rm *ReadModel) Servers(customerID string, keep func(cloudservers.Server) bool) []cloudservers.Server {
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	var out []cloudservers.Server
	for _, s := range rm.servers {
		if s.CustomerID == customerID && keep(s) {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Operations returns a customer's operations on a server, oldest first.
func (rm *ReadModel) Operations(customerID, serverID string) []cloudservers.Operation {
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	var out []cloudservers.Operation
	for _, o := range rm.ops {
		if o.CustomerID == customerID && o.ServerID == serverID {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Sync waits until this replica has read everything written to the state
// topics before the call: after it, a server another replica accepted is
// visible here (read-your-writes across replicas).
func (rm *ReadModel) Sync(ctx context.Context, kc sarama.Client) error {
	targets, err := endOffsets(kc, cloudservers.StateTopics)
	if err != nil {
		return err
	}
	return rm.WaitFor(ctx, targets)
}
