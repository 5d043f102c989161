//go:build integration

package chaos

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cloudservers/cloudservers/internal/openstacksim"
)

// TestRouteFailover kills -9 a bridge that routes notification partitions
// (as their primary) while sagas wait for notifications. Its partner must
// take every one of its routes over within the session timeout + 1 s and
// resume from the committed offsets: every saga completes on its
// notification. The event timeout is short (20 s), so a notification lost
// in the takeover would show as a reconciliation read (GET
// /servers/{id}) well before the test ends; there must be none.
func TestRouteFailover(t *testing.T) {
	const timeout = 4 * time.Second
	// Nova takes 2 s per boot: the notifications the sagas wait for come
	// while bridge-a's routes have no router.
	w := newWorld(t, worldOptions{sim: openstacksim.Config{BootTime: 2 * time.Second}})
	ctx := context.Background()
	args := []string{"-processes", "bridge-a,bridge-b", "-session-timeout", timeout.String(), "-event-timeout", "20s", "-reaper=false"}
	a := startProc(t, "bridge-a", w.bridgeArgs("bridge-a", args...)...)
	b := startProc(t, "bridge-b", w.bridgeArgs("bridge-b", args...)...)
	// Every route with its primary: partition p of each notification
	// topic is bridge-a's when p is even.
	var mine []string // bridge-a's routes, "topic/partition"
	eventually(t, 2*time.Minute, "every route with its primary", func() error {
		st, err := b.status()
		if err != nil {
			return err
		}
		mine = nil
		if len(st.System.Routes) == 0 {
			return fmt.Errorf("no routes in the status")
		}
		for _, r := range st.System.Routes {
			want := []string{"bridge-a", "bridge-b"}[r.Partition%2]
			if r.Owner != want {
				return fmt.Errorf("route %s/%d routed by %q, want %s", r.Topic, r.Partition, r.Owner, want)
			}
			if want == "bridge-a" {
				mine = append(mine, fmt.Sprintf("%s/%d", r.Topic, r.Partition))
			}
		}
		return nil
	})
	t.Logf("bridge-a routes %v", mine)

	// One create per request partition; the test waits until each saga
	// asked Nova, then kills the router while the instances boot.
	var reqs []sent
	for p := int32(0); p < partitions; p++ {
		r, err := w.produce(ctx, p, int(p))
		must(t, err)
		reqs = append(reqs, r)
	}
	eventually(t, time.Minute, "every saga has asked Nova for its instance", func() error {
		if n := w.sim.Calls().Count("POST /compute/v2.1/servers"); n < len(reqs) {
			return fmt.Errorf("%d creates", n)
		}
		return nil
	})
	killed := a.kill()
	var worst time.Duration
	var last time.Time
	for _, route := range mine {
		topic, part := splitRoute(route)
		l := b.wait(killed, timeout+time.Minute, "bridge-b routes "+route, func(l line) bool {
			return l.is("consuming", "topic", topic, "partition", part)
		})
		took := l.at.Sub(killed)
		worst, last = max(worst, took), maxTime(last, l.at)
		t.Logf("TAKEOVER route=%s timeout=%s took=%.2fs (resuming at offset %s, committed by %s)", route, timeout, took.Seconds(),
			l.kv["from"], l.kv["committed_by"])
	}
	t.Logf("TAKEOVER routes timeout=%s worst=%.2fs bound=%s", timeout, worst.Seconds(), timeout+time.Second)
	if worst > timeout+time.Second {
		t.Errorf("the partner took %s to route bridge-a's partitions, want within the session timeout + 1 s", worst)
	}

	// No notification lost: every saga completes, on notifications.
	w.verifyExactlyOnce(reqs, 2*time.Minute)
	during := w.published.between(killed, last, "")
	t.Logf("%d notifications were published between the kill and the last takeover", len(during))
	if len(during) == 0 {
		t.Errorf("no notification was published while bridge-a's routes had no router: the test proved nothing")
	}
	if n := w.sim.Calls().Count("GET /compute/v2.1/servers/{id}"); n != 0 {
		t.Errorf("%d reconciliation reads: a saga missed its notification", n)
	}
	st, err := b.status()
	must(t, err)
	for _, r := range st.System.Routes {
		if r.Owner != "bridge-b" {
			t.Errorf("route %s/%d routed by %q after the kill, want bridge-b", r.Topic, r.Partition, r.Owner)
		}
	}
	t.Logf("bridge-b routes %v; its router: %v", st.Routing, st.Router)
}

func splitRoute(route string) (topic, partition string) {
	i := strings.LastIndexByte(route, '/')
	return route[:i], route[i+1:]
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
