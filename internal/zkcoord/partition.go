package zkcoord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// ErrNotCandidate is returned by OwnPartition when this process is not in
// the partition's candidate list.
var ErrNotCandidate = errors.New("this process is not a candidate for the partition")

// partitionData is the JSON body of the persistent /partitions/<p> node: the
// configured candidate order, so that Status can show it.
type partitionData struct {
	Candidates []string `json:"candidates"`
}

// preferredCandidate is the first candidate, in configured order, that is
// alive; "" when none is.
func preferredCandidate(candidates, alive []string) string {
	for _, c := range candidates {
		if slices.Contains(alive, c) {
			return c
		}
	}
	return ""
}

// Resource names a set of partitions whose ownership is coordinated
// separately from the others: the requests topic's (Requests, the zero
// value, under <chroot>/partitions, the layout running systems and the
// status command read) or a notification topic's (Routes(topic), under
// <chroot>/routes/<topic>). A process may own partition 3 of several
// resources at once; each has its own candidates, lock and fences.
type Resource string

// Requests is the resource of the requests topic's partitions.
const Requests Resource = ""

// routesDir is the node under the chroot that holds the Routes resources.
const routesDir = "routes"

// Routes is the resource of a notification topic's partitions, routed by
// the notification router. topic must be a valid znode name (every Kafka
// topic name is).
func Routes(topic string) Resource { return Resource(routesDir + "/" + topic) }

// Topic is the notification topic of a Routes resource ("" for Requests).
func (r Resource) Topic() string {
	t, _ := strings.CutPrefix(string(r), routesDir+"/")
	return t
}

func (r Resource) check() error {
	if r == Requests {
		return nil
	}
	t, ok := strings.CutPrefix(string(r), routesDir+"/")
	if !ok {
		return fmt.Errorf("resource %q: want Requests or Routes(topic)", string(r))
	}
	if err := checkNodeName(t); err != nil {
		return fmt.Errorf("resource %q: topic %q: %w", string(r), t, err)
	}
	return nil
}

// String names the resource in logs and errors.
func (r Resource) String() string {
	if r == Requests {
		return "requests"
	}
	return string(r)
}

// OwnPartitions runs OwnPartition for every partition of the assignment
// that lists this process, concurrently, with the same run function. It
// returns when ctx ends (or Close is called) and all of them have returned,
// joining their errors.
func (c *Coordinator) OwnPartitions(ctx context.Context, a Assignment, run RunFunc) error {
	return c.OwnResourcePartitions(ctx, Requests, a, run)
}

