package kafka

import (
	"testing"

	"github.com/IBM/sarama"
)

// batch is a record batch of n records from offset first.
func batch(first int64, n int, producer int64, transactional, control bool) *sarama.Records {
	b := &sarama.RecordBatch{FirstOffset: first, LastOffsetDelta: int32(n - 1), ProducerID: producer, IsTransactional: transactional, Control: control}
	for i := range n {
		b.Records = append(b.Records, &sarama.Record{OffsetDelta: int64(i)})
	}
	return &sarama.Records{RecordBatch: b}
}

func TestScanBlock(t *testing.T) {
	const pid, other = 7, 9
	committed := batch(10, 3, pid, true, false) // 10..12
	marker := batch(13, 1, pid, true, true)     // 13
	for _, c := range []struct {
		name     string
		block    *sarama.FetchResponseBlock
		from, to int64
		next     int64
		pos      Position
		decided  bool
	}{
		{"a committed record is to come", &sarama.FetchResponseBlock{RecordsSet: []*sarama.Records{committed, marker}}, 11, 14, 11, Behind, true},
		{"only the commit marker is left", &sarama.FetchResponseBlock{RecordsSet: []*sarama.Records{committed, marker}}, 13, 14, 14, CaughtUp, true},
		{"the batch read up to its last record", &sarama.FetchResponseBlock{RecordsSet: []*sarama.Records{committed, marker}}, 13, 20, 14, Behind, false},
		{"an aborted transaction and its marker",
			&sarama.FetchResponseBlock{AbortedTransactions: []*sarama.AbortedTransaction{{ProducerID: pid, FirstOffset: 10}},
				RecordsSet: []*sarama.Records{committed, marker}}, 10, 14, 14, CaughtUp, true},
		{"another producer's record after an aborted transaction",
			&sarama.FetchResponseBlock{AbortedTransactions: []*sarama.AbortedTransaction{{ProducerID: pid, FirstOffset: 10}},
				RecordsSet: []*sarama.Records{committed, marker, batch(14, 1, other, false, false)}}, 10, 15, 14, Behind, true},
		{"a record at or past the target", &sarama.FetchResponseBlock{RecordsSet: []*sarama.Records{marker, batch(20, 1, other, false, false)}}, 13, 20, 14, CaughtUp, true},
		{"nothing read", &sarama.FetchResponseBlock{}, 13, 14, 13, Behind, false},
	} {
		next, pos, decided := scanBlock(c.block, c.from, c.to)
		if decided != c.decided || (decided && pos != c.pos) || next != c.next {
			t.Errorf("%s: next %d, %v, decided %v; want %d, %v, %v", c.name, next, pos, decided, c.next, c.pos, c.decided)
		}
	}
}
