package kafka

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ProduceMetrics measures a process's writes to Kafka, by topic: how long
// each took until the brokers acknowledged it (acks=all: every in-sync
// replica) and how many failed.
type ProduceMetrics struct {
	seconds *prometheus.HistogramVec
	errors  *prometheus.CounterVec
}

// NewProduceMetrics registers the produce metrics with reg. buckets are
// the latency histogram's, in seconds.
func NewProduceMetrics(reg prometheus.Registerer, buckets []float64) *ProduceMetrics {
	m := &ProduceMetrics{
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "cloudservers", Subsystem: "kafka",
			Name: "produce_duration_seconds", Help: "Time from a record's send to its acknowledgement (or failure), by topic.", Buckets: buckets},
			[]string{"topic"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cloudservers", Subsystem: "kafka",
			Name: "produce_errors_total", Help: "Records Kafka did not acknowledge, by topic."}, []string{"topic"}),
	}
	reg.MustRegister(m.seconds, m.errors)
	return m
}

// Instrument makes p report its sends to m (nil: no metrics).
func (p *Producer) Instrument(m *ProduceMetrics) { p.metrics = m }

func (m *ProduceMetrics) observe(topic string, began time.Time, err error) {
	if m == nil {
		return
	}
	m.seconds.WithLabelValues(topic).Observe(time.Since(began).Seconds())
	errors := m.errors.WithLabelValues(topic) // 0 from the topic's first write on
	if err != nil {
		errors.Inc()
	}
}
