package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/internal/kafka"
)

// APIKey is a customer's API key as stored: only its SHA-256 hash.
type APIKey struct {
	Hash       string    `json:"hash"`
	CustomerID string    `json:"customer_id"`
	Name       string    `json:"name"`
	Admin      bool      `json:"admin,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	Revoked    bool      `json:"revoked,omitempty"`
}

// IdempotencyRecord remembers the answer to a mutation made with an
// Idempotency-Key, so a retry gets the same answer from any replica.
type IdempotencyRecord struct {
	Key       string          `json:"key"` // customer/Idempotency-Key
	BodyHash  string          `json:"body_hash"`
	Method    string          `json:"method"`
	Path      string          `json:"path"`
	Status    int             `json:"status"`
	Response  json.RawMessage `json:"response,omitempty"`
	Location  string          `json:"location,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	ExpiresAt time.Time       `json:"expires_at"`
}

// Offsets is what the read model needs of a Kafka client to learn where
// the state topics end (sarama.Client has it).
type Offsets interface {
	Partitions(topic string) ([]int32, error)
	GetOffset(topic string, partition int32, time int64) (int64, error)
}

// ReadModel materializes the compacted state topics in memory, and the
// requests topic as the initial state of every mutation (see
// applyRequest). Every API replica has its own and answers reads from it.
// It is ready once it has read each partition up to the end it had when it
// started.
//
// A state topic that does not exist (yet) is tolerated: the read model
// serves without it and starts consuming it once it appears.
type ReadModel struct {
	mu          sync.RWMutex
	changed     *sync.Cond
	servers     map[string]cloudservers.Server
	ops         map[string]cloudservers.Operation
	opsByServer map[string]map[string]struct{}
	keys        map[string]APIKey
	idem        map[string]IdempotencyRecord
	idemSweepAt int
	sshKeys     map[string]SSHKey
	next        map[topicPartition]int64     // next offset to read
	appliedAt   map[topicPartition]time.Time // when a record was last applied (waitFor)
	consuming   map[topicPartition]bool
	ready       bool
	watchers    []func(change)
	now         func() time.Time

	// Topics are the topics materialized; DiscoverEvery is how often Run
	// looks for topics and partitions that appeared.
	topics        []string
	discoverEvery time.Duration
	// requestsWindow: how far back in time the requests topic is read
	// at start (RequestsWindow).
	requestsWindow time.Duration

	// The end-offset lookups of concurrent Syncs (joinOffsetRound).
	roundMu      sync.Mutex
	nextRound    *offsetRound
	nextTPs      map[topicPartition]struct{}
	roundRunning bool
}

// DefaultRequestsWindow is how far back the read model reads the requests
// topic when it starts: the idempotency window (Config.IdempotencyTTL).
const DefaultRequestsWindow = 24 * time.Hour

type topicPartition struct {
	topic     string
	partition int32
}

// change is one record of the servers or operations topic, or of the
// requests topic (its initial state: the server queued for a create, and
// the operation pending; either may be nil), applied from Kafka at a known
// position. The event stream is built from changes.
type change struct {
	tp     topicPartition
	offset int64
	server *cloudservers.Server
	op     *cloudservers.Operation
}

func (c change) customer() string {
	if c.server != nil {
		return c.server.CustomerID
	}
	return c.op.CustomerID
}

// NewReadModel returns an empty read model.
func NewReadModel() *ReadModel {
	rm := &ReadModel{
		servers:        map[string]cloudservers.Server{},
		ops:            map[string]cloudservers.Operation{},
		opsByServer:    map[string]map[string]struct{}{},
		keys:           map[string]APIKey{},
		idem:           map[string]IdempotencyRecord{},
		sshKeys:        map[string]SSHKey{},
		next:           map[topicPartition]int64{},
		appliedAt:      map[topicPartition]time.Time{},
		consuming:      map[topicPartition]bool{},
		now:            time.Now,
		topics:         append(append([]string{}, cloudservers.StateTopics...), TopicSSHKeys, cloudservers.TopicRequests),
		discoverEvery:  15 * time.Second,
		requestsWindow: DefaultRequestsWindow,
	}
	rm.changed = sync.NewCond(&rm.mu)
	return rm
}

