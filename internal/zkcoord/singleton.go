package zkcoord

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
)

// RunSingleton takes part in the leader election of the single-instance
// service name until ctx ends or Close is called. Every process calls it;
// exactly one at a time runs run (ZooKeeper's leader election recipe:
// ephemeral sequential nodes, the lowest sequence leads, each standby
// watches only its predecessor). If run returns on its own, this process
// steps down (a standby takes over), waits a backoff, and queues up again.
// It returns nil when ctx ended, ErrClosed after Close.
func (c *Coordinator) RunSingleton(ctx context.Context, name string, run RunFunc) error {
	if err := checkNodeName(name); err != nil {
		return fmt.Errorf("singleton %q: %w", name, err)
	}
	if c.cfg.ProcessID == "" {
		return fmt.Errorf("singleton %q: a process ID is required", name)
	}
	if run == nil {
		return fmt.Errorf("singleton %q: no run function", name)
	}
	ctx, done, err := c.startLoop(ctx, "singleton "+name)
	if err != nil {
		return err
	}
	defer done()
	s := &singleton{
		c:    c,
		name: name,
		dir:  c.singletonsPath() + "/" + name,
		run:  run,
		log:  c.log.With("singleton", name),
	}
	s.loop(ctx)
	return c.loopEnd()
}

type singleton struct {
	c    *Coordinator
	name string
	dir  string
	run  RunFunc
	log  *slog.Logger

	mine       string // our node's name in dir, "" if none
	failures   int
	waitingFor string
}

func (s *singleton) loop(ctx context.Context) {
	defer s.cleanup()
	for ctx.Err() == nil {
		v := s.c.sess.view()
		if !v.live {
			select {
			case <-ctx.Done():
			case <-v.changed:
			}
			continue
		}
		if err := s.step(ctx, v); err != nil && ctx.Err() == nil {
			if !isConnErr(err) {
				s.log.Warn("leader election step failed, retrying", "err", err)
			}
			sleepCtx(ctx, 250*time.Millisecond, v.changed)
		}
	}
}

func (s *singleton) step(ctx context.Context, v sessionView) error {
	if err := s.c.ensurePath(s.dir); err != nil {
		return err
	}
	queue, _, err := s.c.readQueue(s.dir)
	if err != nil {
		return err
	}
	idx, err := s.c.claimOwn(s.dir, queue, v.id, s.mine, s.log)
	if err != nil {
		return err
	}
	if idx < 0 {
		name, err := s.c.createLockNode(s.dir, lockData{Process: s.c.cfg.ProcessID, Token: newToken(), Since: time.Now().UTC()})
		if err != nil {
			return err
		}
		s.mine = name
		s.log.Info("joined the election", "node", name, "session", sessionHex(v.id))
		return nil
	}
	s.mine = queue[idx].name
	if idx > 0 {
		// Watch only the predecessor: when it goes, look again.
		pred := queue[idx-1]
		ok, _, w, err := s.c.conn.ExistsW(s.dir + "/" + pred.name)
		if err != nil || !ok {
			return err
		}
		if state := queue[0].name; state != s.waitingFor {
			s.waitingFor = state
			s.log.Info("standing by", "position", idx, "leader", queue[0].data.Process, "watching", pred.data.Process)
		}
		select {
		case <-ctx.Done():
		case <-v.changed:
		case <-w:
		}
		return nil
	}

	// Leader: our node has the lowest sequence number.
	s.waitingFor = ""
	ok, _, w, err := s.c.conn.ExistsW(s.dir + "/" + s.mine)
	if err != nil || !ok {
		return err
	}
	lease := queue[0].lease(s.dir)
	lease.Partition, lease.Singleton = -1, s.name
	reason, _ := s.c.hold(ctx, lease, v, [2]<-chan zk.Event{w, nil}, s.recheck(lease), s.run, s.log)
	switch reason {
	case endDisconnected, endShutdown, endLost:
		// After a disconnection, the same session coming back finds our
		// node still first and resumes; a new session queues up again.
		return nil
	}
	// run returned on its own (or the check failed): step down so that a
	// standby can try, then queue up again after a backoff.
	if err := s.c.deleteLockNode(s.dir, s.mine); err != nil {
		return err
	}
	s.mine = ""
	s.failures++
	d := min(time.Second<<min(s.failures-1, 5), 30*time.Second)
	s.log.Warn("stepped down after run returned; joining the election again", "after", d, "failures", s.failures)
	sleepCtx(ctx, d, nil)
	return nil
}

func (s *singleton) recheck(lease Lease) recheck {
	return func(int) (bool, endReason, <-chan zk.Event, error) {
		ok, _, w, err := s.c.conn.ExistsW(lease.Node)
		if err != nil {
			return false, 0, nil, err
		}
		if !ok {
			s.log.Warn("our election node is gone", "node", lease.Node)
			return true, endLost, w, nil
		}
		return false, 0, w, nil
	}
}

func (s *singleton) cleanup() {
	if v := s.c.sess.view(); v.live {
		if err := s.c.deleteLockNode(s.dir, s.mine); err != nil && !isConnErr(err) {
			s.log.Warn("leave election", "err", err)
		}
	}
	s.log.Info("left the election")
}

// electionOrder sorts election node names by their sequence number (the
// last 10 digits), ignoring names that carry none.
func electionOrder(children []string) []string {
	type node struct {
		name string
		seq  int64
	}
	nodes := make([]node, 0, len(children))
	for _, ch := range children {
		if seq, ok := sequenceOf(ch); ok {
			nodes = append(nodes, node{ch, seq})
		}
	}
	slices.SortFunc(nodes, func(a, b node) int {
		return cmp.Or(cmp.Compare(a.seq, b.seq), strings.Compare(a.name, b.name))
	})
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.name
	}
	return out
}

// sequenceOf parses the 10-digit sequence suffix ZooKeeper appends to
// sequential nodes.
func sequenceOf(name string) (int64, bool) {
	if len(name) < 10 {
		return 0, false
	}
	seq, err := strconv.ParseInt(name[len(name)-10:], 10, 64)
	if err != nil || seq < 0 {
		return 0, false
	}
	return seq, true
}
