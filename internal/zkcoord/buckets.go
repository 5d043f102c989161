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
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/cloudservers/cloudservers"
)

// The bucket map lives at <chroot>/buckets/map: which partition of the
// requests topic each of the customers' buckets goes to, the topic's
// partition count, and the move in progress, if any. API replicas route
// by it and acknowledge every version they have installed under
// <chroot>/buckets/replicas/<replica> (ephemeral); the admin commands that
// move buckets hold <chroot>/buckets/lock (ephemeral) while they run. See
// docs/scale-out.md for the protocol.
const (
	bucketsDir      = "buckets"
	bucketMapNode   = "map"
	bucketReplicas  = "replicas"
	bucketMoveLock  = "lock"
	maxBucketMapLen = 64 << 10
)

// ErrNoBucketMap is returned when the bucket map znode does not exist: the
// system was not set up (EnsureBucketMap writes it).
var ErrNoBucketMap = errors.New("no bucket map in zookeeper (run the setup, which writes it)")

// CorruptBucketMapError reports a bucket map znode that does not hold a
// valid map. Nobody routes by such a map: mutations are refused until an
// operator repairs it.
type CorruptBucketMapError struct {
	Path   string
	Reason string
}

func (e *CorruptBucketMapError) Error() string {
	return fmt.Sprintf("bucket map %s is corrupted: %s; mutations are refused until it is repaired", e.Path, e.Reason)
}

// BucketMap is the content of the bucket map znode.
type BucketMap struct {
	// Version grows by one with every write; each request carries the
	// version it was routed with.
	Version int64 `json:"version"`
	// Partitions is the requests topic's partition count, as far as
	// routing is concerned: buckets map onto 0..Partitions-1.
	Partitions int32 `json:"partitions"`
	// Buckets[b] is the partition of bucket b.
	Buckets []int32 `json:"buckets"`
	// Move is the move in progress: its buckets are frozen (no replica
	// publishes a mutation of theirs) until the move flips them to its
	// partition or is rolled back.
	Move *BucketMove `json:"move,omitempty"`

	zkVersion int32 // the znode's version, for compare-and-set writes
}

// BucketMove is a move in progress.
type BucketMove struct {
	Buckets []int     `json:"buckets"`
	From    []int32   `json:"from"` // From[i] is Buckets[i]'s partition before the move
	To      int32     `json:"to"`
	Since   time.Time `json:"since"`
	By      string    `json:"by"` // who started it (host and process)
}

// Frozen reports whether bucket b is being moved.
func (m BucketMap) Frozen(b int) bool {
	return m.Move != nil && slices.Contains(m.Move.Buckets, b)
}

// FrozenBuckets lists the buckets being moved (none without a move).
func (m BucketMap) FrozenBuckets() []int {
	if m.Move == nil {
		return nil
	}
	return m.Move.Buckets
}

// Partition returns bucket b's partition.
func (m BucketMap) Partition(b int) int32 { return m.Buckets[b] }

