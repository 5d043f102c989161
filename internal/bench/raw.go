package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/cloudservers/cloudservers/internal/kafka"
)

// rawProduce sends count single records to its own topic from producers
// concurrent idempotent acks=all producers (the API's durability for a
// 202), each record synchronously, and returns the latency of each send.
func rawProduce(ctx context.Context, brokers []string, topic string, producers, count int) ([]time.Duration, error) {
	ps := make([]sarama.SyncProducer, producers)
	defer func() {
		for _, p := range ps {
			if p != nil {
				p.Close()
			}
		}
	}()
	for i := range ps {
		c := kafka.ProducerConfig(fmt.Sprintf("bench-raw-%d", i))
		c.Producer.Partitioner = sarama.NewHashPartitioner
		p, err := sarama.NewSyncProducer(brokers, c)
		if err != nil {
			return nil, fmt.Errorf("raw producer: %w", err)
		}
		ps[i] = p
		// The first send fetches metadata and the producer ID: not part
		// of a steady-state produce.
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder("warm-up")}); err != nil {
			return nil, fmt.Errorf("raw produce: %w", err)
		}
	}
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	value := make([]byte, 600) // about a create request's size
	for i, p := range ps {
		n := count / producers
		if i < count%producers {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < n && ctx.Err() == nil; j++ {
				t0 := time.Now()
				_, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprint(i, "-", j)), Value: sarama.ByteEncoder(value)})
				d := time.Since(t0)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if err == nil {
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return lat, fmt.Errorf("raw produce: %w", firstErr)
	}
	return lat, ctx.Err()
}

// ensureTopic creates a one-partition topic for the raw produce.
func ensureTopic(brokers []string, topic string) (drop func(), err error) {
	adm, err := sarama.NewClusterAdmin(brokers, kafka.Config("bench-admin"))
	if err != nil {
		return nil, fmt.Errorf("kafka admin: %w", err)
	}
	err = adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false)
	if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
		adm.Close()
		return nil, fmt.Errorf("create topic %s: %w", topic, err)
	}
	return func() { _ = adm.DeleteTopic(topic); adm.Close() }, nil
}

// Shape is the raw workflow's shape: a saga's steps with the one wait that
// ends on a notification, without anything of this project.
type Shape struct {
	Before, After int           // activities before and after the wait
	Timeout       time.Duration // the wait's timer, as the sagas' event timeout
}

const (
	rawStartSignal = "request"
	rawEventSignal = "event"
)

// RawSagaWorkflow is the baseline: started by SignalWithStart (the request
// is the signal, as the bridge does), Before activities, a wait for one
// signal raced against a timer, After activities.
func RawSagaWorkflow(ctx workflow.Context, s Shape) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second},
	})
	var req string
	workflow.GetSignalChannel(ctx, rawStartSignal).Receive(ctx, &req)
	for i := 0; i < s.Before; i++ {
		if err := workflow.ExecuteActivity(ctx, RawStep, i).Get(ctx, nil); err != nil {
			return err
		}
	}
	timerCtx, cancel := workflow.WithCancel(ctx)
	timer := workflow.NewTimer(timerCtx, s.Timeout)
	var timedOut bool
	sel := workflow.NewSelector(ctx)
	sel.AddReceive(workflow.GetSignalChannel(ctx, rawEventSignal), func(c workflow.ReceiveChannel, _ bool) {
		var ev string
		c.Receive(ctx, &ev)
	})
	sel.AddFuture(timer, func(workflow.Future) { timedOut = true })
	sel.Select(ctx)
	cancel()
	if timedOut {
		return errors.New("no event signal before the timeout")
	}
	for i := 0; i < s.After; i++ {
		if err := workflow.ExecuteActivity(ctx, RawStep, s.Before+i).Get(ctx, nil); err != nil {
			return err
		}
	}
	return nil
}

// RawStep is the baseline's activity: it does nothing, so the baseline
// measures what the engine costs.
func RawStep(ctx context.Context, i int) error { return nil }

// rawWorker runs the baseline's worker inside the benchmark process on a
// task queue of its own.
func rawWorker(tc client.Client, queue string) (stop func(), err error) {
	w := worker.New(tc, queue, worker.Options{})
	w.RegisterWorkflow(RawSagaWorkflow)
	w.RegisterActivity(RawStep)
	if err := w.Start(); err != nil {
		return nil, fmt.Errorf("raw baseline worker: %w", err)
	}
	return w.Stop, nil
}

// rawRun is one burst of the raw workflow: n workflows started by conc
// clients, each signalled delay after its start; it returns each one's
// start-to-completion latency, the burst's rate and the workflow IDs.
func rawRun(ctx context.Context, tc client.Client, queue, prefix string, s Shape, delay time.Duration, n, conc int) (lat []time.Duration, perSec float64, ids []string, err error) {
	type result struct {
		id  string
		d   time.Duration
		end time.Time
		err error
	}
	jobs := make(chan int)
	results := make(chan result, n)
	var wg sync.WaitGroup
	var sigWG sync.WaitGroup
	t0 := time.Now()
	for c := 0; c < conc; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				id := fmt.Sprintf("%s-%d", prefix, i)
				start := time.Now()
				run, err := tc.SignalWithStartWorkflow(ctx, id, rawStartSignal, "go", client.StartWorkflowOptions{
					ID: id, TaskQueue: queue, WorkflowExecutionTimeout: 5 * time.Minute,
				}, RawSagaWorkflow, s)
				if err != nil {
					results <- result{id: id, err: fmt.Errorf("signal-with-start %s: %w", id, err)}
					continue
				}
				// The notification comes delay after the request, as the
				// simulated boot does; the waiter is its own goroutine so
				// the client goes on starting.
				sigWG.Add(1)
				time.AfterFunc(delay, func() {
					defer sigWG.Done()
					_ = tc.SignalWorkflow(ctx, id, "", rawEventSignal, "done")
				})
				wg.Add(1)
				go func() {
					defer wg.Done()
					err := run.Get(ctx, nil)
					results <- result{id: id, d: time.Since(start), end: time.Now(), err: err}
				}()
			}
		}()
	}
	for i := 0; i < n; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	sigWG.Wait()
	close(results)
	var last time.Time
	for r := range results {
		if r.err != nil {
			if err == nil {
				err = r.err
			}
			continue
		}
		lat = append(lat, r.d)
		ids = append(ids, r.id)
		if r.end.After(last) {
			last = r.end
		}
	}
	if len(lat) > 0 {
		perSec = float64(len(lat)) / last.Sub(t0).Seconds()
	}
	return lat, perSec, ids, err
}