// SetRequestsWindow sets how far back in time Run reads the requests topic
// (default DefaultRequestsWindow). New sets it to the longer of the API's
// IdempotencyTTL and PendingLock.
func (rm *ReadModel) SetRequestsWindow(d time.Duration) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.requestsWindow = d
}

// Run consumes the state topics from their beginning, and the requests
// topic from the first record of the requests window (see startOffset),
// until ctx ends. kc must read committed records only (kafka.Connect's
// clients do): the records of an aborted transaction were never accepted.
func (rm *ReadModel) Run(ctx context.Context, kc sarama.Client, log *slog.Logger) error {
	if kc.Config().Consumer.IsolationLevel != sarama.ReadCommitted {
		return errors.New("read model: the Kafka client must read committed records only (Consumer.IsolationLevel ReadCommitted, as kafka.Connect sets)")
	}
	// The consumer gets connections of its own: Kafka answers the requests
	// of one connection in order, so offset queries (Sync) sharing a
	// connection with the consumer's long-polling fetches would wait for
	// them.
	var addrs []string
	for _, b := range kc.Brokers() {
		addrs = append(addrs, b.Addr())
	}
	cc, err := sarama.NewClient(addrs, kc.Config())
	if err != nil {
		return fmt.Errorf("read model consumer: %w", err)
	}
	defer cc.Close()
	consumer, err := sarama.NewConsumerFromClient(cc)
	if err != nil {
		return fmt.Errorf("read model consumer: %w", err)
	}
	defer consumer.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() {
		// Wake waiters when ctx ends so none blocks forever.
		<-ctx.Done()
		rm.mu.Lock()
		rm.changed.Broadcast()
		rm.mu.Unlock()
	}()

	reported := map[string]bool{}
	// discover starts a consumer for every partition not consumed yet and
	// returns the end offsets of all of them.
	discover := func() (map[topicPartition]int64, error) {
		targets, missing, err := endOffsets(kc, rm.topics)
		if err != nil {
			return nil, err
		}
		for _, t := range missing {
			if !reported[t] {
				reported[t] = true
				log.Warn("state topic does not exist; serving without it until it is created", "topic", t)
			}
		}
		for tp := range targets {
			if rm.isConsuming(tp) {
				continue
			}
			from, err := rm.startOffset(kc, tp)
			if err != nil {
				return nil, err
			}
			pc, err := consumer.ConsumePartition(tp.topic, tp.partition, from)
			if err != nil {
				return nil, fmt.Errorf("consume %s/%d: %w", tp.topic, tp.partition, err)
			}
			if from >= 0 {
				// Nothing before from is this read model's: waitFor
				// must not wait for (or scan) it.
				rm.skipTo(tp, from)
			}
			if reported[tp.topic] {
				log.Info("state topic appeared; consuming it", "topic", tp.topic, "partition", tp.partition)
			}
			rm.mu.Lock()
			rm.consuming[tp] = true
			rm.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				rm.consume(ctx, pc, log)
			}()
		}
		return targets, nil
	}

	backoff := 500 * time.Millisecond
	var targets map[topicPartition]int64
	for {
		if targets, err = discover(); err == nil {
			break
		}
		log.Warn("read model cannot list the state topics; retrying", "error", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := rm.waitFor(ctx, scannerOf(kc), targets); err == nil {
			rm.MarkCaughtUp()
			log.Info("read model caught up", "servers", rm.count())
		}
	}()
	tick := time.NewTicker(rm.discoverEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if _, err := discover(); err != nil {
				log.Warn("read model topic discovery", "error", err)
			}
		}
	}
}