// OwnResourcePartitions is OwnPartitions for the partitions of resource.
func (c *Coordinator) OwnResourcePartitions(ctx context.Context, resource Resource, a Assignment, run RunFunc) error {
	parts := a.PartitionsOf(c.cfg.ProcessID)
	if len(parts) == 0 {
		return fmt.Errorf("process %q: %w in any partition of the assignment of %s", c.cfg.ProcessID, ErrNotCandidate, resource)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(parts))
	for i, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.OwnResourcePartition(ctx, resource, p, a[p], run)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// OwnPartition takes part in the ownership of one partition until ctx ends
// or Close is called. candidates is the ordered list [primary, partner, ...];
// it must contain this process. Whenever this process is the first live
// candidate and has the owner lock, run is called with a context that is
// cancelled when ownership must be given up. See the package documentation
// for the exact rules. It returns nil when ctx ended, ErrClosed after Close.
func (c *Coordinator) OwnPartition(ctx context.Context, partition int32, candidates []string, run RunFunc) error {
	return c.OwnResourcePartition(ctx, Requests, partition, candidates, run)
}

// OwnResourcePartition is OwnPartition for a partition of resource; the
// leases it hands to run carry the resource.
func (c *Coordinator) OwnResourcePartition(ctx context.Context, resource Resource, partition int32, candidates []string, run RunFunc) error {
	if err := resource.check(); err != nil {
		return err
	}
	if partition < 0 {
		return fmt.Errorf("partition %d: must not be negative", partition)
	}
	if run == nil {
		return fmt.Errorf("partition %d: no run function", partition)
	}
	if err := checkCandidates(candidates); err != nil {
		return fmt.Errorf("partition %d: %w", partition, err)
	}
	if c.cfg.ProcessID == "" || !slices.Contains(candidates, c.cfg.ProcessID) {
		return fmt.Errorf("partition %d, candidates %v, process %q: %w", partition, candidates, c.cfg.ProcessID, ErrNotCandidate)
	}
	key := fmt.Sprintf("partition %d", partition)
	log := c.log.With("partition", partition)
	if resource != Requests {
		key = fmt.Sprintf("%s partition %d", resource, partition)
		log = c.log.With("topic", resource.Topic(), "partition", partition)
	}
	ctx, done, err := c.startLoop(ctx, key)
	if err != nil {
		return err
	}
	defer done()
	base := c.resourcePath(resource) + "/" + strconv.Itoa(int(partition))
	o := &partitionOwner{
		c:          c,
		resource:   resource,
		partition:  partition,
		candidates: slices.Clone(candidates),
		me:         c.cfg.ProcessID,
		run:        run,
		base:       base,
		candDir:    base + "/candidates",
		myCand:     base + "/candidates/" + c.cfg.ProcessID,
		lockDir:    base + "/lock",
		log:        log,
	}
	o.loop(ctx)
	return c.loopEnd()
}

func checkCandidates(candidates []string) error {
	if len(candidates) == 0 {
		return errors.New("no candidates")
	}
	for i, cand := range candidates {
		if err := checkNodeName(cand); err != nil {
			return fmt.Errorf("candidate %q: %w", cand, err)
		}
		if slices.Contains(candidates[:i], cand) {
			return fmt.Errorf("candidate %q listed twice", cand)
		}
	}
	return nil
}

type partitionOwner struct {
	c          *Coordinator
	resource   Resource
	partition  int32
	candidates []string
	me         string
	run        RunFunc
	base       string
	candDir    string
	myCand     string
	lockDir    string
	log        *slog.Logger

	setupSession int64  // session in which the persistent nodes were ensured
	candSession  int64  // session that owns our candidate node
	lockNode     string // name of our node in lockDir, "" if none
	failures     int    // consecutive run failures, for backoff
	waitingFor   string // last "waiting" state logged, to log changes only
}

func (o *partitionOwner) loop(ctx context.Context) {
	defer o.cleanup()
	for ctx.Err() == nil {
		v := o.c.sess.view()
		if !v.live {
			select {
			case <-ctx.Done():
			case <-v.changed:
			}
			continue
		}
		if err := o.step(ctx, v); err != nil && ctx.Err() == nil {
			if errors.Is(err, zk.ErrNoNode) {
				o.setupSession = 0 // someone removed our persistent nodes
			}
			if !isConnErr(err) {
				o.log.Warn("partition ownership step failed, retrying", "err", err)
			}
			sleepCtx(ctx, 250*time.Millisecond, v.changed)
		}
	}
}

// step looks at the partition once and acts: join the candidates, queue
// for the lock, hold it (blocking for the whole tenure), give it up, or
// wait for a change.
func (o *partitionOwner) step(ctx context.Context, v sessionView) error {
	zc := o.c.conn
	if o.setupSession != v.id {
		if err := o.setup(); err != nil {
			return err
		}
		o.setupSession = v.id
	}
	alive, _, childW, err := zc.ChildrenW(o.candDir)
	if err != nil {
		return err
	}
	if o.candSession != v.id || !slices.Contains(alive, o.me) {
		return o.joinCandidates(ctx, v)
	}
	queue, lockW, err := o.c.readQueue(o.lockDir)
	if err != nil {
		return err
	}
	mine, err := o.c.claimOwn(o.lockDir, queue, v.id, o.lockNode, o.log)
	if err != nil {
		return err
	}
	o.lockNode = ""
	if mine >= 0 {
		o.lockNode = queue[mine].name
	}
	preferred := preferredCandidate(o.candidates, alive)

	switch {
	case mine >= 0 && preferred != o.me:
		// Not (or no longer) ours to hold: leave the queue.
		return o.release()
	case mine == 0:
		lease := queue[0].lease(o.lockDir)
		lease.Partition, lease.Topic = o.partition, o.resource.Topic()
		o.waitingFor = ""
		reason, _ := o.c.hold(ctx, lease, v, [2]<-chan zk.Event{childW, lockW}, o.recheck(lease), o.run, o.log)
		return o.afterTenure(ctx, reason)
	case mine < 0 && preferred == o.me:
		name, err := o.c.createLockNode(o.lockDir, lockData{Process: o.me, Token: newToken(), Since: time.Now().UTC()})
		if err != nil {
			return err
		}
		o.lockNode = name
		return nil // the next step holds the lock or waits behind the owner
	}

	owner := "none"
	if len(queue) > 0 {
		owner = queue[0].data.Process
	}
	if state := owner + "/" + preferred; state != o.waitingFor {
		o.waitingFor = state
		if mine > 0 {
			o.log.Info("waiting for the owner to hand the partition back", "owner", owner, "alive", alive)
		} else {
			o.log.Info("standing by", "owner", owner, "preferred", preferred, "alive", alive)
		}
	}
	select {
	case <-ctx.Done():
	case <-v.changed:
	case <-childW:
	case <-lockW:
	}
	return nil
}

// setup creates the persistent partition nodes and records the configured
// candidate order.
func (o *partitionOwner) setup() error {
	for _, p := range []string{o.candDir, o.lockDir} {
		if err := o.c.ensurePath(p); err != nil {
			return err
		}
	}
	want, _ := json.Marshal(partitionData{Candidates: o.candidates})
	data, stat, err := o.c.conn.Get(o.base)
	if err != nil {
		return err
	}
	var have partitionData
	_ = json.Unmarshal(data, &have)
	if slices.Equal(have.Candidates, o.candidates) {
		return nil
	}
	if len(have.Candidates) > 0 {
		o.log.Warn("candidate order in zookeeper differs from this process's configuration; writing ours",
			"zookeeper", have.Candidates, "configured", o.candidates)
	}
	_, err = o.c.conn.Set(o.base, want, stat.Version)
	if errors.Is(err, zk.ErrBadVersion) {
		return nil // another candidate wrote it just now
	}
	return err
}

// joinCandidates creates our ephemeral candidate node. A node left by an
// earlier session of this process ID (a restart before the old session
// expired) is waited out: that session may still be a zombie owner.
func (o *partitionOwner) joinCandidates(ctx context.Context, v sessionView) error {
	zc := o.c.conn
	_, err := zc.Create(o.myCand, encodeLock(lockData{Process: o.me, Since: time.Now().UTC()}),
		zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
	if err == nil {
		o.candSession = v.id
		o.log.Info("joined as candidate", "candidates", o.candidates, "session", sessionHex(v.id))
		return nil
	}
	if !errors.Is(err, zk.ErrNodeExists) {
		return err
	}
	ok, stat, w, err := zc.ExistsW(o.myCand)
	if err != nil || !ok {
		return err
	}
	if stat.EphemeralOwner == v.id {
		o.candSession = v.id
		return nil
	}
	o.log.Warn("candidate node of an earlier session of this process still exists; waiting for it to expire",
		"stale_session", sessionHex(stat.EphemeralOwner), "session", sessionHex(v.id))
	select {
	case <-ctx.Done():
	case <-v.changed:
	case <-w:
	}
	return nil
}

// recheck runs during a tenure when the candidates (0) or the lock queue
// (1) changed.
func (o *partitionOwner) recheck(lease Lease) recheck {
	return func(fired int) (bool, endReason, <-chan zk.Event, error) {
		if fired == 0 {
			alive, _, w, err := o.c.conn.ChildrenW(o.candDir)
			if err != nil {
				return false, 0, nil, err
			}
			if p := preferredCandidate(o.candidates, alive); p != o.me {
				o.log.Info("handing the partition back", "to", p, "alive", alive)
				return true, endHandback, w, nil
			}
			return false, 0, w, nil
		}
		first, w, err := o.c.firstIs(o.lockDir, o.lockNode)
		if err != nil {
			return false, 0, nil, err
		}
		if !first {
			o.log.Warn("our lock node is gone or no longer first", "node", lease.Node, "fence", lease.Fence)
			return true, endLost, w, nil
		}
		return false, 0, w, nil
	}
}

// afterTenure releases the lock when that is possible and right. After a
// disconnection it keeps it: if the same session comes back, the next step
// finds our lock node still first and resumes with the same lease.
func (o *partitionOwner) afterTenure(ctx context.Context, reason endReason) error {
	switch reason {
	case endDisconnected, endLost:
		return nil
	case endRunReturned:
		// Keep the lock (no other candidate may take it while we are
		// the preferred live one) and call run again after a backoff.
		o.failures++
		d := min(time.Second<<min(o.failures-1, 5), 30*time.Second)
		o.log.Warn("run returned while owning the partition; calling it again", "after", d, "failures", o.failures)
		sleepCtx(ctx, d, o.c.sess.view().changed)
		return nil
	case endShutdown:
		return nil // cleanup releases
	}
	o.failures = 0
	return o.release()
}

// release deletes our lock node, letting the next in the queue own the
// partition.
func (o *partitionOwner) release() error {
	if o.lockNode == "" {
		return nil
	}
	if err := o.c.deleteLockNode(o.lockDir, o.lockNode); err != nil {
		return err
	}
	o.log.Info("released partition", "node", o.lockNode)
	o.lockNode = ""
	return nil
}

// cleanup leaves the partition when the loop ends: the lock first, then
// the candidate node. Without a connection there is nothing to do: the
// session's end removes both.
func (o *partitionOwner) cleanup() {
	v := o.c.sess.view()
	if !v.live {
		return
	}
	if err := o.release(); err != nil && !isConnErr(err) {
		o.log.Warn("release partition", "err", err)
	}
	if o.candSession == v.id {
		if err := o.c.conn.Delete(o.myCand, -1); err != nil && !errors.Is(err, zk.ErrNoNode) && !isConnErr(err) {
			o.log.Warn("leave candidates", "err", err)
		}
	}
	o.log.Info("left partition")
}
