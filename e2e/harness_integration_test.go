//go:build integration

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"
	"go.temporal.io/sdk/client"
	temporallog "go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/activities"
	"github.com/cloudservers/cloudservers/api"
	"github.com/cloudservers/cloudservers/bridge"
	"github.com/cloudservers/cloudservers/internal/devstack"
	"github.com/cloudservers/cloudservers/internal/itest"
	"github.com/cloudservers/cloudservers/internal/kafka"
	"github.com/cloudservers/cloudservers/internal/notification"
	"github.com/cloudservers/cloudservers/internal/openstack"
	"github.com/cloudservers/cloudservers/internal/openstacksim"
	"github.com/cloudservers/cloudservers/internal/telemetry"
	"github.com/cloudservers/cloudservers/internal/zkcoord"
	"github.com/cloudservers/cloudservers/worker"
)

// system is one running copy of the application on the test stack.
type system struct {
	t         *testing.T
	ends      devstack.Endpoints
	sim       *openstacksim.Sim
	api       string // base URL
	customer  string
	key       string
	temporal  client.Client
	kafka     sarama.Client
	taskQueue string
	requests  *bridge.Requests
	router    *bridge.Router
	// startOffsets are the ends of the requests topic's partitions when
	// the system started.
	startOffsets map[int32]int64
	// calls logs the OpenStack calls of the worker's activities, on the
	// simulator and on a real cloud alike.
	calls *callRecorder
	// inspect are OpenStack clients of the test's own, to look at what the
	// system did without appearing in calls.
	inspect openstack.Clients
	catalog cloudservers.Catalog
}

type options struct {
	sim          openstacksim.Config // ignored on a real cloud
	eventTimeout time.Duration
	// catalog replaces the default catalogue (API and activities).
	catalog *cloudservers.Catalog
	// dropEvents loses the notifications it selects between the router
	// and Temporal (on any cloud).
	dropEvents func(notification.Event) bool
	// observed wires the components' metrics and tracing as the commands
	// do (observe_integration_test.go).
	observed *observed
}

