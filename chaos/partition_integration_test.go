//go:build integration

package chaos

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/cloudservers/cloudservers/internal/openstacksim"
)

// TestZooKeeperPartition cuts one owner off ZooKeeper (its TCP connection
// goes through a proxy that starts dropping every byte: a network
// partition, which only timeouts notice) while requests stream in. The
// owner must stop consuming before its session expires on the server, the
// partner takes over after the expiry, and no request is processed twice.
// When the network heals, the owner comes back with a new session and gets
// its partitions back.
func TestZooKeeperPartition(t *testing.T) {
	const timeout = 4 * time.Second
	w := newWorld(t, worldOptions{sim: openstacksim.Config{BootTime: 200 * time.Millisecond}})
	proxy := newProxy(t, w.ends.ZooKeeper)
	args := []string{"-reaper=false", "-processes", "bridge-a,bridge-b", "-session-timeout", timeout.String()}
	a := startProc(t, "bridge-a", append(w.bridgeArgs("bridge-a", args...), "-zookeeper", proxy.Addr()+w.chroot)...)
	b := startProc(t, "bridge-b", w.bridgeArgs("bridge-b", args...)...)
	waitOwners(t, b, 2*time.Minute, "each partition with its primary", func(o map[int32]string) bool {
		return o[0] == "bridge-a" && o[1] == "bridge-b" && o[2] == "bridge-a" && o[3] == "bridge-b" && o[4] == "bridge-a" && o[5] == "bridge-b"
	})
	victims := []int32{0, 2, 4}
	for _, p := range victims {
		a.wait(time.Time{}, time.Minute, fmt.Sprintf("bridge-a consumes partition %d", p), isConsuming(w.topic, p))
	}

	s := w.startStream(250 * time.Millisecond)
	time.Sleep(3 * time.Second)
	cut := time.Now()
	proxy.Blackhole()
	for _, p := range victims {
		stopped := a.wait(cut, timeout+time.Minute, fmt.Sprintf("bridge-a stops partition %d", p), func(l line) bool {
			return l.is("run stopped", "partition", strconv.Itoa(int(p)), "reason", "disconnected")
		})
		took := b.wait(cut, timeout+time.Minute, fmt.Sprintf("bridge-b takes partition %d over", p), isConsuming(w.topic, p))
		paused, started := stopped.at.Sub(cut), took.at.Sub(cut)
		t.Logf("PARTITION partition=%d: bridge-a stopped %.2fs after the cut (before its %s session could expire), bridge-b consumed %.2fs after it: no overlap, a gap of %.2fs",
			p, paused.Seconds(), timeout, started.Seconds(), (started - paused).Seconds())
		if paused >= timeout {
			t.Errorf("partition %d: bridge-a stopped %s after the cut, not before its session timeout %s", p, paused, timeout)
		}
		if !stopped.at.Before(took.at) {
			t.Errorf("partition %d: bridge-b started (%s) before bridge-a stopped (%s): the owners overlapped", p, started, paused)
		}
		if started > timeout+2*time.Second+slack {
			t.Errorf("partition %d: the partner took %s", p, started)
		}
	}
	if l, ok := a.waitOK(cut, 0, func(l line) bool { return l.msg == "zookeeper connection lost" }); ok {
		t.Logf("bridge-a noticed the lost connection after %.2fs (the client's read timeout is 2/3 of the session timeout)", l.at.Sub(cut).Seconds())
	}

	time.Sleep(3 * time.Second)
	healed := time.Now()
	proxy.Heal()
	for _, p := range victims {
		l := a.wait(healed, 2*time.Minute, fmt.Sprintf("bridge-a gets partition %d back", p), isConsuming(w.topic, p))
		t.Logf("partition %d back with bridge-a %.2fs after the network healed", p, l.at.Sub(healed).Seconds())
	}
	a.wait(healed, time.Minute, "a new session after the expiry", func(l line) bool { return l.msg == "zookeeper session expired" })
	time.Sleep(2 * time.Second)
	reqs := s.stop()
	v := w.verifyExactlyOnce(reqs, 3*time.Minute)
	t.Logf("%d requests, each started exactly once, %d delivered twice", len(reqs), len(v.redelivered))
	for _, r := range v.redelivered {
		t.Errorf("request %s (partition %d) was delivered %d times: the cut owner must stop at a message boundary and commit", r.op, r.partition, v.deliveries[r.op])
	}
}
