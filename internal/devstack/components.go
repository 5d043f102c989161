package devstack

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
	tlog "go.temporal.io/sdk/log"

	"github.com/cloudservers/cloudservers/internal/setup"
)

// jvmFlags are common to both JVMs: small footprint, no hsperfdata files,
// die on OOM instead of limping on.
func jvmFlags(heap string) []string {
	return []string{
		"-Xmx" + heap, "-Xss1m",
		"-XX:+ExitOnOutOfMemoryError", "-XX:-UsePerfData",
		"-Djava.awt.headless=true", "-Djava.net.preferIPv4Stack=true",
	}
}

// ---- ZooKeeper ----

// zookeeperCmd runs a ZooKeeper server (standalone or a quorum member) from
// its zoo.cfg.
func zookeeperCmd(cfg Config, t tools, zooCfg string) []string {
	args := append([]string{t.java}, jvmFlags(cfg.ZooKeeperHeap)...)
	return append(args,
		"-XX:+UseSerialGC",
		"-Dzookeeper.admin.enableServer=false",
		"-Dorg.slf4j.simpleLogger.showDateTime=true",
		"-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS",
		"-Dorg.slf4j.simpleLogger.logFile=System.out",
		"-cp", filepath.Join(t.zookeeperLib, "*"),
		"org.apache.zookeeper.server.quorum.QuorumPeerMain", zooCfg)
}

func zookeeperProcess(cfg Config, t tools) (Process, error) {
	dir := filepath.Join(cfg.DataDir, "zookeeper")
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return Process{}, err
	}
	zooCfg := filepath.Join(dir, "zoo.cfg")
	conf := fmt.Sprintf(`# Written by cloudservers stack on every start; edits are overwritten.
# Sessions expire on tick boundaries: a short tick makes failover track the
# session timeout (measured with 2000: up to 2 s late).
tickTime=500
initLimit=10
syncLimit=5
dataDir=%s
clientPort=%d
clientPortAddress=127.0.0.1
maxClientCnxns=0
# Sessions of 2s..40s may be asked for (bridge failover is tuned by it).
minSessionTimeout=1000
maxSessionTimeout=40000
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,mntr,stat,conf,cons
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
`, dataDir, cfg.ZooKeeperPort)
	if err := os.WriteFile(zooCfg, []byte(conf), 0o644); err != nil {
		return Process{}, err
	}
	args := zookeeperCmd(cfg, t, zooCfg)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.ZooKeeperPort))
	return Process{
		Name:         "zookeeper",
		Cmd:          args,
		Dir:          dir,
		LogFile:      filepath.Join(cfg.DataDir, "logs", "zookeeper.log"),
		Ready:        func(ctx context.Context) error { return ZooKeeperRUOK(ctx, addr) },
		ReadyTimeout: 60 * time.Second,
		StopTimeout:  10 * time.Second,
	}, nil
}

// ZooKeeperRUOK sends the four-letter word "ruok" to addr and expects
// "imok".
func ZooKeeperRUOK(ctx context.Context, addr string) error {
	out, err := ZooKeeperCommand(ctx, addr, "ruok")
	if err != nil {
		return err
	}
	if out != "imok" {
		return fmt.Errorf("zookeeper at %s answered %q to ruok", addr, out)
	}
	return nil
}