func quiet() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("E2E_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func startSystem(t *testing.T, opt options) *system {
	t.Helper()
	ends := devstack.TestEndpoints(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	log := quiet()
	run := uuid.NewString()[:8]
	s := &system{t: t, ends: ends, taskQueue: "e2e-" + run, customer: "e2e-customer-" + run}
	obs := opt.observed
	if obs != nil {
		obs.setup(t)
	}

	began := time.Now()
	step := func(what string) { t.Logf("%6.2fs %s", time.Since(began).Seconds(), what) }
	producer, err := kafka.NewProducer(ends.Kafka, "e2e-"+run)
	must(t, err)
	t.Cleanup(func() { producer.Close() })
	// The API's requests: one record each, to the customer's partition,
	// through an idempotent acks=all producer, as the api command does.
	partitioned, err := kafka.ConnectProducer(ctx, ends.Kafka, "e2e-"+run+"-requests", true, log)
	must(t, err)
	t.Cleanup(func() { partitioned.Close() })
	s.kafka, err = kafka.Connect(ctx, ends.Kafka, "e2e-"+run, log)
	must(t, err)
	t.Cleanup(func() { s.kafka.Close() })

	s.catalog = cloudservers.DefaultCatalog()
	if opt.catalog != nil {
		s.catalog = *opt.catalog
	}
	var clients openstack.Clients
	// A real OpenStack publishes to the stock topics.
	notifs := itest.Notifications{Versioned: "versioned_notifications", Legacy: "notifications", Ceilometer: "ceilometer.event.sample"}
	if realCloud() {
		// A real OpenStack, which publishes Nova's notifications to the
		// test stack's Kafka itself.
		clients = connectReal(t)
		s.inspect = connectReal(t)
		if opt.eventTimeout == 0 {
			// A lost notification shows as a reconciliation read in the
			// call log instead of a test timing out.
			opt.eventTimeout = 2 * time.Minute
		}
		step("connected to the real OpenStack")
	} else {
		// The OpenStack simulator publishes its notifications to Kafka.
		simCfg := opt.sim
		simCfg.Publisher = producer
		// Notification topics of its own: the routers of the tests
		// running beside it (other packages share the stack) neither
		// read its notifications nor signal its workflows.
		notifs = itest.OwnNotificationTopics(t, ends.Kafka, "e2e-"+run+".")
		notifs.Configure(&simCfg)
		s.sim = openstacksim.New(simCfg)
		simSrv := httptest.NewServer(s.sim.Handler())
		t.Cleanup(func() { simSrv.Close(); s.sim.Close() })
		connect := func() openstack.Clients {
			c, err := openstack.ConnectWith(ctx, gophercloud.AuthOptions{
				IdentityEndpoint: simSrv.URL + "/identity/v3", Username: "admin", Password: "secret",
				TenantName: "admin", DomainName: "Default",
			}, gophercloud.EndpointOpts{Region: "RegionOne"})
			must(t, err)
			return c
		}
		clients, s.inspect = connect(), connect()
		step("simulator up")
	}
	s.calls = recordCalls(clients)
	// The worker, on this test's own task queue.
	// The SDK's own logger writes every workflow step at DEBUG: only
	// warnings unless E2E_DEBUG is set.
	tOpts := client.Options{HostPort: ends.Temporal, Namespace: ends.TemporalNamespace, Logger: temporallog.NewStructuredLogger(log)}
	if obs != nil {
		obs.temporal(t, &tOpts)
		producer.Instrument(kafka.NewProduceMetrics(obs.worker, telemetry.LatencyBuckets))
		partitioned.Instrument(kafka.NewProduceMetrics(obs.api, telemetry.LatencyBuckets))
	}
	s.temporal, err = client.Dial(tOpts)
	must(t, err)
	t.Cleanup(s.temporal.Close)
	w := sdkworker.New(s.temporal, s.taskQueue, sdkworker.Options{})
	worker.Register(w, activities.New(clients, s.catalog, producer))
	must(t, w.Start())
	t.Cleanup(w.Stop)

	step("worker started")
	// Fresh consumer groups positioned at the current ends of the topics:
	// this test handles only what it produces.
	requestGroup, routerGroup := "e2e-bridge-"+run, "e2e-router-"+run
	s.startOffsets = commitEnds(t, s.kafka, requestGroup, []string{cloudservers.TopicRequests})[cloudservers.TopicRequests]
	commitEnds(t, s.kafka, routerGroup, notifs.Topics())

	step("consumer groups positioned")
	s.requests = &bridge.Requests{Kafka: s.kafka, Consumer: newConsumer(t, ends.Kafka, "e2e-requests-"+run, log), TaskQueue: s.taskQueue, Group: requestGroup,
		Temporal: s.temporal, DeadLetters: producer, Log: log, Stats: &bridge.Stats{}, EventTimeout: opt.eventTimeout}
	var signals bridge.Signaller = s.temporal.WorkflowService()
	if opt.dropEvents != nil {
		signals = dropSignals{Signaller: signals, drop: opt.dropEvents}
	}
	routes := &bridge.Routes{Kafka: s.kafka, Consumer: newConsumer(t, ends.Kafka, "e2e-routes-"+run, log), Log: log}
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = routes.Run(ctx)
	}()
	s.router = &bridge.Router{Kafka: s.kafka, Consumer: newConsumer(t, ends.Kafka, "e2e-router-"+run, log), Group: routerGroup, Topics: notifs.Topics(),
		Signals: signals, Namespace: ends.TemporalNamespace, Routes: routes, DeadLetters: producer, Log: log, Stats: &bridge.Stats{}}

	if obs != nil {
		obs.bridge(s, requestGroup)
	}
	// Two bridge processes share the partitions through ZooKeeper.
	parts, err := s.kafka.Partitions(cloudservers.TopicRequests)
	must(t, err)
	asg := zkcoord.DefaultAssignment(int32(len(parts)), "a", "b")
	chroot := "/e2e-" + run
	for _, id := range []string{"a", "b"} {
		coord, err := zkcoord.Connect(ctx, zkcoord.Config{Servers: []string{ends.ZooKeeper}, Chroot: chroot, SessionTimeout: 4 * time.Second, ProcessID: id, Logger: log})
		must(t, err)
		t.Cleanup(func() { coord.Close() })
		wg.Add(2)
		go func() {
			defer wg.Done()
			_ = coord.OwnPartitions(ctx, asg, func(ctx context.Context, lease zkcoord.Lease) error {
				if obs != nil {
					defer obs.own(lease.Partition)()
				}
				return s.requests.ConsumePartition(ctx, lease.Partition, id, lease.Fence)
			})
		}()
		go func() {
			defer wg.Done()
			_ = coord.RunSingleton(ctx, "router", func(ctx context.Context, _ zkcoord.Lease) error {
				return s.router.Run(ctx)
			})
		}()
	}

	step("bridges started")
	// The API, with a key for this test's customer.
	s.key = "cs_e2e_" + uuid.NewString()
	rec, _ := json.Marshal(api.APIKey{Hash: api.HashKey(s.key), CustomerID: s.customer, Name: "e2e", CreatedAt: time.Now()})
	must(t, producer.Send(ctx, cloudservers.TopicAPIKeys, []byte(api.HashKey(s.key)), rec))
	readClient, err := kafka.Connect(ctx, ends.Kafka, "e2e-readmodel-"+run, log)
	must(t, err)
	t.Cleanup(func() { readClient.Close() })
	rm := api.NewReadModel()
	wg.Add(1)
	go func() { defer wg.Done(); _ = rm.Run(ctx, readClient, log) }()
	apiCfg := api.Config{Catalog: s.catalog, Partitions: int32(len(parts))}
	if obs != nil {
		apiCfg.Metrics = api.NewMetrics(obs.api)
	}
	apiSrv := httptest.NewServer(api.New(apiCfg, log, rm, s.kafka, partitioned, producer).Handler())
	t.Cleanup(apiSrv.Close)
	s.api = apiSrv.URL
	eventually(t, 30*time.Second, "the API's read model catches up", func() error {
		if !rm.Ready() {
			return fmt.Errorf("not ready")
		}
		return nil
	})
	step("API ready")
	// Stop the components before the clients they use are closed
	// (cleanups run last-registered first).
	t.Cleanup(func() { cancel(); wg.Wait() })
	return s
}

