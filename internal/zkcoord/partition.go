package zkcoord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
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

// OwnPartitions runs OwnPartition for every partition of the assignment
// that lists this process, concurrently, with the same run function. It
// returns when ctx ends (or Close is called) and all of them have returned,
// joining their errors.
func (c *Coordinator) OwnPartitions(ctx context.Context, a Assignment, run RunFunc) error {
	parts := a.PartitionsOf(c.cfg.ProcessID)
	if len(parts) == 0 {
		return fmt.Errorf("process %q: %w in any partition of the assignment", c.cfg.ProcessID, ErrNotCandidate)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(parts))
	for i, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.OwnPartition(ctx, p, a[p], run)
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
	if partition < 0 {
		return fmt.Errorf("partition %d: must not be negative", partition)
	}
	if err := checkCandidates(candidates); err != nil {
		return fmt.Errorf("partition %d: %w", partition, err)
	}
	if c.cfg.ProcessID == "" || !slices.Contains(candidates, c.cfg.ProcessID) {
		return fmt.Errorf("partition %d, candidates %v, process %q: %w", partition, candidates, c.cfg.ProcessID, ErrNotCandidate)
	}
	ctx, done, err := c.startLoop(ctx)
	if err != nil {
		return err
	}
	defer done()
	base := c.partitionsPath() + "/" + strconv.Itoa(int(partition))
	o := &partitionOwner{
		c:          c,
		partition:  partition,
		candidates: slices.Clone(candidates),
		me:         c.cfg.ProcessID,
		run:        run,
		base:       base,
		candDir:    base + "/candidates",
		myCand:     base + "/candidates/" + c.cfg.ProcessID,
		ownerPath:  base + "/owner",
		log:        c.log.With("partition", partition),
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
	partition  int32
	candidates []string
	me         string
	run        RunFunc
	base       string
	candDir    string
	myCand     string
	ownerPath  string
	log        *slog.Logger

	setupSession int64  // session in which base nodes were ensured
	candSession  int64  // session that owns our candidate node
	token        string // token of the owner node we created or are creating
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
			if !isConnErr(err) {
				o.log.Warn("partition ownership step failed, retrying", "err", err)
			}
			sleepCtx(ctx, 250*time.Millisecond, v.changed)
		}
	}
}

// step looks at the partition once and acts: join as candidate, take the
// lock, hold it (blocking for the whole tenure) or wait for a change.
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
	data, stat, ownerW, err := getOrWatch(zc, o.ownerPath)
	if err != nil {
		return err
	}
	preferred := preferredCandidate(o.candidates, alive)
	owner := decodeLock(data)
	ours := stat != nil && stat.EphemeralOwner == v.id && o.token != "" && owner.Token == o.token

	switch {
	case ours && preferred == o.me:
		lease := Lease{Partition: o.partition, Owner: o.me, Token: o.token, Fence: stat.Czxid,
			Since: zkTime(stat.Ctime), Session: v.id}
		reason, _ := o.c.hold(ctx, lease, v, [2]<-chan zk.Event{childW, ownerW}, o.recheck(lease), o.run, o.log)
		return o.afterTenure(ctx, lease, reason)
	case ours:
		// Our lock but no longer ours to hold (a tenure ended without
		// releasing): give it to the preferred candidate.
		return o.release(v.id)
	case stat == nil && preferred == o.me:
		o.token = newToken()
		_, err := zc.Create(o.ownerPath, encodeLock(lockData{Process: o.me, Token: o.token, Since: time.Now().UTC()}),
			zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
		if errors.Is(err, zk.ErrNodeExists) {
			return nil // someone was faster; look again
		}
		return err // nil: the next step finds the node ours and holds it
	}

	state := fmt.Sprintf("owner=%q preferred=%q", owner.Process, preferred)
	if stat == nil {
		state = fmt.Sprintf("owner=none preferred=%q", preferred)
	}
	if state != o.waitingFor {
		o.waitingFor = state
		o.log.Info("waiting for partition", "owner", owner.Process, "preferred", preferred, "alive", alive)
	}
	select {
	case <-ctx.Done():
	case <-v.changed:
	case <-childW:
	case <-ownerW:
	}
	return nil
}

