//go:build integration

package chaos

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/activities"
	"github.com/cloudservers/cloudservers/internal/devstack"
	"github.com/cloudservers/cloudservers/internal/itest"
	"github.com/cloudservers/cloudservers/internal/kafka"
	"github.com/cloudservers/cloudservers/internal/openstack"
	"github.com/cloudservers/cloudservers/internal/openstacksim"
	"github.com/cloudservers/cloudservers/worker"
	"github.com/cloudservers/cloudservers/workflows"
)

// partitions of each test's own requests topic, as the stack's.
const partitions = 6

// world is one test's share of the stack: its own requests topic, task
// queue, consumer groups and ZooKeeper chroot, an in-process worker and
// OpenStack simulator; the bridges are child processes.
type world struct {
	t            *testing.T
	ends         devstack.Endpoints
	run          string
	topic        string
	taskQueue    string
	requestGroup string
	routerGroup  string
	notifs       itest.Notifications // the notification topics of its simulator and bridges
	chroot       string
	customer     string
	sim          *openstacksim.Sim
	acts         *activities.Activities
	temporal     client.Client
	kafka        sarama.Client
	producer     *kafka.Producer // partitioned: requests
	plain        *kafka.Producer // notifications, garbage
	published    *recorder       // the simulator's notifications
	// otherCreates counts the Nova creates the test made itself (not
	// through a saga).
	otherCreates int
}

type worldOptions struct {
	sim openstacksim.Config
	// partitions of the requests topic (default partitions).
	partitions int
}