// call makes an API call as the test's customer and decodes the JSON answer.
func (s *system) call(method, path string, body any, out any, headers ...string) int {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.api+path, rd)
	req.Header.Set("Authorization", "Bearer "+s.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	must(s.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			s.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

// waitServer polls our own API (not OpenStack) until the server reaches one
// of the statuses.
func (s *system) waitServer(id string, timeout time.Duration, statuses ...string) api.ServerView {
	s.t.Helper()
	var srv api.ServerView
	eventually(s.t, timeout, "server "+id+" reaches "+strings.Join(statuses, "/"), func() error {
		srv = api.ServerView{}
		if code := s.call("GET", "/v1/servers/"+id, nil, &srv); code != 200 {
			return fmt.Errorf("GET answered %d", code)
		}
		for _, st := range statuses {
			if srv.Status == st {
				return nil
			}
		}
		return fmt.Errorf("status %s", srv.Status)
	})
	return srv
}

func (s *system) waitOperation(id string, timeout time.Duration) api.OperationView {
	s.t.Helper()
	var op api.OperationView
	eventually(s.t, timeout, "operation "+id+" completes", func() error {
		op = api.OperationView{}
		s.call("GET", "/v1/operations/"+id, nil, &op)
		if op.Status == "succeeded" || op.Status == "failed" {
			return nil
		}
		return fmt.Errorf("status %q", op.Status)
	})
	return op
}

// eventually waits for f (see itest.Eventually).
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	itest.Eventually(t, timeout, what, f)
}

// commitEnds positions a fresh group at the ends of topics and returns them.
func commitEnds(t *testing.T, kc sarama.Client, group string, topics []string) map[string]map[int32]int64 {
	t.Helper()
	return itest.CommitEnds(t, kc, group, "e2e start", topics)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// newConsumer returns a consumer on a Kafka client of its own, closed when
// the test ends (after the components using it: cleanups run in reverse).
func newConsumer(t *testing.T, brokers []string, clientID string, log *slog.Logger) sarama.Consumer {
	t.Helper()
	kc, err := kafka.Connect(context.Background(), brokers, clientID, log)
	must(t, err)
	c, err := sarama.NewConsumerFromClient(kc)
	must(t, err)
	t.Cleanup(func() { c.Close(); kc.Close() })
	return c
}
