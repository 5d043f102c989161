package kafka

import (
	"errors"
	"fmt"
	"sort"

	"github.com/IBM/sarama"
)

// Position is what a read_committed consumer has yet to deliver of a range
// of offsets (Scan).
type Position int

const (
	// Behind: a committed record in the range is yet to be delivered.
	Behind Position = iota
	// CaughtUp: nothing in the range is for a read_committed consumer:
	// only transaction markers, records of aborted transactions, or
	// offsets compaction removed.
	CaughtUp
	// Undecided: part of the range belongs to a transaction still open
	// (beyond the last stable offset); ask again later.
	Undecided
)

func (p Position) String() string {
	switch p {
	case Behind:
		return "behind"
	case CaughtUp:
		return "caught up"
	case Undecided:
		return "undecided"
	}
	return fmt.Sprintf("Position(%d)", int(p))
}

// scanBytes bounds one fetch of Scan: a committed record ends the scan,
// and markers and aborted records are small.
const scanBytes = 64 << 10

// Scan tells whether a read_committed consumer of a partition that has
// delivered every record before from has anything to deliver before to.
//
// Offsets are not all records: each transaction leaves a marker (commit or
// abort) on every partition it wrote to, which takes an offset and is never
// delivered, and the records of an aborted transaction are dropped. A
// reader that waits until its next offset reaches the end of a partition
// (its high watermark) would wait forever when the partition ends with
// such offsets; Scan reads the range (read_committed fetches from from)
// to tell such offsets from a record the consumer is still to deliver.
//
// kc should not be the client the consumer fetches through: Kafka answers
// the requests of one connection in order, so a scan would wait behind
// the consumer's long-polling fetches.
func Scan(kc sarama.Client, topic string, partition int32, from, to int64) (Position, error) {
	for from < to {
		b, err := kc.Leader(topic, partition)
		if err != nil {
			return Behind, fmt.Errorf("leader of %s/%d: %w", topic, partition, err)
		}
		req := &sarama.FetchRequest{Version: 11, MaxWaitTime: 0, MinBytes: 0, MaxBytes: scanBytes,
			Isolation: sarama.ReadCommitted, SessionID: 0, SessionEpoch: -1}
		req.AddBlock(topic, partition, from, scanBytes, -1)
		resp, err := b.Fetch(req)
		if err != nil {
			return Behind, fmt.Errorf("fetch %s/%d from %d: %w", topic, partition, from, err)
		}
		block := resp.GetBlock(topic, partition)
		if block == nil {
			return Behind, fmt.Errorf("fetch %s/%d: %w", topic, partition, sarama.ErrIncompleteResponse)
		}
		if !errors.Is(block.Err, sarama.ErrNoError) {
			return Behind, fmt.Errorf("fetch %s/%d from %d: %w", topic, partition, from, block.Err)
		}
		next, pos, decided := scanBlock(block, from, to)
		if decided {
			return pos, nil
		}
		if next <= from {
			// Nothing stable from here: the rest is an open transaction,
			// unless the stable part already covers the range.
			if block.LastStableOffset >= to {
				return CaughtUp, nil
			}
			return Undecided, nil
		}
		from = next
	}
	return CaughtUp, nil
}

// scanBlock reads one read_committed fetch of a partition from offset from.
// decided: pos answers Scan for [from, to). Otherwise the fetch covered the
// range up to next only.
func scanBlock(block *sarama.FetchResponseBlock, from, to int64) (next int64, pos Position, decided bool) {
	aborted := append([]*sarama.AbortedTransaction{}, block.AbortedTransactions...)
	sort.Slice(aborted, func(i, j int) bool { return aborted[i].FirstOffset < aborted[j].FirstOffset })
	// Producers whose aborted transaction the batches read so far are in.
	inAborted := map[int64]bool{}
	next = from
	for _, rs := range block.RecordsSet {
		if rs.MsgSet != nil {
			// The pre-0.11 format has no transactions: all records.
			for _, m := range rs.MsgSet.Messages {
				if m.Offset >= from && m.Offset < to {
					return next, Behind, true
				}
				next = max(next, m.Offset+1)
			}
			continue
		}
		b := rs.RecordBatch
		if b == nil {
			continue
		}
		if b.PartialTrailingRecord {
			break // cut off by the fetch size: fetch again from next
		}
		if b.FirstOffset >= to {
			return next, CaughtUp, true
		}
		for len(aborted) > 0 && aborted[0].FirstOffset <= b.LastOffset() {
			inAborted[aborted[0].ProducerID] = true
			aborted = aborted[1:]
		}
		switch {
		case b.Control:
			// A marker ends its producer's transaction.
			delete(inAborted, b.ProducerID)
		case b.IsTransactional && inAborted[b.ProducerID]:
			// Dropped by a read_committed consumer.
		default:
			for _, r := range b.Records {
				if off := b.FirstOffset + r.OffsetDelta; off >= from && off < to {
					return next, Behind, true
				}
			}
		}
		next = max(next, b.LastOffset()+1)
	}
	if next >= to {
		return next, CaughtUp, true
	}
	return next, Behind, false
}
