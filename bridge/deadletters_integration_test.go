//go:build integration

package bridge

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/google/uuid"

	"github.com/cloudservers/cloudservers/internal/devstack"
	"github.com/cloudservers/cloudservers/internal/itest"
	"github.com/cloudservers/cloudservers/internal/kafka"
)

// A replay re-sends each dead letter to its source topic and partition,
// byte for byte, once: a second replay re-sends nothing, a replay limited
// to one source topic touches only that topic's, and a dry run sends
// nothing.
func TestReplayDeadLettersOnce(t *testing.T) {
	ends := devstack.TestEndpoints(t)
	run := uuid.NewString()[:8]
	dlTopic, requests, notifs := "replay-"+run+".deadletter", "replay-"+run+".requests", "replay-"+run+".notifications"
	itest.OwnTopics(t, ends.Kafka,
		devstack.TopicSpec{Name: dlTopic, Partitions: 2}, devstack.TopicSpec{Name: requests, Partitions: 3}, devstack.TopicSpec{Name: notifs, Partitions: 2})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)
	kc, err := kafka.Connect(ctx, ends.Kafka, "replay-"+run, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	p, err := kafka.NewPartitionProducer(ends.Kafka, "replay-"+run)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	send := func(dl DeadLetter, partition int32) {
		v, _ := json.Marshal(dl)
		if err := p.SendToPartition(ctx, dlTopic, partition, nil, v); err != nil {
			t.Fatal(err)
		}
	}
	send(DeadLetter{Topic: requests, Partition: 2, Offset: 7, Error: "malformed request", Value: []byte(`{"operation_id":"op-1"}`), At: time.Now()}, 0)
	send(DeadLetter{Topic: notifs, Partition: 1, Offset: 3, Error: "unknown format", Value: []byte(`{"oslo.version":"9.0"}`), At: time.Now()}, 1)
	send(DeadLetter{Topic: requests, Partition: 0, Offset: 9, Error: "malformed request", Value: []byte(`{"operation_id":"op-2"}`), At: time.Now()}, 1)
	if err := p.SendToPartition(ctx, dlTopic, 0, nil, []byte("not a dead letter")); err != nil {
		t.Fatal(err)
	}

	replay := func(only string, dryRun bool) (n, passed int) {
		t.Helper()
		cons, err := sarama.NewConsumerFromClient(kc)
		if err != nil {
			t.Fatal(err)
		}
		defer cons.Close()
		// A full replay's progress in a group of this test's own; one of
		// a source topic in ReplayGroup-<topic> (this test's own topic).
		r := &Replay{Kafka: kc, Consumer: cons, Producer: p, Topic: dlTopic, Only: only, DryRun: dryRun, Log: quiet}
		if only == "" {
			r.Group = ReplayGroup + "-" + run
		}
		n, passed, err = r.Run(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		return n, passed
	}
	ends0 := func(topic string, parts ...int32) []int64 {
		out := make([]int64, len(parts))
		for i, part := range parts {
			out[i], err = kc.GetOffset(topic, part, sarama.OffsetNewest)
			if err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	if n, _ := replay("", true); n != 3 {
		t.Fatalf("dry run would replay %d, want 3", n)
	}
	if got := ends0(requests, 0, 1, 2); got[0]+got[1]+got[2] != 0 {
		t.Fatalf("a dry run sent records: ends %v", got)
	}
	if n, passed := replay(notifs, false); n != 1 || passed != 3 {
		t.Fatalf("replay of %s: %d replayed, %d passed over; want 1 and 3", notifs, n, passed)
	}
	if got := ends0(notifs, 0, 1); got[0] != 0 || got[1] != 1 {
		t.Fatalf("%s ends %v, want the one record back on partition 1", notifs, got)
	}
	if n, passed := replay("", false); n != 3 || passed != 1 {
		t.Fatalf("replay: %d replayed, %d passed over; want 3 and 1", n, passed)
	}
	if got := ends0(requests, 0, 1, 2); got[0] != 1 || got[1] != 0 || got[2] != 1 {
		t.Fatalf("%s ends %v, want one record back on partitions 0 and 2", requests, got)
	}
	msg := readOne(t, kc, requests, 2)
	if string(msg) != `{"operation_id":"op-1"}` {
		t.Fatalf("replayed record %q, want the original bytes", msg)
	}
	if n, _ := replay("", false); n != 0 {
		t.Fatalf("a second replay re-sent %d", n)
	}
	if got := ends0(requests, 0, 1, 2); got[0] != 1 || got[2] != 1 {
		t.Fatalf("after the second replay %s ends %v", requests, got)
	}
}

func readOne(t *testing.T, kc sarama.Client, topic string, partition int32) []byte {
	t.Helper()
	cons, err := sarama.NewConsumerFromClient(kc)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	pc, err := cons.ConsumePartition(topic, partition, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	select {
	case m := <-pc.Messages():
		return m.Value
	case <-time.After(10 * time.Second):
		t.Fatalf("nothing on %s/%d", topic, partition)
		return nil
	}
}