// consume applies one partition's records until ctx ends.
func (rm *ReadModel) consume(ctx context.Context, pc sarama.PartitionConsumer, log *slog.Logger) {
	defer pc.AsyncClose()
	for {
		select {
		case <-ctx.Done():
			return
		case err, ok := <-pc.Errors():
			if ok {
				log.Warn("state topic read error", "topic", err.Topic, "partition", err.Partition, "error", err.Err)
			}
		case msg, ok := <-pc.Messages():
			if !ok {
				return
			}
			if err := rm.ApplyRecord(msg.Topic, msg.Partition, msg.Offset, msg.Key, msg.Value); err != nil {
				log.Error("state record skipped", "topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset, "error", err)
			}
		}
	}
}

// startOffset is where a partition is read from: the beginning for the
// compacted state topics; for the requests topic (not compacted, kept for
// days), the first record written in the last requestsWindow. An older
// request stands for nothing the API still answers from: its
// Idempotency-Key has expired, its pending operation no longer locks its
// server (PendingLock is shorter), and the lifecycle, which acts on a
// request within seconds of its writing, has long published the server and
// the operation (version 1 and up) on the compacted topics, which supersede
// the initial state. Reading from the start instead would cost every
// replica start the whole retention of the topic.
func (rm *ReadModel) startOffset(kc Offsets, tp topicPartition) (int64, error) {
	if tp.topic != cloudservers.TopicRequests {
		return sarama.OffsetOldest, nil
	}
	rm.mu.RLock()
	since := rm.now().Add(-rm.requestsWindow)
	rm.mu.RUnlock()
	off, err := kc.GetOffset(tp.topic, tp.partition, since.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("offset of %s/%d at %s: %w", tp.topic, tp.partition, since.Format(time.RFC3339), err)
	}
	if off < 0 {
		// No record that recent: from the end.
		if off, err = kc.GetOffset(tp.topic, tp.partition, sarama.OffsetNewest); err != nil {
			return 0, fmt.Errorf("end of %s/%d: %w", tp.topic, tp.partition, err)
		}
	}
	return off, nil
}

func (rm *ReadModel) isConsuming(tp topicPartition) bool {
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	return rm.consuming[tp]
}

func (rm *ReadModel) count() int {
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	return len(rm.servers)
}

// endOffsets returns the offset after the last message of every partition
// of the topics that exist, and the names of those that do not.
func endOffsets(kc Offsets, topics []string) (map[topicPartition]int64, []string, error) {
	out := map[topicPartition]int64{}
	var missing []string
	for _, t := range topics {
		parts, err := kc.Partitions(t)
		if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			missing = append(missing, t)
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("partitions of %s: %w", t, err)
		}
		for _, p := range parts {
			off, err := kc.GetOffset(t, p, sarama.OffsetNewest)
			if err != nil {
				return nil, nil, fmt.Errorf("end of %s/%d: %w", t, p, err)
			}
			out[topicPartition{t, p}] = off
		}
	}
	return out, missing, nil
}

// endsOf returns the end offset of every partition in tps. With a Kafka
// client it asks each partition leader once, for all its partitions in one
// ListOffsets request: every mutation syncs, and one round trip per
// partition (over 20 of them) queued on the client's one connection to the
// broker was most of an accept's time under concurrency (measured: 58 % of
// the handlers' waiting at 20 concurrent clients).
//
// A leader that died (or lost its leadership) stays in the client's
// metadata until it is refreshed, every 10 minutes on its own: on an error
// the metadata of the topics is refreshed and the partitions asked once
// more, so that a mutation after a broker's death finds the new leaders
// instead of being refused until the broker is back (seen on the HA
// topology: every mutation answered 503 for the minute the broker was
// down).
func endsOf(kc Offsets, tps []topicPartition) (map[topicPartition]int64, error) {
	out, err := endsOfOnce(kc, tps)
	c, ok := kc.(sarama.Client)
	if err == nil || !ok {
		return out, err
	}
	seen := map[string]bool{}
	var topics []string
	for _, tp := range tps {
		if !seen[tp.topic] {
			seen[tp.topic] = true
			topics = append(topics, tp.topic)
		}
	}
	if rerr := c.RefreshMetadata(topics...); rerr != nil {
		return nil, fmt.Errorf("%w (and refreshing the metadata: %v)", err, rerr)
	}
	return endsOfOnce(kc, tps)
}

