//go:build integration

package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/bridge"
	"github.com/cloudservers/cloudservers/internal/openstacksim"
)

// TestStartWithZooKeeperDown starts a bridge while ZooKeeper cannot be
// reached: it must say so, naming the server and the error, retry with a
// growing backoff, and start working as soon as ZooKeeper answers.
func TestStartWithZooKeeperDown(t *testing.T) {
	w := newWorld(t, worldOptions{})
	proxy := newProxy(t, w.ends.ZooKeeper)
	proxy.Stop() // nothing listens at its address yet
	started := time.Now()
	a := startProc(t, "bridge-a", append(w.bridgeArgs("bridge-a", "-reaper=false", "-processes", "bridge-a"),
		"-zookeeper", proxy.Addr()+w.chroot)...)

	unreachable := func(attempt int) func(line) bool {
		return func(l line) bool {
			return l.is("zookeeper unreachable, retrying", "attempt", strconv.Itoa(attempt)) && l.kv["server"] == proxy.Addr()
		}
	}
	var prev line
	for attempt := 1; attempt <= 4; attempt++ {
		l := a.wait(started, time.Minute, fmt.Sprintf("attempt %d is reported", attempt), unreachable(attempt))
		if !strings.Contains(l.kv["err"], "connection refused") {
			t.Errorf("attempt %d: the error does not say why: %q", attempt, l.raw)
		}
		if attempt > 1 {
			waited := l.at.Sub(prev.at)
			want, _ := time.ParseDuration(prev.kv["retry_in"])
			t.Logf("attempt %d %.1fs after attempt %d (announced retry_in=%s): %s", attempt, waited.Seconds(), attempt-1, prev.kv["retry_in"], l.kv["err"])
			if waited < want-200*time.Millisecond || waited > want+3*time.Second {
				t.Errorf("attempt %d came %s after the previous one, which announced %s", attempt, waited, want)
			}
		}
		prev = l
	}
	if second, fourth := a.find(unreachable(2))[0].kv["retry_in"], prev.kv["retry_in"]; second == fourth {
		t.Errorf("the backoff does not grow: %s, then %s", second, fourth)
	}
	if a.find(func(l line) bool { return l.msg == "status endpoint" }) != nil {
		t.Errorf("the bridge serves its status before it has a ZooKeeper session")
	}

	up := time.Now()
	proxy.Start()
	l := a.wait(up, time.Minute, "connected once ZooKeeper answers", func(l line) bool { return l.msg == "connected to zookeeper" })
	t.Logf("connected %.1fs after ZooKeeper came up", l.at.Sub(up).Seconds())
	for p := int32(0); p < partitions; p++ {
		a.wait(up, time.Minute, fmt.Sprintf("consumes partition %d", p), isConsuming(w.topic, p))
	}
}

// TestStartWithKafkaDown does the same with Kafka.
func TestStartWithKafkaDown(t *testing.T) {
	w := newWorld(t, worldOptions{})
	proxy := newProxy(t, w.ends.Kafka[0])
	proxy.Stop()
	started := time.Now()
	a := startProc(t, "bridge-a", append(w.bridgeArgs("bridge-a", "-reaper=false", "-processes", "bridge-a"),
		"-kafka", proxy.Addr())...)
	unreachable := func(l line) bool {
		return strings.HasPrefix(l.msg, "Kafka [") && strings.HasSuffix(l.msg, "] not reachable; retrying") && strings.Contains(l.msg, proxy.Addr())
	}
	var backoffs []string
	for i := 0; i < 3; i++ {
		a.wait(started, time.Minute, fmt.Sprintf("failure %d is reported", i+1), func(l line) bool {
			return unreachable(l) && len(a.find(unreachable)) > i
		})
	}
	for _, l := range a.find(unreachable)[:3] {
		backoffs = append(backoffs, l.kv["in"])
		if !strings.Contains(l.kv["error"], "connection refused") {
			t.Errorf("the error does not say why: %q", l.raw)
		}
	}
	t.Logf("Kafka unreachable: retries in %v", backoffs)
	if backoffs[0] == backoffs[2] {
		t.Errorf("the backoff does not grow: %v", backoffs)
	}
	up := time.Now()
	proxy.Start()
	for p := int32(0); p < partitions; p++ {
		a.wait(up, 2*time.Minute, fmt.Sprintf("consumes partition %d once Kafka answers", p), isConsuming(w.topic, p))
	}
	t.Logf("consuming %.1fs after Kafka came up", time.Since(up).Seconds())
}

