package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/activities"
	"github.com/cloudservers/cloudservers/api"
	"github.com/cloudservers/cloudservers/bridge"
	"github.com/cloudservers/cloudservers/internal/config"
	"github.com/cloudservers/cloudservers/internal/kafka"
	"github.com/cloudservers/cloudservers/internal/openstack"
	"github.com/cloudservers/cloudservers/internal/telemetry"
	"github.com/cloudservers/cloudservers/internal/temporal"
	"github.com/cloudservers/cloudservers/internal/zkcoord"
	"github.com/cloudservers/cloudservers/worker"
	"github.com/cloudservers/cloudservers/workflows"
)

// common are the flags every component shares; each defaults to an
// environment variable so that `dev` can configure its children.
type common struct {
	configPath string
	kafka      string
	temporal   string
	namespace  string
	zookeeper  string
	// logFormat is text or json; otlpEndpoint, when set, receives the
	// process's spans (OTLP over HTTP).
	logFormat    string
	otlpEndpoint string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.configPath, "config", envOr(config.EnvFile, ""), "the configuration file (YAML; flags and CLOUDSERVERS_* variables override it; docs/cloudservers.example.yaml shows every key) (env "+config.EnvFile+")")
	fs.StringVar(&c.kafka, "kafka", envOr("CLOUDSERVERS_KAFKA", ""), "Kafka brokers, host:port[,host:port] (env CLOUDSERVERS_KAFKA)")
	fs.StringVar(&c.temporal, "temporal", envOr("CLOUDSERVERS_TEMPORAL", ""), "Temporal frontend host:port (env CLOUDSERVERS_TEMPORAL)")
	fs.StringVar(&c.namespace, "namespace", envOr("CLOUDSERVERS_NAMESPACE", "cloudservers"), "Temporal namespace (env CLOUDSERVERS_NAMESPACE)")
	fs.StringVar(&c.zookeeper, "zookeeper", envOr("CLOUDSERVERS_ZOOKEEPER", ""), "ZooKeeper connect string host:port[,host:port][/chroot] (env CLOUDSERVERS_ZOOKEEPER)")
	fs.StringVar(&c.logFormat, "log-format", envOr("CLOUDSERVERS_LOG_FORMAT", telemetry.FormatText), "log format: text or json (env CLOUDSERVERS_LOG_FORMAT)")
	fs.StringVar(&c.otlpEndpoint, "otlp-endpoint", envOr("CLOUDSERVERS_OTLP_ENDPOINT", ""),
		"export traces over OTLP/HTTP to this URL, e.g. http://collector:4318 (env CLOUDSERVERS_OTLP_ENDPOINT; none: trace context is passed on, no span is recorded)")
}

// observability returns the component's logger (in -log-format) and
// installs its tracing (-otlp-endpoint); shutdown flushes the spans.
func (c *common) observability(ctx context.Context, component string) (log *slog.Logger, shutdown func(), err error) {
	log, err = newLogger(component, c.logFormat)
	if err != nil {
		return nil, nil, fmt.Errorf("-log-format: %w", err)
	}
	stop, err := telemetry.SetupTracing(ctx, "cloudservers-"+component, c.otlpEndpoint)
	if err != nil {
		return nil, nil, fmt.Errorf("-otlp-endpoint: %w", err)
	}
	return log, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stop(sctx); err != nil {
			log.Warn("spans not flushed", "error", err)
		}
	}, nil
}

// temporalOptions make a Temporal client report the SDK's metrics into reg
// and carry trace context into workflows and activities.
func temporalOptions(reg *prometheus.Registry) (func(*client.Options), error) {
	mh, err := temporal.Metrics(reg)
	if err != nil {
		return nil, err
	}
	tracing, err := temporal.Tracing()
	if err != nil {
		return nil, err
	}
	return func(o *client.Options) {
		o.MetricsHandler = mh
		o.Interceptors = append(o.Interceptors, tracing)
	}, nil
}

