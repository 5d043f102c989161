package bridge

import (
	"log/slog"
	"strconv"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
)

// The bridge's Prometheus metrics. The consumers' hot paths only add to the
// atomic counters of their Stats (and the router observes one histogram per
// signal it delivers); everything else is read when Prometheus scrapes.

const namespace = "cloudservers"

// messagesDesc describes the counters of one consumer.
func messagesDesc(consumer string) *prometheus.Desc {
	return prometheus.NewDesc(namespace+"_bridge_messages_total",
		"Messages a consumer of this process handled, by consumer (requests, router) and outcome: consumed (read), decoded (notifications that needed decoding), delivered (handed to Temporal: requests started or signalled, notifications routed to the saga waiting for them), duplicates, skipped (another tenant's, or no saga waits for it), dead_lettered.",
		[]string{"outcome"}, prometheus.Labels{"consumer": consumer})
}

var (
	lagDesc = prometheus.NewDesc(namespace+"_bridge_consumer_lag",
		"Records of a partition this process owns that its group has not committed yet (the partition's end minus the committed offset), by group, topic and partition.",
		[]string{"group", "topic", "partition"}, nil)
	reapDesc = prometheus.NewDesc(namespace+"_reaper_last_resources",
		"What the last reap this process ran found, by kind: examined (marked resources older than the grace period), live (of a live server), orphans, removed, failed (removals that failed).",
		[]string{"kind"}, nil)
	reapFinishedDesc = prometheus.NewDesc(namespace+"_reaper_last_finished_timestamp_seconds",
		"When the last reap this process ran finished (Unix time).", nil, nil)
	reapFailedDesc = prometheus.NewDesc(namespace+"_reaper_last_failed",
		"1 when the last reap this process ran failed (it then removed nothing, e.g. over -reap-max), else 0.", nil, nil)
)

// RegisterStats reports s, the counters of consumer ("requests" or
// "router"), through reg, and gives it the histogram of the time from a
// notification's arrival in Kafka to its signal's acceptance by Temporal.
func RegisterStats(reg prometheus.Registerer, consumer string, s *Stats, buckets []float64) {
	s.toSignal = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Subsystem: "router",
		Name: "notification_to_signal_seconds", ConstLabels: prometheus.Labels{"consumer": consumer},
		Help: "Time from a notification's record timestamp (its write to Kafka) until Temporal accepted the signal that delivers it.", Buckets: buckets})
	reg.MustRegister(statsCollector{messagesDesc(consumer), s})
	if consumer == "router" {
		reg.MustRegister(s.toSignal)
	}
}

// observeSignal records the latency of a notification routed now.
func (s *Stats) observeSignal(written time.Time) {
	if s.toSignal != nil && !written.IsZero() {
		s.toSignal.Observe(time.Since(written).Seconds())
	}
}

type statsCollector struct {
	desc *prometheus.Desc
	s    *Stats
}

func (c statsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	for _, v := range []struct {
		outcome string
		n       int64
	}{
		{"consumed", c.s.Consumed.Load()}, {"decoded", c.s.Decoded.Load()}, {"delivered", c.s.Delivered.Load()},
		{"duplicates", c.s.Duplicates.Load()}, {"skipped", c.s.Skipped.Load()}, {"dead_lettered", c.s.DeadLetters.Load()},
	} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(v.n), v.outcome)
	}
}

// OwnedPartition is a partition this process consumes for a group.
type OwnedPartition struct {
	Group, Topic string
	Partition    int32
}

// LagCollector reports the lag of the partitions owned() names, read from
// Kafka when Prometheus scrapes: each partition is reported by the one
// process that owns it. (The router commits every CommitEvery, so its lag
// includes up to that much already handled.)
type LagCollector struct {
	Kafka sarama.Client
	Owned func() []OwnedPartition
	Log   *slog.Logger
}

func (c LagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- lagDesc }

func (c LagCollector) Collect(ch chan<- prometheus.Metric) {
	type groupTopic struct{ group, topic string }
	byTopic := map[groupTopic][]int32{}
	for _, o := range c.Owned() {
		k := groupTopic{o.Group, o.Topic}
		byTopic[k] = append(byTopic[k], o.Partition)
	}
	for k, parts := range byTopic {
		committed, err := CommittedOffsets(c.Kafka, k.group, k.topic, parts)
		if err != nil {
			c.Log.Warn("lag not reported", "group", k.group, "topic", k.topic, "error", err)
			continue
		}
		for _, p := range parts {
			end, err := c.Kafka.GetOffset(k.topic, p, sarama.OffsetNewest)
			if err != nil {
				c.Log.Warn("lag not reported", "topic", k.topic, "partition", p, "error", err)
				continue
			}
			lag := end - max(committed[p].Offset, 0)
			ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(max(lag, 0)), k.group, k.topic, strconv.Itoa(int(p)))
		}
	}
}

// ReaperCollector reports the last reap of Reaper (none before the first
// has finished).
type ReaperCollector struct{ Reaper *Reaper }

func (c ReaperCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- reapDesc
	ch <- reapFinishedDesc
	ch <- reapFailedDesc
}

func (c ReaperCollector) Collect(ch chan<- prometheus.Metric) {
	last := c.Reaper.Last()
	if last.Finished.IsZero() {
		return
	}
	ch <- prometheus.MustNewConstMetric(reapFinishedDesc, prometheus.GaugeValue, float64(last.Finished.Unix()))
	failed := 0.0
	if last.Error != "" {
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(reapFailedDesc, prometheus.GaugeValue, failed)
	if res := last.Result; res != nil {
		for kind, n := range map[string]int{"examined": res.Examined, "live": res.Live, "orphans": len(res.Orphans), "removed": len(res.Removed), "failed": len(res.Failed)} {
			ch <- prometheus.MustNewConstMetric(reapDesc, prometheus.GaugeValue, float64(n), kind)
		}
	}
}

// Ownership counts the tenures this process begins and ends, by role
// (requests: request partitions; routes: notification partitions; reaper
// and router: the singletons), and how many it holds.
type Ownership struct {
	changes *prometheus.CounterVec
	held    *prometheus.GaugeVec
}

// NewOwnership registers the ownership metrics with reg.
func NewOwnership(reg prometheus.Registerer) *Ownership {
	o := &Ownership{
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "bridge", Name: "ownership_changes_total",
			Help: "Tenures this process began (acquired) or ended (released), by role: requests and routes (partitions), reaper and router (singletons)."},
			[]string{"role", "change"}),
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "bridge", Name: "owned",
			Help: "Partitions (or singletons) this process holds now, by role."}, []string{"role"}),
	}
	reg.MustRegister(o.changes, o.held)
	return o
}

// Acquired records the start of a tenure of role; the returned func records
// its end.
func (o *Ownership) Acquired(role string) (released func()) {
	o.changes.WithLabelValues(role, "acquired").Inc()
	o.held.WithLabelValues(role).Inc()
	return func() {
		o.changes.WithLabelValues(role, "released").Inc()
		o.held.WithLabelValues(role).Dec()
	}
}