func quietLog() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("CHAOS_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// sdkLog is the in-process Temporal SDK's logger: errors only (sagas log
// warnings of their own that say nothing about the bridges).
func sdkLog() *slog.Logger {
	level := slog.LevelError
	if os.Getenv("CHAOS_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func newWorld(t *testing.T, opt worldOptions) *world {
	t.Helper()
	ends := devstack.TestEndpoints(t)
	run := uuid.NewString()[:8]
	w := &world{t: t, ends: ends, run: run, topic: "chaos-" + run + ".requests", taskQueue: "chaos-" + run,
		requestGroup: "chaos-bridge-" + run, routerGroup: "chaos-router-" + run, chroot: "/chaos-" + run,
		customer: "chaos-customer-" + run}
	ctx := context.Background()
	log := quietLog()
	var err error
	w.kafka, err = kafka.Connect(ctx, ends.Kafka, "chaos-"+run, log)
	must(t, err)
	t.Cleanup(func() { w.kafka.Close() })
	w.producer, err = kafka.NewPartitionProducer(ends.Kafka, "chaos-"+run)
	must(t, err)
	t.Cleanup(func() { w.producer.Close() })
	w.plain, err = kafka.NewProducer(ends.Kafka, "chaos-"+run)
	must(t, err)
	t.Cleanup(func() { w.plain.Close() })

	// The test's own requests topic: nobody else's requests reach its
	// bridges, and its requests reach no one else's.
	nparts := int32(cmp.Or(opt.partitions, partitions))
	itest.OwnTopics(t, ends.Kafka, devstack.TopicSpec{Name: w.topic, Partitions: nparts})
	eventually(t, 30*time.Second, "topic "+w.topic+" has its partitions", func() error {
		if err := w.kafka.RefreshMetadata(w.topic); err != nil {
			return err
		}
		ps, err := w.kafka.Partitions(w.topic)
		if err != nil {
			return err
		}
		if int32(len(ps)) != nparts {
			return fmt.Errorf("%d partitions", len(ps))
		}
		return nil
	})
	// Notification topics of its own, so that no other test's router
	// (other packages share the stack) signals this test's workflows and
	// this test's routers deliver only its own notifications.
	w.notifs = itest.OwnNotificationTopics(t, ends.Kafka, "chaos-"+run+".")
	commitEnds(t, w.kafka, w.routerGroup, w.notifs.Topics())

	simCfg := opt.sim
	w.notifs.Configure(&simCfg)
	w.published = &recorder{next: w.plain}
	simCfg.Publisher = w.published
	// Unlimited: a test creates a server per request.
	simCfg.Quotas = openstacksim.Quotas{Instances: -1, Cores: -1, RAM: -1, Ports: -1, FloatingIPs: -1}
	w.sim = openstacksim.New(simCfg)
	simSrv := httptest.NewServer(w.sim.Handler())
	t.Cleanup(func() { simSrv.Close(); w.sim.Close() })
	clients, err := openstack.ConnectWith(ctx, gophercloud.AuthOptions{
		IdentityEndpoint: simSrv.URL + "/identity/v3", Username: "admin", Password: "secret",
		TenantName: "admin", DomainName: "Default",
	}, gophercloud.EndpointOpts{Region: "RegionOne"})
	must(t, err)
	w.acts = activities.New(clients, cloudservers.DefaultCatalog(), w.plain)

	w.temporal, err = client.Dial(client.Options{HostPort: ends.Temporal, Namespace: ends.TemporalNamespace, Logger: tlog.NewStructuredLogger(sdkLog())})
	must(t, err)
	t.Cleanup(w.temporal.Close)
	wk := sdkworker.New(w.temporal, w.taskQueue, sdkworker.Options{})
	worker.Register(wk, w.acts)
	must(t, wk.Start())
	t.Cleanup(wk.Stop)
	t.Cleanup(w.terminateWorkflows)
	return w
}

// bridgeArgs are the arguments of a bridge process of this world.
func (w *world) bridgeArgs(id string, extra ...string) []string {
	return append([]string{"bridge", "-id", id,
		"-kafka", strings.Join(w.ends.Kafka, ","),
		"-temporal", w.ends.Temporal, "-namespace", w.ends.TemporalNamespace,
		"-zookeeper", w.ends.ZooKeeper + w.chroot,
		"-requests-topic", w.topic, "-task-queue", w.taskQueue,
		"-request-group", w.requestGroup, "-router-group", w.routerGroup,
		"-notification-topics", strings.Join(w.notifs.Topics(), ","),
		"-status-listen", "127.0.0.1:0",
	}, extra...)
}

// sent is a request the test produced.
type sent struct {
	op, server string
	partition  int32
	at         time.Time
}

// produce writes a create request to a partition of the world's topic.
func (w *world) produce(ctx context.Context, partition int32, n int) (sent, error) {
	req := cloudservers.Request{
		OperationID: uuid.NewString(), ServerID: uuid.NewString(), CustomerID: w.customer,
		Operation: cloudservers.OpCreate, RequestedAt: time.Now().UTC(),
	}
	req.Params, _ = json.Marshal(cloudservers.CreateParams{Name: "chaos-" + strconv.Itoa(n), Size: "s-1vcpu-64mb", Image: "tiny", Region: "region-one"})
	v, _ := json.Marshal(req)
	if err := w.producer.SendToPartition(ctx, w.topic, partition, []byte(w.customer), v); err != nil {
		return sent{}, err
	}
	return sent{op: req.OperationID, server: req.ServerID, partition: partition, at: time.Now()}, nil
}

// stream produces create requests at a steady rate, round robin over the
// partitions, until stopped.
type stream struct {
	w      *world
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	sent   []sent
	failed int
}

func (w *world) startStream(every time.Duration) *stream {
	ctx, cancel := context.WithCancel(context.Background())
	s := &stream{w: w, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for n := 0; ; n++ {
			r, err := w.produce(ctx, int32(n%partitions), n)
			s.mu.Lock()
			if err != nil {
				if ctx.Err() == nil {
					s.failed++
				}
			} else {
				s.sent = append(s.sent, r)
			}
			s.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	w.t.Cleanup(func() { s.stop() })
	return s
}

func (s *stream) stop() []sent {
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed > 0 {
		s.w.t.Errorf("the stream could not produce %d requests", s.failed)
		s.failed = 0
	}
	return append([]sent(nil), s.sent...)
}

func (s *stream) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sent)
}

// verdict is what happened to the requests of a test.
type verdict struct {
	// deliveries counts, per operation ID, how often the bridges handed the
	// request to Temporal (the "request" signals in the server's
	// lifecycle history). 1 is the goal; 2 is a harmless redelivery.
	deliveries  map[string]int
	redelivered []sent
}

// verifyExactlyOnce waits until every request's saga has run and checks
// that each was started exactly once: its op/<id> workflow exists and
// completed, the simulator received exactly one Nova create per request,
// and every server has exactly one instance.
func (w *world) verifyExactlyOnce(reqs []sent, timeout time.Duration) verdict {
	t := w.t
	t.Helper()
	ctx := context.Background()
	pending := map[string]bool{}
	for _, r := range reqs {
		pending[r.op] = true
	}
	deadline := time.Now().Add(timeout)
	for len(pending) > 0 {
		var mu sync.Mutex
		var g group
		ops := make([]string, 0, len(pending))
		for op := range pending {
			ops = append(ops, op)
		}
		for _, op := range ops {
			g.Go(func() error {
				d, err := w.temporal.DescribeWorkflowExecution(ctx, workflows.OperationWorkflowID(op), "")
				var nf *serviceerror.NotFound
				if errors.As(err, &nf) {
					return nil
				}
				if err != nil {
					return err
				}
				switch st := d.GetWorkflowExecutionInfo().GetStatus(); st {
				case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
					mu.Lock()
					delete(pending, op)
					mu.Unlock()
				case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
				default:
					err := w.temporal.GetWorkflow(ctx, workflows.OperationWorkflowID(op), "").Get(ctx, nil)
					return fmt.Errorf("op/%s ended %s: %v", op, st, err)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatalf("checking the operations: %v", err)
		}
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			var some []string
			for op := range pending {
				some = append(some, op)
				if len(some) == 5 {
					break
				}
			}
			t.Fatalf("%d of %d requests were not started or did not complete within %s (lost?), e.g. %v", len(pending), len(reqs), timeout, some)
		}
		time.Sleep(500 * time.Millisecond)
	}

	creates := w.sim.Calls().Count("POST /compute/v2.1/servers") - w.otherCreates
	if creates != len(reqs) {
		t.Errorf("the simulator received %d Nova creates for %d requests: a saga ran twice (or not at all)", creates, len(reqs))
	}
	instances := map[string]int{}
	for _, s := range w.sim.Inventory().Servers {
		instances[s.Name]++
	}
	for _, r := range reqs {
		if n := instances[cloudservers.NovaServerName(r.server)]; n != 1 {
			t.Errorf("server %s has %d Nova instances", r.server, n)
		}
	}

	v := verdict{deliveries: map[string]int{}}
	var mu sync.Mutex
	var g group
	for _, r := range reqs {
		g.Go(func() error {
			n, err := w.requestSignals(ctx, r.server, r.op)
			mu.Lock()
			v.deliveries[r.op] = n
			if n > 1 {
				v.redelivered = append(v.redelivered, r)
			}
			mu.Unlock()
			return err
		})
	}
	must(t, g.Wait())
	for _, r := range reqs {
		if v.deliveries[r.op] < 1 {
			t.Errorf("request %s was never delivered to server/%s", r.op, r.server)
		}
	}
	sort.Slice(v.redelivered, func(i, j int) bool { return v.redelivered[i].at.Before(v.redelivered[j].at) })
	return v
}

// requestSignals counts the deliveries of an operation to its server's
// lifecycle: the "request" signals carrying its operation ID.
func (w *world) requestSignals(ctx context.Context, server, op string) (int, error) {
	times, err := w.requestDeliveries(ctx, server, nil)
	return len(times[op]), err
}

// requestDeliveries adds to into (a new map when nil) when each request
// reached the server's lifecycle: the times of the "request" signals, by
// operation ID, in history order.
func (w *world) requestDeliveries(ctx context.Context, server string, into map[string][]time.Time) (map[string][]time.Time, error) {
	if into == nil {
		into = map[string][]time.Time{}
	}
	it := w.temporal.GetWorkflowHistory(ctx, workflows.ServerWorkflowID(server), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return into, err
		}
		a := ev.GetWorkflowExecutionSignaledEventAttributes()
		if a == nil || a.GetSignalName() != workflows.SignalRequest {
			continue
		}
		var req cloudservers.Request
		if p := a.GetInput().GetPayloads(); len(p) == 1 && json.Unmarshal(p[0].GetData(), &req) == nil {
			into[req.OperationID] = append(into[req.OperationID], ev.GetEventTime().AsTime())
		}
	}
	return into, nil
}

// terminateWorkflows ends the lifecycles this test started (they would
// otherwise wait forever for their next request).
func (w *world) terminateWorkflows() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var token []byte
	for {
		resp, err := w.temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: fmt.Sprintf("TaskQueue = '%s' AND ExecutionStatus = 'Running'", w.taskQueue), NextPageToken: token})
		if err != nil {
			return
		}
		for _, e := range resp.GetExecutions() {
			_ = w.temporal.TerminateWorkflow(ctx, e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId(), "chaos test done")
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			return
		}
	}
}

