package devstack

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// EndpointsEnv names the environment variable that holds the path of the
// endpoints file for integration tests (see TestEndpoints).
const EndpointsEnv = "CLOUDSERVERS_ENDPOINTS"

// Endpoints is where a running stack listens: the contract between
// `cloudservers stack -endpoints-file F`, scripts and integration tests.
// It is written as JSON. Readers ignore fields they do not know, so fields
// are only ever added (the application's own addresses go to new fields).
type Endpoints struct {
	ZooKeeper         string   `json:"zookeeper"`          // host:port
	Kafka             []string `json:"kafka"`              // bootstrap brokers, host:port
	Temporal          string   `json:"temporal"`           // frontend gRPC host:port
	TemporalNamespace string   `json:"temporal_namespace"` // namespace with the search attributes
	TemporalUI        string   `json:"temporal_ui"`        // Web UI, http URL
	TemporalHTTP      string   `json:"temporal_http,omitempty"`
	TemporalMetrics   string   `json:"temporal_metrics,omitempty"` // Prometheus URL

	RequestPartitions int `json:"request_partitions,omitempty"`

	DataDir string `json:"data_dir,omitempty"`
	LogDir  string `json:"log_dir,omitempty"`
	// Pid is the process that runs the stack (`cloudservers stack`); its
	// children die with it.
	Pid int `json:"pid,omitempty"`
	// Pids are the stack's child processes by name.
	Pids map[string]int `json:"pids,omitempty"`

	// The HA topology (StartHA) also fills these; ZooKeeper is then the
	// whole connect string of the ensemble.
	Topology              string   `json:"topology,omitempty"` // "ha"; empty for the single-node stack
	ZooKeeperServers      []string `json:"zookeeper_servers,omitempty"`
	KafkaControllers      []string `json:"kafka_controllers,omitempty"`
	ReplicationFactor     int      `json:"replication_factor,omitempty"`
	MinInsyncReplicas     int      `json:"min_insync_replicas,omitempty"`
	PostgreSQL            string   `json:"postgresql,omitempty"` // host:port (user temporal, trust auth on loopback)
	TemporalHistoryShards int      `json:"temporal_history_shards,omitempty"`
}

// WriteEndpoints writes e to path as JSON, atomically (a reader polling
// for the file never sees half of it).
func WriteEndpoints(path string, e Endpoints) error {
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// LoadEndpoints reads an endpoints file written by WriteEndpoints.
func LoadEndpoints(path string) (Endpoints, error) {
	var e Endpoints
	b, err := os.ReadFile(path)
	if err != nil {
		return e, err
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return e, fmt.Errorf("%s: %w", path, err)
	}
	if e.ZooKeeper == "" && len(e.Kafka) == 0 && e.Temporal == "" {
		return e, fmt.Errorf("%s: no endpoint in it", path)
	}
	return e, nil
}

// TestEndpoints returns the endpoints of the stack the integration tests
// run against: the file named by $CLOUDSERVERS_ENDPOINTS. It fails the test
// with instructions when the variable is not set or the file is unreadable.
func TestEndpoints(t testing.TB) Endpoints {
	t.Helper()
	path := os.Getenv(EndpointsEnv)
	if path == "" {
		t.Fatalf("%s is not set: integration tests need a running stack. Run them with scripts/test-stack.sh "+
			"(e.g. `scripts/test-stack.sh go test -tags integration ./...`), or start `cloudservers stack -endpoints-file F` "+
			"and export %s=F", EndpointsEnv, EndpointsEnv)
	}
	e, err := LoadEndpoints(path)
	if err != nil {
		t.Fatalf("%s: %v", EndpointsEnv, err)
	}
	return e
}
