package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cloudservers/cloudservers/api"
	"github.com/cloudservers/cloudservers/internal/telemetry"
)

// observedEnv is an env whose API logs JSON to logs and reports its
// metrics to reg.
func observedEnv(t *testing.T) (e *env, reg *prometheus.Registry, logs *bytes.Buffer) {
	t.Helper()
	reg = prometheus.NewRegistry()
	cfg := api.Config{Catalog: testCatalog(), RateLimit: 1e6, RateBurst: 1e6, Metrics: api.NewMetrics(reg)}
	e = newEnv(t, cfg)
	logs = &bytes.Buffer{}
	log, err := telemetry.NewLogger(logs, telemetry.FormatJSON, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.api = api.New(cfg, log, e.rm, nil, e.kafka, e.kafka)
	e.api.SetClock(e.clock.Now)
	e.h = e.api.Handler()
	return e, reg, logs
}

func TestRequestIDOnEveryAnswerAndInTheLogs(t *testing.T) {
	e, _, logs := observedEnv(t)
	create := req{method: http.MethodPost, path: "/v1/servers", key: e.alice,
		body: map[string]string{"name": "web-1", "size": "s-1vcpu-64mb", "image": "tiny", "region": "region-one"}}
	for _, tc := range []struct {
		name, sent string
		kept       bool
	}{
		{"well-formed kept", "client-req.42:a_b", true},
		{"none sent", "", false},
		{"with a space replaced", "two words", false},
		{"too long replaced", strings.Repeat("a", 129), false},
		{"a control character replaced", "abc\x01", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range []req{create, {method: http.MethodGet, path: "/v1/nowhere", key: e.alice}, {method: http.MethodGet, path: "/v1/servers"}} {
				r.header = map[string]string{api.RequestIDHeader: tc.sent}
				logs.Reset()
				rec := e.do(r)
				got := rec.Header().Get(api.RequestIDHeader)
				if tc.kept && got != tc.sent {
					t.Fatalf("%s %s: X-Request-Id %q, want the client's %q", r.method, r.path, got, tc.sent)
				}
				if !tc.kept {
					if _, err := uuid.Parse(got); err != nil {
						t.Fatalf("%s %s: X-Request-Id %q, want a new UUID instead of %q", r.method, r.path, got, tc.sent)
					}
				}
				var line map[string]any
				found := false
				for _, l := range bytes.Split(bytes.TrimSpace(logs.Bytes()), []byte("\n")) {
					if err := json.Unmarshal(l, &line); err != nil {
						t.Fatalf("log line is not JSON: %s", l)
					}
					if line["msg"] == "request" {
						found = true
						if line["request_id"] != got {
							t.Fatalf("request log line %s: request_id, want %q", l, got)
						}
					}
				}
				if !found {
					t.Fatalf("no request log line: %s", logs)
				}
				create.header = map[string]string{"Idempotency-Key": uuid.NewString()}
			}
		})
	}
}

func TestRequestMetricsByRoute(t *testing.T) {
	e, reg, _ := observedEnv(t)
	e.create(e.alice, "web-1")
	e.do(req{method: http.MethodGet, path: "/v1/servers", key: e.alice})
	e.do(req{method: http.MethodGet, path: "/v1/servers/" + uuid.NewString(), key: e.alice})
	e.do(req{method: http.MethodGet, path: "/v1/no/such/" + uuid.NewString(), key: e.alice})
	want := `
# HELP cloudservers_api_requests_total HTTP requests answered, by method, route (the path template) and status code.
# TYPE cloudservers_api_requests_total counter
cloudservers_api_requests_total{method="GET",route="/v1/servers",status="200"} 1
cloudservers_api_requests_total{method="GET",route="/v1/servers/:id",status="404"} 1
cloudservers_api_requests_total{method="GET",route="unmatched",status="404"} 1
cloudservers_api_requests_total{method="POST",route="/v1/servers",status="202"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "cloudservers_api_requests_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(reg, "cloudservers_api_accept_duration_seconds"); n != 1 {
		t.Fatalf("accept latency series: %d, want 1 (create accepted)", n)
	}
}
