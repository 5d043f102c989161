//go:build integration

package bridge

import (
	"bytes"
	"context"
	"io"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/google/uuid"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"

	"github.com/cloudservers/cloudservers"

	"github.com/cloudservers/cloudservers/internal/devstack"
	"github.com/cloudservers/cloudservers/internal/itest"
	"github.com/cloudservers/cloudservers/internal/kafka"
)

// BenchmarkRouter measures how many notifications a second the router
// takes from the real Kafka (decode, find the server, signal, commit the
// offset), with a Temporal stand-in that accepts every signal at once, so
// that what is measured is the router's own work. The baseline is a bare
// sarama consumer reading the same records. Each run writes b.N captured
// Nova notifications (instance.create.end, 3.4 kB, named cs-<uuid>) to a
// topic of its own with 3 partitions, as oslo.messaging spreads them.
//
//	make bench
func BenchmarkRouter(b *testing.B) {
	ends := devstack.TestEndpoints(b)
	raw, err := os.ReadFile("../internal/notification/testdata/a-create/0022-versioned_notifications.info-instance.create.end.json")
	if err != nil {
		b.Fatal(err)
	}
	server := uuid.NewString()
	value := bytes.ReplaceAll(raw, []byte(`display_name\": \"cap-vm\"`), []byte(`display_name\": \"cs-`+server+`\"`))
	if bytes.Equal(value, raw) {
		b.Fatal("the capture has no display_name to rewrite")
	}

	// fill makes a topic of its own holding n notifications.
	fill := func(b *testing.B, n int) string {
		b.Helper()
		topic := "bench-" + uuid.NewString()[:8] + ".notifications.info"
		itest.OwnTopics(b, ends.Kafka, devstack.TopicSpec{Name: topic, Partitions: 3})
		p, err := sarama.NewSyncProducer(ends.Kafka, kafka.ProducerConfig("bench"))
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		msgs := make([]*sarama.ProducerMessage, n)
		for i := range msgs { // round robin, as oslo.messaging's keyless records spread
			msgs[i] = &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(value), Partition: int32(i % 3)}
		}
		if err := p.SendMessages(msgs); err != nil {
			if pe, ok := err.(sarama.ProducerErrors); ok && len(pe) > 0 {
				err = pe[0].Err
			}
			b.Fatal(err)
		}
		return topic
	}
	// client returns a client for offsets and metadata, and a consumer on
	// a client of its own, as the bridge runs them: commits sent on the
	// consumer's connection would wait behind its long-polling fetches.
	client := func(b *testing.B) (sarama.Client, sarama.Consumer) {
		connect := func() sarama.Client {
			kc, err := kafka.Connect(context.Background(), ends.Kafka, "bench", logTo(io.Discard))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { kc.Close() })
			return kc
		}
		kc := connect()
		c, err := sarama.NewConsumerFromClient(connect())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		return kc, c
	}

	b.Run("baseline=sarama-consumer", func(b *testing.B) {
		topic := fill(b, b.N)
		kc, c := client(b)
		parts, err := kc.Partitions(topic)
		if err != nil {
			b.Fatal(err)
		}
		var got atomic.Int64
		done := make(chan struct{})
		b.ResetTimer()
		start := time.Now()
		for _, p := range parts {
			pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
			if err != nil {
				b.Fatal(err)
			}
			defer pc.Close()
			go func() {
				for range pc.Messages() {
					if got.Add(1) == int64(b.N) {
						close(done)
					}
				}
			}()
		}
		<-done
		b.StopTimer()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	})

	b.Run("router", func(b *testing.B) {
		topic := fill(b, b.N)
		kc, c := client(b)
		stats := &Stats{}
		r := &Router{Kafka: kc, Consumer: c, Topics: []string{topic}, Group: "bench-router-" + uuid.NewString()[:8],
			Signals: acceptAll{}, Routes: testRoutes(b, serverRecord(b, cloudservers.Server{ID: server, OperationID: "op-bench"})),
			Log: logTo(io.Discard), Stats: stats, Fresh: FreshAtOldest}
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan error, 1)
		b.ResetTimer()
		start := time.Now()
		go func() { stopped <- r.Run(ctx) }()
		for stats.Delivered.Load() < int64(b.N) {
			time.Sleep(time.Millisecond)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		cancel()
		if err := <-stopped; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	})
}

// acceptAll is a Temporal that takes every signal at once.
type acceptAll struct{}

func (acceptAll) SignalWorkflowExecution(context.Context, *workflowservice.SignalWorkflowExecutionRequest, ...grpc.CallOption) (*workflowservice.SignalWorkflowExecutionResponse, error) {
	return &workflowservice.SignalWorkflowExecutionResponse{}, nil
}

// BenchmarkCommitOffset measures one synchronous offset commit to the group
// coordinator, what the requests consumer pays after each request.
func BenchmarkCommitOffset(b *testing.B) {
	ends := devstack.TestEndpoints(b)
	kc, err := kafka.Connect(context.Background(), ends.Kafka, "bench", logTo(io.Discard))
	if err != nil {
		b.Fatal(err)
	}
	defer kc.Close()
	topic := "bench-" + uuid.NewString()[:8] + ".commits"
	itest.OwnTopics(b, ends.Kafka, devstack.TopicSpec{Name: topic, Partitions: 1})
	group := "bench-commit-" + uuid.NewString()[:8]
	b.ResetTimer()
	for i := range b.N {
		if err := commitOffset(kc, group, noGeneration, "", topic, 0, int64(i+1), "bench"); err != nil {
			b.Fatal(err)
		}
	}
}
