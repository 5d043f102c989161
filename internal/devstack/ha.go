package devstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// The HA topology (StartHA): what production runs as clusters, on one
// machine. Three ZooKeeper servers in one ensemble, three Kafka nodes that
// are each KRaft controller and broker (three controller voters), every
// project topic with replication factor HAReplicationFactor and
// min.insync.replicas HAMinInsyncReplicas, and the Temporal server (not the
// dev server) on PostgreSQL with HAHistoryShards history shards, plus its
// Web UI. Its data lives in <DataDir>/ha, a data folder of its own (with
// its own stack.lock), so the single-node stack and the HA one never share
// Kafka logs or demo customers.
const (
	TopologySingle = "single"
	TopologyHA     = "ha"

	HAReplicationFactor = 3
	HAMinInsyncReplicas = 2
	HAHistoryShards     = 4

	haMembers = 3
)

// HADataDir is the data folder of the HA topology for a data folder.
func HADataDir(dataDir string) string { return filepath.Join(dataDir, "ha") }

// StartHA starts the HA topology and returns it as a Stack (Endpoints,
// Group, Exits and Stop work as for Start). It fetches the jars like Start
// and builds the Temporal server, its SQL tool and the UI server the first
// time (EnsureHA). Three branches start side by side, each member health
// checked before the next piece of its branch starts:
//
//	ZooKeeper 1-3 (each serving as leader or follower)
//	Kafka 1-3 (each answering metadata; then 3 live brokers; then the topics)
//	PostgreSQL (pg_isready) → the schema (temporal-sql-tool) → the Temporal
//	server (healthy; the namespace and search attributes) → the Web UI
//
// If anything fails, everything already started is stopped. A member that
// dies later is reported on Exits; the cluster is meant to survive it.
func StartHA(ctx context.Context, cfg Config) (*Stack, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg.DataDir = HADataDir(cfg.DataDir)
	t0 := time.Now()
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "logs"), 0o755); err != nil {
		return nil, err
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
	t, ts, err := ensureHA(ctx, cfg)
	if err != nil {
		return nil, err
	}
	pg, err := findPostgres()
	if err != nil {
		return nil, err
	}
	ports, err := resolveHAPorts(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Log, "starting the HA topology in %s: 3 ZooKeeper %s servers, 3 Kafka %s nodes, PostgreSQL %s, the Temporal server %s and its UI\n",
		cfg.DataDir, ZooKeeperVersion, KafkaVersion, pg.version, ts.version)

	s := &Stack{cfg: cfg, group: NewGroup(cfg.Log), unlock: unlock}
	e := Endpoints{
		Topology:              TopologyHA,
		Temporal:              hostPort(ports["temporal"]),
		TemporalNamespace:     cfg.Namespace,
		TemporalUI:            fmt.Sprintf("http://127.0.0.1:%d", ports["temporal_ui"]),
		TemporalHTTP:          hostPort(ports["temporal_http"]),
		TemporalMetrics:       fmt.Sprintf("http://127.0.0.1:%d/metrics", ports["temporal_metrics"]),
		TemporalHistoryShards: HAHistoryShards,
		PostgreSQL:            hostPort(ports["postgres"]),
		RequestPartitions:     cfg.RequestPartitions,
		ReplicationFactor:     HAReplicationFactor,
		MinInsyncReplicas:     HAMinInsyncReplicas,
		DataDir:               cfg.DataDir,
		LogDir:                filepath.Join(cfg.DataDir, "logs"),
		Pid:                   os.Getpid(),
	}
	for i := 1; i <= haMembers; i++ {
		e.ZooKeeperServers = append(e.ZooKeeperServers, hostPort(ports[fmt.Sprintf("zookeeper%d", i)]))
		e.Kafka = append(e.Kafka, hostPort(ports[fmt.Sprintf("kafka%d", i)]))
		e.KafkaControllers = append(e.KafkaControllers, hostPort(ports[fmt.Sprintf("kafka%d_controller", i)]))
	}
	e.ZooKeeper = strings.Join(e.ZooKeeperServers, ",")
	s.endpoints = e

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	run := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				mu.Lock()
				if firstErr == nil || (errors.Is(firstErr, context.Canceled) && !errors.Is(err, context.Canceled)) {
					firstErr = err
				}
				mu.Unlock()
				cancel()
			}
		}()
	}
	// A quorum needs two members up, so the three members of an ensemble
	// are launched together and then each is awaited.
	run(func() error { return s.startZooKeeperEnsemble(sctx, t, ports) })
	run(func() error { return s.startKafkaCluster(sctx, t, ports) })
	run(func() error { return s.startTemporalServer(sctx, pg, ts, ports) })
	wg.Wait()
	if firstErr != nil {
		s.group.Stop()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, firstErr
	}
	s.endpoints.Pids = map[string]int{}
	for _, n := range haProcessNames() {
		s.endpoints.Pids[n] = s.group.Pid(n)
	}
	ok = true
	fmt.Fprintf(cfg.Log, "HA topology ready in %.1fs\n", time.Since(t0).Seconds())
	return s, nil
}

