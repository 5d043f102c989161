package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/api"
	"github.com/cloudservers/cloudservers/internal/apiclient"
	"github.com/cloudservers/cloudservers/internal/kafka"
)

// customer is one benchmark customer: its API client and the stream that
// tells it when its operations end.
type customer struct {
	id string
	c  *apiclient.Client
}

// makeCustomers creates n customers' API keys on Kafka, as `cloudservers
// admin create-key` does, and waits until the API knows every one.
func makeCustomers(ctx context.Context, e Endpoints, n int) ([]*customer, error) {
	p, err := kafka.NewProducer(e.Kafka, "cloudservers-bench")
	if err != nil {
		return nil, err
	}
	defer p.Close()
	out := make([]*customer, n)
	for i := range out {
		id := fmt.Sprintf("bench-%02d", i)
		key, rec, err := api.NewAPIKey(id, "bench", false, time.Now())
		if err != nil {
			return nil, err
		}
		v, _ := json.Marshal(rec)
		if err := p.Send(ctx, cloudservers.TopicAPIKeys, []byte(rec.Hash), v); err != nil {
			return nil, fmt.Errorf("api key of %s: %w", id, err)
		}
		c := apiclient.New(e.API, key)
		// A refused POST is counted, not retried behind the measure's back.
		c.Retries = 0
		out[i] = &customer{id: id, c: c}
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, cu := range out {
		for {
			_, err := cu.c.ListServers(ctx, "")
			if err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return nil, fmt.Errorf("the API does not know the key of %s after 60 s: %w", cu.id, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return out, nil
}

// op is one operation the benchmark asked for and follows.
type op struct {
	cust     *customer
	kind     string
	id       string
	serverID string
	posted   time.Time     // when the POST/DELETE was sent
	accept   time.Duration // until its 202
	done     chan struct{}
	status   string
	ended    time.Time
	errText  string
}

// tracker follows operations through each customer's event stream
// (GET /v1/events), and with a slow sweep of GETs for any the stream
// missed (a resync).
type tracker struct {
	mu     sync.Mutex
	ops    map[string]*op
	early  map[string]earlyEnd // ends seen before the 202 was read
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type earlyEnd struct {
	status, errText string
	at              time.Time
}

func newTracker(ctx context.Context, custs []*customer) (*tracker, error) {
	ctx, cancel := context.WithCancel(ctx)
	t := &tracker{ops: map[string]*op{}, early: map[string]earlyEnd{}, cancel: cancel}
	for _, cu := range custs {
		s, err := cu.c.Subscribe(ctx, "")
		if err != nil {
			t.stop()
			return nil, fmt.Errorf("event stream of %s: %w", cu.id, err)
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.follow(ctx, cu, s)
		}()
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		t.sweep(ctx)
	}()
	return t, nil
}

func (t *tracker) follow(ctx context.Context, cu *customer, s *apiclient.Stream) {
	for {
		ev, err := s.Next()
		if err != nil {
			last := s.LastID()
			s.Close()
			for ctx.Err() == nil {
				if s, err = cu.c.Subscribe(ctx, last); err == nil {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if ctx.Err() != nil {
				return
			}
			continue
		}
		if ev.Type != "operation" {
			continue
		}
		v, err := ev.Operation()
		if err != nil {
			continue
		}
		if v.Status == "succeeded" || v.Status == "failed" {
			t.end(v.ID, v.Status, v.Error, time.Now())
		}
	}
}

// sweep reads, every few seconds, the operations still open for more than
// a while: the stream may have skipped them (resync).
func (t *tracker) sweep(ctx context.Context) {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		t.mu.Lock()
		var open []*op
		for _, o := range t.ops {
			if o.status == "" && time.Since(o.posted) > 20*time.Second {
				open = append(open, o)
			}
		}
		t.mu.Unlock()
		for _, o := range open {
			v, err := o.cust.c.GetOperation(ctx, o.id)
			if err == nil && (v.Status == "succeeded" || v.Status == "failed") {
				at := time.Now()
				if v.CompletedAt != nil {
					at = *v.CompletedAt
				}
				t.end(v.ID, v.Status, v.Error, at)
			}
		}
	}
}

func (t *tracker) end(id, status, errText string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	o, ok := t.ops[id]
	if !ok {
		t.early[id] = earlyEnd{status, errText, at}
		return
	}
	if o.status != "" {
		return
	}
	o.status, o.errText, o.ended = status, errText, at
	close(o.done)
}

func (t *tracker) add(o *op) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ops[o.id] = o
	if e, ok := t.early[o.id]; ok {
		delete(t.early, o.id)
		o.status, o.errText, o.ended = e.status, e.errText, e.at
		close(o.done)
	}
}

func (t *tracker) stop() {
	t.cancel()
	t.wg.Wait()
}

// wait waits for every op to end, or until the deadline.
func wait(ctx context.Context, ops []*op, timeout time.Duration) (open int) {
	deadline := time.After(timeout)
	for _, o := range ops {
		select {
		case <-o.done:
		case <-deadline:
			return countOpen(ops)
		case <-ctx.Done():
			return countOpen(ops)
		}
	}
	return 0
}

func countOpen(ops []*op) int {
	n := 0
	for _, o := range ops {
		select {
		case <-o.done:
		default:
			n++
		}
	}
	return n
}

// job is one mutation to send: a create for a customer, or a delete of a
// server.
type job struct {
	cust     *customer
	serverID string // delete when set
	name     string
}

// burst sends jobs from conc concurrent clients, each mutation right after
// the previous one's 202, and registers each accepted operation with t.
// Refusals are returned as errors, not retried.
func burst(ctx context.Context, t *tracker, jobs []job, conc int) (ops []*op, errs []string) {
	var mu sync.Mutex
	ch := make(chan job)
	var wg sync.WaitGroup
	for c := 0; c < conc; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range ch {
				o, err := send(ctx, j)
				mu.Lock()
				if err != nil {
					errs = append(errs, err.Error())
				} else {
					ops = append(ops, o)
				}
				mu.Unlock()
				if err == nil {
					t.add(o)
				}
			}
		}()
	}
	for _, j := range jobs {
		select {
		case ch <- j:
		case <-ctx.Done():
		}
	}
	close(ch)
	wg.Wait()
	return ops, errs
}

func send(ctx context.Context, j job) (*op, error) {
	t0 := time.Now()
	var v api.OperationView
	var err error
	kind := "create"
	if j.serverID != "" {
		kind = "delete"
		v, err = j.cust.c.DeleteServer(ctx, j.serverID, apiclient.NewIdempotencyKey())
	} else {
		v, err = j.cust.c.CreateServer(ctx, api.CreateServerRequest{Name: j.name, Size: "s-1vcpu-64mb", Image: "tiny", Region: "region-one"}, apiclient.NewIdempotencyKey())
	}
	d := time.Since(t0)
	if err != nil {
		return nil, fmt.Errorf("%s by %s: %w", kind, j.cust.id, err)
	}
	return &op{cust: j.cust, kind: kind, id: v.ID, serverID: v.ServerID, posted: t0, accept: d, done: make(chan struct{})}, nil
}

// openQuotas lifts the simulated cloud's project quotas: the benchmark's
// customers share one OpenStack project, and its defaults (10 instances)
// are a test's, not a load's.
func openQuotas(ctx context.Context, simAdmin string) error {
	body := `{"instances": -1, "cores": -1, "ram": -1, "ports": -1, "floatingips": -1}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(simAdmin, "/")+"/quotas", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("simulator quotas: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("simulator quotas: %s", resp.Status)
	}
	return nil
}

// outcome summarizes a burst of followed operations.
type outcome struct {
	accept  []time.Duration
	e2e     []time.Duration // POST to succeeded, succeeded ones only
	perSec  float64         // succeeded per second, first POST to last end
	failed  int
	open    int
	elapsed time.Duration
}

func summarize(ops []*op, t0 time.Time) outcome {
	var out outcome
	var last time.Time
	for _, o := range ops {
		out.accept = append(out.accept, o.accept)
		select {
		case <-o.done:
		default:
			out.open++
			continue
		}
		if o.status != "succeeded" {
			out.failed++
			continue
		}
		out.e2e = append(out.e2e, o.ended.Sub(o.posted))
		if o.ended.After(last) {
			last = o.ended
		}
	}
	if len(out.e2e) > 0 {
		out.elapsed = last.Sub(t0)
		out.perSec = float64(len(out.e2e)) / out.elapsed.Seconds()
	}
	return out
}
