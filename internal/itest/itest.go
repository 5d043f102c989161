// Package itest holds the helpers the integration tests (e2e, chaos) share.
package itest

import (
	"errors"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// Eventually calls f until it returns nil, failing the test with f's last
// error when timeout passes first.
func Eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// CommitEnds commits, for group, the current end of every partition of
// topics, and returns those ends: a fresh group positioned there handles
// only what is produced afterwards (tests share the topics).
func CommitEnds(t testing.TB, kc sarama.Client, group, metadata string, topics []string) map[string]map[int32]int64 {
	t.Helper()
	om, err := sarama.NewOffsetManagerFromClient(group, kc)
	if err != nil {
		t.Fatal(err)
	}
	defer om.Close()
	var poms []sarama.PartitionOffsetManager
	defer func() {
		for _, pom := range poms {
			pom.AsyncClose()
		}
	}()
	out := map[string]map[int32]int64{}
	for _, topic := range topics {
		parts, err := kc.Partitions(topic)
		if err != nil {
			t.Fatal(err)
		}
		out[topic] = map[int32]int64{}
		for _, p := range parts {
			end, err := endOffset(kc, topic, p)
			if err != nil {
				t.Fatal(err)
			}
			pom, err := om.ManagePartition(topic, p)
			if err != nil {
				t.Fatal(err)
			}
			pom.MarkOffset(end, metadata)
			poms = append(poms, pom)
			out[topic][p] = end
		}
	}
	om.Commit()
	return out
}

// endOffset is the partition's end. Right after a topic is created, the
// client's metadata may still name no leader or an old one (seen in CI:
// "not the leader for some partition"): refresh and ask again for a while.
func endOffset(kc sarama.Client, topic string, p int32) (int64, error) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		end, err := kc.GetOffset(topic, p, sarama.OffsetNewest)
		if err == nil || time.Now().After(deadline) ||
			!(errors.Is(err, sarama.ErrNotLeaderForPartition) || errors.Is(err, sarama.ErrLeaderNotAvailable) || errors.Is(err, sarama.ErrUnknownTopicOrPartition)) {
			return end, err
		}
		time.Sleep(200 * time.Millisecond)
		_ = kc.RefreshMetadata(topic)
	}
}