// haProcessNames are the infrastructure processes of the HA topology.
func haProcessNames() []string {
	var names []string
	for i := 1; i <= haMembers; i++ {
		names = append(names, fmt.Sprintf("zookeeper-%d", i))
	}
	for i := 1; i <= haMembers; i++ {
		names = append(names, fmt.Sprintf("kafka-%d", i))
	}
	return append(names, "postgres", "temporal", "temporal-ui")
}

// EnsureHA fills the cache with what the HA topology runs: the jars (as
// Ensure) and the Temporal server, temporal-sql-tool and the UI server
// (built with go build, minutes the first time). It does not build the
// Temporal CLI.
func EnsureHA(ctx context.Context, cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	if _, _, err := ensureHA(ctx, cfg); err != nil {
		return err
	}
	_, err = findPostgres()
	return err
}

func ensureHA(ctx context.Context, cfg Config) (tools, temporalServerTools, error) {
	var t tools
	java, err := findJava()
	if err != nil {
		return t, temporalServerTools{}, err
	}
	t.java = java
	if err := os.MkdirAll(cfg.CacheDir, 0o755); err != nil {
		return t, temporalServerTools{}, err
	}
	unlock, err := lockFile(ctx, filepath.Join(cfg.CacheDir, ".lock"), cfg.Log,
		"waiting for another cloudservers process that is filling the cache "+cfg.CacheDir)
	if err != nil {
		return t, temporalServerTools{}, err
	}
	defer unlock()
	if t.zookeeperLib, err = ensureJars(ctx, cfg, "zookeeper", "ZooKeeper "+ZooKeeperVersion, java); err != nil {
		return t, temporalServerTools{}, err
	}
	if t.kafkaLib, err = ensureJars(ctx, cfg, "kafka", "Kafka "+KafkaVersion, java); err != nil {
		return t, temporalServerTools{}, err
	}
	ts, err := ensureTemporalServer(ctx, cfg)
	return t, ts, err
}

// haPortKeys are the ports of the HA topology, by name in ports.json.
func haPortKeys() []string {
	var keys []string
	for i := 1; i <= haMembers; i++ {
		keys = append(keys, fmt.Sprintf("zookeeper%d", i), fmt.Sprintf("zookeeper%d_peer", i), fmt.Sprintf("zookeeper%d_election", i))
	}
	for i := 1; i <= haMembers; i++ {
		keys = append(keys, fmt.Sprintf("kafka%d", i), fmt.Sprintf("kafka%d_controller", i))
	}
	return append(keys, "postgres",
		"temporal", "temporal_http", "temporal_frontend_membership",
		"temporal_history", "temporal_history_membership",
		"temporal_matching", "temporal_matching_membership",
		"temporal_worker", "temporal_worker_membership",
		"temporal_metrics", "temporal_ui")
}

