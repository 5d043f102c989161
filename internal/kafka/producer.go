// Package kafka adapts IBM/sarama to what the system needs: an idempotent,
// acks=all producer (the API's requests, and every other record); readers
// for the compacted state topics; and a transactional producer pool, which
// no component writes with any more (earlier API versions did), kept for
// the tests that write the aborted transactions read_committed readers
// must skip.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

// Version is the Kafka protocol version spoken to the brokers (Kafka 4.x
// accepts it; idempotence and transactions need at least 0.11).
var version = sarama.V3_6_0_0

// Config returns the sarama configuration shared by every client of the
// system: bounded timeouts so an unreachable broker is an error, not a hang.
func Config(clientID string) *sarama.Config {
	c := sarama.NewConfig()
	c.ClientID = clientID
	c.Version = version
	c.Net.DialTimeout = 5 * time.Second
	c.Net.ReadTimeout = 10 * time.Second
	c.Net.WriteTimeout = 10 * time.Second
	c.Metadata.Retry.Max = 5
	c.Metadata.Retry.Backoff = 250 * time.Millisecond
	return c
}

// ProducerConfig is a Config for an idempotent producer that waits for all
// in-sync replicas: the API answers 202 only after such a write.
func ProducerConfig(clientID string) *sarama.Config {
	c := Config(clientID)
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Idempotent = true
	c.Producer.Return.Successes = true
	c.Producer.Return.Errors = true
	c.Producer.Retry.Max = 5
	c.Producer.Retry.Backoff = 100 * time.Millisecond
	c.Producer.Timeout = 10 * time.Second
	// Idempotence requires one in-flight request per connection in sarama.
	c.Net.MaxOpenRequests = 1
	// The partitioner honours an explicit partition (the customer's bucket
	// maps to one); messages without one are spread by key hash.
	c.Producer.Partitioner = sarama.NewManualPartitioner
	return c
}

// Producer sends messages synchronously.
type Producer struct {
	p       sarama.SyncProducer
	metrics *ProduceMetrics
	// client is the producer's own, for refreshing its metadata (nil for
	// a producer on sarama's internal client).
	client sarama.Client
}

// NewProducer connects an idempotent acks=all producer to brokers.
func NewProducer(brokers []string, clientID string) (*Producer, error) {
	c := ProducerConfig(clientID)
	c.Producer.Partitioner = sarama.NewHashPartitioner
	p, err := sarama.NewSyncProducer(brokers, c)
	if err != nil {
		return nil, fmt.Errorf("kafka producer for %v: %w", brokers, err)
	}
	return &Producer{p: p}, nil
}

// Send writes one message and returns once the brokers acknowledged it. A
// nil key leaves the partition to the hash partitioner's random choice, as
// oslo.messaging does for notifications.
func (p *Producer) Send(ctx context.Context, topic string, key, value []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	msg := &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(value)}
	if key != nil {
		msg.Key = sarama.ByteEncoder(key)
	}
	if err := p.send(ctx, msg); err != nil {
		return fmt.Errorf("send to %s: %w", topic, err)
	}
	return nil
}

// Publish implements the OpenStack simulator's notification publisher:
// oslo.messaging writes notifications without a key.
func (p *Producer) Publish(ctx context.Context, topic string, value []byte) error {
	return p.Send(ctx, topic, nil, value)
}

// Close flushes and closes the producer.
func (p *Producer) Close() error {
	err := p.p.Close()
	if p.client != nil {
		err = errors.Join(err, p.client.Close())
	}
	return err
}

// NewPartitionProducer connects an idempotent acks=all producer that writes
// to the partition it is given: the API's requests go to the partition of
// the customer's bucket.
func NewPartitionProducer(brokers []string, clientID string) (*Producer, error) {
	client, err := sarama.NewClient(brokers, ProducerConfig(clientID))
	if err != nil {
		return nil, fmt.Errorf("kafka producer for %v: %w", brokers, err)
	}
	p, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("kafka producer for %v: %w", brokers, err)
	}
	return &Producer{p: p, client: client}, nil
}

// SendToPartition writes one message to an explicit partition and returns
// once the brokers acknowledged it.
func (p *Producer) SendToPartition(ctx context.Context, topic string, partition int32, key, value []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	msg := &sarama.ProducerMessage{Topic: topic, Partition: partition, Key: sarama.ByteEncoder(key), Value: sarama.ByteEncoder(value)}
	err := p.send(ctx, msg)
	if errors.Is(err, sarama.ErrInvalidPartition) && p.client != nil {
		// A partition added since the metadata was read (admin partitions
		// add; the bucket map routes to it): the partitioner checks
		// against the cached partition count, refreshed every 10 minutes.
		if rerr := p.client.RefreshMetadata(topic); rerr == nil {
			msg = &sarama.ProducerMessage{Topic: topic, Partition: partition, Key: sarama.ByteEncoder(key), Value: sarama.ByteEncoder(value)}
			err = p.send(ctx, msg)
		}
	}
	if err != nil {
		return fmt.Errorf("send to %s/%d: %w", topic, partition, err)
	}
	return nil
}

// send writes msg with ctx's trace context in its headers, measured.
func (p *Producer) send(ctx context.Context, msg *sarama.ProducerMessage) error {
	inject(ctx, msg)
	began := time.Now()
	_, _, err := p.p.SendMessage(msg)
	p.metrics.observe(msg.Topic, began, err)
	return err
}
