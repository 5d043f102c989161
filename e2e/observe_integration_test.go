//go:build integration

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.temporal.io/sdk/client"

	"github.com/cloudservers/cloudservers/api"
	"github.com/cloudservers/cloudservers/bridge"
	"github.com/cloudservers/cloudservers/internal/openstacksim"
	"github.com/cloudservers/cloudservers/internal/telemetry"
)

// observed holds what the system's telemetry produced: the registries of
// the API, the bridge and the worker (wired with the constructors the
// commands use) and every span, in memory.
type observed struct {
	api, bridgeReg, worker *prometheus.Registry
	spans                  *tracetest.SpanRecorder
	tp                     *sdktrace.TracerProvider
	mu                     sync.Mutex
	owned                  map[int32]bool
	requestGroup           string
	// own records a tenure of a request partition; it returns its end.
	own func(partition int32) (released func())
}

func newObserved() *observed {
	return &observed{api: telemetry.NewRegistry(), bridgeReg: telemetry.NewRegistry(), worker: telemetry.NewRegistry(), owned: map[int32]bool{}}
}

// setup installs an in-memory tracer provider and the propagator, as
// telemetry.SetupTracing does with an OTLP exporter.
func (o *observed) setup(t *testing.T) {
	o.spans = tracetest.NewSpanRecorder()
	o.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(o.spans))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(o.tp)
	if _, err := telemetry.SetupTracing(context.Background(), "e2e", ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
}

// temporal makes the test's Temporal client (the worker's and the
// bridge's) report the SDK's metrics and trace, as the commands' do.
func (o *observed) temporal(t *testing.T, opts *client.Options) {
	mh, err := telemetry.TemporalMetrics(o.worker)
	must(t, err)
	tracing, err := telemetry.TemporalTracing()
	must(t, err)
	opts.MetricsHandler = mh
	opts.Interceptors = append(opts.Interceptors, tracing)
}

func (o *observed) bridge(s *system, requestGroup string) {
	o.requestGroup = requestGroup
	bridge.RegisterStats(o.bridgeReg, "requests", s.requests.Stats, telemetry.LatencyBuckets)
	bridge.RegisterStats(o.bridgeReg, "router", s.router.Stats, telemetry.LatencyBuckets)
	o.bridgeReg.MustRegister(bridge.LagCollector{Kafka: s.kafka, Log: quiet(), Owned: func() []bridge.OwnedPartition {
		o.mu.Lock()
		defer o.mu.Unlock()
		var out []bridge.OwnedPartition
		for p := range o.owned {
			out = append(out, bridge.OwnedPartition{Group: o.requestGroup, Topic: "cloudservers.requests", Partition: p})
		}
		return out
	}})
	ownership := bridge.NewOwnership(o.bridgeReg)
	o.own = func(p int32) func() {
		released := ownership.Acquired("requests")
		o.mu.Lock()
		o.owned[p] = true
		o.mu.Unlock()
		return func() {
			o.mu.Lock()
			delete(o.owned, p)
			o.mu.Unlock()
			released()
		}
	}
}

// TestOneCreateIsOneTrace: the trace context of the API call travels
// through the request's Kafka headers, the bridge, the lifecycle and the
// saga workflows and their activities onto the OpenStack calls, so one
// create is one connected trace, which names the request's X-Request-Id.
func TestOneCreateIsOneTrace(t *testing.T) {
	obs := newObserved()
	s := startSystem(t, options{sim: openstacksim.Config{BootTime: 300 * time.Millisecond, DeleteTime: 200 * time.Millisecond}, observed: obs})
	const requestID = "e2e-trace-request-1"
	var op api.OperationView
	if code := s.call("POST", "/v1/servers", createBody("traced-1"), &op, api.RequestIDHeader, requestID); code != 202 {
		t.Fatalf("create answered %d", code)
	}
	if got := s.waitOperation(op.ID, 60*time.Second); got.Status != "succeeded" {
		t.Fatalf("create operation: %+v", got)
	}
	must(t, obs.tp.ForceFlush(context.Background()))

	// Started, not only ended: the lifecycle workflow's span lasts as
	// long as the server.
	spans := obs.spans.Started()
	var root sdktrace.ReadOnlySpan
	for _, sp := range spans {
		if sp.Name() == "POST /v1/servers" && attr(sp, "cloudservers.request_id") == requestID {
			root = sp
		}
	}
	if root == nil {
		t.Fatalf("no span of the API call with request ID %s among %d spans", requestID, len(spans))
	}
	traceID := root.SpanContext().TraceID()
	inTrace := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	names := map[string]int{}
	for _, sp := range spans {
		if sp.SpanContext().TraceID() == traceID {
			inTrace[sp.SpanContext().SpanID()] = sp
			names[sp.Name()]++
		}
	}
	// Connected: every span but the API's has its parent in the trace.
	for _, sp := range inTrace {
		if sp == root {
			continue
		}
		if _, ok := inTrace[sp.Parent().SpanID()]; !ok {
			t.Errorf("span %q has a parent %s that is not in the trace", sp.Name(), sp.Parent().SpanID())
		}
	}
	list := make([]string, 0, len(names))
	for n, c := range names {
		list = append(list, n+"×"+strconv.Itoa(c))
	}
	sort.Strings(list)
	t.Logf("trace %s: %d spans: %s", traceID, len(inTrace), strings.Join(list, ", "))
	for _, want := range []string{"deliver request", "SignalWithStartWorkflow:ServerWorkflow", "RunWorkflow:ServerWorkflow",
		"RunWorkflow:CreateServerWorkflow", "RunActivity:CreateNovaServer", "openstack POST"} {
		if names[want] == 0 {
			t.Errorf("no span %q in the create's trace", want)
		}
	}
}