// setup creates the persistent partition nodes and records the configured
// candidate order.
func (o *partitionOwner) setup() error {
	if err := o.c.ensurePath(o.candDir); err != nil {
		return err
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

// recheck runs during a tenure when the candidates (0) or the owner node
// (1) changed.
func (o *partitionOwner) recheck(lease Lease) recheck {
	return func(fired int) (bool, endReason, <-chan zk.Event, error) {
		zc := o.c.conn
		if fired == 0 {
			alive, _, w, err := zc.ChildrenW(o.candDir)
			if err != nil {
				return false, 0, nil, err
			}
			if p := preferredCandidate(o.candidates, alive); p != o.me {
				o.log.Info("handing partition back", "to", p, "alive", alive)
				return true, endHandback, w, nil
			}
			return false, 0, w, nil
		}
		data, stat, w, err := getOrWatch(zc, o.ownerPath)
		if err != nil {
			return false, 0, nil, err
		}
		if stat == nil || stat.Czxid != lease.Fence || stat.EphemeralOwner != lease.Session || decodeLock(data).Token != lease.Token {
			o.log.Warn("owner node is gone or not ours any more", "fence", lease.Fence)
			return true, endLost, w, nil
		}
		return false, 0, w, nil
	}
}

// afterTenure releases the lock when that is possible and right. After a
// disconnection it keeps it: if the same session comes back, the next step
// finds the owner node still ours (same token) and resumes.
func (o *partitionOwner) afterTenure(ctx context.Context, lease Lease, reason endReason) error {
	switch reason {
	case endDisconnected:
		return nil
	case endLost:
		o.token = ""
		return nil
	case endRunReturned:
		// Keep the lock (no other candidate may take it while we are
		// the preferred live one) and call run again after a backoff.
		o.failures++
		d := min(time.Second<<min(o.failures-1, 5), 30*time.Second)
		o.log.Warn("run returned while owning the partition; calling it again", "after", d, "failures", o.failures)
		v := o.c.sess.view()
		sleepCtx(ctx, d, v.changed)
		return nil
	case endShutdown:
		return nil // cleanup releases
	}
	o.failures = 0
	return o.release(lease.Session)
}

// release deletes our owner node if it is still ours.
func (o *partitionOwner) release(session int64) error {
	if o.token == "" {
		return nil
	}
	data, stat, err := o.c.conn.Get(o.ownerPath)
	if errors.Is(err, zk.ErrNoNode) {
		o.token = ""
		return nil
	}
	if err != nil {
		return err
	}
	if stat.EphemeralOwner != session || decodeLock(data).Token != o.token {
		o.token = ""
		return nil
	}
	if err := o.c.conn.Delete(o.ownerPath, stat.Version); err != nil && !errors.Is(err, zk.ErrNoNode) {
		return err
	}
	o.log.Info("released partition", "token", o.token, "fence", stat.Czxid)
	o.token = ""
	return nil
}

// cleanup leaves the partition when the loop ends: the owner lock first,
// then the candidate node. Without a connection there is nothing to do:
// the session's end removes both.
func (o *partitionOwner) cleanup() {
	v := o.c.sess.view()
	if !v.live {
		return
	}
	if err := o.release(v.id); err != nil && !isConnErr(err) {
		o.log.Warn("release partition", "err", err)
	}
	if o.candSession == v.id {
		if err := o.c.conn.Delete(o.myCand, -1); err != nil && !errors.Is(err, zk.ErrNoNode) && !isConnErr(err) {
			o.log.Warn("leave candidates", "err", err)
		}
	}
	o.log.Info("left partition")
}

// getOrWatch reads a node and watches it; for a missing node it returns a
// nil stat and a watch for its creation.
func getOrWatch(zc *zk.Conn, path string) ([]byte, *zk.Stat, <-chan zk.Event, error) {
	for {
		data, stat, w, err := zc.GetW(path)
		if err == nil {
			return data, stat, w, nil
		}
		if !errors.Is(err, zk.ErrNoNode) {
			return nil, nil, nil, err
		}
		ok, _, w, err := zc.ExistsW(path)
		if err != nil {
			return nil, nil, nil, err
		}
		if !ok {
			return nil, nil, w, nil
		}
		// created in between: read it
	}
}