func (c *common) brokers() ([]string, error) {
	if c.kafka == "" {
		return nil, errors.New("no Kafka brokers: set -kafka or CLOUDSERVERS_KAFKA")
	}
	return strings.Split(c.kafka, ","), nil
}

// setIf sets *dst to *v when the configuration file gave v.
func setIf[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// logger is a component's logger in the format CLOUDSERVERS_LOG_FORMAT
// names (text when it names none or an unknown one).
func logger(component string) *slog.Logger {
	log, err := newLogger(component, os.Getenv("CLOUDSERVERS_LOG_FORMAT"))
	if err != nil {
		log, _ = newLogger(component, telemetry.FormatText)
	}
	return log
}

func newLogger(component, format string) (*slog.Logger, error) {
	level := slog.LevelInfo
	if os.Getenv("CLOUDSERVERS_DEBUG") != "" {
		level = slog.LevelDebug
	}
	log, err := telemetry.NewLogger(os.Stderr, format, level)
	if err != nil {
		return nil, err
	}
	return log.With("component", component), nil
}

// runAPI serves the customer API.
func runAPI(ctx context.Context, args []string) error {
	var c common
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	c.register(fs)
	listen := fs.String("listen", "127.0.0.1:8080", "address to listen on")
	replica := fs.String("replica", envOr("CLOUDSERVERS_API_REPLICA", envOr("HOSTNAME", "api")),
		"replica name: it names the replica's Kafka clients, for the brokers' logs and quotas, and its acknowledgements of the bucket map in ZooKeeper (env CLOUDSERVERS_API_REPLICA, else HOSTNAME)")
	session := fs.Duration("session-timeout", 4*time.Second, "ZooKeeper session timeout: a replica cut off from ZooKeeper refuses mutations after 2/3 of it, and a bucket move waits at most this long for a replica that died")
	if err := fs.Parse(args); err != nil {
		return err
	}
	file, err := c.load(fs, nil)
	if err != nil {
		return err
	}
	if err := kafka.CheckName(*replica); err != nil {
		return fmt.Errorf("-replica: %w", err)
	}
	brokers, err := c.brokers()
	if err != nil {
		return err
	}
	log, stopTracing, err := c.observability(ctx, "api")
	if err != nil {
		return err
	}
	defer stopTracing()
	log = log.With("replica", *replica)
	reg := telemetry.NewRegistry()
	produceMetrics := kafka.NewProduceMetrics(reg, telemetry.LatencyBuckets)
	kc, err := kafka.Connect(ctx, brokers, "cloudservers-api-"+*replica, log)
	if err != nil {
		return err
	}
	defer kc.Close()
	if c.zookeeper == "" {
		return errors.New("no ZooKeeper: set -zookeeper host:port[/chroot] or CLOUDSERVERS_ZOOKEEPER (the bucket map, which says where each customer's requests go, lives there)")
	}
	zkServers, zkChroot := zkcoord.ParseConnectString(c.zookeeper)
	coord, err := zkcoord.Connect(ctx, zkcoord.Config{Servers: zkServers, Chroot: zkChroot, SessionTimeout: *session, Logger: log})
	if err != nil {
		return err
	}
	defer coord.Close()
	// A mutation is one record on the requests topic (its initial state is
	// materialized from it), written by one idempotent acks=all producer
	// shared by all requests: concurrent mutations share its produce
	// requests.
	requests, err := kafka.ConnectProducer(ctx, brokers, "cloudservers-api-"+*replica+"-requests", true, log)
	if err != nil {
		return err
	}
	defer requests.Close()
	requests.Instrument(produceMetrics)
	state, err := kafka.ConnectProducer(ctx, brokers, "cloudservers-api-"+*replica, false, log)
	if err != nil {
		return err
	}
	defer state.Close()
	state.Instrument(produceMetrics)
	// The read model fetches on a client of its own, so that its
	// long-polling fetches never delay the offset lookups of Sync.
	kcRead, err := kafka.Connect(ctx, brokers, "cloudservers-api-"+*replica+"-readmodel", log)
	if err != nil {
		return err
	}
	defer kcRead.Close()
	rm := api.NewReadModel()
	// Mutations are routed by the bucket map in ZooKeeper: refused until
	// it is read, and whenever it cannot be.
	routes := api.NewBucketRoutes()
	acfg := api.Config{Catalog: file.CatalogOr(cloudservers.DefaultCatalog()), Buckets: routes, Metrics: api.NewMetrics(reg)}
	setIf(&acfg.MaxServers, file.Quotas.Servers)
	setIf(&acfg.MaxVCPUs, file.Quotas.VCPUs)
	setIf(&acfg.MaxSSHKeys, file.Quotas.SSHKeys)
	setIf(&acfg.RateLimit, file.RateLimit.PerSecond)
	setIf(&acfg.RateBurst, file.RateLimit.Burst)
	srv := api.New(acfg, log, rm, kc, requests, state)
	// /metrics beside the API, outside its middleware (not an API route).
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", telemetry.Handler(reg))
	mux.Handle("/", srv.Handler())

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is the port in use? choose another with -listen)", *listen, err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	// Shutdown ends the open event streams too, instead of waiting them out.
	hs.RegisterOnShutdown(srv.Shutdown)
	var wg sync.WaitGroup
	rmCtx, stopRM := context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := rm.Run(rmCtx, kcRead, log); err != nil {
			log.Error("read model stopped", "error", err)
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = coord.WatchBucketMap(rmCtx, cloudservers.Buckets, *replica, func(m zkcoord.BucketMap, err error) {
			routes.Follow(m.Version, m.Buckets, m.FrozenBuckets(), err)
		})
	}()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info("API listening", "url", "http://"+ln.Addr().String(), "metrics", "http://"+ln.Addr().String()+"/metrics")
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	stopRM()
	wg.Wait()
	return err
}