// resolveHAPorts picks a free loopback port for every key, preferring the
// one recorded in <dir>/ports.json (so the UI's URL survives restarts).
func resolveHAPorts(dir string) (map[string]int, error) {
	path := filepath.Join(dir, portsFile)
	remembered := map[string]int{}
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &remembered)
	}
	ports := map[string]int{}
	used := map[int]bool{}
	for _, k := range haPortKeys() {
		// Temporal keeps its services' ports in PostgreSQL as smallint
		// (cluster_membership): they must be below 32768, under the
		// kernel's ephemeral range that freePort draws from.
		limit := 65535
		if strings.HasPrefix(k, "temporal") && k != "temporal_ui" {
			limit = 32767
		}
		if p := remembered[k]; p > 0 && p <= limit && !used[p] && checkPortFree(p) == nil {
			ports[k], used[p] = p, true
			continue
		}
		for range 50 {
			p, err := freePort()
			if limit < 65535 {
				p, err = freePortBelow(limit)
			}
			if err != nil {
				return nil, fmt.Errorf("devstack: no free port for %s: %w", k, err)
			}
			if !used[p] {
				ports[k], used[p] = p, true
				break
			}
		}
		if ports[k] == 0 {
			return nil, fmt.Errorf("devstack: no free port for %s", k)
		}
	}
	b, _ := json.MarshalIndent(ports, "", "  ")
	return ports, os.WriteFile(path, append(b, '\n'), 0o644)
}

// ---- ZooKeeper ensemble ----

func (s *Stack) startZooKeeperEnsemble(ctx context.Context, t tools, ports map[string]int) error {
	cfg := s.cfg
	var servers strings.Builder
	for i := 1; i <= haMembers; i++ {
		fmt.Fprintf(&servers, "server.%d=127.0.0.1:%d:%d\n", i, ports[fmt.Sprintf("zookeeper%d_peer", i)], ports[fmt.Sprintf("zookeeper%d_election", i)])
	}
	var procs []Process
	for i := 1; i <= haMembers; i++ {
		dir := filepath.Join(cfg.DataDir, fmt.Sprintf("zookeeper-%d", i))
		dataDir := filepath.Join(dir, "data")
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dataDir, "myid"), []byte(strconv.Itoa(i)+"\n"), 0o644); err != nil {
			return err
		}
		clientPort := ports[fmt.Sprintf("zookeeper%d", i)]
		conf := fmt.Sprintf(`# Written by cloudservers stack -topology ha on every start; edits are overwritten.
# Server %[1]d of a 3-server ensemble on loopback. tickTime as in the single
# stack (sessions expire on tick boundaries).
tickTime=500
initLimit=20
syncLimit=10
dataDir=%[2]s
clientPort=%[3]d
clientPortAddress=127.0.0.1
maxClientCnxns=0
minSessionTimeout=1000
maxSessionTimeout=40000
admin.enableServer=false
reconfigEnabled=false
standaloneEnabled=false
4lw.commands.whitelist=ruok,srvr,mntr,stat,conf,cons
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
%[4]s`, i, dataDir, clientPort, servers.String())
		zooCfg := filepath.Join(dir, "zoo.cfg")
		if err := os.WriteFile(zooCfg, []byte(conf), 0o644); err != nil {
			return err
		}
		args := zookeeperCmd(cfg, t, zooCfg)
		addr := hostPort(clientPort)
		procs = append(procs, Process{
			Name:    fmt.Sprintf("zookeeper-%d", i),
			Cmd:     args,
			Dir:     dir,
			LogFile: filepath.Join(cfg.DataDir, "logs", fmt.Sprintf("zookeeper-%d.log", i)),
			// Serving: in the quorum as leader or follower (ruok answers
			// imok even without a quorum).
			Ready:        func(ctx context.Context) error { _, err := ZooKeeperMode(ctx, addr); return err },
			ReadyTimeout: 2 * time.Minute,
			StopTimeout:  10 * time.Second,
		})
	}
	return s.launchAndAwait(ctx, procs)
}

