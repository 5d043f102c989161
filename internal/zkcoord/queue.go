package zkcoord

import (
	"errors"
	"log/slog"
	"strings"

	"github.com/go-zookeeper/zk"
)

// Both recipes use a lock queue: a directory of ephemeral sequential nodes
// named "n_<token>_<sequence>", the lowest sequence holding the lock. Every
// lock node has its own path, so a delete can only ever remove the node it
// was meant for. (A lock at one fixed path would be unsafe here: every
// incarnation of it has version 0, and the client library may send a
// request queued during a disconnection in the next session, where a stale
// Delete(path, 0) would remove another process's lock.)

// lockNode is one node of a lock queue.
type lockNode struct {
	name string
	seq  int64
	stat *zk.Stat
	data lockData
}

func (n lockNode) lease(dir string) Lease {
	return Lease{Owner: n.data.Process, Token: n.data.Token, Fence: n.stat.Czxid, Since: zkTime(n.stat.Ctime),
		Session: n.stat.EphemeralOwner, Node: dir + "/" + n.name}
}

func lockNodeName(token string) string { return "n_" + token + "_" }

// createLockNode adds our node to the queue. A lost answer is harmless:
// the node belongs to our session and claimOwn finds it.
func (c *Coordinator) createLockNode(dir string, d lockData) (string, error) {
	path, err := c.conn.Create(dir+"/"+lockNodeName(d.Token), encodeLock(d), zk.FlagEphemeral|zk.FlagSequence,
		zk.WorldACL(zk.PermAll))
	if err != nil {
		return "", err
	}
	return path[strings.LastIndexByte(path, '/')+1:], nil
}

// readQueue lists dir's lock nodes in sequence order with their content,
// skipping nodes that vanish meanwhile, and watches dir's children.
func (c *Coordinator) readQueue(dir string) ([]lockNode, <-chan zk.Event, error) {
	children, _, w, err := c.conn.ChildrenW(dir)
	if err != nil {
		return nil, nil, err
	}
	var queue []lockNode
	for _, name := range electionOrder(children) {
		data, stat, err := c.conn.Get(dir + "/" + name)
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		seq, _ := sequenceOf(name)
		queue = append(queue, lockNode{name: name, seq: seq, stat: stat, data: decodeLock(data)})
	}
	return queue, w, nil
}

// claimOwn returns the index in queue of our node: the one of our session
// (current is the name we believe is ours, "" if none). Further nodes of
// our session, left by a create whose answer was lost or by a request the
// client sent late, are deleted so that they cannot block the queue.
func (c *Coordinator) claimOwn(dir string, queue []lockNode, session int64, current string, log *slog.Logger) (int, error) {
	mine := -1
	for i, n := range queue {
		if n.stat.EphemeralOwner == session && n.name == current {
			mine = i
		}
	}
	for i, n := range queue {
		if n.stat.EphemeralOwner != session || i == mine {
			continue
		}
		if mine < 0 {
			mine = i
			log.Info("found our lock node from an unanswered request", "node", n.name)
			continue
		}
		log.Warn("deleting a stray lock node of our session", "node", n.name)
		if err := c.conn.Delete(dir+"/"+n.name, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return mine, err
		}
	}
	return mine, nil
}

// deleteLockNode removes our node; a missing node is fine.
func (c *Coordinator) deleteLockNode(dir, name string) error {
	if name == "" {
		return nil
	}
	err := c.conn.Delete(dir+"/"+name, -1)
	if errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	return err
}

// firstIs reports whether name heads the queue in dir, watching dir's
// children.
func (c *Coordinator) firstIs(dir, name string) (bool, <-chan zk.Event, error) {
	children, _, w, err := c.conn.ChildrenW(dir)
	if err != nil {
		return false, nil, err
	}
	order := electionOrder(children)
	return len(order) > 0 && order[0] == name, w, nil
}