// runWorker hosts the workflows and activities.
func runWorker(ctx context.Context, args []string) error {
	var c common
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	c.register(fs)
	metricsListen := fs.String("metrics-listen", envOr("CLOUDSERVERS_METRICS_LISTEN", ""),
		"serve /metrics (the workers' and the Temporal SDK's metrics) and /healthz on this address (env CLOUDSERVERS_METRICS_LISTEN)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	file, err := c.load(fs, nil)
	if err != nil {
		return err
	}
	catalog := file.CatalogOr(cloudservers.DefaultCatalog())
	brokers, err := c.brokers()
	if err != nil {
		return err
	}
	log, stopTracing, err := c.observability(ctx, "worker")
	if err != nil {
		return err
	}
	defer stopTracing()
	reg := telemetry.NewRegistry()
	withTelemetry, err := temporalOptions(reg)
	if err != nil {
		return err
	}
	ready := &workerReady{}
	if *metricsListen != "" {
		stop, err := serveStatus(*metricsListen, log, reg, ready.deps(strings.Join(brokers, ","), c.temporal), nil)
		if err != nil {
			return err
		}
		defer stop()
	}
	clients, err := connectOpenStack(ctx, log)
	if err != nil {
		return err
	}
	ready.openstack.Store(true)
	producer, err := kafka.ConnectProducer(ctx, brokers, "cloudservers-worker", false, log)
	if err != nil {
		return err
	}
	defer producer.Close()
	ready.kafka.Store(true)
	producer.Instrument(kafka.NewProduceMetrics(reg, telemetry.LatencyBuckets))
	tc, err := temporal.Dial(ctx, c.temporal, c.namespace, log, withTelemetry)
	if err != nil {
		return err
	}
	defer tc.Close()
	ready.temporal.Store(&tc)
	log.Info("worker polling", "task_queue", "cloudservers", "temporal", c.temporal)
	acts := activities.New(clients, catalog, producer)
	// A catalog entry the cloud lacks would fail every order of it: say
	// which at start-up instead.
	if err := activities.CheckCatalog(ctx, acts); err != nil {
		return fmt.Errorf("the catalog does not match the cloud: %w", err)
	}
	return worker.Run(ctx, tc, workflows.TaskQueue, acts)
}

// workerReady is the worker's /readyz (on -metrics-listen): it connects to
// OpenStack, Kafka and Temporal in that order, each retried with backoff
// until it answers, and each is missing until then; Temporal is asked
// again (CheckHealth) on every probe.
type workerReady struct {
	openstack, kafka atomic.Bool
	temporal         atomic.Pointer[client.Client]
}

func (w *workerReady) deps(kafkaAddr, temporalAddr string) []readiness {
	connected := func(ok *atomic.Bool) func(context.Context) error {
		return func(context.Context) error {
			if !ok.Load() {
				return errors.New("not connected yet (retrying)")
			}
			return nil
		}
	}
	return []readiness{
		{"openstack", cmp.Or(os.Getenv("OS_AUTH_URL"), "cloud "+os.Getenv("OS_CLOUD")), connected(&w.openstack)},
		{"kafka", kafkaAddr, connected(&w.kafka)},
		{"temporal", temporalAddr, func(ctx context.Context) error {
			tc := w.temporal.Load()
			if tc == nil {
				return errors.New("not connected yet (retrying)")
			}
			_, err := (*tc).CheckHealth(ctx, &client.CheckHealthRequest{})
			return err
		}},
	}
}

func connectOpenStack(ctx context.Context, log *slog.Logger) (openstack.Clients, error) {
	backoff := 500 * time.Millisecond
	for {
		clients, err := openstack.Connect(ctx)
		if err == nil {
			return clients, nil
		}
		log.Warn("OpenStack not reachable; retrying", "error", err, "in", backoff)
		select {
		case <-ctx.Done():
			return openstack.Clients{}, err
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// runBridge owns partitions of the requests topic (through ZooKeeper, or a
// Kafka consumer group with -assignment-mode consumer-group) and takes part
// in the election of the single-instance services: the notification router
// and the reaper.
func runBridge(ctx context.Context, args []string) error {
	cfg, err := parseBridgeConfig(args)
	if err != nil {
		return err
	}
	id := cfg.id
	brokers, _ := cfg.brokers()
	log, stopTracing, err := cfg.observability(ctx, "bridge")
	if err != nil {
		return err
	}
	defer stopTracing()
	log = log.With("process", id)
	reg := telemetry.NewRegistry()
	withTelemetry, err := temporalOptions(reg)
	if err != nil {
		return err
	}
	ownership := bridge.NewOwnership(reg)
	log.Info("bridge starting", "assignment_mode", cfg.mode, "kafka", cfg.kafka, "zookeeper", cfg.zookeeper,
		"temporal", cfg.temporal, "task_queue", cfg.taskQueue, "requests_topic", cfg.requestsTopic)
	for _, w := range cfg.warnings {
		log.Warn(w)
	}
	kc, err := kafka.Connect(ctx, brokers, "cloudservers-bridge-"+id, log)
	if err != nil {
		return err
	}
	defer kc.Close()
	parts, err := kc.Partitions(cfg.requestsTopic)
	if err != nil {
		return fmt.Errorf("partitions of %s (is the topic created?): %w", cfg.requestsTopic, err)
	}
	var asg zkcoord.Assignment
	if cfg.mode == modeZooKeeper {
		if asg, err = cfg.assignmentFor(int32(len(parts))); err != nil {
			return err
		}
	}
	notifParts := map[string]int32{}
	for _, topic := range cfg.notifTopics {
		ps, err := kc.Partitions(topic)
		if err != nil {
			return fmt.Errorf("partitions of notification topic %s (is the topic created? see -notification-topics): %w", topic, err)
		}
		notifParts[topic] = int32(len(ps))
	}
	routeAsg, err := cfg.routeAssignments(notifParts)
	if err != nil {
		return fmt.Errorf("route assignment: %w", err)
	}
	dl, err := kafka.ConnectProducer(ctx, brokers, "cloudservers-bridge-"+id, false, log)
	if err != nil {
		return err
	}
	defer dl.Close()
	dl.Instrument(kafka.NewProduceMetrics(reg, telemetry.LatencyBuckets))
	tc, err := temporal.Dial(ctx, cfg.temporal, cfg.namespace, log, withTelemetry)
	if err != nil {
		return err
	}
	defer tc.Close()
	coord, err := zkcoord.Connect(ctx, zkcoord.Config{Servers: cfg.zkServers, Chroot: cfg.zkChroot, SessionTimeout: cfg.session, ProcessID: id, Logger: log})
	if err != nil {
		return err
	}
	defer coord.Close()

	// Each consuming role fetches on a Kafka client of its own: Kafka
	// answers one connection's requests in order, and a long-polling fetch
	// must not hold back the other role's fetches or the offset commits.
	reqConsumer, err := newPromptConsumer(ctx, brokers, "cloudservers-bridge-"+id+"-requests", log)
	if err != nil {
		return err
	}
	defer reqConsumer.Close()
	routerConsumer, err := newPromptConsumer(ctx, brokers, "cloudservers-bridge-"+id+"-router", log)
	if err != nil {
		return err
	}
	defer routerConsumer.Close()
	reaperConsumer, err := newConsumer(ctx, brokers, "cloudservers-bridge-"+id+"-reaper", log)
	if err != nil {
		return err
	}
	defer reaperConsumer.Close()
	requests := &bridge.Requests{Kafka: kc, Consumer: reqConsumer, Topic: cfg.requestsTopic, TaskQueue: cfg.taskQueue, Group: cfg.requestGroup,
		Temporal: tc, DeadLetters: dl, Log: log, Stats: &bridge.Stats{}, EventTimeout: cfg.eventTimeout}
	routesConsumer, err := newConsumer(ctx, brokers, "cloudservers-bridge-"+id+"-routes", log)
	if err != nil {
		return err
	}
	defer routesConsumer.Close()
	routes := &bridge.Routes{Kafka: kc, Consumer: routesConsumer, Log: log.With("service", "routes")}
	router := &bridge.Router{Kafka: kc, Consumer: routerConsumer, Group: cfg.routerGroup, Topics: cfg.notifTopics,
		Signals: tc.WorkflowService(), Namespace: cfg.namespace, Routes: routes,
		DeadLetters: dl, Log: log.With("service", "router"), Stats: &bridge.Stats{}}
	reaper := &bridge.Reaper{Temporal: tc, Kafka: kc, Consumer: reaperConsumer, TaskQueue: cfg.taskQueue,
		Interval: cfg.reapInterval, GracePeriod: cfg.reapGrace, MaxOrphans: cfg.reapMax, DryRun: cfg.reapDryRun,
		Log: log.With("service", "reaper")}
	bridge.RegisterStats(reg, "requests", requests.Stats, telemetry.LatencyBuckets)
	bridge.RegisterStats(reg, "router", router.Stats, telemetry.LatencyBuckets)
	if cfg.reaper {
		reg.MustRegister(bridge.ReaperCollector{Reaper: reaper})
	}
	var group *bridge.GroupConsumer
	if cfg.mode == modeConsumerGroup {
		group = &bridge.GroupConsumer{Brokers: brokers, Process: id, Group: cfg.requestGroup, SessionTimeout: cfg.groupSession,
			Requests: requests, Log: log}
	}
	var leading sync.Map // singleton name -> fence, while this process leads it
	var routing sync.Map // "topic/partition" -> fence, while this process routes it
	var owned sync.Map   // request partition -> fence, while this process consumes it (zookeeper mode)
	reg.MustRegister(bridge.LagCollector{Kafka: kc, Log: log, Owned: func() []bridge.OwnedPartition {
		var out []bridge.OwnedPartition
		owned.Range(func(k, _ any) bool {
			out = append(out, bridge.OwnedPartition{Group: cfg.requestGroup, Topic: cfg.requestsTopic, Partition: k.(int32)})
			return true
		})
		if group != nil {
			for _, c := range group.Claims() {
				out = append(out, bridge.OwnedPartition{Group: cfg.requestGroup, Topic: cfg.requestsTopic, Partition: c.Partition})
			}
		}
		routing.Range(func(k, _ any) bool {
			topic, p, _ := strings.Cut(k.(string), "/")
			n, _ := strconv.Atoi(p)
			out = append(out, bridge.OwnedPartition{Group: cfg.routerGroup, Topic: topic, Partition: int32(n)})
			return true
		})
		return out
	}})
	if cfg.statusListen != "" {
		deps := []readiness{
			{"zookeeper", cfg.zookeeper, func(context.Context) error {
				if !coord.Connected() {
					return errors.New("no ZooKeeper session")
				}
				return nil
			}},
			{"kafka", cfg.kafka, func(context.Context) error { return kc.RefreshMetadata() }},
			{"temporal", cfg.temporal, func(ctx context.Context) error {
				_, err := tc.CheckHealth(ctx, &client.CheckHealthRequest{})
				return err
			}},
		}
		stop, err := serveStatus(cfg.statusListen, log, reg, deps, func(ctx context.Context) (any, error) {
			sys, err := collectStatus(ctx, coord, kc, cfg.requestsTopic, cfg.requestGroup, cfg.notifTopics, cfg.routerGroup)
			out := bridgeStatus{Process: id, AssignmentMode: cfg.mode, System: sys, Leading: map[string]int64{}, Routing: map[string]int64{},
				Requests: requests.Stats.Snapshot(), Router: router.Stats.Snapshot()}
			leading.Range(func(k, v any) bool { out.Leading[k.(string)] = v.(int64); return true })
			routing.Range(func(k, v any) bool { out.Routing[k.(string)] = v.(int64); return true })
			if cfg.reaper {
				last := reaper.Last()
				out.LastReap = &last
			}
			if group != nil {
				out.GroupClaims = group.Claims()
			}
			return out, err
		})
		if err != nil {
			return err
		}
		defer stop()
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	run := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	singleton := func(name string, service func(context.Context) error) func() error {
		return func() error {
			return coord.RunSingleton(ctx, name, func(ctx context.Context, lease zkcoord.Lease) error {
				log.Info("leading", "service", name, "fence", lease.Fence)
				leading.Store(name, lease.Fence)
				defer ownership.Acquired(name)()
				defer func() {
					leading.Delete(name)
					log.Info("leadership ended", "service", name)
				}()
				return service(ctx)
			})
		}
	}
	switch cfg.mode {
	case modeZooKeeper:
		own := func(ctx context.Context, lease zkcoord.Lease) error {
			log.Info("partition owned", "partition", lease.Partition, "fence", lease.Fence)
			defer log.Info("partition released", "partition", lease.Partition)
			defer ownership.Acquired("requests")()
			owned.Store(lease.Partition, lease.Fence)
			defer owned.Delete(lease.Partition)
			return requests.ConsumePartition(ctx, lease.Partition, id, lease.Fence)
		}
		if len(asg.PartitionsOf(id)) > 0 {
			run(func() error { return coord.OwnPartitions(ctx, asg, own) })
		}
		// Partitions added to the topic later (admin partitions add) are
		// taken up when their recorded candidates name this process.
		run(func() error { return coord.OwnRecordedPartitions(ctx, asg.Partitions(), own) })
	case modeConsumerGroup:
		run(func() error { return group.Run(ctx) })
	}
	// routingServices run beside the router in every routing process for
	// as long as it takes part in routing, owning partitions or standing
	// by as a partner (which must be ready the moment it takes over): the
	// routes (which operation runs where, which server an instance is).
	// A service's error ends it, not the routing.
	routingServices := []func(context.Context) error{routes.Run}
	runRouting(ctx, log, coord, router, cfg.notifTopics, routeAsg, routingServices, &routing, ownership, run, singleton)
	if cfg.reaper {
		run(singleton("reaper", reaper.Run))
	}
	wg.Wait()
	return errors.Join(errs...)
}

// runRouting starts the notification router. With a route assignment
// (routeAsg, by topic) this process takes part, through ZooKeeper, in the
// ownership of the notification partitions it is a candidate for, as the
// request partitions are owned: the first live candidate routes, its
// partners take over when its session ends, and each tenure commits the
// router group's offsets with its owner and fence. Without one (no
// process list: consumer-group mode without -processes) the router is an
// elected singleton over every partition, as it was before routing was
// spread. services run beside the router for as long as it may route.
func runRouting(ctx context.Context, log *slog.Logger, coord *zkcoord.Coordinator, router *bridge.Router, topics []string,
	routeAsg map[string]zkcoord.Assignment, services []func(context.Context) error, routing *sync.Map, ownership *bridge.Ownership,
	run func(func() error), singleton func(string, func(context.Context) error) func() error) {
	withServices := func(ctx context.Context, routes func(context.Context) error) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var wg sync.WaitGroup
		defer wg.Wait()
		for _, s := range services {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s(ctx); err != nil && ctx.Err() == nil {
					log.Error("routing service stopped", "error", err)
				}
			}()
		}
		return routes(ctx)
	}
	if routeAsg == nil {
		log.Info("routing every notification partition when elected (no process list to spread them over)")
		run(singleton("router", func(ctx context.Context) error { return withServices(ctx, router.Run) }))
		return
	}
	id := coord.ProcessID()
	var mine []string
	for _, topic := range topics {
		if len(routeAsg[topic].PartitionsOf(id)) > 0 {
			mine = append(mine, topic)
		}
	}
	if len(mine) == 0 {
		log.Warn("this process is a candidate for no notification partition: it does not route")
		return
	}
	run(func() error {
		return withServices(ctx, func(ctx context.Context) error {
			var wg sync.WaitGroup
			errs := make([]error, len(mine))
			for i, topic := range mine {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = coord.OwnResourcePartitions(ctx, zkcoord.Routes(topic), routeAsg[topic], func(ctx context.Context, lease zkcoord.Lease) error {
						key := fmt.Sprintf("%s/%d", lease.Topic, lease.Partition)
						log.Info("routing", "topic", lease.Topic, "partition", lease.Partition, "fence", lease.Fence)
						routing.Store(key, lease.Fence)
						defer ownership.Acquired("routes")()
						defer func() {
							routing.Delete(key)
							log.Info("routing ended", "topic", lease.Topic, "partition", lease.Partition)
						}()
						return router.RoutePartition(ctx, lease.Topic, lease.Partition, fmt.Sprintf("owner=%s fence=%d", id, lease.Fence))
					})
				}()
			}
			wg.Wait()
			return errors.Join(errs...)
		})
	})
}

// runAdmin holds administrative commands.
func runAdmin(ctx context.Context, args []string) error {
	if len(args) >= 2 && args[0] == "deadletters" && args[1] == "replay" {
		return runReplay(ctx, args[2:])
	}
	if len(args) > 0 && (args[0] == "partitions" || args[0] == "buckets") {
		return runScale(ctx, args[0], args[1:])
	}
	if len(args) < 1 || args[0] != "create-key" {
		return errors.New("usage: cloudservers admin create-key -customer ID [-name NAME] [-admin] [-json] [-kafka ...]\n" +
			"       cloudservers admin deadletters replay [-topic SOURCE] [-dry-run] [-json] [-kafka ...]\n" + bucketsUsage)
	}
	var c common
	fs := flag.NewFlagSet("admin create-key", flag.ContinueOnError)
	c.register(fs)
	customer := fs.String("customer", "", "customer ID the key belongs to")
	name := fs.String("name", "default", "a name for the key")
	asJSON := fs.Bool("json", false, "print {customer_id, api_key} as JSON")
	admin := fs.Bool("admin", false, "an admin key (the /admin/v1 endpoints) instead of a customer's")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if _, err := c.load(fs, nil); err != nil {
		return err
	}
	if *customer == "" {
		return errors.New("set -customer")
	}
	brokers, err := c.brokers()
	if err != nil {
		return err
	}
	key, err := createKey(ctx, brokers, *customer, *name, *admin)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(os.Stdout).Encode(map[string]string{"customer_id": *customer, "api_key": key})
	}
	fmt.Printf("API key for customer %s (shown once; only its hash is stored):\n%s\n", *customer, key)
	return nil
}

// createKey makes a new random API key and publishes its hash.
func createKey(ctx context.Context, brokers []string, customer, name string, admin bool) (string, error) {
	key, rec, err := api.NewAPIKey(customer, name, admin, time.Now())
	if err != nil {
		return "", err
	}
	p, err := kafka.NewProducer(brokers, "cloudservers-admin")
	if err != nil {
		return "", err
	}
	defer p.Close()
	v, _ := json.Marshal(rec)
	if err := p.Send(ctx, cloudservers.TopicAPIKeys, []byte(rec.Hash), v); err != nil {
		return "", err
	}
	return key, nil
}

// readiness is one dependency of a process: its name, address and a check
// (nil error: reachable).
type readiness struct {
	name, address string
	check         func(context.Context) error
}

// readyReport runs the checks side by side: each dependency's state ("ok"
// or its address and error) and the names of those missing.
func readyReport(ctx context.Context, deps []readiness) (map[string]string, []string) {
	errs := make([]error, len(deps))
	var wg sync.WaitGroup
	for i, d := range deps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = d.check(ctx)
		}()
	}
	wg.Wait()
	state := map[string]string{}
	var missing []string
	for i, d := range deps {
		if errs[i] != nil {
			state[d.name] = fmt.Sprintf("%s: %v", d.address, errs[i])
			missing = append(missing, d.name)
			continue
		}
		state[d.name] = "ok"
	}
	return state, missing
}