// ZooKeeperCommand sends a four-letter word (ruok, srvr, mntr, stat) to
// the ZooKeeper at addr and returns its answer.
func ZooKeeperCommand(ctx context.Context, addr, cmd string) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(5 * time.Second))
	}
	if _, err := io.WriteString(c, cmd); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	if err != nil && len(b) == 0 {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// ---- Kafka ----

const kafkaLog4j2 = `<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by cloudservers stack on every start; edits are overwritten. -->
<Configuration status="warn">
  <Appenders>
    <Console name="out" target="SYSTEM_OUT">
      <PatternLayout pattern="%d{ISO8601} %-5p [%c{1}] %m%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <!-- The full config dumps ("... values:") are hundreds of lines each. -->
    <Logger name="org.apache.kafka.common.config.AbstractConfig" level="warn"/>
    <Logger name="kafka.server.KafkaConfig" level="warn"/>
    <Logger name="org.apache.kafka.clients" level="warn"/>
    <Logger name="state.change.logger" level="warn"/>
    <Logger name="kafka.request.logger" level="warn"/>
    <Logger name="org.apache.kafka.storage.internals.log" level="warn"/>
    <Logger name="kafka.log.LogCleaner" level="info"/>
    <Root level="info"><AppenderRef ref="out"/></Root>
  </Loggers>
</Configuration>
`

// kafkaNodeID is the id of the single combined broker+controller.
const kafkaNodeID = 1

func kafkaServerProperties(cfg Config, logDir string) string {
	return fmt.Sprintf(`# Written by cloudservers stack on every start; edits are overwritten.
# One node that is both KRaft controller and broker, on loopback only.
process.roles=broker,controller
node.id=%[1]d
# A static quorum: the controller's address is configuration, not
# metadata, so the ports may change between runs of the same data folder.
controller.quorum.voters=%[1]d@127.0.0.1:%[3]d
listeners=PLAINTEXT://127.0.0.1:%[2]d,CONTROLLER://127.0.0.1:%[3]d
advertised.listeners=PLAINTEXT://127.0.0.1:%[2]d
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=%[4]s

# Topics are created explicitly (partitions and configs matter here).
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

# Small machine: fewer threads and a smaller compaction buffer.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
log.retention.hours=168
`, kafkaNodeID, cfg.KafkaPort, cfg.KafkaControllerPort, logDir)
}

// kafkaPrepare writes the configuration and formats the storage the first
// time (kafka.tools.StorageTool format, what kafka-storage.sh runs).
func kafkaPrepare(ctx context.Context, cfg Config, t tools) (props, log4j string, err error) {
	dir := filepath.Join(cfg.DataDir, "kafka")
	logDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return "", "", err
	}
	props = filepath.Join(dir, "server.properties")
	log4j = filepath.Join(dir, "log4j2.xml")
	if err := os.WriteFile(props, []byte(kafkaServerProperties(cfg, logDir)), 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(log4j, []byte(kafkaLog4j2), 0o644); err != nil {
		return "", "", err
	}
	if _, err := os.Stat(filepath.Join(logDir, "meta.properties")); err == nil {
		return props, log4j, nil
	}
	clusterID := newKafkaClusterID()
	fmt.Fprintf(cfg.Log, "  formatting Kafka storage in %s (cluster id %s)\n", logDir, clusterID)
	logPath := filepath.Join(cfg.DataDir, "logs", "kafka-format.log")
	args := append(jvmFlags("256m"), "-Dlog4j2.configurationFile="+log4j,
		"-cp", filepath.Join(t.kafkaLib, "*"), "kafka.tools.StorageTool",
		"format", "--config", props, "--cluster-id", clusterID, "--ignore-formatted")
	// Not cancelled with ctx: a format cut short could leave a data folder
	// that looks formatted. It takes a few seconds.
	cmd := exec.CommandContext(context.WithoutCancel(ctx), t.java, args...)
	if err := runLogged(cmd, logPath, func(string) {}, time.Hour, func() {}); err != nil {
		return "", "", fmt.Errorf("devstack: formatting the Kafka storage failed (%v)\n--- last lines of %s ---\n%s", err, logPath, TailFile(logPath, 0, 30))
	}
	return props, log4j, nil
}

// newKafkaClusterID returns a random cluster id in Kafka's Uuid format
// (16 bytes, URL-safe base64 without padding).
func newKafkaClusterID() string {
	for {
		var b [16]byte
		_, _ = rand.Read(b[:])
		b[6] = b[6]&0x0f | 0x40 // a version-4 UUID, like Uuid.randomUuid
		b[8] = b[8]&0x3f | 0x80
		// Like Uuid.randomUuid, never one that starts with '-': the
		// storage tool would take it for a flag (1 start in 64 failed).
		if id := base64.RawURLEncoding.EncodeToString(b[:]); id[0] != '-' {
			return id
		}
	}
}

// kafkaCmd runs a Kafka node (the single broker or a member of the HA
// cluster) from its server.properties.
func kafkaCmd(cfg Config, t tools, props, log4j string) []string {
	args := append([]string{t.java}, jvmFlags(cfg.KafkaHeap)...)
	return append(args,
		"-Xms128m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
		"-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
		"-Dlog4j2.configurationFile="+log4j,
		"-Dkafka.logs.dir="+filepath.Join(cfg.DataDir, "logs"),
		"-cp", filepath.Join(t.kafkaLib, "*"),
		"kafka.Kafka", props)
}

func kafkaProcess(cfg Config, t tools, props, log4j string) Process {
	args := kafkaCmd(cfg, t, props, log4j)
	broker := net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.KafkaPort))
	return Process{
		Name:         "kafka",
		Cmd:          args,
		Dir:          filepath.Join(cfg.DataDir, "kafka"),
		LogFile:      filepath.Join(cfg.DataDir, "logs", "kafka.log"),
		Ready:        func(ctx context.Context) error { return KafkaReady(ctx, []string{broker}) },
		ReadyTimeout: 2 * time.Minute,
		StopTimeout:  30 * time.Second,
	}
}

