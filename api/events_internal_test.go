package api

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/cloudservers/cloudservers"
)

func serverChange(customer string, partition int32, offset int64) change {
	return change{tp: topicPartition{cloudservers.TopicServers, partition}, offset: offset,
		server: &cloudservers.Server{ID: "s", CustomerID: customer}}
}

// A stream that does not keep up is ended instead of blocking the
// broadcaster (and so the read model); the others carry on.
func TestBroadcasterDropsSlowStreams(t *testing.T) {
	b := newBroadcaster(100, 2, 10)
	slow, _, _, err := b.subscribe("alice", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	other, _, _, _ := b.subscribe("bob", nil, false)
	for i := range 3 {
		b.publish(serverChange("alice", 0, int64(i)))
	}
	select {
	case <-slow.done:
	default:
		t.Fatal("the slow stream was not ended")
	}
	if slow.why == "" {
		t.Error("no reason given")
	}
	b.publish(serverChange("bob", 1, 0))
	if ev := <-other.ch; ev.server.CustomerID != "bob" {
		t.Errorf("bob got %+v", ev)
	}
	if b.streams() != 1 {
		t.Errorf("%d streams", b.streams())
	}
	b.unsubscribe(slow) // idempotent
	b.unsubscribe(other)
	if b.streams() != 0 || len(b.perCustomer) != 0 {
		t.Errorf("left: %d streams, %v", b.streams(), b.perCustomer)
	}
}

func TestEventIDRoundTrip(t *testing.T) {
	v := vector{{cloudservers.TopicServers, 2}: 7, {cloudservers.TopicOperations, 1}: 5, {cloudservers.TopicServers, 0}: 12}
	if s := v.String(); s != "o1:5.s0:12.s2:7" {
		t.Errorf("ID %q", s)
	}
	w, err := parseEventID(v.String())
	if err != nil || w.String() != v.String() {
		t.Errorf("round trip %v %v", w, err)
	}
}

func TestHistoryRing(t *testing.T) {
	b := newBroadcaster(3, 10, 10)
	for i := range 5 {
		b.publish(serverChange("alice", 0, int64(i)))
	}
	_, backlog, gap, _ := b.subscribe("alice", vector{{cloudservers.TopicServers, 0}: 2}, true)
	if gap || len(backlog) != 3 || backlog[0].offset != 2 || backlog[2].offset != 4 {
		t.Errorf("from 2: gap %v backlog %+v", gap, backlog)
	}
	_, backlog, gap, _ = b.subscribe("alice", vector{{cloudservers.TopicServers, 0}: 1}, true)
	if !gap || len(backlog) != 3 {
		t.Errorf("from 1: gap %v, %d events", gap, len(backlog))
	}
}

type fakeOffsets map[string]int64 // topic -> end offset of its one partition

func (f fakeOffsets) Partitions(topic string) ([]int32, error) {
	if _, ok := f[topic]; !ok {
		return nil, sarama.ErrUnknownTopicOrPartition
	}
	return []int32{0}, nil
}

func (f fakeOffsets) GetOffset(topic string, _ int32, _ int64) (int64, error) { return f[topic], nil }

// The read model serves without a state topic that does not exist yet
// (the SSH keys topic until the stack creates it).
func TestMissingTopicTolerated(t *testing.T) {
	kc := fakeOffsets{cloudservers.TopicServers: 2}
	targets, missing, err := endOffsets(kc, []string{cloudservers.TopicServers, TopicSSHKeys})
	if err != nil || len(targets) != 1 || len(missing) != 1 || missing[0] != TopicSSHKeys {
		t.Fatalf("targets %v missing %v err %v", targets, missing, err)
	}
	rm := NewReadModel()
	rm.consuming[topicPartition{cloudservers.TopicServers, 0}] = true
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := rm.Sync(ctx, kc); err == nil {
		t.Fatal("synced without having read the servers topic")
	}
	_ = rm.ApplyRecord(cloudservers.TopicServers, 0, 1, []byte("s"), []byte(`{"id":"s","customer_id":"c"}`))
	if err := rm.Sync(context.Background(), kc); err != nil {
		t.Fatalf("sync: %v", err)
	}
}