// serveStatus serves /healthz (the process is up), /metrics (reg), /readyz
// (with deps: 200 while every dependency answers, else 503 naming those
// missing) and /status (JSON from status, when not nil) until stop is
// called.
func serveStatus(addr string, log *slog.Logger, reg *prometheus.Registry, deps []readiness, status func(context.Context) (any, error)) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("status listener on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"status":"ok"}`)
	})
	mux.Handle("GET /metrics", telemetry.Handler(reg))
	if deps != nil {
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
			defer cancel()
			state, missing := readyReport(ctx, deps)
			w.Header().Set("Content-Type", "application/json")
			if len(missing) > 0 {
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusServiceUnavailable)
				_ = json.NewEncoder(w).Encode(map[string]any{"status": "unavailable", "missing": missing, "dependencies": state})
				return
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"status": "ready", "dependencies": state})
		})
	}
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		if status == nil {
			http.NotFound(w, r)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		v, err := status(ctx)
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]any{"error": err.Error(), "partial": v})
			return
		}
		_ = json.NewEncoder(w).Encode(v)
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("status server", "error", err)
		}
	}()
	if status != nil {
		log.Info("status endpoint", "url", "http://"+ln.Addr().String()+"/status")
	}
	log.Info("metrics endpoint", "url", "http://"+ln.Addr().String()+"/metrics")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
		<-done
	}, nil
}

// consumer is a sarama consumer with the client it owns.
type consumer struct {
	sarama.Consumer
	client sarama.Client
}

func (c consumer) Close() error {
	err := c.Consumer.Close()
	c.client.Close()
	return err
}

// newConsumer returns a consumer on a Kafka client of its own.
func newConsumer(ctx context.Context, brokers []string, clientID string, log *slog.Logger) (consumer, error) {
	kc, err := kafka.Connect(ctx, brokers, clientID, log)
	if err != nil {
		return consumer{}, err
	}
	c, err := sarama.NewConsumerFromClient(kc)
	if err != nil {
		kc.Close()
		return consumer{}, err
	}
	return consumer{Consumer: c, client: kc}, nil
}

// processList is the -processes list, or every process the assignment
// names when only -assignment was given.
func processList(processes string, asg zkcoord.Assignment) []string {
	if processes != "" {
		return strings.Split(processes, ",")
	}
	seen := map[string]bool{}
	var out []string
	for _, p := range asg.Partitions() {
		for _, proc := range asg[p] {
			if !seen[proc] {
				seen[proc] = true
				out = append(out, proc)
			}
		}
	}
	return out
}
