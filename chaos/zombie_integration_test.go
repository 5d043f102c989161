//go:build integration

package chaos

import (
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cloudservers/cloudservers/internal/openstacksim"
)

// TestZombieOwner freezes an owner (SIGSTOP) for longer than its session
// timeout while requests stream in, so that its partner takes over, then
// wakes it (SIGCONT). For a moment the woken process still believes it
// owns its partitions: a zombie, the overlap every lock service allows.
// The test measures how long the zombie goes on and checks that every saga
// still ran exactly once (a request the zombie delivers again is ignored
// by its lifecycle: the operation ID deduplicates).
func TestZombieOwner(t *testing.T) {
	const timeout = 4 * time.Second
	w := newWorld(t, worldOptions{sim: openstacksim.Config{BootTime: 200 * time.Millisecond}})
	args := []string{"-reaper=false", "-processes", "bridge-a,bridge-b", "-session-timeout", timeout.String()}
	a := startProc(t, "bridge-a", w.bridgeArgs("bridge-a", args...)...)
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
	frozen := a.signal(syscall.SIGSTOP)
	for _, p := range victims {
		l := b.wait(frozen, timeout+time.Minute, fmt.Sprintf("bridge-b takes partition %d over", p), isConsuming(w.topic, p))
		t.Logf("ZOMBIE partition=%d: bridge-b consumes %.2fs after bridge-a froze", p, l.at.Sub(frozen).Seconds())
	}
	time.Sleep(2 * time.Second) // bridge-b works; bridge-a's fetches would have brought it more
	woken := a.signal(syscall.SIGCONT)
	for _, p := range victims {
		l := a.wait(woken, time.Minute, fmt.Sprintf("the zombie stops partition %d", p), func(l line) bool {
			return l.msg == "run stopped" && l.kv["partition"] == strconv.Itoa(int(p))
		})
		t.Logf("ZOMBIE partition=%d: bridge-a woke and stopped %s later (reason %s)", p, l.at.Sub(woken).Round(time.Millisecond), l.kv["reason"])
	}
	// It comes back with a new session and gets its partitions back.
	for _, p := range victims {
		a.wait(woken, 2*time.Minute, fmt.Sprintf("bridge-a gets partition %d back", p), isConsuming(w.topic, p))
	}
	time.Sleep(2 * time.Second)
	reqs := s.stop()
	v := w.verifyExactlyOnce(reqs, 3*time.Minute)
	t.Logf("ZOMBIE %d requests, each saga started exactly once; %d delivered twice during the overlap", len(reqs), len(v.redelivered))
	for _, r := range v.redelivered {
		t.Logf("delivered twice: partition %d, op %s (produced %s after the freeze)", r.partition, r.op, r.at.Sub(frozen).Round(time.Millisecond))
	}
}
