package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/cloudservers/cloudservers/internal/devstack"
	"github.com/cloudservers/cloudservers/workflows"
)

// DevEndpoints is written by `dev` to <data>/endpoints.json: every address
// of the running system and the demo customers' API keys, for scripts and
// tests.
type DevEndpoints struct {
	devstack.Endpoints
	API        string            `json:"api"`                 // base URL of the customer API
	SwaggerUI  string            `json:"swagger_ui"`          // Swagger UI
	OpenStack  string            `json:"openstack"`           // Keystone auth URL (the simulator's, or your cloud's)
	SimAdmin   string            `json:"sim_admin,omitempty"` // simulator admin API (faults, calls, inventory)
	CloudsYAML string            `json:"clouds_yaml,omitempty"`
	Bridges    map[string]string `json:"bridges"` // process ID -> status URL
	// With -topology ha: every API replica (API is the first) and worker.
	APIs    map[string]string `json:"apis,omitempty"`    // replica -> base URL
	Workers map[string]int    `json:"workers,omitempty"` // name -> pid
	// Metrics are the Prometheus endpoints of every application process
	// (API replicas, bridges, workers): name -> URL of its /metrics.
	Metrics   map[string]string `json:"metrics"`
	Customers []DemoCustomer    `json:"customers"`
}

// DemoCustomer is a demo customer and its API key.
type DemoCustomer struct {
	CustomerID string `json:"customer_id"`
	APIKey     string `json:"api_key"`
}

var bridgeIDs = []string{"bridge-a", "bridge-b"}

// The application's processes per topology: -topology ha runs two API
// replicas, three bridges (each partition: a primary and two partners, in
// order) and two workers.
var (
	haAPIIDs    = []string{"api-1", "api-2"}
	haBridgeIDs = []string{"bridge-a", "bridge-b", "bridge-c"}
	haWorkerIDs = []string{"worker-1", "worker-2"}
)

