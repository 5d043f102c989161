package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// fakeTxn is a transactional producer with sarama's states: Ready,
// InTransaction, then Ready again after a commit or an abort. fail makes
// the next send fail and leaves it in state failState (abortable or
// fatal); a fatal producer cannot abort.
type fakeTxn struct {
	id   string
	log  *fakeLog
	mu   sync.Mutex
	st   sarama.ProducerTxnStatusFlag
	txn  []*sarama.ProducerMessage
	slow time.Duration

	fail      error
	failState sarama.ProducerTxnStatusFlag
	aborts    int
	closed    bool
}

// fakeLog is what the fake producers committed, and how many ran a
// transaction at once.
type fakeLog struct {
	mu        sync.Mutex
	committed []*sarama.ProducerMessage
	active    atomic.Int32
	maxActive atomic.Int32
}

func (f *fakeTxn) BeginTxn() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.st != sarama.ProducerTxnFlagReady {
		return sarama.ErrTransitionNotAllowed
	}
	f.st = sarama.ProducerTxnFlagInTransaction
	n := f.log.active.Add(1)
	for {
		m := f.log.maxActive.Load()
		if n <= m || f.log.maxActive.CompareAndSwap(m, n) {
			break
		}
	}
	return nil
}

func (f *fakeTxn) SendMessages(msgs []*sarama.ProducerMessage) error {
	time.Sleep(f.slow)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.st != sarama.ProducerTxnFlagInTransaction {
		return sarama.ErrTransactionNotReady
	}
	if f.fail != nil {
		err := f.fail
		f.fail = nil
		f.st = sarama.ProducerTxnFlagInError | f.failState
		return sarama.ProducerErrors{{Msg: msgs[0], Err: err}}
	}
	f.txn = append(f.txn, msgs...)
	return nil
}

func (f *fakeTxn) end() {
	f.txn = nil
	f.st = sarama.ProducerTxnFlagReady
	f.log.active.Add(-1)
}

func (f *fakeTxn) CommitTxn() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.st != sarama.ProducerTxnFlagInTransaction {
		return sarama.ErrTransactionNotReady
	}
	f.log.mu.Lock()
	f.log.committed = append(f.log.committed, f.txn...)
	f.log.mu.Unlock()
	f.end()
	return nil
}

func (f *fakeTxn) AbortTxn() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.aborts++
	if f.st&sarama.ProducerTxnFlagFatalError != 0 || f.st&(sarama.ProducerTxnFlagInTransaction|sarama.ProducerTxnFlagAbortableError) == 0 {
		return sarama.ErrTransitionNotAllowed
	}
	f.end()
	return nil
}

func (f *fakeTxn) TxnStatus() sarama.ProducerTxnStatusFlag {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakeTxn) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// fakeOpener opens fakeTxns and remembers them, in order.
type fakeOpener struct {
	log    fakeLog
	slow   time.Duration
	mu     sync.Mutex
	opened []*fakeTxn
	err    error
}

func (o *fakeOpener) open(id string) (TxnProducer, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return nil, o.err
	}
	f := &fakeTxn{id: id, log: &o.log, st: sarama.ProducerTxnFlagReady, slow: o.slow}
	o.opened = append(o.opened, f)
	return f, nil
}

func (o *fakeOpener) producers() []*fakeTxn {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*fakeTxn{}, o.opened...)
}

func (o *fakeOpener) committed() []*sarama.ProducerMessage {
	o.log.mu.Lock()
	defer o.log.mu.Unlock()
	return append([]*sarama.ProducerMessage{}, o.log.committed...)
}