func endsOfOnce(kc Offsets, tps []topicPartition) (map[topicPartition]int64, error) {
	out := make(map[topicPartition]int64, len(tps))
	c, ok := kc.(sarama.Client)
	if !ok {
		for _, tp := range tps {
			off, err := kc.GetOffset(tp.topic, tp.partition, sarama.OffsetNewest)
			if err != nil {
				return nil, fmt.Errorf("end of %s/%d: %w", tp.topic, tp.partition, err)
			}
			out[tp] = off
		}
		return out, nil
	}
	byLeader := map[*sarama.Broker][]topicPartition{}
	for _, tp := range tps {
		b, err := c.Leader(tp.topic, tp.partition)
		if err != nil {
			return nil, fmt.Errorf("leader of %s/%d: %w", tp.topic, tp.partition, err)
		}
		byLeader[b] = append(byLeader[b], tp)
	}
	for b, tps := range byLeader {
		req := sarama.NewOffsetRequest(c.Config().Version)
		for _, tp := range tps {
			req.AddBlock(tp.topic, tp.partition, sarama.OffsetNewest, 1)
		}
		resp, err := b.GetAvailableOffsets(req)
		if err != nil {
			// A broken connection is reopened on next use.
			_ = b.Close()
			return nil, fmt.Errorf("end offsets from broker %d: %w", b.ID(), err)
		}
		for _, tp := range tps {
			blk := resp.GetBlock(tp.topic, tp.partition)
			switch {
			case blk == nil:
				return nil, fmt.Errorf("end of %s/%d: %w", tp.topic, tp.partition, sarama.ErrIncompleteResponse)
			case !errors.Is(blk.Err, sarama.ErrNoError):
				if errors.Is(blk.Err, sarama.ErrNotLeaderForPartition) || errors.Is(blk.Err, sarama.ErrUnknownTopicOrPartition) {
					_ = c.RefreshMetadata(tp.topic)
				}
				return nil, fmt.Errorf("end of %s/%d: %w", tp.topic, tp.partition, blk.Err)
			case len(blk.Offsets) != 1:
				return nil, fmt.Errorf("end of %s/%d: %w", tp.topic, tp.partition, sarama.ErrOffsetOutOfRange)
			}
			out[tp] = blk.Offsets[0]
		}
	}
	return out, nil
}

// scanFunc tells what a read_committed consumer that has delivered every
// record of a partition before from has yet to deliver before to
// (kafka.Scan).
type scanFunc func(tp topicPartition, from, to int64) (kafka.Position, error)

// scannerOf scans with kc when it is a Kafka client; otherwise (tests'
// fakes) there is nothing to scan: every offset is a record.
func scannerOf(kc Offsets) scanFunc {
	c, ok := kc.(sarama.Client)
	if !ok {
		return nil
	}
	return func(tp topicPartition, from, to int64) (kafka.Position, error) {
		return kafka.Scan(c, tp.topic, tp.partition, from, to)
	}
}

const (
	// scanQuiet: a lagging partition is scanned once its consumer has
	// delivered nothing for this long (while it delivers, it is reading,
	// and a scan would only find the records on their way). Only
	// transactions leave offsets a consumer never delivers, and nothing
	// writes them any more (earlier API versions did): a partition lags
	// because its records are on their way, and a scan, a fetch queued on
	// the connection every Sync shares, is wasted then. At 5 ms, under 20
	// concurrent mutations, such scans were half of an accept's wait.
	scanQuiet = 100 * time.Millisecond
	// scanRetry is the first wait before scanning again a range that
	// belongs to an open transaction (or could not be scanned); it doubles
	// up to scanRetryMax.
	scanRetry    = 5 * time.Millisecond
	scanRetryMax = 200 * time.Millisecond
)

