package devstack

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/cloudservers/cloudservers/internal/setup"
)

// Versions of what the stack runs. The jar versions live in the embedded
// poms (maven/*/pom.xml); these are for messages and the Temporal build.
const (
	KafkaVersion       = "4.4.0"
	ZooKeeperVersion   = "3.9.5"
	TemporalCLIVersion = "v1.5.1"
	temporalCLIModule  = "github.com/temporalio/cli/cmd/temporal"
)

// DefaultNamespace is the Temporal namespace the stack creates.
const DefaultNamespace = setup.DefaultNamespace

// SearchAttributes are the custom search attributes the stack registers in
// the namespace (all Keyword). Support engineers search workflows by them.
var SearchAttributes = setup.SearchAttributes

// Config says where the stack keeps its data and jars and on which
// loopback ports it listens. A port of 0 means "any free port" (the port
// picked last time for the same data folder is preferred, so that URLs stay
// the same between runs); a port that is taken is an error, never silently
// replaced.
type Config struct {
	// DataDir holds zookeeper/, kafka/, temporal/ and logs/, kept between
	// runs. Default: $CLOUDSERVERS_DATA, else ./.data.
	DataDir string
	// CacheDir holds the fetched jars and the built temporal binary, shared
	// by every data folder. Default: $CLOUDSERVERS_CACHE, else
	// $HOME/.cache/cloudservers.
	CacheDir string

	ZooKeeperPort       int
	KafkaPort           int // the broker (PLAINTEXT) listener
	KafkaControllerPort int // the KRaft controller listener
	TemporalPort        int // frontend gRPC
	TemporalUIPort      int // Web UI (HTTP)
	TemporalHTTPPort    int // frontend HTTP API
	TemporalMetricsPort int // Prometheus /metrics

	// RequestPartitions is the partition count of the requests topic
	// (default 6). An existing topic with fewer partitions is grown.
	RequestPartitions int
	// Namespace is the Temporal namespace to create (default "cloudservers").
	Namespace string

	// Heap sizes for the JVMs (-Xmx), defaults "512m" (Kafka) and "256m"
	// (ZooKeeper).
	KafkaHeap, ZooKeeperHeap string

	// Log receives progress lines (fetching, starting, ready). Nil: discarded.
	Log io.Writer
}

// withDefaults returns c with every empty field filled in.
func (c Config) withDefaults() (Config, error) {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir()
	}
	if c.CacheDir == "" {
		c.CacheDir = DefaultCacheDir()
	}
	if c.CacheDir == "" {
		return c, errors.New("devstack: no cache folder: set CLOUDSERVERS_CACHE or HOME")
	}
	var err error
	if c.DataDir, err = filepath.Abs(c.DataDir); err != nil {
		return c, err
	}
	if c.CacheDir, err = filepath.Abs(c.CacheDir); err != nil {
		return c, err
	}
	if c.RequestPartitions <= 0 {
		c.RequestPartitions = 6
	}
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if c.KafkaHeap == "" {
		c.KafkaHeap = "512m"
	}
	if c.ZooKeeperHeap == "" {
		c.ZooKeeperHeap = "256m"
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	for _, p := range c.ports() {
		if *p.port < 0 || *p.port > 65535 {
			return c, fmt.Errorf("devstack: %s port %d is out of range (1-65535, or 0 for any free port)", p.component, *p.port)
		}
	}
	return c, nil
}

// DefaultDataDir is $CLOUDSERVERS_DATA, else .data in the root of the
// repository that holds the working directory, else ./.data.
func DefaultDataDir() string {
	if d := os.Getenv("CLOUDSERVERS_DATA"); d != "" {
		return d
	}
	if root := repoRoot(); root != "" {
		return filepath.Join(root, ".data")
	}
	return ".data"
}

