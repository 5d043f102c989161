package api

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cloudservers/cloudservers"
)

// BucketRoutes is the bucket map in force at this replica: which partition
// each customer's bucket is published to, and which buckets are frozen
// while a move is in progress. Its versions come from ZooKeeper
// (zkcoord.WatchBucketMap, wired by the api command); see
// docs/scale-out.md.
//
// A mutation holds the map's read lock from routing until its write is
// acknowledged (or has failed), so Install, which takes the write lock,
// returns only once no write routed by an older version is in flight: the
// replica then acknowledges the new version, and a move may count on it.
type BucketRoutes struct {
	inflight sync.RWMutex // read: a write in flight; write: installing a version

	mu      sync.Mutex // guards the fields below
	version int64
	buckets []int32
	frozen  []int
	err     error         // the map cannot be read: nothing is routed
	changed chan struct{} // closed at the next change
}

// NewBucketRoutes returns routes that refuse every mutation until the first
// Install.
func NewBucketRoutes() *BucketRoutes {
	return &BucketRoutes{err: fmt.Errorf("the bucket map has not been read yet"), changed: make(chan struct{})}
}

// StaticBucketRoutes routes by the initial spread over partitions, version
// 0, for ever: for tests and tools that run without ZooKeeper.
func StaticBucketRoutes(partitions int32) *BucketRoutes {
	r := NewBucketRoutes()
	r.Install(0, cloudservers.DefaultBucketMap(max(partitions, 1)), nil)
	return r
}

// Install puts a version of the map in force. It returns once every write
// routed by an earlier version has ended.
func (r *BucketRoutes) Install(version int64, buckets []int32, frozen []int) {
	r.inflight.Lock()
	defer r.inflight.Unlock()
	r.set(version, slices.Clone(buckets), slices.Clone(frozen), nil)
}

// Follow puts a version read from ZooKeeper in force, or, with err, stops
// all routing (see Install and Unavailable): the callback of
// zkcoord.WatchBucketMap.
func (r *BucketRoutes) Follow(version int64, buckets []int32, frozen []int, err error) {
	if err != nil {
		r.Unavailable(err)
		return
	}
	r.Install(version, buckets, frozen)
}

// Unavailable stops all routing: the map cannot be read (no ZooKeeper
// session, no map, a corrupted map). Mutations are refused with err until
// the next Install. It waits for the writes in flight, like Install.
func (r *BucketRoutes) Unavailable(err error) {
	r.inflight.Lock()
	defer r.inflight.Unlock()
	r.set(0, nil, nil, err)
}

func (r *BucketRoutes) set(version int64, buckets []int32, frozen []int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.version, r.buckets, r.frozen, r.err = version, buckets, frozen, err
	close(r.changed)
	r.changed = make(chan struct{})
}

// Err says why nothing is routed (the map not read yet, no ZooKeeper
// session, a corrupted map); nil while a map is in force.
func (r *BucketRoutes) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Version is the version in force (0 while none is).
func (r *BucketRoutes) Version() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.version
}

// Route returns the partition of bucket and the map version it was chosen
// by, holding the map until release is called (after the write). A frozen
// bucket waits up to wait for its move to end, then is refused with 503
// and Retry-After; so is every bucket while the map cannot be read.
func (r *BucketRoutes) Route(ctx context.Context, bucket int, wait time.Duration) (partition int32, version int64, release func(), err error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		r.inflight.RLock()
		r.mu.Lock()
		version, buckets, frozen, mapErr, changed := r.version, r.buckets, r.frozen, r.err, r.changed
		r.mu.Unlock()
		switch {
		case mapErr != nil:
			r.inflight.RUnlock()
			e := errorf(CodeUnavailable, "this replica cannot read the bucket map, so it cannot tell where to queue the request; retry shortly (with the same Idempotency-Key)")
			e.RetryAfter = 2
			return 0, 0, nil, fmt.Errorf("bucket map: %v: %w", mapErr, e)
		case !slices.Contains(frozen, bucket):
			return buckets[bucket], version, r.inflight.RUnlock, nil
		}
		r.inflight.RUnlock()
		select {
		case <-changed:
			continue
		case <-timer.C:
		case <-ctx.Done():
		}
		e := errorf(CodeUnavailable, "your requests are being moved to another partition (a scale-out in progress); nothing was queued: retry in a second (with the same Idempotency-Key)")
		e.RetryAfter = 1
		return 0, 0, nil, fmt.Errorf("bucket %d is frozen by a move (map version %d): %w", bucket, version, e)
	}
}

// publish writes a mutation: one record, its request, to the partition of
// its customer's bucket in the bucket map in force, carrying that map's
// version (see the publish comment in servers.go for why one record).
func (s *Server) publishRouted(ctx context.Context, req cloudservers.Request) error {
	bucket := cloudservers.Bucket(req.CustomerID)
	partition, version, release, err := s.buckets.Route(ctx, bucket, s.cfg.FreezeWait)
	if err != nil {
		return err
	}
	defer release()
	req.BucketMapVersion = version
	return s.requests.SendToPartition(ctx, cloudservers.TopicRequests, partition, []byte(fmt.Sprint(bucket)), mustJSON(req))
}