// eventually waits for f (see itest.Eventually).
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	itest.Eventually(t, timeout, what, f)
}

// commitEnds positions a fresh group at the ends of topics.
func commitEnds(t *testing.T, kc sarama.Client, group string, topics []string) {
	t.Helper()
	itest.CommitEnds(t, kc, group, "chaos start", topics)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// group runs functions, eight at a time, and returns the first error.
type group struct {
	wg   sync.WaitGroup
	sem  chan struct{}
	once sync.Once
	mu   sync.Mutex
	err  error
}

func (g *group) Go(f func() error) {
	g.once.Do(func() { g.sem = make(chan struct{}, 8) })
	g.sem <- struct{}{}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer func() { <-g.sem }()
		if err := f(); err != nil {
			g.mu.Lock()
			if g.err == nil {
				g.err = err
			}
			g.mu.Unlock()
		}
	}()
}

func (g *group) Wait() error {
	g.wg.Wait()
	return g.err
}

// recorder passes the simulator's notifications on to Kafka and remembers
// when each was published.
type recorder struct {
	next openstacksim.Publisher
	mu   sync.Mutex
	log  []publication
}

type publication struct {
	at    time.Time
	topic string
	value string
}

func (r *recorder) Publish(ctx context.Context, topic string, value []byte) error {
	err := r.next.Publish(ctx, topic, value)
	if err == nil {
		r.mu.Lock()
		r.log = append(r.log, publication{time.Now(), topic, string(value)})
		r.mu.Unlock()
	}
	return err
}

// between returns the publications in [from, to) whose value contains s.
func (r *recorder) between(from, to time.Time, s string) []publication {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []publication
	for _, p := range r.log {
		if !p.at.Before(from) && p.at.Before(to) && strings.Contains(p.value, s) {
			out = append(out, p)
		}
	}
	return out
}
