// Package temporal dials the Temporal frontend with the system's defaults.
package temporal

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.temporal.io/sdk/client"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
	"go.temporal.io/sdk/interceptor"
	tlog "go.temporal.io/sdk/log"

	"github.com/cloudservers/cloudservers/internal/telemetry"
)

// Dial connects to Temporal at hostPort in namespace, retrying with backoff
// until ctx ends: a worker or bridge started before Temporal is up waits for
// it instead of crash-looping. options adjust the client's options (its
// metrics handler, its interceptors).
func Dial(ctx context.Context, hostPort, namespace string, logger *slog.Logger, options ...func(*client.Options)) (client.Client, error) {
	backoff := 500 * time.Millisecond
	opts := client.Options{
		HostPort:  hostPort,
		Namespace: namespace,
		Logger:    tlog.NewStructuredLogger(logger),
	}
	for _, o := range options {
		o(&opts)
	}
	for {
		c, err := client.DialContext(ctx, opts)
		if err == nil {
			return c, nil
		}
		logger.Warn("Temporal not reachable; retrying", "address", hostPort, "error", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to Temporal at %s: %w", hostPort, err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// Metrics returns a Temporal client metrics handler that reports
// the SDK's metrics (temporal_*: requests, polls, workflow and activity
// task latencies) and the ones workflows emit through
// workflow.GetMetricsHandler into reg.
func Metrics(reg prometheus.Registerer) (client.MetricsHandler, error) {
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo(),
		otelprom.WithAggregationSelector(func(k sdkmetric.InstrumentKind) sdkmetric.Aggregation {
			if k == sdkmetric.InstrumentKindHistogram {
				return sdkmetric.AggregationExplicitBucketHistogram{Boundaries: telemetry.LatencyBuckets}
			}
			return sdkmetric.DefaultAggregationSelector(k)
		}))
	if err != nil {
		return nil, fmt.Errorf("temporal metrics exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	// Monotonic counters: Prometheus counters (_total), which rate() takes.
	return temporalotel.NewMetricsHandler(temporalotel.MetricsHandlerOptions{Meter: mp.Meter("temporal-sdk-go"), UseMonotonicCounters: true}), nil
}

// Tracing is the Temporal interceptor that carries the trace
// context from a client call (the bridge's signal-with-start) into the
// workflow, its child workflows and its activities, with a span for each.
func Tracing() (interceptor.Interceptor, error) {
	return temporalotel.NewTracingInterceptor(temporalotel.TracerOptions{})
}
