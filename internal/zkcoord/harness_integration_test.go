//go:build integration

package zkcoord

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// endpointsEnv names the endpoints file of the running stack (written by
// internal/devstack); only its "zookeeper" field is read here.
const endpointsEnv = "CLOUDSERVERS_ENDPOINTS"

func zkAddr(t testing.TB) string {
	t.Helper()
	path := os.Getenv(endpointsEnv)
	if path == "" {
		t.Fatalf("%s is not set: these integration tests need a running ZooKeeper. Start the dev stack "+
			"(`cloudservers stack -endpoints-file F`) and export %s=F, or write {\"zookeeper\":\"127.0.0.1:PORT\"} to a file and point %s at it",
			endpointsEnv, endpointsEnv, endpointsEnv)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v", endpointsEnv, err)
	}
	var e struct {
		ZooKeeper string `json:"zookeeper"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("%s=%s: %v", endpointsEnv, path, err)
	}
	if e.ZooKeeper == "" {
		t.Fatalf("%s=%s has no \"zookeeper\" address", endpointsEnv, path)
	}
	return e.ZooKeeper
}

// testChroot is a fresh chroot per test, so tests never see each other's nodes.
func testChroot(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	return fmt.Sprintf("/zkcoord-test/%s-%s", name, hex.EncodeToString(b[:]))
}

// testLog is an slog.Logger writing to the test log until the test's
// cleanup; the ZooKeeper client may log from its own goroutines a moment
// after a coordinator closed.
type testLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
	buf  bytes.Buffer // everything, for assertions on log lines
}

func newTestLog(t testing.TB) *testLog {
	l := &testLog{t: t}
	t.Cleanup(func() {
		l.mu.Lock()
		l.done = true
		l.mu.Unlock()
	})
	return l
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if !l.done {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (l *testLog) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(l.buf.String(), s)
}

func (l *testLog) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func connectT(t testing.TB, log *testLog, server, chroot, process string, timeout time.Duration) *Coordinator {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Connect(ctx, Config{Servers: []string{server}, Chroot: chroot, SessionTimeout: timeout,
		ProcessID: process, Logger: log.logger()})
	if err != nil {
		t.Fatalf("connect %s: %v", process, err)
	}
	t.Cleanup(func() { c.Close() })
	if got := c.SessionTimeout(); got != timeout {
		t.Fatalf("the server negotiated a %v session instead of %v: its minSessionTimeout/maxSessionTimeout do not allow the test's timeouts", got, timeout)
	}
	return c
}

// event is one start or stop of a run function.
type event struct {
	seq   int
	at    time.Time
	proc  string
	start bool
	lease Lease
}

// recorder records run starts and stops across processes and watches that
// at most one run holds each lock at a time.
type recorder struct {
	t       testing.TB
	mu      sync.Mutex
	events  []event
	running map[string]string // lock -> process running it
	overlap []string
	changed chan struct{}
}

func newRecorder(t testing.TB) *recorder {
	return &recorder{t: t, running: map[string]string{}, changed: make(chan struct{})}
}

func lockName(l Lease) string {
	if l.Singleton != "" {
		return "singleton " + l.Singleton
	}
	if l.Topic != "" {
		return fmt.Sprintf("route %s/%d", l.Topic, l.Partition)
	}
	return fmt.Sprintf("partition %d", l.Partition)
}

func (r *recorder) add(proc string, start bool, lease Lease) {
	r.mu.Lock()
	defer r.mu.Unlock()
	lock := lockName(lease)
	if start {
		if other, ok := r.running[lock]; ok {
			r.overlap = append(r.overlap, fmt.Sprintf("%s started %s while %s was running it", proc, lock, other))
		}
		r.running[lock] = proc
	} else if r.running[lock] == proc {
		delete(r.running, lock)
	}
	r.events = append(r.events, event{seq: len(r.events), at: time.Now(), proc: proc, start: start, lease: lease})
	close(r.changed)
	r.changed = make(chan struct{})
}

// run is a RunFunc that records its start and stop and returns when its
// context is cancelled, like a consumer stopping at a message boundary.
func (r *recorder) run(proc string) RunFunc {
	return func(ctx context.Context, lease Lease) error {
		if lease.Owner != proc {
			r.t.Errorf("%s got a lease owned by %q", proc, lease.Owner)
		}
		r.add(proc, true, lease)
		<-ctx.Done()
		time.Sleep(10 * time.Millisecond) // finish the message in hand, commit
		r.add(proc, false, lease)
		return nil
	}
}

// waitFor waits until the n-th (1-based) start or stop event of proc,
// returning it.
func (r *recorder) waitFor(proc string, start bool, n int, timeout time.Duration) (event, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		seen := 0
		for _, e := range r.events {
			if e.proc == proc && e.start == start {
				if seen++; seen == n {
					r.mu.Unlock()
					return e, true
				}
			}
		}
		ch := r.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			return event{}, false
		}
	}
}

func (r *recorder) mustWait(proc string, start bool, n int, timeout time.Duration) event {
	r.t.Helper()
	e, ok := r.waitFor(proc, start, n, timeout)
	if !ok {
		what := "stop"
		if start {
			what = "start"
		}
		r.t.Fatalf("%s did not %s its run (#%d) within %v; events: %s", proc, what, n, timeout, r.dump())
	}
	return e
}

func (r *recorder) count(proc string, start bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.proc == proc && e.start == start {
			n++
		}
	}
	return n
}

func (r *recorder) overlaps() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.overlap...)
}

// current is the process running lock now ("" if none).
func (r *recorder) current(lock string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running[lock]
}

func (r *recorder) dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, e := range r.events {
		what := "stop "
		if e.start {
			what = "start"
		}
		fmt.Fprintf(&b, "\n  #%d %s %s %s %s fence=%d", e.seq, e.at.Format("15:04:05.000"), e.proc, what, lockName(e.lease), e.lease.Fence)
	}
	return b.String()
}

// background runs f in a goroutine owned by the test: the returned stop
// cancels its context and waits for it.
func background(t testing.TB, f func(ctx context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, ErrClosed) {
					t.Errorf("loop returned %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("loop did not return 30s after its context was cancelled")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
