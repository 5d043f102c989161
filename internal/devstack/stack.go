package devstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Stack is a running ZooKeeper + Kafka + Temporal dev server.
type Stack struct {
	cfg       Config
	group     *Group
	endpoints Endpoints
	unlock    func()
	stopOnce  sync.Once
}

// Start makes sure the jars and the Temporal CLI are there (Ensure),
// resolves the ports, starts ZooKeeper, Kafka and the Temporal dev server,
// waits until each is healthy (ZooKeeper answers ruok; Kafka has a live
// broker and a controller; Temporal is healthy, with the namespace and the
// search attributes, and its UI answers) and creates the topics. If any
// step fails, everything already started is stopped and the error carries
// the tail of the failing component's log. Stop the stack with Stop.
func Start(ctx context.Context, cfg Config) (*Stack, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	for _, d := range []string{"", "zookeeper", "kafka", "temporal", "logs"} {
		if err := os.MkdirAll(filepath.Join(cfg.DataDir, d), 0o755); err != nil {
			return nil, err
		}
	}
	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			unlock()
		}
	}()

	t, err := ensure(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := cfg.resolvePorts(); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Log, "starting ZooKeeper %s, Kafka %s and the Temporal dev server in %s\n", ZooKeeperVersion, KafkaVersion, cfg.DataDir)

	s := &Stack{cfg: cfg, group: NewGroup(cfg.Log), unlock: unlock}
	s.endpoints = Endpoints{
		ZooKeeper:         hostPort(cfg.ZooKeeperPort),
		Kafka:             []string{hostPort(cfg.KafkaPort)},
		Temporal:          hostPort(cfg.TemporalPort),
		TemporalNamespace: cfg.Namespace,
		TemporalUI:        fmt.Sprintf("http://127.0.0.1:%d", cfg.TemporalUIPort),
		TemporalHTTP:      hostPort(cfg.TemporalHTTPPort),
		TemporalMetrics:   fmt.Sprintf("http://127.0.0.1:%d/metrics", cfg.TemporalMetricsPort),
		RequestPartitions: cfg.RequestPartitions,
		DataDir:           cfg.DataDir,
		LogDir:            filepath.Join(cfg.DataDir, "logs"),
		Pid:               os.Getpid(),
	}

	zk, err := zookeeperProcess(cfg, t)
	if err != nil {
		return nil, err
	}
	tp, err := temporalProcess(cfg, t)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil || (errors.Is(firstErr, context.Canceled) && !errors.Is(err, context.Canceled)) {
			firstErr = err
		}
		cancel()
	}
	run := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				fail(err)
			}
		}()
	}
	// Launch in a fixed order (the stop order is its reverse), then wait
	// for the three side by side; Kafka's first start formats its storage
	// while the others boot.
	var launched []*proc
	for _, p := range []Process{zk, tp} {
		q, err := s.group.launch(p)
		if err != nil {
			s.group.Stop()
			return nil, err
		}
		launched = append(launched, q)
	}
	for _, q := range launched {
		run(func() error { return s.group.awaitReady(sctx, q) })
	}
	run(func() error {
		props, log4j, err := kafkaPrepare(sctx, cfg, t)
		if err != nil {
			return err
		}
		if err := sctx.Err(); err != nil {
			return err
		}
		return s.group.Start(sctx, kafkaProcess(cfg, t, props, log4j))
	})
	wg.Wait()
	if firstErr == nil {
		firstErr = CreateTopics(sctx, s.endpoints.Kafka, Topics(cfg.RequestPartitions), cfg.Log)
		if firstErr != nil {
			firstErr = fmt.Errorf("devstack: create topics: %w", firstErr)
		} else {
			firstErr = ensureBucketMap(sctx, s.endpoints.ZooKeeper, cfg)
		}
	}
	if firstErr != nil {
		s.group.Stop()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, firstErr
	}
	s.endpoints.Pids = map[string]int{}
	for _, n := range []string{"zookeeper", "kafka", "temporal"} {
		s.endpoints.Pids[n] = s.group.Pid(n)
	}
	ok = true
	fmt.Fprintf(cfg.Log, "stack ready in %.1fs\n", time.Since(t0).Seconds())
	return s, nil
}

func hostPort(p int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)) }

// Endpoints returns where the stack listens.
func (s *Stack) Endpoints() Endpoints {
	e := s.endpoints
	e.Kafka = append([]string(nil), e.Kafka...)
	e.Pids = map[string]int{}
	for k, v := range s.endpoints.Pids {
		e.Pids[k] = v
	}
	return e
}

// Config returns the stack's configuration with every default and port
// filled in.
func (s *Stack) Config() Config { return s.cfg }

// Group is the supervisor that runs the stack's processes. Processes
// started in it (the application's) are stopped by Stop before the
// infrastructure, in reverse start order.
func (s *Stack) Group() *Group { return s.group }

// Exits reports a component that ended on its own while the stack runs.
func (s *Stack) Exits() <-chan Exit { return s.group.Exits() }

// Stop stops every process of the stack in reverse start order (SIGTERM,
// bounded wait, SIGKILL) and releases the data folder. It is safe to call
// more than once.
func (s *Stack) Stop() error {
	var err error
	s.stopOnce.Do(func() {
		t0 := time.Now()
		err = s.group.Stop()
		s.unlock()
		fmt.Fprintf(s.cfg.Log, "stack stopped in %.1fs\n", time.Since(t0).Seconds())
	})
	return err
}

// lockDataDir takes <dir>/stack.lock so that two stacks never share a data
// folder. The lock dies with the process.
func lockDataDir(dir string) (func(), error) {
	path := filepath.Join(dir, "stack.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("devstack: the data folder %s is in use by another stack (pid %s): stop that one or choose another data folder",
				dir, strings.TrimSpace(string(b)))
		}
		return nil, fmt.Errorf("devstack: lock %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}
