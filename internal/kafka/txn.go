package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// Record is one message of a transaction.
type Record struct {
	Topic string
	// Partition is the partition to write to, or ByKey.
	Partition int32
	Key       []byte
	// Value nil writes a tombstone.
	Value []byte
}

// ByKey as a Record's Partition leaves the partition to the key's hash,
// as Producer.Send does: a compacted topic's records of one key must all
// land on one partition, whoever writes them.
const ByKey int32 = -1

// TxnTimeout is the transaction timeout of the pool's producers: the
// coordinator aborts a transaction left open longer (its producer died
// mid-way), and until then read_committed readers of the partitions it
// wrote to cannot read past it. It exceeds the API's write timeout.
const TxnTimeout = 15 * time.Second

// TxnProducerConfig is a ProducerConfig for a transactional producer with
// transactional.id txnID: idempotent, acks=all, one request in flight (as
// sarama requires of both). A record goes to its Record.Partition, or by
// its key's hash with ByKey.
func TxnProducerConfig(clientID, txnID string) *sarama.Config {
	c := ProducerConfig(clientID)
	c.Producer.Transaction.ID = txnID
	c.Producer.Transaction.Timeout = TxnTimeout
	c.Producer.Partitioner = newRecordPartitioner
	return c
}

// explicitPartition marks, in a ProducerMessage's Metadata, a message whose
// Partition was chosen by its Record.
type explicitPartition struct{}

// recordPartitioner honours a Record's explicit partition and hashes the
// key otherwise, as NewHashPartitioner does for Producer.Send.
type recordPartitioner struct{ hash sarama.Partitioner }

func newRecordPartitioner(topic string) sarama.Partitioner {
	return recordPartitioner{hash: sarama.NewHashPartitioner(topic)}
}

func (p recordPartitioner) Partition(m *sarama.ProducerMessage, n int32) (int32, error) {
	if _, ok := m.Metadata.(explicitPartition); ok {
		return m.Partition, nil
	}
	return p.hash.Partition(m, n)
}

func (p recordPartitioner) RequiresConsistency() bool { return true }

func message(r Record) *sarama.ProducerMessage {
	m := &sarama.ProducerMessage{Topic: r.Topic, Key: sarama.ByteEncoder(r.Key)}
	if r.Value != nil {
		m.Value = sarama.ByteEncoder(r.Value)
	}
	if r.Partition != ByKey {
		m.Partition, m.Metadata = r.Partition, explicitPartition{}
	}
	return m
}

// TxnProducer is what a TxnPool needs of a transactional producer;
// sarama.SyncProducer has it.
type TxnProducer interface {
	BeginTxn() error
	SendMessages(msgs []*sarama.ProducerMessage) error
	CommitTxn() error
	AbortTxn() error
	TxnStatus() sarama.ProducerTxnStatusFlag
	Close() error
}

// ErrPoolClosed is returned by a TxnPool's Transact after Close.
var ErrPoolClosed = errors.New("kafka: transactional producer pool closed")

// TxnPool writes sets of records atomically, each in one Kafka
// transaction, with a few transactional producers: a sarama producer runs
// one transaction at a time, and its callers are concurrent.
//
// Earlier versions of the API published every mutation through one (the
// request and its initial state records); the API now writes one request
// record instead, and only tests use TxnPool: to write committed and
// aborted transactions that the read_committed readers (read models,
// bridges, the reaper) must tell apart, as on topics those versions wrote.
//
// Producer i of a pool has transactional.id <prefix>-<i>. The prefix names
// the process (an API replica) and must be unique to it and stable across
// its restarts: a restarted process then fences the producers of its
// previous incarnation (a zombie, or one that died mid-transaction), and
// the coordinator aborts what they left open. Two live processes with the
// same prefix fence each other's producers over and over.
type TxnPool struct {
	open  func(txnID string) (TxnProducer, error)
	log   *slog.Logger
	slots chan *txnSlot
	n     int // slots made
	done  chan struct{}
	once  sync.Once
	err   error // of Close

	mu           sync.Mutex
	beforeCommit func([]Record) error
}

// txnSlot is one producer of the pool; p is nil while it must be (re)opened.
type txnSlot struct {
	id string
	p  TxnProducer
}

// NewTxnPool opens size producers with open (whose argument is the
// transactional.id): all of them now, so that a restarted process fences
// its previous incarnation at once.
func NewTxnPool(size int, prefix string, open func(txnID string) (TxnProducer, error), log *slog.Logger) (*TxnPool, error) {
	if size < 1 {
		return nil, fmt.Errorf("kafka: a transactional producer pool needs at least one producer, not %d", size)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &TxnPool{open: open, log: log, slots: make(chan *txnSlot, size), done: make(chan struct{})}
	for i := range size {
		s := &txnSlot{id: fmt.Sprintf("%s-%d", prefix, i)}
		var err error
		if s.p, err = open(s.id); err != nil {
			_ = p.Close()
			return nil, fmt.Errorf("transactional producer %s: %w", s.id, err)
		}
		p.slots <- s
		p.n++
	}
	return p, nil
}

// ConnectTxnPool returns NewTxnPool with sarama producers for brokers,
// retrying as Connect does.
func ConnectTxnPool(ctx context.Context, brokers []string, clientID, prefix string, size int, log *slog.Logger) (*TxnPool, error) {
	open := func(txnID string) (TxnProducer, error) {
		return sarama.NewSyncProducer(brokers, TxnProducerConfig(clientID, txnID))
	}
	return retry(ctx, log, "Kafka "+fmt.Sprint(brokers), func() (*TxnPool, error) {
		return NewTxnPool(size, prefix, open, log)
	})
}

// validName is what CheckName accepts.
var validName = regexp.MustCompile(`\A[A-Za-z0-9][A-Za-z0-9._-]{0,62}\z`)

// CheckName reports whether name can name a process in Kafka client IDs
// and transactional IDs (a TxnPool's prefix): 1 to 63 letters, digits,
// dots, underscores or hyphens, starting with a letter or digit.
func CheckName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("%q is not a valid name: use 1 to 63 letters, digits, dots, underscores or hyphens, starting with a letter or digit", name)
	}
	return nil
}

