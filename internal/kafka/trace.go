package kafka

import (
	"context"

	"github.com/IBM/sarama"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
)

// The trace context of the call that writes a record travels in the
// record's headers (W3C traceparent, tracestate, baggage), so that the
// process that consumes it continues the same trace.

// producerHeaders is a propagation.TextMapCarrier over a record being
// written.
type producerHeaders struct{ msg *sarama.ProducerMessage }

func (h producerHeaders) Get(key string) string {
	for _, rh := range h.msg.Headers {
		if string(rh.Key) == key {
			return string(rh.Value)
		}
	}
	return ""
}

func (h producerHeaders) Set(key, value string) {
	h.msg.Headers = append(h.msg.Headers, sarama.RecordHeader{Key: []byte(key), Value: []byte(value)})
}

func (h producerHeaders) Keys() []string {
	keys := make([]string, len(h.msg.Headers))
	for i, rh := range h.msg.Headers {
		keys[i] = string(rh.Key)
	}
	return keys
}

// consumerHeaders is a propagation.TextMapCarrier over a record read.
type consumerHeaders []*sarama.RecordHeader

func (h consumerHeaders) Get(key string) string {
	for _, rh := range h {
		if rh != nil && string(rh.Key) == key {
			return string(rh.Value)
		}
	}
	return ""
}

func (consumerHeaders) Set(string, string) {}

func (h consumerHeaders) Keys() []string {
	keys := make([]string, 0, len(h))
	for _, rh := range h {
		if rh != nil {
			keys = append(keys, string(rh.Key))
		}
	}
	return keys
}

// inject writes ctx's trace context into msg's headers (nothing when ctx
// carries none).
func inject(ctx context.Context, msg *sarama.ProducerMessage) {
	otel.GetTextMapPropagator().Inject(ctx, producerHeaders{msg})
}

// ExtractTrace returns ctx with the trace context that msg's headers carry
// (ctx itself when they carry none).
func ExtractTrace(ctx context.Context, msg *sarama.ConsumerMessage) context.Context {
	if len(msg.Headers) == 0 {
		return ctx
	}
	return otel.GetTextMapPropagator().Extract(ctx, consumerHeaders(msg.Headers))
}

var _ propagation.TextMapCarrier = producerHeaders{}