// waitFor blocks until every partition has been read up to its target
// offset, or ctx ends.
//
// The consumer reads committed records only: the markers transactions
// leave (one per partition a transaction wrote to, the API's publish
// among them) and the records of aborted transactions take offsets it
// never delivers, so a partition that ends with them is never "read up
// to" its end by the records alone. When a partition lags, scan (nil: no
// such offsets) tells whether what is left up to its target is only such
// offsets; if so the partition counts as read up to the target.
func (rm *ReadModel) waitFor(ctx context.Context, scan scanFunc, targets map[topicPartition]int64) error {
	type scanState struct {
		behindAt  int64     // scanned Behind from here: a record is on its way
		notBefore time.Time // scan again no earlier
		retry     time.Duration
	}
	scans := map[topicPartition]*scanState{}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	for {
		lagging := map[topicPartition]int64{}
		for tp, off := range targets {
			if rm.next[tp] < off {
				lagging[tp] = rm.next[tp]
			}
		}
		if len(lagging) == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			for tp, next := range lagging {
				return fmt.Errorf("%w: %s/%d read up to %d of %d", err, tp.topic, tp.partition, next, targets[tp])
			}
		}
		var toScan []topicPartition
		var wake time.Duration // 0: until a record comes
		now := time.Now()
		for tp, next := range lagging {
			if scan == nil {
				break
			}
			st := scans[tp]
			if st == nil {
				st = &scanState{behindAt: -1, retry: scanRetry}
				scans[tp] = st
			}
			if st.behindAt == next {
				continue
			}
			if quietAt := rm.appliedAt[tp].Add(scanQuiet); quietAt.After(st.notBefore) {
				st.notBefore = quietAt
			}
			if d := st.notBefore.Sub(now); d > 0 {
				if wake == 0 || d < wake {
					wake = d
				}
				continue
			}
			toScan = append(toScan, tp)
		}
		if len(toScan) == 0 {
			wctx, cancel := ctx, context.CancelFunc(func() {})
			if wake > 0 {
				wctx, cancel = context.WithTimeout(ctx, wake)
			}
			waitCond(wctx, rm.changed)
			cancel()
			continue
		}
		rm.mu.Unlock()
		for _, tp := range toScan {
			st, from := scans[tp], lagging[tp]
			pos, err := scan(tp, from, targets[tp])
			switch {
			case err == nil && pos == kafka.CaughtUp:
				rm.skipTo(tp, targets[tp])
			case err == nil && pos == kafka.Behind:
				st.behindAt = from
			default: // undecided, or not scanned: again later
				st.notBefore = time.Now().Add(st.retry)
				st.retry = min(2*st.retry, scanRetryMax)
			}
		}
		rm.mu.Lock()
	}
}

// skipTo records that a partition has nothing for this read model before
// offset off (scanned; rm.mu not held).
func (rm *ReadModel) skipTo(tp topicPartition, off int64) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.next[tp] < off {
		rm.next[tp] = off
	}
	rm.changed.Broadcast()
}

// waitCond waits on c (whose lock is held) but no longer than ctx allows.
func waitCond(ctx context.Context, c *sync.Cond) {
	stop := context.AfterFunc(ctx, func() {
		c.L.Lock()
		c.Broadcast()
		c.L.Unlock()
	})
	defer stop()
	c.Wait()
}

// Ready reports whether the initial catch-up is complete.
func (rm *ReadModel) Ready() bool {
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	return rm.ready
}

// MarkCaughtUp declares the initial catch-up complete. Run calls it; a test
// that feeds the read model with ApplyRecord calls it itself.
func (rm *ReadModel) MarkCaughtUp() {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.ready = true
}