// runDev runs the whole system on this machine until stopped.
func runDev(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	var cfg devstack.Config
	fs.StringVar(&cfg.DataDir, "data", devstack.DefaultDataDir(), "data folder kept between runs (env CLOUDSERVERS_DATA)")
	fs.StringVar(&cfg.CacheDir, "cache", devstack.DefaultCacheDir(), "cache folder (env CLOUDSERVERS_CACHE)")
	apiPort := fs.Int("api-port", 0, "API port (0 = the one used last time if free, else any free port)")
	cloud := fs.String("cloud", "sim", `"sim": start the OpenStack simulator; "env": use the cloud of OS_CLOUD/clouds.yaml or OS_* (real OpenStack)`)
	session := fs.Duration("session-timeout", 4*time.Second, "ZooKeeper session timeout of the bridges")
	// The benchmark (cloudservers bench) sets the simulated boot and
	// delete times, which its raw baselines wait for too.
	simBoot := fs.Duration("sim-boot-time", 3*time.Second, "the simulator's time from create to ACTIVE (-cloud sim)")
	simDelete := fs.Duration("sim-delete-time", time.Second, "the simulator's time from delete to gone (-cloud sim)")
	topology := fs.String("topology", devstack.TopologySingle, `"single": one of each; "ha": the HA infrastructure of "stack -topology ha" in <data>/ha, two API replicas, three bridges, two workers`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	apiIDs, bridges, workers := []string{"api-1"}, bridgeIDs, []string{"worker"}
	start := devstack.Start
	switch *topology {
	case devstack.TopologySingle:
	case devstack.TopologyHA:
		apiIDs, bridges, workers, start = haAPIIDs, haBridgeIDs, haWorkerIDs, devstack.StartHA
	default:
		return fmt.Errorf("-topology %q: use %q or %q", *topology, devstack.TopologySingle, devstack.TopologyHA)
	}
	cfg.Log = os.Stderr
	self, err := os.Executable()
	if err != nil {
		return err
	}
	st, err := start(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Stop()
	cfg = st.Config()
	e := st.Endpoints()
	logs := filepath.Join(cfg.DataDir, "logs")
	ports, err := appPorts(cfg.DataDir, *apiPort, append(append(append([]string{}, apiIDs[1:]...), bridges...), workers...))
	if err != nil {
		return err
	}

	g := devstack.NewGroup(os.Stderr)
	defer g.Stop()
	env := appEnv(e)
	out := DevEndpoints{Endpoints: e, Bridges: map[string]string{}, Metrics: map[string]string{}}

	if *cloud == "sim" {
		simAddr := hostPort(ports["sim"])
		if err := g.Start(ctx, devstack.Process{
			// The simulated cloud is kept in the data folder with Kafka's
			// read model of it, so that a restart finds the servers both know.
			Name: "openstack-sim", Cmd: []string{self, "sim", "-listen", simAddr, "-kafka", strings.Join(e.Kafka, ","),
				"-state-file", filepath.Join(cfg.DataDir, "openstacksim", "state.json"),
				"-boot-time", simBoot.String(), "-delete-time", simDelete.String()},
			Env: env, LogFile: filepath.Join(logs, "openstack-sim.log"),
			Ready: devstack.HTTPReady("http://" + simAddr + "/identity/v3"),
		}); err != nil {
			return err
		}
		out.OpenStack = "http://" + simAddr + "/identity/v3"
		out.SimAdmin = "http://" + simAddr + "/_sim"
		out.CloudsYAML = filepath.Join(cfg.DataDir, "clouds.yaml")
		if err := os.WriteFile(out.CloudsYAML, []byte(simCloudsYAML(out.OpenStack)), 0o600); err != nil {
			return err
		}
		env = append(env, "OS_CLIENT_CONFIG_FILE="+out.CloudsYAML, "OS_CLOUD=cloudservers-sim")
	} else {
		out.OpenStack = os.Getenv("OS_AUTH_URL")
	}

	tc, err := client.Dial(client.Options{HostPort: e.Temporal, Namespace: e.TemporalNamespace})
	if err != nil {
		return err
	}
	defer tc.Close()
	for i, w := range workers {
		metrics := hostPort(ports[w])
		if err := g.Start(ctx, devstack.Process{
			Name: w, Cmd: append([]string{self}, workerArgs(metrics)...), Env: env, LogFile: filepath.Join(logs, w+".log"),
			Ready: workerPolling(tc, i+1),
		}); err != nil {
			return err
		}
		out.Metrics[w] = "http://" + metrics + "/metrics"
		if len(workers) > 1 {
			if out.Workers == nil {
				out.Workers = map[string]int{}
			}
			out.Workers[w] = g.Pid(w)
		}
	}
	for i, id := range bridges {
		status := hostPort(ports[id])
		if err := g.Start(ctx, devstack.Process{
			Name: id, Cmd: append([]string{self}, bridgeArgs(id, bridges, *session, status)...),
			Env: env, LogFile: filepath.Join(logs, id+".log"),
			Ready: devstack.HTTPReady("http://" + status + "/healthz"),
		}); err != nil {
			return err
		}
		out.Bridges[id] = "http://" + status + "/status"
		out.Metrics[id] = "http://" + status + "/metrics"
		_ = i
	}
	for i, id := range apiIDs {
		// The first replica keeps the single topology's names ("api",
		// api.log), so its URL and log stay where they were.
		name, port := "api", ports["api"]
		if i > 0 {
			name, port = id, ports[id]
		}
		apiAddr := hostPort(port)
		if err := g.Start(ctx, devstack.Process{
			Name: name, Cmd: append([]string{self}, apiArgs(apiAddr, id)...), Env: env,
			LogFile: filepath.Join(logs, name+".log"), Ready: devstack.HTTPReady("http://" + apiAddr + "/readyz"),
		}); err != nil {
			return err
		}
		if i == 0 {
			out.API = "http://" + apiAddr
		}
		out.Metrics[name] = "http://" + apiAddr + "/metrics"
		if len(apiIDs) > 1 {
			if out.APIs == nil {
				out.APIs = map[string]string{}
			}
			out.APIs[id] = "http://" + apiAddr
		}
	}
	out.SwaggerUI = out.API + "/swagger/index.html"
	if out.Pids == nil {
		out.Pids = map[string]int{}
	}
	for name, pid := range g.PidsByName() {
		out.Pids[name] = pid
	}
	out.Customers, err = demoCustomers(ctx, cfg.DataDir, e.Kafka)
	if err != nil {
		return err
	}
	path := filepath.Join(cfg.DataDir, "endpoints.json")
	b, _ := json.MarshalIndent(out, "", "  ")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return err
	}
	defer os.Remove(path)
	fmt.Fprintf(os.Stderr, `
Cloud Servers is running.

  API          %s
  Swagger UI   %s
  Temporal UI  %s  (namespace %s)
  OpenStack    %s
  bridges      %s
  metrics      %s

  endpoints and demo API keys: %s
  logs: %s

  try:  KEY=$(jq -r '.customers[0].api_key' %s)
        curl -s -H "Authorization: Bearer $KEY" %s/v1/servers

Ctrl-C stops everything.
`, out.API, out.SwaggerUI, e.TemporalUI, e.TemporalNamespace, out.OpenStack,
		bridgeList(out.Bridges, bridges), metricsList(out.Metrics), path, logs, path, out.API)
	if *topology == devstack.TopologyHA {
		fmt.Fprintf(os.Stderr, "\nHA topology: API replicas %v, workers %v, ZooKeeper %s, Kafka %s, PostgreSQL %s\n",
			out.APIs, workers, e.ZooKeeper, strings.Join(e.Kafka, ","), e.PostgreSQL)
	}

	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(os.Stderr, "stopping...")
			return nil
		case ex := <-g.Exits():
			// A bridge may be killed on purpose to watch its partner take
			// over: report it and carry on. Anything else ends the run.
			if strings.HasPrefix(ex.Name, "bridge-") || (*topology == devstack.TopologyHA && ex.Name != "openstack-sim") {
				fmt.Fprintf(os.Stderr, "%s exited (%v); its partitions move to its partner. Last lines:\n%s\n", ex.Name, ex.Err, ex.Tail)
				continue
			}
			return fmt.Errorf("%s exited (%v); last lines of its log:\n%s", ex.Name, ex.Err, ex.Tail)
		case ex := <-st.Exits():
			if *topology == devstack.TopologyHA {
				// A cluster member is down: the cluster is meant to carry on.
				fmt.Fprintf(os.Stderr, "%s exited (%v); the cluster carries on without it. Last lines:\n%s\n", ex.Name, ex.Err, ex.Tail)
				continue
			}
			return fmt.Errorf("%s exited (%v); last lines of its log:\n%s", ex.Name, ex.Err, ex.Tail)
		}
	}
}

