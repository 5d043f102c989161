package zkcoord

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeCoordinator has a live session 42 and no connection: enough for hold.
func fakeCoordinator() *Coordinator {
	s := newSessionTracker(discardLogger())
	s.id, s.live = 42, true
	return &Coordinator{sess: s, log: discardLogger()}
}

type holdResult struct {
	reason endReason
	err    error
}

func startHold(c *Coordinator, watches [2]<-chan zk.Event, check recheck, run RunFunc) <-chan holdResult {
	out := make(chan holdResult, 1)
	lease := Lease{Partition: 3, Owner: "a", Token: "t", Fence: 7, Session: 42}
	v := c.sess.view()
	go func() {
		r, err := c.hold(context.Background(), lease, v, watches, check, run, discardLogger())
		out <- holdResult{r, err}
	}()
	return out
}

// blockingRun returns when its context is cancelled and reports when.
func blockingRun(started chan<- struct{}, stopped chan<- time.Time) RunFunc {
	return func(ctx context.Context, _ Lease) error {
		close(started)
		<-ctx.Done()
		stopped <- time.Now()
		return ctx.Err()
	}
}

func TestHoldCancelsRunAtOnceOnDisconnect(t *testing.T) {
	c := fakeCoordinator()
	started, stopped := make(chan struct{}), make(chan time.Time, 1)
	res := startHold(c, [2]<-chan zk.Event{}, nil, blockingRun(started, stopped))
	<-started
	cut := time.Now()
	c.sess.handle(zk.Event{Type: zk.EventSession, State: zk.StateDisconnected})
	r := <-res
	if r.reason != endDisconnected {
		t.Fatalf("reason = %v, want disconnected", r.reason)
	}
	if d := (<-stopped).Sub(cut); d > 100*time.Millisecond {
		t.Fatalf("run stopped %v after StateDisconnected, want at once", d)
	}
}

func TestHoldIgnoresSpuriousSessionEventsOfTheSameSession(t *testing.T) {
	c := fakeCoordinator()
	started, stopped := make(chan struct{}), make(chan time.Time, 1)
	res := startHold(c, [2]<-chan zk.Event{}, nil, blockingRun(started, stopped))
	<-started
	// Something else closed the change channel while the session stays
	// the same and usable: not a reason to stop.
	c.sess.mu.Lock()
	c.sess.broadcast()
	c.sess.mu.Unlock()
	select {
	case r := <-res:
		t.Fatalf("hold ended (%v) without a session change", r.reason)
	case <-time.After(50 * time.Millisecond):
	}
	c.sess.handle(zk.Event{Type: zk.EventSession, State: zk.StateExpired})
	if r := <-res; r.reason != endDisconnected {
		t.Fatalf("reason = %v after expiry", r.reason)
	}
}

func TestHoldHandsBackWhenRecheckSaysSo(t *testing.T) {
	c := fakeCoordinator()
	started, stopped := make(chan struct{}), make(chan time.Time, 1)
	children := make(chan zk.Event, 1)
	calls := 0
	check := func(fired int) (bool, endReason, <-chan zk.Event, error) {
		calls++
		if fired != 0 {
			t.Errorf("fired = %d, want 0 (candidates)", fired)
		}
		if calls == 1 { // a lower-priority candidate joined: keep going
			next := make(chan zk.Event, 1)
			children = next
			go func() { time.Sleep(20 * time.Millisecond); next <- zk.Event{Type: zk.EventNodeChildrenChanged} }()
			return false, 0, next, nil
		}
		return true, endHandback, nil, nil
	}
	res := startHold(c, [2]<-chan zk.Event{children, nil}, check, blockingRun(started, stopped))
	<-started
	children <- zk.Event{Type: zk.EventNodeChildrenChanged}
	r := <-res
	if r.reason != endHandback || calls != 2 {
		t.Fatalf("reason = %v after %d checks, want handback after 2", r.reason, calls)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("hold returned before run returned")
	}
}

func TestHoldReportsRunReturningOnItsOwn(t *testing.T) {
	c := fakeCoordinator()
	boom := errors.New("kafka unreachable")
	res := startHold(c, [2]<-chan zk.Event{}, nil, func(context.Context, Lease) error { return boom })
	r := <-res
	if r.reason != endRunReturned || !errors.Is(r.err, boom) {
		t.Fatalf("got %v, %v", r.reason, r.err)
	}
}

func TestHoldTreatsCheckErrorWhileDisconnectedAsDisconnection(t *testing.T) {
	c := fakeCoordinator()
	started, stopped := make(chan struct{}), make(chan time.Time, 1)
	w := make(chan zk.Event, 1)
	check := func(int) (bool, endReason, <-chan zk.Event, error) { return false, 0, nil, zk.ErrConnectionClosed }
	res := startHold(c, [2]<-chan zk.Event{nil, w}, check, blockingRun(started, stopped))
	<-started
	w <- zk.Event{Type: zk.EventNodeDeleted}
	if r := <-res; r.reason != endDisconnected {
		t.Fatalf("reason = %v", r.reason)
	}
}
