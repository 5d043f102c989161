package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
)

// Connect returns a Kafka client, retrying with backoff until ctx ends: a
// process started before Kafka is up waits for it (saying so) instead of
// crash-looping.
func Connect(ctx context.Context, brokers []string, clientID string, log *slog.Logger) (sarama.Client, error) {
	c := Config(clientID)
	c.Consumer.Return.Errors = true
	c.Consumer.Offsets.AutoCommit.Enable = false
	c.Consumer.IsolationLevel = sarama.ReadCommitted
	return retry(ctx, log, "Kafka "+fmt.Sprint(brokers), func() (sarama.Client, error) {
		return sarama.NewClient(brokers, c)
	})
}

// ConnectProducer returns NewProducer (or NewPartitionProducer when
// partitioned) with the same retries as Connect.
func ConnectProducer(ctx context.Context, brokers []string, clientID string, partitioned bool, log *slog.Logger) (*Producer, error) {
	return retry(ctx, log, "Kafka "+fmt.Sprint(brokers), func() (*Producer, error) {
		if partitioned {
			return NewPartitionProducer(brokers, clientID)
		}
		return NewProducer(brokers, clientID)
	})
}

func retry[T any](ctx context.Context, log *slog.Logger, what string, f func() (T, error)) (T, error) {
	backoff := 500 * time.Millisecond
	for {
		v, err := f()
		if err == nil {
			return v, nil
		}
		log.Warn(what+" not reachable; retrying", "error", err, "in", backoff)
		select {
		case <-ctx.Done():
			var zero T
			return zero, fmt.Errorf("connect to %s: %w", what, err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}