// fakePool is a pool of one fake producer, closed at the test's end.
func fakePool(t *testing.T) (*TxnPool, *fakeOpener) {
	t.Helper()
	o := &fakeOpener{}
	p, err := NewTxnPool(1, "r", o.open, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p, o
}

func records(n int) []Record {
	out := make([]Record, n)
	for i := range out {
		out[i] = Record{Topic: fmt.Sprintf("t%d", i), Partition: ByKey, Key: []byte("k"), Value: []byte("v")}
	}
	return out
}

func TestTxnPoolConcurrentTransactions(t *testing.T) {
	o := &fakeOpener{slow: 2 * time.Millisecond}
	p, err := NewTxnPool(3, "api-r1", o.open, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, f := range o.producers() {
		ids = append(ids, f.id)
	}
	if strings.Join(ids, ",") != "api-r1-0,api-r1-1,api-r1-2" {
		t.Errorf("transactional IDs %v", ids)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 40 {
		wg.Go(func() { errs <- p.Transact(context.Background(), records(3)) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	// The fakes refuse a second transaction at once (BeginTxn): none was
	// given one, and the three ran side by side.
	if n := o.log.maxActive.Load(); n != 3 {
		t.Errorf("at most %d transactions at once, want 3", n)
	}
	if n := len(o.committed()); n != 120 {
		t.Errorf("%d records committed, want 120", n)
	}
	if len(o.producers()) != 3 {
		t.Errorf("%d producers opened", len(o.producers()))
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range o.producers() {
		if !f.closed {
			t.Errorf("%s not closed", f.id)
		}
	}
	if err := p.Transact(context.Background(), records(1)); !errors.Is(err, ErrPoolClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func TestTxnPoolAbortsFailedTransaction(t *testing.T) {
	p, o := fakePool(t)
	f := o.producers()[0]
	f.fail, f.failState = sarama.ErrNotEnoughReplicas, sarama.ProducerTxnFlagAbortableError
	err := p.Transact(context.Background(), records(3))
	if !errors.Is(err, sarama.ErrNotEnoughReplicas) || !strings.Contains(err.Error(), "t0") {
		t.Errorf("error %v", err)
	}
	if f.aborts != 1 || f.TxnStatus() != sarama.ProducerTxnFlagReady {
		t.Errorf("aborts %d, state %v", f.aborts, f.TxnStatus())
	}
	// Aborted, the producer serves the next transaction.
	if err := p.Transact(context.Background(), records(2)); err != nil {
		t.Fatal(err)
	}
	if n := len(o.producers()); n != 1 {
		t.Errorf("%d producers opened", n)
	}
	if n := len(o.committed()); n != 2 {
		t.Errorf("%d records committed, want the second transaction's 2", n)
	}
}

func TestTxnPoolReplacesBrokenProducer(t *testing.T) {
	p, o := fakePool(t)
	first := o.producers()[0]
	first.fail, first.failState = sarama.ErrProducerFenced, sarama.ProducerTxnFlagFatalError
	if err := p.Transact(context.Background(), records(3)); !errors.Is(err, sarama.ErrProducerFenced) {
		t.Errorf("error %v", err)
	}
	if !first.closed {
		t.Error("the fenced producer was not closed")
	}
	// Kafka is unreachable for a moment: the slot stays empty, and the
	// transaction fails without a producer.
	o.err = errors.New("no brokers")
	if err := p.Transact(context.Background(), records(1)); err == nil || !strings.Contains(err.Error(), "no brokers") {
		t.Errorf("without Kafka: %v", err)
	}
	o.err = nil
	if err := p.Transact(context.Background(), records(2)); err != nil {
		t.Fatal(err)
	}
	ps := o.producers()
	if len(ps) != 2 || ps[1].id != "r-0" || ps[1].closed {
		t.Fatalf("producers %+v", ps)
	}
	if n := len(o.committed()); n != 2 {
		t.Errorf("%d records committed", n)
	}

	// A producer left in a state it cannot abort from is replaced too.
	ps[1].fail, ps[1].failState = sarama.ErrOutOfOrderSequenceNumber, 0
	if err := p.Transact(context.Background(), records(1)); err == nil {
		t.Fatal("no error")
	}
	if !ps[1].closed {
		t.Error("a producer that could not abort went back to the pool")
	}
	if err := p.Transact(context.Background(), records(1)); err != nil {
		t.Fatal(err)
	}
	if n := len(o.producers()); n != 3 {
		t.Errorf("%d producers opened, want 3", n)
	}
}

func TestTxnPoolContext(t *testing.T) {
	p, o := fakePool(t)
	// The caller gives up before the commit: aborted, nothing committed.
	ctx, cancel := context.WithCancel(context.Background())
	p.BeforeCommit(func([]Record) error { cancel(); return nil })
	if err := p.Transact(ctx, records(3)); !errors.Is(err, context.Canceled) {
		t.Errorf("error %v", err)
	}
	f := o.producers()[0]
	if f.aborts != 1 || len(o.committed()) != 0 || f.TxnStatus() != sarama.ProducerTxnFlagReady {
		t.Errorf("aborts %d, committed %d, state %v", f.aborts, len(o.committed()), f.TxnStatus())
	}
	// A failure after the records were written aborts them too.
	boom := errors.New("boom")
	p.BeforeCommit(func([]Record) error { return boom })
	if err := p.Transact(context.Background(), records(3)); !errors.Is(err, boom) || len(o.committed()) != 0 || f.aborts != 2 {
		t.Errorf("error %v, committed %d, aborts %d", err, len(o.committed()), f.aborts)
	}
	// Waiting for a busy producer ends with the context.
	inTxn, release := make(chan struct{}), make(chan struct{})
	p.BeforeCommit(func([]Record) error { close(inTxn); <-release; return nil })
	done := make(chan error)
	go func() { done <- p.Transact(context.Background(), records(1)) }()
	<-inTxn
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer wcancel()
	if err := p.Transact(wctx, records(1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting for a producer: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len(o.committed()); n != 1 {
		t.Errorf("%d records committed", n)
	}
}

func TestTxnPoolOpenFails(t *testing.T) {
	o := &fakeOpener{}
	calls := 0
	open := func(id string) (TxnProducer, error) {
		if calls++; calls == 2 {
			return nil, errors.New("refused")
		}
		return o.open(id)
	}
	if _, err := NewTxnPool(3, "r", open, nil); err == nil || !strings.Contains(err.Error(), "r-1") {
		t.Fatalf("error %v", err)
	}
	if ps := o.producers(); len(ps) != 1 || !ps[0].closed {
		t.Errorf("the producer opened before the failure was not closed: %+v", ps)
	}
	if _, err := NewTxnPool(0, "r", o.open, nil); err == nil {
		t.Error("a pool of no producers")
	}
}

func TestRecordMessage(t *testing.T) {
	m := message(Record{Topic: "req", Partition: 4, Key: []byte("7"), Value: []byte("v")})
	if p, err := newRecordPartitioner("req").Partition(m, 6); err != nil || p != 4 {
		t.Errorf("explicit partition: %d %v", p, err)
	}
	// By key: as the hash partitioner of Producer.Send places the key.
	m = message(Record{Topic: "st", Partition: ByKey, Key: []byte("server-1"), Value: []byte("v")})
	want, _ := sarama.NewHashPartitioner("st").Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder("server-1")}, 3)
	if p, err := newRecordPartitioner("st").Partition(m, 3); err != nil || p != want {
		t.Errorf("by key: %d %v, want %d", p, err, want)
	}
	if m := message(Record{Topic: "st", Partition: ByKey, Key: []byte("k")}); m.Value != nil {
		t.Errorf("a tombstone has value %v", m.Value)
	}
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"api", "api-1", "pod_7.zone-a", strings.Repeat("a", 63)} {
		if err := CheckName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-api", "api 1", "api/1", "ä", strings.Repeat("a", 64)} {
		if err := CheckName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