// TestDashboardMetricsExist: every metric the Grafana dashboard
// (docs/grafana-dashboard.json) queries is one the API, the bridge or the
// worker exports, after a create and a delete went through the system and
// a reap ran.
func TestDashboardMetricsExist(t *testing.T) {
	obs := newObserved()
	s := startSystem(t, options{sim: openstacksim.Config{BootTime: 300 * time.Millisecond, DeleteTime: 200 * time.Millisecond}, observed: obs})
	var op api.OperationView
	if code := s.call("POST", "/v1/servers", createBody("metered-1"), &op); code != 202 {
		t.Fatalf("create answered %d", code)
	}
	if got := s.waitOperation(op.ID, 60*time.Second); got.Status != "succeeded" {
		t.Fatalf("create operation: %+v", got)
	}
	var del api.OperationView
	if code := s.call("DELETE", "/v1/servers/"+op.ServerID, nil, &del); code != 202 {
		t.Fatalf("delete answered %d", code)
	}
	if got := s.waitOperation(del.ID, 60*time.Second); got.Status != "succeeded" {
		t.Fatalf("delete operation: %+v", got)
	}
	// One reap, as the bridge's reaper runs it.
	reaper := &bridge.Reaper{Temporal: s.temporal, Kafka: s.kafka, Consumer: newConsumer(t, s.ends.Kafka, "e2e-reaper-"+s.taskQueue, quiet()),
		TaskQueue: s.taskQueue, Interval: time.Hour, Log: quiet()}
	obs.bridgeReg.MustRegister(bridge.ReaperCollector{Reaper: reaper})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reaper.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, 60*time.Second, "a reap finishes", func() error {
		if reaper.Last().Finished.IsZero() {
			return errors.New("not yet")
		}
		return nil
	})

	exported := map[string]bool{}
	for name, reg := range map[string]*prometheus.Registry{"api": obs.api, "bridge": obs.bridgeReg, "worker": obs.worker} {
		fams, err := reg.Gather()
		must(t, err)
		for _, f := range fams {
			exported[f.GetName()] = true
			if f.GetType() == dto.MetricType_HISTOGRAM {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					exported[f.GetName()+suffix] = true
				}
			}
		}
		t.Logf("%s exports %d metric families", name, len(fams))
	}
	used := dashboardMetrics(t, "../docs/grafana-dashboard.json")
	if len(used) < 10 {
		t.Fatalf("the dashboard queries only %d metrics: %v", len(used), used)
	}
	for _, m := range used {
		if !exported[m] {
			t.Errorf("the dashboard queries %s, which no component exports", m)
		}
	}
	if t.Failed() {
		var all []string
		for m := range exported {
			if strings.HasPrefix(m, "cloudservers_") || strings.HasPrefix(m, "temporal_") {
				all = append(all, m)
			}
		}
		sort.Strings(all)
		t.Logf("exported: %s", strings.Join(all, " "))
	}
}

var metricName = regexp.MustCompile(`\b(cloudservers|temporal)_[a-z0-9_]+`)

// dashboardMetrics returns the metric names every panel's queries use.
func dashboardMetrics(t *testing.T, path string) []string {
	b, err := os.ReadFile(path)
	must(t, err)
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	must(t, json.Unmarshal(b, &d))
	seen := map[string]bool{}
	var out []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, m := range metricName.FindAllString(tg.Expr, -1) {
				if !seen[m] {
					seen[m] = true
					out = append(out, m)
				}
			}
		}
	}
	return out
}

func attr(sp sdktrace.ReadOnlySpan, key string) string {
	for _, a := range sp.Attributes() {
		if string(a.Key) == key {
			return a.Value.Emit()
		}
	}
	return ""
}