// ApplyRecord applies one record of a state topic read at the given
// position. Run calls it for every record it consumes; tests feed the read
// model through it. A nil value is a tombstone: the record of the key is
// deleted.
func (rm *ReadModel) ApplyRecord(topic string, partition int32, offset int64, key, value []byte) error {
	rm.mu.Lock()
	tp := topicPartition{topic, partition}
	var ch *change
	defer func() {
		if offset+1 > rm.next[tp] {
			rm.next[tp] = offset + 1
		}
		rm.appliedAt[tp] = time.Now()
		rm.changed.Broadcast()
		watchers := rm.watchers
		rm.mu.Unlock()
		// Watchers run outside the lock but in the consumer's order: one
		// partition is applied by one goroutine.
		if ch != nil {
			for _, w := range watchers {
				w(*ch)
			}
		}
	}()
	switch topic {
	case cloudservers.TopicServers:
		if value == nil {
			return nil // servers are never deleted, only marked so
		}
		var s cloudservers.Server
		if err := json.Unmarshal(value, &s); err != nil {
			return err
		}
		if rm.putServer(s) {
			ch = &change{tp: tp, offset: offset, server: &s}
		}
	case cloudservers.TopicOperations:
		if value == nil {
			return nil
		}
		var o cloudservers.Operation
		if err := json.Unmarshal(value, &o); err != nil {
			return err
		}
		if rm.putOperation(o) {
			ch = &change{tp: tp, offset: offset, op: &o}
		}
	case cloudservers.TopicRequests:
		if value == nil {
			return nil
		}
		var r cloudservers.Request
		if err := json.Unmarshal(value, &r); err != nil {
			return err
		}
		if r.OperationID == "" || r.ServerID == "" || r.CustomerID == "" {
			return fmt.Errorf("request without operation_id, server_id or customer_id")
		}
		ch = rm.applyRequest(r)
		if ch != nil {
			ch.tp, ch.offset = tp, offset
		}
	case cloudservers.TopicAPIKeys:
		if value == nil {
			delete(rm.keys, string(key))
			return nil
		}
		var k APIKey
		if err := json.Unmarshal(value, &k); err != nil {
			return err
		}
		rm.keys[k.Hash] = k
	case cloudservers.TopicIdempotency:
		if value == nil {
			delete(rm.idem, string(key))
			return nil
		}
		var r IdempotencyRecord
		if err := json.Unmarshal(value, &r); err != nil {
			return err
		}
		rm.putIdempotency(r)
	case TopicSSHKeys:
		var k SSHKey
		if value == nil {
			delete(rm.sshKeys, string(key))
			return nil
		}
		if err := json.Unmarshal(value, &k); err != nil {
			return err
		}
		rm.putSSHKey(k)
	}
	return nil
}

// InitialState is what a request stands for until its server's lifecycle
// publishes: the operation pending, for a create the server queued (from
// the request's CreateParams; nil for other operations), and with an
// Idempotency-Key the key's record, answering what the API answered.
// Every version is 0: whatever the lifecycle publishes wins.
func InitialState(r cloudservers.Request) (*cloudservers.Server, cloudservers.Operation, *IdempotencyRecord) {
	at := r.RequestedAt.UTC()
	op := cloudservers.Operation{ID: r.OperationID, ServerID: r.ServerID, CustomerID: r.CustomerID, Type: r.Operation,
		Status: cloudservers.OperationPending, CreatedAt: at, UpdatedAt: at}
	var srv *cloudservers.Server
	if r.Operation == cloudservers.OpCreate {
		var p cloudservers.CreateParams
		_ = json.Unmarshal(r.Params, &p) // validated by the API; a bad one still shows the server
		srv = &cloudservers.Server{ID: r.ServerID, CustomerID: r.CustomerID, Name: p.Name, Status: cloudservers.StatusQueued,
			Size: p.Size, Image: p.Image, Region: p.Region, OperationID: r.OperationID, CreatedAt: at, UpdatedAt: at}
	}
	var idem *IdempotencyRecord
	if i := r.Idempotency; i != nil && i.Key != "" {
		idem = &IdempotencyRecord{Key: r.CustomerID + "/" + i.Key, BodyHash: i.BodyHash, Method: i.Method, Path: i.Path,
			Status: 202, Response: mustJSON(operationView(op)), Location: createdLocation(op), CreatedAt: at, ExpiresAt: i.ExpiresAt}
	}
	return srv, op, idem
}

// applyRequest materializes a request as its initial state (caller holds
// the lock) and returns the change to stream: what of it is newer than
// what the read model has.
func (rm *ReadModel) applyRequest(r cloudservers.Request) *change {
	srv, op, idem := InitialState(r)
	var ch change
	if srv != nil && rm.putServer(*srv) {
		ch.server = srv
	}
	if rm.putOperation(op) {
		ch.op = &op
	}
	if idem != nil {
		rm.putIdempotency(*idem)
	}
	if ch.server == nil && ch.op == nil {
		return nil
	}
	return &ch
}

// putServer keeps the newest version of a server (caller holds the lock).
// It reports whether the record was taken.
func (rm *ReadModel) putServer(s cloudservers.Server) bool {
	if old, ok := rm.servers[s.ID]; ok && old.Version > s.Version {
		return false
	}
	rm.servers[s.ID] = s
	return true
}

