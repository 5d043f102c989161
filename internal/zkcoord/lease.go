package zkcoord

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-zookeeper/zk"
)

// Lease describes one tenure of a lock: a partition's owner node or a
// singleton's leader node.
type Lease struct {
	// Partition is the Kafka partition (partition leases only; -1 for a
	// singleton).
	Partition int32 `json:"partition"`
	// Topic is the notification topic of a Routes partition lease ("" for
	// a request partition and a singleton).
	Topic string `json:"topic,omitempty"`
	// Singleton is the singleton's name (singleton leases only).
	Singleton string `json:"singleton,omitempty"`
	// Owner is the process ID holding the lock.
	Owner string `json:"owner"`
	// Token is the GUID written into the lock znode. The owner re-checks it
	// before resuming after a reconnect.
	Token string `json:"token"`
	// Fence is the lock znode's czxid: the zxid of the transaction that
	// created it. It grows with every new lock holder, so a downstream
	// system that remembers the highest fence it has seen can reject a
	// zombie owner's late writes.
	Fence int64 `json:"fence"`
	// Since is when the lock znode was created (its ctime).
	Since time.Time `json:"since"`
	// Session is the ZooKeeper session the lock znode belongs to.
	Session int64 `json:"session"`
	// Node is the lock znode's path.
	Node string `json:"node"`
}

// logAttrs are the lease's log attributes; the logger it goes to already
// names the partition or singleton.
func (l Lease) logAttrs() []any {
	return []any{"owner", l.Owner, "token", l.Token, "fence", l.Fence, "session", sessionHex(l.Session)}
}

// RunFunc is the work done while holding a lease. It must return promptly
// once ctx is cancelled; the lock is released only after it has returned.
type RunFunc func(ctx context.Context, lease Lease) error

// lockData is the JSON body of owner, candidate and singleton znodes.
type lockData struct {
	Process string    `json:"process"`
	Token   string    `json:"token,omitempty"`
	Since   time.Time `json:"since"`
}

func encodeLock(d lockData) []byte {
	b, _ := json.Marshal(d)
	return b
}

func decodeLock(b []byte) lockData {
	var d lockData
	_ = json.Unmarshal(b, &d) // a foreign or empty node decodes to the zero value and is never "ours"
	return d
}

// newToken returns a random (version 4) UUID.
func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// endReason says why a tenure ended.
type endReason int

const (
	endShutdown     endReason = iota // the loop's ctx ended
	endDisconnected                  // StateDisconnected/Expired: we may no longer hold the lock
	endLost                          // the lock znode is gone or not ours any more
	endHandback                      // a higher-priority candidate is alive
	endRunReturned                   // run returned on its own
	endCheckFailed                   // re-reading the lock failed while connected
)

func (r endReason) String() string {
	switch r {
	case endShutdown:
		return "shutdown"
	case endDisconnected:
		return "disconnected"
	case endLost:
		return "lock lost"
	case endHandback:
		return "handback"
	case endRunReturned:
		return "run returned"
	case endCheckFailed:
		return "lock check failed"
	}
	return "unknown"
}

// recheck is called during a tenure when watch fired. It re-reads the lock
// state and either ends the tenure (reason) or returns the next watch.
type recheck func(fired int) (end bool, reason endReason, next <-chan zk.Event, err error)

// hold runs run for one tenure and returns only after run has returned. It
// cancels run's context at once on StateDisconnected/Expired (or any session
// change), when a watch says the lock is lost or must be handed back, and
// when ctx ends.
func (c *Coordinator) hold(ctx context.Context, lease Lease, sess sessionView, watches [2]<-chan zk.Event,
	check recheck, run RunFunc, log *slog.Logger) (endReason, error) {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	started := time.Now()
	log.Info("lease acquired, starting run", lease.logAttrs()...)
	go func() { done <- run(runCtx, lease) }()

	reason := endShutdown
	var runErr error
	returned := false
loop:
	for {
		select {
		case <-ctx.Done():
			reason = endShutdown
			break loop
		case <-sess.changed:
			v := c.sess.view()
			if v.live && v.id == lease.Session {
				sess = v
				continue
			}
			reason = endDisconnected
			break loop
		case err := <-done:
			reason, runErr, returned = endRunReturned, err, true
			break loop
		case _, ok := <-watches[0]:
			if !ok {
				watches[0] = nil
			}
			end, why, next, err := check(0)
			if err != nil {
				reason = c.checkFailure(err)
				break loop
			}
			watches[0] = next
			if end {
				reason = why
				break loop
			}
		case _, ok := <-watches[1]:
			if !ok {
				watches[1] = nil
			}
			end, why, next, err := check(1)
			if err != nil {
				reason = c.checkFailure(err)
				break loop
			}
			watches[1] = next
			if end {
				reason = why
				break loop
			}
		}
	}
	cancelled := time.Now()
	if !returned {
		cancel()
		log.Info("cancelling run", append(lease.logAttrs(), "reason", reason.String())...)
		runErr = waitRun(done, log, lease)
		log.Info("run stopped", append(lease.logAttrs(), "reason", reason.String(),
			"stop_latency", time.Since(cancelled).Round(time.Millisecond), "held_for", time.Since(started).Round(time.Millisecond))...)
	}
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		log.Error("run failed", append(lease.logAttrs(), "err", runErr)...)
	}
	return reason, runErr
}

// checkFailure classifies an error from re-reading the lock: a connection
// problem is a disconnection (the session event follows), anything else
// ends the tenure to be safe.
func (c *Coordinator) checkFailure(err error) endReason {
	if !c.sess.view().live || errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrSessionExpired) ||
		errors.Is(err, zk.ErrNoServer) || errors.Is(err, zk.ErrClosing) {
		return endDisconnected
	}
	c.log.Warn("re-reading the lock failed", "err", err)
	return endCheckFailed
}

// waitRun waits for run to return after its context was cancelled, warning
// while it takes longer than it should: until it returns, this process may
// still act as owner while the lock is (or will be) someone else's.
func waitRun(done <-chan error, log *slog.Logger, lease Lease) error {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	start := time.Now()
	for {
		select {
		case err := <-done:
			return err
		case <-t.C:
			log.Warn("run has not returned after its context was cancelled",
				append(lease.logAttrs(), "waiting", time.Since(start).Round(time.Second))...)
		}
	}
}

// sleepCtx waits d or until ctx ends or wake closes; false when ctx ended.
func sleepCtx(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-wake:
		return true
	case <-t.C:
		return true
	}
}

// isConnErr reports errors caused by the connection or session going away,
// which the loops retry silently after the session event.
func isConnErr(err error) bool {
	return errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrSessionExpired) ||
		errors.Is(err, zk.ErrNoServer) || errors.Is(err, zk.ErrClosing) || errors.Is(err, zk.ErrSessionMoved)
}

// zkTime converts a znode's ctime (ms since the epoch).
func zkTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
