package bridge

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// BenchmarkRouterHandle is the router's own work per notification, with no
// Kafka: the kit's captures (other tenants' instances) through process and
// handle, as consumePartition runs them.
func BenchmarkRouterHandle(b *testing.B) {
	records := scenario(b, "a-create", "")
	r := newTestRouter(&fakeSignals{}, testRoutes(b))
	commit := func(context.Context, *sarama.ConsumerMessage) error { return nil }
	ctx := context.Background()
	mctx, cancel := graceContext(ctx, finishGrace)
	defer cancel()
	b.ResetTimer()
	for i := range b.N {
		msg := &sarama.ConsumerMessage{Value: records[i%len(records)], Timestamp: time.Now()}
		if err := processIn(ctx, mctx, msg, r.handle, commit, r.Log); err != nil {
			b.Fatal(err)
		}
	}
}