func (rm *ReadModel) putOperation(o cloudservers.Operation) bool {
	if old, ok := rm.ops[o.ID]; ok && old.Version > o.Version {
		return false
	}
	rm.ops[o.ID] = o
	if rm.opsByServer[o.ServerID] == nil {
		rm.opsByServer[o.ServerID] = map[string]struct{}{}
	}
	rm.opsByServer[o.ServerID][o.ID] = struct{}{}
	return true
}

// putIdempotency stores a record, dropping expired ones now and then so
// memory stays bounded by the records of one TTL.
func (rm *ReadModel) putIdempotency(r IdempotencyRecord) {
	now := rm.now()
	if !now.Before(r.ExpiresAt) {
		delete(rm.idem, r.Key)
		return
	}
	// A key's records come from two topics (the requests', the
	// idempotency topic's) read in no common order: the newest wins.
	if old, ok := rm.idem[r.Key]; ok && old.CreatedAt.After(r.CreatedAt) {
		return
	}
	rm.idem[r.Key] = r
	if len(rm.idem) >= rm.idemSweepAt {
		for k, v := range rm.idem {
			if !now.Before(v.ExpiresAt) {
				delete(rm.idem, k)
			}
		}
		rm.idemSweepAt = max(1024, 2*len(rm.idem))
	}
}

func (rm *ReadModel) putSSHKey(k SSHKey) {
	if k.Deleted {
		delete(rm.sshKeys, k.ID)
		return
	}
	rm.sshKeys[k.ID] = k
}

// watch registers a function called with every change applied from Kafka.
func (rm *ReadModel) watch(w func(change)) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.watchers = append(rm.watchers, w)
}

// Accepted records what this replica just wrote, so that it reads its own
// writes even before its consumer sees them. (The event stream reports the
// records when they come back from Kafka, with their positions.)
func (rm *ReadModel) Accepted(s *cloudservers.Server, o *cloudservers.Operation, idem *IdempotencyRecord) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if s != nil {
		rm.putServer(*s)
	}
	if o != nil {
		rm.putOperation(*o)
	}
	if idem != nil {
		rm.putIdempotency(*idem)
	}
}

// acceptedSSHKey records an SSH key this replica just wrote (or deleted).
func (rm *ReadModel) acceptedSSHKey(k SSHKey) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.putSSHKey(k)
}

// Server returns a server.
func (rm *ReadModel) Server(id string) (cloudservers.Server, bool) {
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	s, ok := rm.servers[id]
	return s, ok
}

// Operation returns an operation.
func (rm *ReadModel) Operation(id string) (cloudservers.Operation, bool) {
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	o, ok := rm.ops[id]
	return o, ok
}

// Key returns the API key with the given hash.
func (rm *ReadModel) Key(hash string) (APIKey, bool) {
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	k, ok := rm.keys[hash]
	return k, ok
}

// Idempotency returns the record of an idempotency key, unless expired.
func (rm *ReadModel) Idempotency(key string) (IdempotencyRecord, bool) {
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	r, ok := rm.idem[key]
	if ok && !rm.now().Before(r.ExpiresAt) {
		return IdempotencyRecord{}, false
	}
	return r, ok
}

// SSHKey returns an SSH key.
func (rm *ReadModel) SSHKey(id string) (SSHKey, bool) {
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	k, ok := rm.sshKeys[id]
	return k, ok
}