// BeforeCommit sets a function called in every transaction once all its
// records are acknowledged, just before the commit; an error from it
// aborts the transaction, as a failed write would. For tests: a process
// that dies there, a failure after the records were written.
func (p *TxnPool) BeforeCommit(f func([]Record) error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.beforeCommit = f
}

// Transact writes records in one transaction. When it returns nil the
// transaction is committed: a read_committed reader sees every record.
// Otherwise (an error, or ctx ended before the commit) it aborts the
// transaction, so that such a reader sees none of them: neither the
// records already written nor the others. (As with any write, an error
// from the commit itself leaves the outcome unknown: the coordinator may
// have committed it.) It waits for a free producer until ctx ends.
func (p *TxnPool) Transact(ctx context.Context, records []Record) error {
	var s *txnSlot
	select {
	case <-p.done:
		return ErrPoolClosed
	case <-ctx.Done():
		return ctx.Err()
	case s = <-p.slots:
	}
	defer p.release(s)
	select {
	case <-p.done:
		return ErrPoolClosed
	default:
	}
	if s.p == nil {
		var err error
		if s.p, err = p.open(s.id); err != nil {
			return fmt.Errorf("transactional producer %s: %w", s.id, err)
		}
		p.log.Info("transactional producer reopened", "transactional_id", s.id)
	}
	return p.run(ctx, s, records)
}

// SendToPartition writes one record to an explicit partition in a
// transaction of its own.
func (p *TxnPool) SendToPartition(ctx context.Context, topic string, partition int32, key, value []byte) error {
	return p.Transact(ctx, []Record{{Topic: topic, Partition: partition, Key: key, Value: value}})
}

func (p *TxnPool) run(ctx context.Context, s *txnSlot, records []Record) (err error) {
	if err := s.p.BeginTxn(); err != nil {
		return fmt.Errorf("begin transaction (%s): %w", s.id, err)
	}
	defer func() {
		if err != nil {
			p.abort(s, err)
		}
	}()
	if err := ctx.Err(); err != nil {
		return err
	}
	msgs := make([]*sarama.ProducerMessage, len(records))
	for i, r := range records {
		msgs[i] = message(r)
	}
	if err := s.p.SendMessages(msgs); err != nil {
		return sendError(err)
	}
	p.mu.Lock()
	hook := p.beforeCommit
	p.mu.Unlock()
	if hook != nil {
		if err := hook(records); err != nil {
			return err
		}
	}
	// Decided before the commit: a caller that gave up gets no commit.
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.p.CommitTxn(); err != nil {
		return fmt.Errorf("commit transaction (%s): %w", s.id, err)
	}
	return nil
}

// sendError names the first record sarama could not write.
func sendError(err error) error {
	var pe sarama.ProducerErrors
	if errors.As(err, &pe) && len(pe) > 0 {
		return fmt.Errorf("send to %s/%d (%d of the transaction's records failed): %w", pe[0].Msg.Topic, pe[0].Msg.Partition, len(pe), pe[0].Err)
	}
	return fmt.Errorf("send: %w", err)
}

// abort ends a failed transaction so that its producer can run the next
// one. A producer in an abortable state (an error, or a transaction still
// open) is aborted; one whose abort fails, or in a fatal state (fenced, or
// whose transaction's outcome it no longer knows), is left for release to
// replace.
func (p *TxnPool) abort(s *txnSlot, cause error) {
	st := s.p.TxnStatus()
	if st&sarama.ProducerTxnFlagFatalError != 0 || st&(sarama.ProducerTxnFlagInTransaction|sarama.ProducerTxnFlagAbortableError) == 0 {
		return
	}
	if err := s.p.AbortTxn(); err != nil {
		p.log.Warn("transaction not aborted", "transactional_id", s.id, "cause", cause, "error", err)
	}
}

// release returns a slot to the pool. A producer not ready for a new
// transaction is closed, never handed out broken: its slot opens a new
// one (same transactional.id, which also ends whatever the old one left
// open) when next used.
func (p *TxnPool) release(s *txnSlot) {
	if s.p != nil {
		if st := s.p.TxnStatus(); st != sarama.ProducerTxnFlagReady {
			hint := ""
			if st&sarama.ProducerTxnFlagFatalError != 0 {
				hint = "a fatal error: fenced by a newer producer with this transactional.id (another process with the same name?) or the transaction timed out"
			}
			p.log.Warn("transactional producer replaced", "transactional_id", s.id, "state", st.String(), "hint", hint)
			if err := s.p.Close(); err != nil {
				p.log.Debug("closing a broken transactional producer", "transactional_id", s.id, "error", err)
			}
			s.p = nil
		}
	}
	p.slots <- s
}

// Close waits for the transactions in flight and closes the producers.
func (p *TxnPool) Close() error {
	p.once.Do(func() {
		close(p.done)
		var errs []error
		for range p.n {
			s := <-p.slots
			if s.p != nil {
				errs = append(errs, s.p.Close())
				s.p = nil
			}
		}
		p.err = errors.Join(errs...)
	})
	return p.err
}