// repoRoot finds the folder of this module's go.mod above the working
// directory ("" if there is none).
func repoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/cloudservers/cloudservers\n") {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// DefaultCacheDir is $CLOUDSERVERS_CACHE, else $HOME/.cache/cloudservers.
func DefaultCacheDir() string {
	if d := os.Getenv("CLOUDSERVERS_CACHE"); d != "" {
		return d
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "cloudservers")
	}
	return ""
}

type portRef struct {
	key       string // in ports.json
	component string // in messages
	port      *int
}

func (c *Config) ports() []portRef {
	return []portRef{
		{"zookeeper", "ZooKeeper client", &c.ZooKeeperPort},
		{"kafka", "Kafka broker", &c.KafkaPort},
		{"kafka_controller", "Kafka controller", &c.KafkaControllerPort},
		{"temporal", "Temporal frontend (gRPC)", &c.TemporalPort},
		{"temporal_ui", "Temporal Web UI", &c.TemporalUIPort},
		{"temporal_http", "Temporal frontend (HTTP)", &c.TemporalHTTPPort},
		{"temporal_metrics", "Temporal metrics", &c.TemporalMetricsPort},
	}
}

// PortBusyError says that a configured port is taken by another program.
type PortBusyError struct {
	Key       string // which port: "zookeeper", "kafka", "kafka_controller", "temporal", "temporal_ui", ...
	Component string
	Port      int
	Err       error
}

func (e *PortBusyError) Error() string {
	return fmt.Sprintf("devstack: %s port %d on 127.0.0.1 is already in use by another program: stop that program or choose another port for the %s (0 picks a free one)",
		e.Component, e.Port, e.Component)
}

func (e *PortBusyError) Unwrap() error { return e.Err }

// checkPortFree reports whether 127.0.0.1:port can be bound right now.
func checkPortFree(port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return l.Close()
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// portsFile remembers the ports a data folder used last, so that "0"
// resolves to the same ports again when they are free.
const portsFile = "ports.json"

// resolvePorts replaces every 0 port with a free one (preferring the one
// remembered in the data folder) and checks that every explicit port is
// free. It returns a *PortBusyError for a taken explicit port.
func (c *Config) resolvePorts() error {
	remembered := map[string]int{}
	if b, err := os.ReadFile(filepath.Join(c.DataDir, portsFile)); err == nil {
		_ = json.Unmarshal(b, &remembered)
	}
	used := map[int]string{}
	refs := c.ports()
	// Explicit ports first: they are not negotiable.
	for _, r := range refs {
		if *r.port == 0 {
			continue
		}
		if other, dup := used[*r.port]; dup {
			return fmt.Errorf("devstack: port %d is configured for both the %s and the %s", *r.port, other, r.component)
		}
		if err := checkPortFree(*r.port); err != nil {
			if isAddrInUse(err) {
				return &PortBusyError{Key: r.key, Component: r.component, Port: *r.port, Err: err}
			}
			return fmt.Errorf("devstack: cannot listen on 127.0.0.1:%d for the %s: %w", *r.port, r.component, err)
		}
		used[*r.port] = r.component
	}
	for _, r := range refs {
		if *r.port != 0 {
			continue
		}
		if p := remembered[r.key]; p > 0 && p <= 65535 && used[p] == "" && checkPortFree(p) == nil {
			*r.port = p
			used[p] = r.component
			continue
		}
		for range 20 {
			p, err := freePort()
			if err != nil {
				return fmt.Errorf("devstack: no free port for the %s: %w", r.component, err)
			}
			if used[p] == "" {
				*r.port = p
				used[p] = r.component
				break
			}
		}
		if *r.port == 0 {
			return fmt.Errorf("devstack: no free port for the %s", r.component)
		}
	}
	m := map[string]int{}
	for _, r := range refs {
		m[r.key] = *r.port
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	return os.WriteFile(filepath.Join(c.DataDir, portsFile), append(b, '\n'), 0o644)
}

// isAddrInUse reports whether err is EADDRINUSE.
func isAddrInUse(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }
