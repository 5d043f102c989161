//go:build integration

package api_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/api"
	"github.com/cloudservers/cloudservers/internal/devstack"
	"github.com/cloudservers/cloudservers/internal/itest"
	"github.com/cloudservers/cloudservers/internal/kafka"
)

// The accept benchmarks measure POST /v1/servers → 202 on one replica (in
// this process, on the stack's real Kafka) at 1 and at 20 concurrent
// clients, beside a raw produce of one record with the same durability
// (idempotent, acks=all) on the same broker. They report p50, p99 and max
// latency (ms) and accepts per second. Run them with a fixed count, e.g.
//
//	scripts/test-stack.sh go test -tags integration -run '^$' -bench 'Accept|RawProduce' -benchtime 2000x ./api/

// benchClients are the concurrencies measured.
var benchClients = []int{1, 20}

// latencies collects one duration per operation from many goroutines.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B, elapsed time.Duration, unit string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	q := func(p float64) float64 {
		return float64(l.d[min(len(l.d)-1, int(p*float64(len(l.d))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(l.d[len(l.d)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(len(l.d))/elapsed.Seconds(), unit)
	b.ReportMetric(0, "ns/op") // the latencies above say it better
}

// runClients runs n operations spread over c goroutines, timing each.
func runClients(b *testing.B, n, c int, op func(i int) error) *latencies {
	lat := &latencies{}
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range c {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				start := time.Now()
				if err := op(i); err != nil {
					if failed.Add(1) <= 3 {
						b.Error(err)
					}
					continue
				}
				lat.add(time.Since(start))
			}
		})
	}
	wg.Wait()
	return lat
}

func BenchmarkAccept(b *testing.B) {
	ep := devstack.TestEndpoints(b)
	r := startReplicaWith(b, ep, "bench", api.Config{RateLimit: 1e6, RateBurst: 1e6, MaxServers: 1 << 30, MaxVCPUs: 1 << 30})
	// 40 customers, as the user who measured it: their buckets spread the
	// requests over the topic's partitions.
	keys := make([]string, 40)
	for i := range keys {
		_, keys[i] = customer(b, ep, fmt.Sprintf("bench%d", i))
	}
	for _, k := range keys {
		waitKey(b, r, k)
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	post := func(i int) error {
		body := fmt.Appendf(nil, `{"name":"bench-%d","size":"s-1vcpu-64mb","image":"tiny","region":"region-one"}`, i)
		req, _ := http.NewRequest("POST", r.base+"/v1/servers", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+keys[i%len(keys)])
		req.Header.Set("Idempotency-Key", fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i))
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("POST /v1/servers: %d", resp.StatusCode)
		}
		return nil
	}
	for _, c := range benchClients {
		b.Run(fmt.Sprintf("clients=%d", c), func(b *testing.B) {
			_ = runClients(b, min(b.N, 50), c, post) // warm up connections
			b.ResetTimer()
			start := time.Now()
			lat := runClients(b, b.N, c, post)
			lat.report(b, time.Since(start), "accepts/s")
		})
	}
}

// BenchmarkRawProduce is the baseline: one record of a request's size,
// produced synchronously (idempotent, acks=all) through one shared
// producer by c goroutines at once, as the API's requests are.
func BenchmarkRawProduce(b *testing.B) {
	ep := devstack.TestEndpoints(b)
	topic := fmt.Sprintf("bench.raw-%d", time.Now().UnixNano())
	itest.OwnTopics(b, ep.Kafka, devstack.TopicSpec{Name: topic, Partitions: 6})
	p, err := kafka.NewPartitionProducer(ep.Kafka, "bench-raw")
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	value := bytes.Repeat([]byte("x"), 300)
	send := func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return p.SendToPartition(ctx, topic, int32(cloudservers.Bucket(fmt.Sprint(i%40))%6), []byte("k"), value)
	}
	for _, c := range benchClients {
		b.Run(fmt.Sprintf("clients=%d", c), func(b *testing.B) {
			_ = runClients(b, min(b.N, 50), c, send)
			b.ResetTimer()
			start := time.Now()
			lat := runClients(b, b.N, c, send)
			lat.report(b, time.Since(start), "records/s")
		})
	}
}