// SSHKeys returns a customer's SSH keys, oldest first.
func (rm *ReadModel) SSHKeys(customerID string) []SSHKey {
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	var out []SSHKey
	for _, k := range rm.sshKeys {
		if k.CustomerID == customerID {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Servers returns a customer's servers matching keep, in the stable list
// order: creation time, then ID.
func (rm *ReadModel) Servers(customerID string, keep func(cloudservers.Server) bool) []cloudservers.Server {
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	var out []cloudservers.Server
	for _, s := range rm.servers {
		if s.CustomerID == customerID && keep(s) {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Operations returns a customer's operations on a server, oldest first
// (creation time, then ID).
func (rm *ReadModel) Operations(customerID, serverID string) []cloudservers.Operation {
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	var out []cloudservers.Operation
	for id := range rm.opsByServer[serverID] {
		if o := rm.ops[id]; o.CustomerID == customerID {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// inFlight returns the operation of a server that is not finished, if any:
// the one its lifecycle runs, or one accepted (pending) since notBefore
// that the lifecycle has not picked up yet.
func (rm *ReadModel) inFlight(srv cloudservers.Server, notBefore time.Time) (cloudservers.Operation, bool) {
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	if srv.OperationID != "" {
		if o, ok := rm.ops[srv.OperationID]; ok {
			return o, true
		}
		return cloudservers.Operation{ID: srv.OperationID, ServerID: srv.ID, Status: cloudservers.OperationRunning}, true
	}
	for id := range rm.opsByServer[srv.ID] {
		o := rm.ops[id]
		switch {
		// The lifecycle publishes a finished operation's server record
		// before the operation's: a running record older than the server's
		// last update is one the lifecycle has already finished.
		case o.Status == cloudservers.OperationRunning && !o.UpdatedAt.Before(srv.UpdatedAt):
			return o, true
		case o.Status == cloudservers.OperationPending && o.CreatedAt.After(notBefore):
			return o, true
		}
	}
	return cloudservers.Operation{}, false
}

// Sync waits until this replica has read everything written to the state
// topics before the call: after it, a server another replica accepted is
// visible here (read-your-writes across replicas). A nil kc (tests) syncs
// nothing.
func (rm *ReadModel) Sync(ctx context.Context, kc Offsets) error {
	if kc == nil {
		return nil
	}
	// Only the partitions consumed: a topic that does not exist yet would
	// cost a metadata refresh with retries on every call, and one that
	// appeared is picked up by Run's discovery.
	rm.mu.RLock()
	tps := make([]topicPartition, 0, len(rm.consuming))
	for tp := range rm.consuming {
		tps = append(tps, tp)
	}
	rm.mu.RUnlock()
	type result struct {
		targets map[topicPartition]int64
		err     error
	}
	// The Kafka client's calls take no context; their own timeouts bound
	// them, and this bounds the wait for them.
	round := rm.joinOffsetRound(kc, tps)
	select {
	case <-round.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if round.err != nil {
		return round.err
	}
	return rm.waitFor(ctx, scannerOf(kc), round.targets)
}

// offsetRound is one lookup of end offsets that concurrent Syncs share.
type offsetRound struct {
	done    chan struct{}
	targets map[topicPartition]int64
	err     error
}

// joinOffsetRound returns a lookup of the end offsets of tps that starts
// after the call: the next one, which every Sync arriving while one is in
// flight joins, so that concurrent mutations cost one ListOffsets round
// trip at a time rather than one each. A Sync that arrived later may have
// more partitions to ask about: the round asks for the union.
func (rm *ReadModel) joinOffsetRound(kc Offsets, tps []topicPartition) *offsetRound {
	rm.roundMu.Lock()
	defer rm.roundMu.Unlock()
	if rm.nextRound == nil {
		rm.nextRound = &offsetRound{done: make(chan struct{})}
		rm.nextTPs = map[topicPartition]struct{}{}
	}
	r := rm.nextRound
	for _, tp := range tps {
		rm.nextTPs[tp] = struct{}{}
	}
	if !rm.roundRunning {
		rm.roundRunning = true
		go rm.runOffsetRounds(kc)
	}
	return r
}

// runOffsetRounds runs the pending rounds one after the other until none
// is left.
func (rm *ReadModel) runOffsetRounds(kc Offsets) {
	for {
		rm.roundMu.Lock()
		r, set := rm.nextRound, rm.nextTPs
		rm.nextRound, rm.nextTPs = nil, nil
		if r == nil {
			rm.roundRunning = false
			rm.roundMu.Unlock()
			return
		}
		rm.roundMu.Unlock()
		tps := make([]topicPartition, 0, len(set))
		for tp := range set {
			tps = append(tps, tp)
		}
		r.targets, r.err = endsOf(kc, tps)
		close(r.done)
	}
}
