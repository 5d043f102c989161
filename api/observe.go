package api

import (
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/cloudservers/cloudservers/internal/telemetry"
)

// RequestIDHeader carries a request's ID: the client's own when it sent a
// well-formed one, else one the API made. Every answer carries it, and the
// request's log lines and trace name it.
const RequestIDHeader = "X-Request-Id"

// maxRequestID bounds an incoming request ID.
const maxRequestID = 128

// wellFormedRequestID accepts 1-128 characters of letters, digits and
// "-._:", which covers UUIDs and what proxies and load balancers send; any
// other value is replaced (it would go into logs and headers).
func wellFormedRequestID(id string) bool {
	if id == "" || len(id) > maxRequestID {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == ':') {
			return false
		}
	}
	return true
}

// Metrics are the API's Prometheus metrics.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	accept   *prometheus.HistogramVec
}

// NewMetrics registers the API's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: telemetry.Namespace, Subsystem: "api", Name: "requests_total",
			Help: "HTTP requests answered, by method, route (the path template) and status code."}, []string{"method", "route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: telemetry.Namespace, Subsystem: "api", Name: "request_duration_seconds",
			Help: "Time from a request's arrival to its answer, by method and route.", Buckets: telemetry.LatencyBuckets}, []string{"method", "route"}),
		accept: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: telemetry.Namespace, Subsystem: "api", Name: "accept_duration_seconds",
			Help:    "Time from a mutation's arrival to its answer once its request is durable in Kafka (outcome accepted) or refused (unavailable), by operation.",
			Buckets: telemetry.LatencyBuckets}, []string{"operation", "outcome"}),
	}
	reg.MustRegister(m.requests, m.duration, m.accept)
	return m
}

// Keys of the values observe puts in the Gin context.
const (
	requestIDKey = "request_id"
	beganKey     = "began"
)

// observe gives the request its ID (answered in X-Request-Id, put on the
// context for the logs) and a server span that continues the caller's
// trace (W3C traceparent) and names the ID, then counts, times and logs
// it.
func (s *Server) observe(c *gin.Context) {
	began := time.Now()
	id := c.GetHeader(RequestIDHeader)
	if !wellFormedRequestID(id) {
		id = uuid.NewString()
	}
	c.Header(RequestIDHeader, id)
	c.Set(requestIDKey, id)
	c.Set(beganKey, began)
	ctx := otel.GetTextMapPropagator().Extract(c.Request.Context(), propagation.HeaderCarrier(c.Request.Header))
	ctx, span := otel.Tracer("github.com/cloudservers/cloudservers/api").Start(ctx, c.Request.Method, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", c.Request.Method), attribute.String("url.path", c.Request.URL.Path),
			attribute.String("cloudservers.request_id", id)))
	defer span.End()
	c.Request = c.Request.WithContext(telemetry.WithRequestID(ctx, id))
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched" // 404s: their paths are unbounded
	}
	span.SetName(c.Request.Method + " " + route)
	status := c.Writer.Status()
	span.SetAttributes(attribute.String("http.route", route), attribute.Int("http.response.status_code", status))
	if status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	elapsed := time.Since(began)
	if s.metrics != nil {
		s.metrics.requests.WithLabelValues(c.Request.Method, route, strconv.Itoa(status)).Inc()
		s.metrics.duration.WithLabelValues(c.Request.Method, route).Observe(elapsed.Seconds())
	}
	level := slog.LevelInfo
	switch {
	case status >= 500:
		level = slog.LevelWarn
	case route == "/healthz" || route == "/readyz":
		level = slog.LevelDebug
	}
	s.log.LogAttrs(c.Request.Context(), level, "request", slog.String("method", c.Request.Method), slog.String("route", route),
		slog.String("path", c.Request.URL.Path), slog.Int("status", status), slog.Duration("duration", elapsed),
		slog.String("customer", customerOf(c)))
}

// observeAccept times a mutation's accept.
func (s *Server) observeAccept(c *gin.Context, op string, accepted bool) {
	if s.metrics == nil {
		return
	}
	outcome := "accepted"
	if !accepted {
		outcome = "unavailable"
	}
	s.metrics.accept.WithLabelValues(op, outcome).Observe(time.Since(c.GetTime(beganKey)).Seconds())
}