// The application's commands (after the binary) and environment: dev runs
// them, and docker/compose.yaml's services run the same with the HA
// topology's processes (TestComposeRunsTheHATopology checks).
func appEnv(e devstack.Endpoints) []string {
	return []string{
		"CLOUDSERVERS_KAFKA=" + strings.Join(e.Kafka, ","),
		"CLOUDSERVERS_TEMPORAL=" + e.Temporal,
		"CLOUDSERVERS_NAMESPACE=" + e.TemporalNamespace,
		"CLOUDSERVERS_ZOOKEEPER=" + e.ZooKeeper,
	}
}

func workerArgs(metricsListen string) []string {
	return []string{"worker", "-metrics-listen", metricsListen}
}

func bridgeArgs(id string, bridges []string, session time.Duration, statusListen string) []string {
	return []string{"bridge", "-id", id, "-processes", strings.Join(bridges, ","),
		"-session-timeout", session.String(), "-status-listen", statusListen}
}

func apiArgs(listen, replica string) []string {
	return []string{"api", "-listen", listen, "-replica", replica}
}

func hostPort(p int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)) }

// appPorts chooses the application's ports: those recorded for this data
// folder when free, so URLs survive restarts, else free ones. An explicit
// API port must be free.
func appPorts(dataDir string, apiPort int, others []string) (map[string]int, error) {
	path := filepath.Join(dataDir, "app-ports.json")
	ports := map[string]int{}
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &ports)
	}
	names := append([]string{"api", "sim"}, others...)
	for _, n := range names {
		if n == "api" && apiPort != 0 {
			if !portFree(apiPort) {
				return nil, fmt.Errorf("API port %d on 127.0.0.1 is in use: stop what holds it, or pass -api-port with another port (0 = any free port)", apiPort)
			}
			ports[n] = apiPort
			continue
		}
		if p := ports[n]; p != 0 && portFree(p) {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ports[n] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	b, _ := json.Marshal(ports)
	return ports, os.WriteFile(path, b, 0o600)
}

func portFree(p int) bool {
	ln, err := net.Listen("tcp", hostPort(p))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func simCloudsYAML(authURL string) string {
	return `clouds:
  cloudservers-sim:
    auth:
      auth_url: ` + authURL + `
      username: admin
      password: secret
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    interface: public
    identity_api_version: 3
`
}

// workerPolling is ready once n workers poll the task queue.
func workerPolling(tc client.Client, n int) func(context.Context) error {
	return func(ctx context.Context) error {
		d, err := tc.DescribeTaskQueue(ctx, workflows.TaskQueue, enumspb.TASK_QUEUE_TYPE_WORKFLOW)
		if err != nil {
			return err
		}
		if len(d.GetPollers()) < n {
			return fmt.Errorf("%d of %d workers poll %s yet", len(d.GetPollers()), n, workflows.TaskQueue)
		}
		return nil
	}
}

// demoCustomers returns the two demo customers' API keys, creating them the
// first time (they live on Kafka in the same data folder, so they are kept
// with it).
func demoCustomers(ctx context.Context, dataDir string, brokers []string) ([]DemoCustomer, error) {
	path := filepath.Join(dataDir, "demo-customers.json")
	var out []DemoCustomer
	if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &out) == nil && len(out) == 2 {
		return out, nil
	}
	out = nil
	for _, id := range []string{"demo-alice", "demo-bob"} {
		key, err := createKey(ctx, brokers, id, "demo", false)
		if err != nil {
			return nil, fmt.Errorf("demo key for %s: %w", id, err)
		}
		out = append(out, DemoCustomer{CustomerID: id, APIKey: key})
	}
	b, _ := json.MarshalIndent(out, "", "  ")
	return out, os.WriteFile(path, b, 0o600)
}

func bridgeList(urls map[string]string, ids []string) string {
	var l []string
	for _, id := range ids {
		l = append(l, urls[id])
	}
	return strings.Join(l, ", ")
}

// metricsList lists the /metrics URLs, one process a line, in name order.
func metricsList(urls map[string]string) string {
	names := make([]string, 0, len(urls))
	for n := range urls {
		names = append(names, n)
	}
	sort.Strings(names)
	l := make([]string, len(names))
	for i, n := range names {
		l[i] = fmt.Sprintf("%-10s %s", n, urls[n])
	}
	return strings.Join(l, "\n               ")
}