// launchAndAwait launches every process, then waits for each to be ready.
func (s *Stack) launchAndAwait(ctx context.Context, procs []Process) error {
	var launched []*proc
	for _, p := range procs {
		q, err := s.group.launch(p)
		if err != nil {
			return err
		}
		launched = append(launched, q)
	}
	for _, q := range launched {
		if err := s.group.awaitReady(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// ZooKeeperMode returns the mode ("leader", "follower", "standalone") of
// the ZooKeeper server at addr from its srvr answer; an error while it is
// not serving.
func ZooKeeperMode(ctx context.Context, addr string) (string, error) {
	out, err := ZooKeeperCommand(ctx, addr, "srvr")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(out, "\n") {
		if m, ok := strings.CutPrefix(strings.TrimSpace(line), "Mode: "); ok {
			return m, nil
		}
	}
	return "", fmt.Errorf("zookeeper at %s is not serving: %q", addr, out)
}

// ---- Kafka cluster ----

func (s *Stack) startKafkaCluster(ctx context.Context, t tools, ports map[string]int) error {
	cfg := s.cfg
	var voters []string
	for i := 1; i <= haMembers; i++ {
		voters = append(voters, fmt.Sprintf("%d@127.0.0.1:%d", i, ports[fmt.Sprintf("kafka%d_controller", i)]))
	}
	clusterID, err := haKafkaClusterID(cfg.DataDir)
	if err != nil {
		return err
	}
	log4j := filepath.Join(cfg.DataDir, "kafka-log4j2.xml")
	if err := os.WriteFile(log4j, []byte(kafkaLog4j2), 0o644); err != nil {
		return err
	}
	var procs []Process
	var brokers []string
	for i := 1; i <= haMembers; i++ {
		name := fmt.Sprintf("kafka-%d", i)
		dir := filepath.Join(cfg.DataDir, name)
		logDir := filepath.Join(dir, "data")
		if err := os.MkdirAll(logDir, 0o755); err != nil {
			return err
		}
		port, cport := ports[fmt.Sprintf("kafka%d", i)], ports[fmt.Sprintf("kafka%d_controller", i)]
		props := filepath.Join(dir, "server.properties")
		if err := os.WriteFile(props, []byte(kafkaHAProperties(i, port, cport, strings.Join(voters, ","), logDir)), 0o644); err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(logDir, "meta.properties")); err != nil {
			fmt.Fprintf(cfg.Log, "  formatting the storage of %s (cluster id %s)\n", name, clusterID)
			logPath := filepath.Join(cfg.DataDir, "logs", name+"-format.log")
			args := append(jvmFlags("256m"), "-Dlog4j2.configurationFile="+log4j,
				"-cp", filepath.Join(t.kafkaLib, "*"), "kafka.tools.StorageTool",
				"format", "--config", props, "--cluster-id", clusterID, "--ignore-formatted")
			if err := runLogged(exec.CommandContext(context.WithoutCancel(ctx), t.java, args...), logPath, func(string) {}, time.Hour, func() {}); err != nil {
				return fmt.Errorf("devstack: formatting the storage of %s failed (%v)\n--- last lines of %s ---\n%s", name, err, logPath, TailFile(logPath, 0, 30))
			}
		}
		args := kafkaCmd(cfg, t, props, log4j)
		broker := hostPort(port)
		brokers = append(brokers, broker)
		procs = append(procs, Process{
			Name:         name,
			Cmd:          args,
			Dir:          dir,
			LogFile:      filepath.Join(cfg.DataDir, "logs", name+".log"),
			Ready:        func(ctx context.Context) error { return KafkaReady(ctx, []string{broker}) },
			ReadyTimeout: 3 * time.Minute,
			// The last broker to stop has no controller quorum left for a
			// controlled shutdown and would wait for one: its logs recover
			// on the next start instead.
			StopTimeout: 10 * time.Second,
		})
	}
	if err := s.launchAndAwait(ctx, procs); err != nil {
		return err
	}
	if err := awaitLiveBrokers(ctx, brokers, haMembers); err != nil {
		return err
	}
	topics := Topics(cfg.RequestPartitions)
	if err := createTopics(ctx, brokers, topics, HAReplicationFactor, HAMinInsyncReplicas, cfg.Log); err != nil {
		return fmt.Errorf("devstack: create topics: %w", err)
	}
	// Each broker learns of new topics from the controller a moment
	// later; a client that asks another broker in between is told they do
	// not exist (seen in the HA test). Wait until every broker knows.
	var names []string
	for _, t := range topics {
		names = append(names, t.Name)
	}
	for _, b := range brokers {
		if err := pollUntil(ctx, 30*time.Second, func(context.Context) error { return brokerKnowsTopics(b, names) }); err != nil {
			return fmt.Errorf("devstack: topics on broker %s: %w", b, err)
		}
	}
	return ensureBucketMap(ctx, s.endpoints.ZooKeeper, cfg)
}

// brokerKnowsTopics asks the broker at addr itself for the topics'
// metadata: each must exist with a leader for every partition.
func brokerKnowsTopics(addr string, names []string) error {
	b := sarama.NewBroker(addr)
	if err := b.Open(saramaConfig()); err != nil {
		return err
	}
	defer b.Close()
	req := sarama.NewMetadataRequest(sarama.V3_6_0_0, names)
	md, err := b.GetMetadata(req)
	if err != nil {
		return err
	}
	for _, t := range md.Topics {
		if t.Err != sarama.ErrNoError || len(t.Partitions) == 0 {
			return fmt.Errorf("topic %s: %v", t.Name, t.Err)
		}
		for _, p := range t.Partitions {
			if p.Err != sarama.ErrNoError || p.Leader < 0 {
				return fmt.Errorf("topic %s partition %d: no leader yet", t.Name, p.ID)
			}
		}
	}
	if len(md.Topics) < len(names) {
		return fmt.Errorf("%d of %d topics known", len(md.Topics), len(names))
	}
	return nil
}

// awaitLiveBrokers waits until the cluster's metadata lists n live brokers.
func awaitLiveBrokers(ctx context.Context, brokers []string, n int) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var last error
	for {
		last = withAdmin(ctx, brokers, func(admin sarama.ClusterAdmin) error {
			live, _, err := admin.DescribeCluster()
			if err != nil {
				return err
			}
			if len(live) < n {
				return fmt.Errorf("%d of %d brokers live", len(live), n)
			}
			return nil
		})
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("devstack: kafka cluster: %w", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// haKafkaClusterID returns the cluster id every node is formatted with,
// chosen once per data folder.
func haKafkaClusterID(dir string) (string, error) {
	path := filepath.Join(dir, "kafka-cluster-id")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	id := newKafkaClusterID()
	return id, os.WriteFile(path, []byte(id+"\n"), 0o644)
}

func kafkaHAProperties(id, port, controllerPort int, voters, logDir string) string {
	return fmt.Sprintf(`# Written by cloudservers stack -topology ha on every start; edits are overwritten.
# Node %[1]d of 3, each both KRaft controller and broker: 3 controller voters.
process.roles=broker,controller
node.id=%[1]d
controller.quorum.voters=%[4]s
listeners=PLAINTEXT://127.0.0.1:%[2]d,CONTROLLER://127.0.0.1:%[3]d
advertised.listeners=PLAINTEXT://127.0.0.1:%[2]d
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=%[5]s

# Every topic on all three brokers; a write is acknowledged (acks=all)
# once two replicas have it, and a replica that was out of sync never
# becomes leader (it could lose acknowledged records).
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
offsets.topic.replication.factor=3
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
# A dead broker is fenced (and leaves the ISRs) within 6 s.
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1000
replica.lag.time.max.ms=10000

# Small machine, three brokers on it: few threads each.
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
num.recovery.threads.per.data.dir=1
background.threads=2
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
log.retention.hours=168
`, id, port, controllerPort, voters, logDir)
}

// freePortBelow returns a free loopback port in [20000, limit], tried at
// random.
func freePortBelow(limit int) (int, error) {
	for range 100 {
		p := 20000 + mrand.IntN(limit-20000+1)
		if checkPortFree(p) == nil {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free port in 20000-%d", limit)
}

// CheckTopicGuarantees reads each topic's configuration and names, all at
// once, those that lack the HA topology's guarantees: min.insync.replicas
// HAMinInsyncReplicas and no unclean leader election. The HA topology's
// tests and its chaos suite check the cluster they run on with it.
func CheckTopicGuarantees(admin sarama.ClusterAdmin, topics []TopicSpec) error {
	want := strconv.Itoa(HAMinInsyncReplicas)
	var errs []error
	for _, ts := range topics {
		entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: ts.Name,
			ConfigNames: []string{"min.insync.replicas", "unclean.leader.election.enable"}})
		if err != nil {
			errs = append(errs, fmt.Errorf("topic %s: %w", ts.Name, err))
			continue
		}
		got := map[string]string{}
		for _, c := range entries {
			got[c.Name] = c.Value
		}
		if got["min.insync.replicas"] != want || got["unclean.leader.election.enable"] != "false" {
			errs = append(errs, fmt.Errorf("topic %s: %v, want min.insync.replicas=%s, unclean.leader.election.enable=false", ts.Name, got, want))
		}
	}
	return errors.Join(errs...)
}
