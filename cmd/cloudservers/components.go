package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/IBM/sarama"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/activities"
	"github.com/cloudservers/cloudservers/api"
	"github.com/cloudservers/cloudservers/bridge"
	"github.com/cloudservers/cloudservers/internal/kafka"
	"github.com/cloudservers/cloudservers/internal/openstack"
	"github.com/cloudservers/cloudservers/internal/temporal"
	"github.com/cloudservers/cloudservers/internal/zkcoord"
	"github.com/cloudservers/cloudservers/worker"
	"github.com/cloudservers/cloudservers/workflows"
)

// common are the flags every component shares; each defaults to an
// environment variable so that `dev` can configure its children.
type common struct {
	kafka     string
	temporal  string
	namespace string
	zookeeper string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.kafka, "kafka", envOr("CLOUDSERVERS_KAFKA", ""), "Kafka brokers, host:port[,host:port] (env CLOUDSERVERS_KAFKA)")
	fs.StringVar(&c.temporal, "temporal", envOr("CLOUDSERVERS_TEMPORAL", ""), "Temporal frontend host:port (env CLOUDSERVERS_TEMPORAL)")
	fs.StringVar(&c.namespace, "namespace", envOr("CLOUDSERVERS_NAMESPACE", "cloudservers"), "Temporal namespace (env CLOUDSERVERS_NAMESPACE)")
	fs.StringVar(&c.zookeeper, "zookeeper", envOr("CLOUDSERVERS_ZOOKEEPER", ""), "ZooKeeper connect string host:port[,host:port][/chroot] (env CLOUDSERVERS_ZOOKEEPER)")
}

