package zkcoord

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
)

// electionPrefix names the ephemeral sequential nodes of an election; the
// client library adds "_c_<guid>-" in front (protected create).
const electionPrefix = "n_"

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
	ctx, done, err := c.startLoop(ctx)
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

	mine       string // our election node's name (child of dir), "" if none
	token      string
	session    int64 // session our node belongs to
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
	zc := s.c.conn
	if s.mine != "" && s.session != v.id {
		s.mine = "" // an ephemeral node of an ended session is gone
	}
	if s.mine == "" {
		if err := s.c.ensurePath(s.dir); err != nil {
			return err
		}
		s.token = newToken()
		path, err := zc.CreateProtectedEphemeralSequential(s.dir+"/"+electionPrefix,
			encodeLock(lockData{Process: s.c.cfg.ProcessID, Token: s.token, Since: time.Now().UTC()}), zk.WorldACL(zk.PermAll))
		if err != nil {
			return err
		}
		s.mine, s.session = path[strings.LastIndexByte(path, '/')+1:], v.id
		s.log.Info("joined election", "node", s.mine, "session", sessionHex(v.id))
	}
	children, _, err := zc.Children(s.dir)
	if err != nil {
		return err
	}
	order := electionOrder(children)
	idx := slices.Index(order, s.mine)
	if idx < 0 {
		s.log.Warn("our election node is gone; joining again", "node", s.mine)
		s.mine = ""
		return nil
	}
	if idx > 0 {
		pred := s.dir + "/" + order[idx-1]
		ok, _, w, err := zc.ExistsW(pred)
		if err != nil || !ok {
			return err
		}
		if state := order[0]; state != s.waitingFor {
			s.waitingFor = state
			s.log.Info("standing by", "position", idx, "leader_node", order[0], "watching", order[idx-1])
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
	data, stat, w, err := zc.GetW(s.dir + "/" + s.mine)
	if errors.Is(err, zk.ErrNoNode) {
		s.mine = ""
		return nil
	}
	if err != nil {
		return err
	}
	if stat.EphemeralOwner != v.id || decodeLock(data).Token != s.token {
		s.log.Warn("election node is not ours any more", "node", s.mine)
		s.mine = ""
		return nil
	}
	lease := Lease{Partition: -1, Singleton: s.name, Owner: s.c.cfg.ProcessID, Token: s.token,
		Fence: stat.Czxid, Since: zkTime(stat.Ctime), Session: v.id}
	reason, _ := s.c.hold(ctx, lease, v, [2]<-chan zk.Event{w, nil}, s.recheck(lease), s.run, s.log)
	switch reason {
	case endDisconnected, endShutdown:
		// After a disconnection, the same session coming back finds our
		// node still first and resumes; a new session queues up again.
		return nil
	case endLost:
		s.mine = ""
		return nil
	}
	// run returned on its own (or the check failed): step down so a
	// standby can try, then queue up again after a backoff.
	if err := s.leave(v.id); err != nil {
		return err
	}
	s.failures++
	d := min(time.Second<<min(s.failures-1, 5), 30*time.Second)
	s.log.Warn("stepped down after run returned; joining the election again", "after", d, "failures", s.failures)
	sleepCtx(ctx, d, nil)
	return nil
}

func (s *singleton) recheck(lease Lease) recheck {
	return func(int) (bool, endReason, <-chan zk.Event, error) {
		data, stat, w, err := getOrWatch(s.c.conn, s.dir+"/"+s.mine)
		if err != nil {
			return false, 0, nil, err
		}
		if stat == nil || stat.Czxid != lease.Fence || stat.EphemeralOwner != lease.Session || decodeLock(data).Token != lease.Token {
			s.log.Warn("election node is gone or not ours any more", "node", s.mine)
			return true, endLost, w, nil
		}
		return false, 0, w, nil
	}
}

// leave deletes our election node if it is still ours.
func (s *singleton) leave(session int64) error {
	if s.mine == "" {
		return nil
	}
	path := s.dir + "/" + s.mine
	_, stat, err := s.c.conn.Get(path)
	if err == nil && stat.EphemeralOwner == session {
		err = s.c.conn.Delete(path, stat.Version)
	}
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return err
	}
	s.mine = ""
	return nil
}

func (s *singleton) cleanup() {
	v := s.c.sess.view()
	if v.live && s.session == v.id {
		if err := s.leave(v.id); err != nil && !isConnErr(err) {
			s.log.Warn("leave election", "err", err)
		}
	}
	s.log.Info("left election")
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