// saramaConfig is the client configuration the stack's checks use.
func saramaConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.ClientID = "cloudservers-devstack"
	c.Version = sarama.V3_6_0_0
	c.Net.DialTimeout = 3 * time.Second
	c.Net.ReadTimeout = 10 * time.Second
	c.Net.WriteTimeout = 10 * time.Second
	c.Metadata.Retry.Max = 0
	c.Admin.Timeout = 30 * time.Second
	return c
}

// KafkaReady succeeds when the cluster at brokers answers a metadata
// request with at least one live broker and a controller.
func KafkaReady(ctx context.Context, brokers []string) error {
	return withAdmin(ctx, brokers, func(admin sarama.ClusterAdmin) error {
		live, controller, err := admin.DescribeCluster()
		if err != nil {
			return err
		}
		if len(live) == 0 || controller < 0 {
			return fmt.Errorf("kafka: %d live brokers, controller %d", len(live), controller)
		}
		return nil
	})
}

// withAdmin runs f with a ClusterAdmin, giving up when ctx ends (sarama
// calls take no context).
func withAdmin(ctx context.Context, brokers []string, f func(sarama.ClusterAdmin) error) error {
	done := make(chan error, 1)
	go func() {
		admin, err := sarama.NewClusterAdmin(brokers, saramaConfig())
		if err != nil {
			done <- err
			return
		}
		defer admin.Close()
		done <- f(admin)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ---- Temporal ----

func temporalProcess(cfg Config, t tools) (Process, error) {
	dir := filepath.Join(cfg.DataDir, "temporal")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Process{}, err
	}
	args := []string{t.temporal, "server", "start-dev",
		"--ip", "127.0.0.1",
		"--port", strconv.Itoa(cfg.TemporalPort),
		"--ui-port", strconv.Itoa(cfg.TemporalUIPort),
		"--http-port", strconv.Itoa(cfg.TemporalHTTPPort),
		"--metrics-port", strconv.Itoa(cfg.TemporalMetricsPort),
		"--db-filename", filepath.Join(dir, "temporal.db"),
		"--sqlite-pragma", "journal_mode=wal",
		"--sqlite-pragma", "synchronous=normal",
		"--namespace", cfg.Namespace,
		"--log-level", "warn",
		// The dev server turns its search-attribute cache off (so that an
		// attribute added at run time is seen at once), and then reads the
		// attributes' definitions from its database for every workflow
		// start, upsert and visibility task that carries one: about a
		// third of its persistence requests per create (make bench). Ours
		// are all registered below, before it serves.
		"--dynamic-config-value", "system.forceSearchAttributesCacheRefreshOnRead=false",
	}
	for _, sa := range SearchAttributes {
		args = append(args, "--search-attribute", sa+"=Keyword")
	}
	hostPort := net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.TemporalPort))
	ui := fmt.Sprintf("http://127.0.0.1:%d/", cfg.TemporalUIPort)
	return Process{
		Name:    "temporal",
		Cmd:     args,
		Dir:     dir,
		LogFile: filepath.Join(cfg.DataDir, "logs", "temporal.log"),
		Ready: func(ctx context.Context) error {
			if err := TemporalReady(ctx, hostPort, cfg.Namespace); err != nil {
				return err
			}
			return HTTPReady(ui)(ctx)
		},
		ReadyTimeout: 2 * time.Minute,
		StopTimeout:  20 * time.Second,
	}, nil
}

// quietLogger drops the Temporal client's log lines.
var quietLogger = tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))

// TemporalReady succeeds when the frontend at hostPort is healthy, the
// namespace exists and every one of SearchAttributes is registered in it
// (setup.TemporalReady).
func TemporalReady(ctx context.Context, hostPort, namespace string) error {
	return setup.TemporalReady(ctx, hostPort, namespace)
}