// Check reports what is wrong with the map for n buckets.
func (m BucketMap) Check(n int) error {
	var errs []string
	if m.Version < 1 {
		errs = append(errs, fmt.Sprintf("version %d (want 1 or more)", m.Version))
	}
	if m.Partitions < 1 {
		errs = append(errs, fmt.Sprintf("partitions %d (want 1 or more)", m.Partitions))
	}
	if len(m.Buckets) != n {
		errs = append(errs, fmt.Sprintf("%d buckets (want %d)", len(m.Buckets), n))
	}
	for b, p := range m.Buckets {
		if p < 0 || p >= m.Partitions {
			errs = append(errs, fmt.Sprintf("bucket %d maps to partition %d, outside 0..%d", b, p, m.Partitions-1))
			break
		}
	}
	if mv := m.Move; mv != nil {
		if len(mv.Buckets) == 0 || len(mv.From) != len(mv.Buckets) {
			errs = append(errs, "the move in progress lists no buckets, or not one source partition per bucket")
		}
		for _, b := range mv.Buckets {
			if b < 0 || b >= n {
				errs = append(errs, fmt.Sprintf("the move in progress names bucket %d, outside 0..%d", b, n-1))
			}
		}
		if mv.To < 0 || mv.To >= m.Partitions {
			errs = append(errs, fmt.Sprintf("the move in progress goes to partition %d, outside 0..%d", mv.To, m.Partitions-1))
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// DecodeBucketMap parses and checks a bucket map znode's content.
func DecodeBucketMap(path string, data []byte, n int) (BucketMap, error) {
	var m BucketMap
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, &CorruptBucketMapError{Path: path, Reason: "not a bucket map JSON object: " + err.Error()}
	}
	if err := m.Check(n); err != nil {
		return m, &CorruptBucketMapError{Path: path, Reason: err.Error()}
	}
	return m, nil
}

// BucketMapPath is where the bucket map lives under chroot.
func BucketMapPath(chroot string) string { return chroot + "/" + bucketsDir + "/" + bucketMapNode }

func (c *Coordinator) bucketsPath() string   { return c.cfg.Chroot + "/" + bucketsDir }
func (c *Coordinator) bucketMapPath() string { return c.bucketsPath() + "/" + bucketMapNode }
func (c *Coordinator) replicasPath() string  { return c.bucketsPath() + "/" + bucketReplicas }
func (c *Coordinator) moveLockPath() string  { return c.bucketsPath() + "/" + bucketMoveLock }

// EnsureBucketMap writes the bucket map of a new system if there is none:
// version 1, partitions partitions, and buckets the initial spread
// (cloudservers.DefaultBucketMap). An existing map is left as it is and
// returned (created false), checked: a corrupted one is an error. The
// setup of a cluster and the dev stack call it; it is idempotent.
func (c *Coordinator) EnsureBucketMap(partitions int32, buckets []int32) (m BucketMap, created bool, err error) {
	for _, p := range []string{c.bucketsPath(), c.replicasPath()} {
		if err := c.ensurePath(p); err != nil {
			return m, false, fmt.Errorf("create %s: %w", p, err)
		}
	}
	m = BucketMap{Version: 1, Partitions: partitions, Buckets: buckets}
	if err := m.Check(len(buckets)); err != nil {
		return m, false, fmt.Errorf("initial bucket map: %w", err)
	}
	data, _ := json.Marshal(m)
	_, err = c.conn.Create(c.bucketMapPath(), data, 0, zk.WorldACL(zk.PermAll))
	if err == nil {
		return m, true, nil
	}
	if !errors.Is(err, zk.ErrNodeExists) {
		return m, false, fmt.Errorf("create %s: %w", c.bucketMapPath(), err)
	}
	m, err = c.ReadBucketMap(len(buckets))
	return m, false, err
}

// ReadBucketMap reads and checks the bucket map for n buckets.
func (c *Coordinator) ReadBucketMap(n int) (BucketMap, error) {
	m, _, err := c.readBucketMap(n, false)
	return m, err
}

func (c *Coordinator) readBucketMap(n int, watch bool) (BucketMap, <-chan zk.Event, error) {
	var (
		data []byte
		stat *zk.Stat
		w    <-chan zk.Event
		err  error
	)
	if watch {
		var ok bool
		ok, _, w, err = c.conn.ExistsW(c.bucketMapPath())
		if err == nil && ok {
			data, stat, w, err = c.conn.GetW(c.bucketMapPath())
		} else if err == nil {
			return BucketMap{}, w, ErrNoBucketMap
		}
	} else {
		data, stat, err = c.conn.Get(c.bucketMapPath())
	}
	if errors.Is(err, zk.ErrNoNode) {
		return BucketMap{}, w, ErrNoBucketMap
	}
	if err != nil {
		return BucketMap{}, w, fmt.Errorf("read %s: %w", c.bucketMapPath(), err)
	}
	if len(data) > maxBucketMapLen {
		return BucketMap{}, w, &CorruptBucketMapError{Path: c.bucketMapPath(), Reason: fmt.Sprintf("%d bytes", len(data))}
	}
	m, err := DecodeBucketMap(c.bucketMapPath(), data, n)
	m.zkVersion = stat.Version
	return m, w, err
}

// ErrBucketMapChanged is returned by WriteBucketMap when someone else wrote
// the map since it was read.
var ErrBucketMapChanged = errors.New("the bucket map changed since it was read")

// WriteBucketMap writes next in place of prev (as read): only if nobody
// wrote the map in between (a ZooKeeper version check), with next's
// version one above prev's. It returns the map written.
func (c *Coordinator) WriteBucketMap(prev, next BucketMap) (BucketMap, error) {
	next.Version = prev.Version + 1
	if err := next.Check(len(prev.Buckets)); err != nil {
		return prev, fmt.Errorf("refusing to write an invalid bucket map: %w", err)
	}
	data, _ := json.Marshal(next)
	stat, err := c.conn.Set(c.bucketMapPath(), data, prev.zkVersion)
	if errors.Is(err, zk.ErrBadVersion) {
		return prev, fmt.Errorf("write bucket map version %d: %w", next.Version, ErrBucketMapChanged)
	}
	if err != nil {
		return prev, fmt.Errorf("write bucket map version %d: %w", next.Version, err)
	}
	next.zkVersion = stat.Version
	return next, nil
}

// WatchBucketMap calls apply with every version of the bucket map for n
// buckets until ctx ends, and with an error whenever the map cannot be
// read (no session, no map, a corrupted map): then nothing may be routed.
// apply returns once the version is in force (no write routed by an older
// version is still in flight). With replica set, each version in force is
// then acknowledged under <chroot>/buckets/replicas/<replica>, an
// ephemeral node created before the first read, so that a move waits for
// every live replica (see docs/scale-out.md).
func (c *Coordinator) WatchBucketMap(ctx context.Context, n int, replica string, apply func(BucketMap, error)) error {
	if replica != "" {
		if err := checkNodeName(replica); err != nil {
			return fmt.Errorf("replica %q: %w", replica, err)
		}
	}
	var (
		ackSession int64
		lastErr    string
	)
	report := func(err error) {
		if err.Error() != lastErr {
			c.log.Warn("bucket map unavailable: mutations are refused", "err", err)
			lastErr = err.Error()
		}
		apply(BucketMap{}, err)
	}
	for ctx.Err() == nil {
		v := c.sess.view()
		if !v.live {
			report(errors.New("no zookeeper session: the bucket map may have changed"))
			select {
			case <-ctx.Done():
			case <-v.changed:
			}
			continue
		}
		if replica != "" && ackSession != v.id {
			if err := c.joinReplicas(replica, v.id); err != nil {
				report(fmt.Errorf("register replica %s: %w", replica, err))
				sleepCtx(ctx, 250*time.Millisecond, v.changed)
				continue
			}
			ackSession = v.id
		}
		m, w, err := c.readBucketMap(n, true)
		if err != nil {
			report(err)
			if w == nil {
				sleepCtx(ctx, 250*time.Millisecond, v.changed)
				continue
			}
		} else {
			if lastErr != "" {
				c.log.Info("bucket map readable again", "version", m.Version)
				lastErr = ""
			}
			apply(m, nil)
			if replica != "" {
				if err := c.ackBucketMap(replica, m.Version); err != nil && !isConnErr(err) {
					c.log.Warn("acknowledge bucket map", "version", m.Version, "err", err)
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-v.changed:
		case <-w:
		}
	}
	if replica != "" && ackSession == c.sess.view().id {
		_ = c.conn.Delete(c.replicasPath()+"/"+replica, -1)
	}
	return nil
}

type replicaAck struct {
	Version int64     `json:"version"`
	Since   time.Time `json:"since"`
}

// joinReplicas creates the replica's ephemeral node (version 0: nothing
// acknowledged yet). A node left by an earlier session of the same name
// is an error until it expires.
func (c *Coordinator) joinReplicas(replica string, session int64) error {
	if err := c.ensurePath(c.replicasPath()); err != nil {
		return err
	}
	path := c.replicasPath() + "/" + replica
	data, _ := json.Marshal(replicaAck{Since: time.Now().UTC()})
	_, err := c.conn.Create(path, data, zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
	if errors.Is(err, zk.ErrNodeExists) {
		_, stat, gerr := c.conn.Get(path)
		if gerr != nil {
			return gerr
		}
		if stat.EphemeralOwner == session {
			return nil
		}
		return fmt.Errorf("%s exists for another session (an earlier run of this replica not yet expired, or two replicas with one name)", path)
	}
	return err
}

func (c *Coordinator) ackBucketMap(replica string, version int64) error {
	data, _ := json.Marshal(replicaAck{Version: version, Since: time.Now().UTC()})
	_, err := c.conn.Set(c.replicasPath()+"/"+replica, data, -1)
	return err
}

// ReplicaAck is one API replica's acknowledged bucket map version.
type ReplicaAck struct {
	Replica string `json:"replica"`
	Version int64  `json:"version"`
}

// BucketMapAcks lists the live API replicas and the bucket map version
// each has in force.
func (c *Coordinator) BucketMapAcks() ([]ReplicaAck, error) {
	names, _, err := c.conn.Children(c.replicasPath())
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", c.replicasPath(), err)
	}
	slices.Sort(names)
	out := make([]ReplicaAck, 0, len(names))
	for _, name := range names {
		data, _, err := c.conn.Get(c.replicasPath() + "/" + name)
		if errors.Is(err, zk.ErrNoNode) {
			continue // gone since the listing
		}
		if err != nil {
			return nil, err
		}
		var a replicaAck
		_ = json.Unmarshal(data, &a)
		out = append(out, ReplicaAck{Replica: name, Version: a.Version})
	}
	return out, nil
}

// MoveLock is held by the admin command that changes the bucket map.
type MoveLock struct {
	By    string    `json:"by"`
	Since time.Time `json:"since"`
}

// ErrMoveLocked is returned by LockMoves while another command holds the
// lock.
var ErrMoveLocked = errors.New("another admin command is changing the bucket map")

// LockMoves takes the bucket map's move lock (an ephemeral node: a command
// that dies loses it with its session). While another command holds it,
// it waits up to wait, then fails with ErrMoveLocked naming the holder.
func (c *Coordinator) LockMoves(ctx context.Context, by string, wait time.Duration) (unlock func(), err error) {
	if err := c.ensurePath(c.bucketsPath()); err != nil {
		return nil, err
	}
	data, _ := json.Marshal(MoveLock{By: by, Since: time.Now().UTC()})
	deadline := time.Now().Add(wait)
	for {
		_, err := c.conn.Create(c.moveLockPath(), data, zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
		if err == nil {
			return func() { _ = c.conn.Delete(c.moveLockPath(), -1) }, nil
		}
		if !errors.Is(err, zk.ErrNodeExists) {
			return nil, fmt.Errorf("take %s: %w", c.moveLockPath(), err)
		}
		held, _, w, err := c.conn.GetW(c.moveLockPath())
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var h MoveLock
		_ = json.Unmarshal(held, &h)
		left := time.Until(deadline)
		if left <= 0 {
			return nil, fmt.Errorf("%w: %s since %s (a command that died releases it within the zookeeper session timeout)",
				ErrMoveLocked, h.By, h.Since.Format(time.RFC3339))
		}
		t := time.NewTimer(left)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-w:
		case <-t.C:
		}
		t.Stop()
	}
}

// MoveLockHolder returns the holder of the move lock, or nil.
func (c *Coordinator) MoveLockHolder() (*MoveLock, error) {
	data, _, err := c.conn.Get(c.moveLockPath())
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var h MoveLock
	_ = json.Unmarshal(data, &h)
	return &h, nil
}

// RecordCandidates writes the candidate order of a request partition that
// no process has joined yet (a partition just added): the bridges named in
// it take part in its ownership without a restart (OwnRecordedPartitions).
func (c *Coordinator) RecordCandidates(partition int32, candidates []string) error {
	if err := checkCandidates(candidates); err != nil {
		return fmt.Errorf("partition %d: %w", partition, err)
	}
	base := c.partitionsPath() + "/" + strconv.Itoa(int(partition))
	if err := c.ensurePath(base); err != nil {
		return err
	}
	data, _ := json.Marshal(partitionData{Candidates: candidates})
	_, err := c.conn.Set(base, data, -1)
	return err
}

// OwnRecordedPartitions takes part, for as long as ctx lives, in the
// ownership of every request partition not in skip whose candidate order
// recorded in ZooKeeper (by the process that joined it first, or by
// RecordCandidates) names this process, including partitions that appear
// later: how running bridges pick up a partition added to the topic. Each
// is owned as OwnPartition does, with the recorded order.
func (c *Coordinator) OwnRecordedPartitions(ctx context.Context, skip []int32, run RunFunc) error {
	started := map[int32]bool{}
	for _, p := range skip {
		started[p] = true
	}
	done := make(chan error, 64)
	running := 0
	var errs []error
	for ctx.Err() == nil {
		v := c.sess.view()
		if !v.live {
			select {
			case <-ctx.Done():
			case <-v.changed:
			}
			continue
		}
		names, _, w, err := c.conn.ChildrenW(c.partitionsPath())
		if err != nil {
			sleepCtx(ctx, 250*time.Millisecond, v.changed)
			continue
		}
		var dataW []<-chan zk.Event
		for _, name := range names {
			n, err := strconv.Atoi(name)
			if err != nil || started[int32(n)] {
				continue
			}
			p := int32(n)
			data, _, dw, err := c.conn.GetW(c.partitionsPath() + "/" + name)
			if err != nil {
				continue
			}
			dataW = append(dataW, dw)
			var pd partitionData
			if json.Unmarshal(data, &pd) != nil || !slices.Contains(pd.Candidates, c.cfg.ProcessID) {
				continue
			}
			started[p] = true
			running++
			c.log.Info("joining a partition recorded in zookeeper", "partition", p, "candidates", pd.Candidates)
			go func() { done <- c.OwnPartition(ctx, p, pd.Candidates, run) }()
		}
		wake := make(chan struct{})
		stop := make(chan struct{})
		for _, dw := range append(dataW, w) {
			go func() {
				select {
				case <-dw:
					select {
					case wake <- struct{}{}:
					case <-stop:
					}
				case <-stop:
				}
			}()
		}
		select {
		case <-ctx.Done():
		case <-v.changed:
		case <-wake:
		case err := <-done:
			running--
			if err != nil {
				errs = append(errs, err)
			}
		}
		close(stop)
	}
	for ; running > 0; running-- {
		if err := <-done; err != nil && !errors.Is(err, ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// EnsureMap writes the bucket map of a new system, if there is none, under
// the ZooKeeper of connect ("host:port[,host:port][/chroot]"): version 1,
// partitions partitions (the requests topic's), the initial spread
// (bucket % partitions). An existing map is left alone and returned,
// checked. The cluster setup and the dev stack call it: it is idempotent.
func EnsureMap(ctx context.Context, connect string, partitions int32, log *slog.Logger) (m BucketMap, created bool, err error) {
	servers, chroot := ParseConnectString(connect)
	coord, err := Connect(ctx, Config{Servers: servers, Chroot: chroot, Logger: log})
	if err != nil {
		return m, false, err
	}
	defer coord.Close()
	return coord.EnsureBucketMap(partitions, cloudservers.DefaultBucketMap(partitions))
}