func (c *common) brokers() ([]string, error) {
	if c.kafka == "" {
		return nil, errors.New("no Kafka brokers: set -kafka or CLOUDSERVERS_KAFKA")
	}
	return strings.Split(c.kafka, ","), nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func logger(component string) *slog.Logger {
	level := slog.LevelInfo
	if os.Getenv("CLOUDSERVERS_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("component", component)
}

// runAPI serves the customer API.
func runAPI(ctx context.Context, args []string) error {
	var c common
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	c.register(fs)
	listen := fs.String("listen", "127.0.0.1:8080", "address to listen on")
	replica := fs.String("replica", envOr("HOSTNAME", "api"), "replica name (Kafka client IDs)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	brokers, err := c.brokers()
	if err != nil {
		return err
	}
	log := logger("api").With("replica", *replica)
	kc, err := kafka.Connect(ctx, brokers, "cloudservers-api-"+*replica, log)
	if err != nil {
		return err
	}
	defer kc.Close()
	parts, err := kc.Partitions(cloudservers.TopicRequests)
	if err != nil {
		return fmt.Errorf("partitions of %s (is the topic created?): %w", cloudservers.TopicRequests, err)
	}
	requests, err := kafka.ConnectProducer(ctx, brokers, "cloudservers-api-"+*replica, true, log)
	if err != nil {
		return err
	}
	defer requests.Close()
	state, err := kafka.ConnectProducer(ctx, brokers, "cloudservers-api-"+*replica, false, log)
	if err != nil {
		return err
	}
	defer state.Close()
	// The read model fetches on a client of its own, so that its
	// long-polling fetches never delay the offset lookups of Sync.
	kcRead, err := kafka.Connect(ctx, brokers, "cloudservers-api-"+*replica+"-readmodel", log)
	if err != nil {
		return err
	}
	defer kcRead.Close()
	rm := api.NewReadModel()
	srv := api.New(api.Config{Catalog: cloudservers.DefaultCatalog(), Partitions: int32(len(parts))}, log, rm, kc, requests, state)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is the port in use? choose another with -listen)", *listen, err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
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
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info("API listening", "url", "http://"+ln.Addr().String())
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
	if err := fs.Parse(args); err != nil {
		return err
	}
	brokers, err := c.brokers()
	if err != nil {
		return err
	}
	log := logger("worker")
	clients, err := connectOpenStack(ctx, log)
	if err != nil {
		return err
	}
	producer, err := kafka.ConnectProducer(ctx, brokers, "cloudservers-worker", false, log)
	if err != nil {
		return err
	}
	defer producer.Close()
	tc, err := temporal.Dial(ctx, c.temporal, c.namespace, log)
	if err != nil {
		return err
	}
	defer tc.Close()
	log.Info("worker polling", "task_queue", "cloudservers", "temporal", c.temporal)
	return worker.Run(ctx, tc, workflows.TaskQueue, activities.New(clients, cloudservers.DefaultCatalog(), producer))
}

func connectOpenStack(ctx context.Context, log *slog.Logger) (activities.Clients, error) {
	backoff := 500 * time.Millisecond
	for {
		clients, err := openstack.Connect(ctx)
		if err == nil {
			return clients, nil
		}
		log.Warn("OpenStack not reachable; retrying", "error", err, "in", backoff)
		select {
		case <-ctx.Done():
			return activities.Clients{}, err
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// runBridge owns partitions of the requests topic (through ZooKeeper) and
// takes part in the election of the single-instance services.
func runBridge(ctx context.Context, args []string) error {
	var c common
	fs := flag.NewFlagSet("bridge", flag.ContinueOnError)
	c.register(fs)
	id := fs.String("id", envOr("CLOUDSERVERS_PROCESS", ""), "this process's ID in the assignment")
	processes := fs.String("processes", envOr("CLOUDSERVERS_PROCESSES", ""), "all bridge process IDs, comma-separated, for the default assignment (partition p: primary processes[p % n], then the others in order)")
	assignment := fs.String("assignment", envOr("CLOUDSERVERS_ASSIGNMENT", ""), "explicit assignment: p=primary,partner[,partner...];... (overrides -processes)")
	session := fs.Duration("session-timeout", 4*time.Second, "ZooKeeper session timeout (failover takes about this long)")
	eventTimeout := fs.Duration("event-timeout", 5*time.Minute, "how long a saga waits for a notification before its one reconciliation read")
	statusListen := fs.String("status-listen", "", "serve /healthz and /status (ownership, leaders, counters) on this address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *id == "" {
		return errors.New("set -id (or CLOUDSERVERS_PROCESS)")
	}
	brokers, err := c.brokers()
	if err != nil {
		return err
	}
	log := logger("bridge").With("process", *id)
	kc, err := kafka.Connect(ctx, brokers, "cloudservers-bridge-"+*id, log)
	if err != nil {
		return err
	}
	defer kc.Close()
	parts, err := kc.Partitions(cloudservers.TopicRequests)
	if err != nil {
		return fmt.Errorf("partitions of %s: %w", cloudservers.TopicRequests, err)
	}
	asg, err := parseAssignment(*assignment, *processes, int32(len(parts)))
	if err != nil {
		return err
	}
	if err := asg.Validate(int32(len(parts)), processList(*processes, asg)); err != nil {
		return fmt.Errorf("assignment: %w", err)
	}
	dl, err := kafka.ConnectProducer(ctx, brokers, "cloudservers-bridge-"+*id, false, log)
	if err != nil {
		return err
	}
	defer dl.Close()
	tc, err := temporal.Dial(ctx, c.temporal, c.namespace, log)
	if err != nil {
		return err
	}
	defer tc.Close()
	servers, chroot := zkcoord.ParseConnectString(c.zookeeper)
	coord, err := zkcoord.Connect(ctx, zkcoord.Config{Servers: servers, Chroot: chroot, SessionTimeout: *session, ProcessID: *id, Logger: log})
	if err != nil {
		return err
	}
	defer coord.Close()

	// Each consuming role fetches on a Kafka client of its own: Kafka
	// answers one connection's requests in order, and a long-polling fetch
	// must not hold back the other role's fetches or the offset commits.
	reqConsumer, err := newConsumer(ctx, brokers, "cloudservers-bridge-"+*id+"-requests", log)
	if err != nil {
		return err
	}
	defer reqConsumer.Close()
	routerConsumer, err := newConsumer(ctx, brokers, "cloudservers-bridge-"+*id+"-router", log)
	if err != nil {
		return err
	}
	defer routerConsumer.Close()
	requests := &bridge.Requests{Kafka: kc, Consumer: reqConsumer, Temporal: tc, DeadLetters: dl, Log: log, Stats: &bridge.Stats{}, EventTimeout: *eventTimeout}
	router := &bridge.Router{Kafka: kc, Consumer: routerConsumer, Temporal: tc, Visibility: tc, DeadLetters: dl, Log: log.With("service", "router"), Stats: &bridge.Stats{}}
	if *statusListen != "" {
		stop, err := serveStatus(*statusListen, log, func(ctx context.Context) (any, error) {
			st, err := coord.Status(ctx)
			return map[string]any{"process": *id, "coordination": st, "requests": requests.Stats.Snapshot(), "router": router.Stats.Snapshot()}, err
		})
		if err != nil {
			return err
		}
		defer stop()
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		errs[0] = coord.OwnPartitions(ctx, asg, func(ctx context.Context, lease zkcoord.Lease) error {
			log.Info("partition owned", "partition", lease.Partition, "fence", lease.Fence)
			defer log.Info("partition released", "partition", lease.Partition)
			return requests.ConsumePartition(ctx, lease.Partition, *id, lease.Fence)
		})
	}()
	go func() {
		defer wg.Done()
		errs[1] = coord.RunSingleton(ctx, "router", func(ctx context.Context, lease zkcoord.Lease) error {
			log.Info("leading the notification router", "fence", lease.Fence)
			defer log.Info("router leadership ended")
			return router.Run(ctx)
		})
	}()
	wg.Wait()
	return errors.Join(errs...)
}

// parseAssignment reads "0=a,b;1=b,a" or builds the default assignment over
// processes.
func parseAssignment(spec, processes string, partitions int32) (zkcoord.Assignment, error) {
	if spec == "" {
		procs := strings.Split(processes, ",")
		if processes == "" || len(procs) < 1 {
			return nil, errors.New("set -processes (or -assignment)")
		}
		a := zkcoord.Assignment{}
		for p := int32(0); p < partitions; p++ {
			n := int(p) % len(procs)
			a[p] = append(append([]string{}, procs[n:]...), procs[:n]...)
		}
		return a, nil
	}
	a := zkcoord.Assignment{}
	for _, part := range strings.Split(spec, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		var p int32
		if _, err := fmt.Sscanf(k, "%d", &p); !ok || err != nil {
			return nil, fmt.Errorf("assignment %q: want partition=primary,partner", part)
		}
		a[p] = strings.Split(v, ",")
	}
	return a, nil
}

// runAdmin holds administrative commands.
func runAdmin(ctx context.Context, args []string) error {
	if len(args) < 1 || args[0] != "create-key" {
		return errors.New("usage: cloudservers admin create-key -customer ID [-name NAME] [-admin] [-json] [-kafka ...]")
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

// serveStatus serves /healthz and /status (JSON from status) until stop is
// called.
func serveStatus(addr string, log *slog.Logger, status func(context.Context) (any, error)) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("status listener on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
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
	log.Info("status endpoint", "url", "http://"+ln.Addr().String()+"/status")
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