// TestMalformedMessages puts garbage on a partition of the requests topic
// and on a notification topic. Each must be logged with its partition and
// offset, counted, written to the dead-letter topic with everything needed
// to look at it again, and passed: the request behind it is started.
func TestMalformedMessages(t *testing.T) {
	w := newWorld(t, worldOptions{sim: openstacksim.Config{BootTime: 200 * time.Millisecond}})
	ctx := context.Background()
	args := []string{"-reaper=false", "-processes", "bridge-a,bridge-b"}
	a := startProc(t, "bridge-a", w.bridgeArgs("bridge-a", args...)...)
	b := startProc(t, "bridge-b", w.bridgeArgs("bridge-b", args...)...)
	waitOwners(t, b, 2*time.Minute, "each partition with its primary", func(o map[int32]string) bool {
		return o[0] == "bridge-a" && o[1] == "bridge-b" && o[2] == "bridge-a" && o[3] == "bridge-b" && o[4] == "bridge-a" && o[5] == "bridge-b"
	})
	b.wait(time.Time{}, time.Minute, "bridge-b consumes partition 1", isConsuming(w.topic, 1))
	st, err := b.status()
	must(t, err)
	router := a
	for _, s := range st.System.Singletons {
		if s.Name == "router" && s.Leader == "bridge-b" {
			router = b
		}
	}
	router.wait(time.Time{}, time.Minute, "the router consumes "+w.notifs.Legacy+".info/0", func(l line) bool {
		return l.is("consuming", "topic", w.notifs.Legacy+".info", "partition", "0")
	})

	dlStart, err := w.kafka.GetOffset(cloudservers.TopicDeadLetter, 0, sarama.OffsetNewest)
	must(t, err)
	badRequest := []byte("{not a request " + w.run)
	reqOffset, err := w.kafka.GetOffset(w.topic, 1, sarama.OffsetNewest)
	must(t, err)
	must(t, w.producer.SendToPartition(ctx, w.topic, 1, nil, badRequest))
	valid, err := w.produce(ctx, 1, 0)
	must(t, err)
	badNotification := []byte(`{"oslo.version": "2.0", "oslo.message": "not JSON ` + w.run + `"}`)
	notifOffset, err := w.kafka.GetOffset(w.notifs.Legacy+".info", 0, sarama.OffsetNewest)
	must(t, err)
	must(t, w.producer.SendToPartition(ctx, w.notifs.Legacy+".info", 0, nil, badNotification))

	// The partition moved on: the request after the garbage is started.
	w.verifyExactlyOnce([]sent{valid}, 2*time.Minute)

	// Logged with topic, partition and offset.
	l := b.wait(time.Time{}, time.Minute, "the malformed request is logged", func(l line) bool {
		return l.is("request sent to the dead-letter topic", "topic", w.topic, "partition", "1")
	})
	if l.kv["offset"] != strconv.FormatInt(reqOffset, 10) || l.kv["level"] != "ERROR" || !strings.Contains(l.kv["error"], "malformed request") {
		t.Errorf("log line: %s (want offset %d, level ERROR, the reason)", l.raw, reqOffset)
	}
	l = router.wait(time.Time{}, time.Minute, "the malformed notification is logged", func(l line) bool {
		o, _ := strconv.ParseInt(l.kv["offset"], 10, 64)
		return l.is("notification sent to the dead-letter topic", "topic", w.notifs.Legacy+".info", "partition", "0") && o >= notifOffset
	})
	t.Logf("logged: %s", l.raw)

	// Written to the dead-letter topic: where it came from, why, and the
	// message itself byte for byte.
	found := map[string]bridge.DeadLetter{}
	eventually(t, time.Minute, "both are on the dead-letter topic", func() error {
		for _, dl := range readDeadLetters(t, w, dlStart) {
			switch string(dl.Value) {
			case string(badRequest):
				found["request"] = dl
			case string(badNotification):
				found["notification"] = dl
			}
		}
		if len(found) < 2 {
			return fmt.Errorf("found %d of 2", len(found))
		}
		return nil
	})
	if r := found["request"]; r.Topic != w.topic || r.Partition != 1 || r.Offset != reqOffset || !strings.Contains(r.Error, "malformed request") || time.Since(r.At) > 5*time.Minute {
		t.Errorf("dead letter of the request: %+v", r)
	}
	if n := found["notification"]; n.Topic != w.notifs.Legacy+".info" || n.Partition != 0 || n.Offset < notifOffset || n.Error == "" {
		t.Errorf("dead letter of the notification: %+v", n)
	}
	t.Logf("dead letters: request %q, notification %q", found["request"].Error, found["notification"].Error)

	// Counted, and the offset committed past it.
	st, err = b.status()
	must(t, err)
	if st.Requests["dead_letters"] != 1 {
		t.Errorf("bridge-b counted %d dead letters, want 1: %v", st.Requests["dead_letters"], st.Requests)
	}
	rst, err := router.status()
	must(t, err)
	if rst.Router["dead_letters"] < 1 {
		t.Errorf("the router counted no dead letter: %v", rst.Router)
	}
	for _, ps := range st.System.Partitions {
		if ps.Partition == 1 && (ps.Committed != reqOffset+2 || ps.Lag != 0) {
			t.Errorf("partition 1: committed %d, lag %d; want %d and 0", ps.Committed, ps.Lag, reqOffset+2)
		}
	}
}

// readDeadLetters reads the dead-letter topic from offset to its end.
func readDeadLetters(t *testing.T, w *world, from int64) []bridge.DeadLetter {
	t.Helper()
	end, err := w.kafka.GetOffset(cloudservers.TopicDeadLetter, 0, sarama.OffsetNewest)
	must(t, err)
	if end <= from {
		return nil
	}
	c, err := sarama.NewConsumerFromClient(w.kafka)
	must(t, err)
	defer c.Close()
	pc, err := c.ConsumePartition(cloudservers.TopicDeadLetter, 0, from)
	must(t, err)
	defer pc.Close()
	var out []bridge.DeadLetter
	timeout := time.After(30 * time.Second)
	for {
		select {
		case m := <-pc.Messages():
			var dl bridge.DeadLetter
			if err := json.Unmarshal(m.Value, &dl); err != nil {
				t.Errorf("dead letter at offset %d is not a DeadLetter record: %v", m.Offset, err)
			}
			out = append(out, dl)
			if m.Offset+1 >= end {
				return out
			}
		case <-timeout:
			t.Fatalf("reading the dead-letter topic from %d to %d: timed out", from, end)
		}
	}
}
