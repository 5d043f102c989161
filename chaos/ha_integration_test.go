//go:build integration

package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/api"
	"github.com/cloudservers/cloudservers/internal/devstack"
	"github.com/cloudservers/cloudservers/internal/kafka"
	"github.com/cloudservers/cloudservers/internal/openstacksim"
	"github.com/cloudservers/cloudservers/workflows"
)

// TestHAChaos runs the whole system on the HA topology (3 ZooKeeper, 3
// Kafka brokers with RF 3 and min.insync.replicas 2, the Temporal server on
// PostgreSQL, 2 API replicas, 3 bridges, 2 workers, the simulator) under a
// steady stream of creates, reboots and deletes from several customers, and
// kill -9s one piece after the other, restarting it where it applies:
//
//   - the Kafka broker leading the most requests partitions, then the one
//     leading the most state-topic partitions, then the active controller;
//   - the ZooKeeper leader, then a follower (bridge ownership must neither
//     move nor be held twice);
//   - the Temporal server, then PostgreSQL;
//   - an API replica while a request is in flight on it (its clients retry
//     the same Idempotency-Key on the other replica);
//   - a worker in the middle of sagas;
//   - two brokers at once: fewer than min.insync.replicas, so mutations
//     are refused with 503 and Retry-After while reads keep working.
//
// Afterwards every accepted (202) request must have succeeded exactly once:
// none lost, none duplicated (one operation per request, one Nova create
// per accepted create, no server the clients did not ask for), nothing
// leaked in the simulator. It prints one table row per kill (HA-CHAOS
// lines). It costs about 8 minutes, so it runs only with CLOUDSERVERS_HA=1
// (make chaos-ha).
func TestHAChaos(t *testing.T) {
	if os.Getenv("CLOUDSERVERS_HA") != "1" {
		t.Skip("set CLOUDSERVERS_HA=1 (make chaos-ha) to start the HA topology")
	}
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	h := startHA(t, ctx)
	t.Logf("HA system ready in %s", time.Since(t0).Round(100*time.Millisecond))
	checkHAShape(t, ctx, h)

	l := h.startLoad(4, 2*time.Second)
	hold := 8 * time.Second
	kafkaKill := func(pick func() string) func(*haPhase) {
		return func(p *haPhase) {
			name := pick()
			p.name += " (" + name + ")"
			p.kill(name)
			h.sleep(hold)
			p.restart(name)
			h.awaitFullISR(ctx)
		}
	}
	zkKill := func(leader bool) func(*haPhase) {
		return func(p *haPhase) {
			name := h.zkMember(ctx, leader)
			p.name += " (" + name + ")"
			p.watched = true
			p.kill(name)
			h.sleep(hold)
			p.restart(name)
			h.sleep(3 * time.Second)
		}
	}
	phases := []struct {
		name string
		run  func(*haPhase)
	}{
		{"baseline, nothing killed", func(*haPhase) { h.sleep(6 * time.Second) }},
		{"Kafka broker leading the requests partitions", kafkaKill(func() string { return h.leaderOf(ctx, []string{cloudservers.TopicRequests}, "") })},
		{"Kafka broker leading the state topics", kafkaKill(func() string { return h.leaderOf(ctx, cloudservers.StateTopics, h.lastKafka) })},
		{"Kafka active controller", kafkaKill(func() string { return h.activeController(t) })},
		{"ZooKeeper leader", zkKill(true)},
		{"ZooKeeper follower", zkKill(false)},
		{"Temporal server", func(p *haPhase) {
			p.kill("temporal")
			t0 := time.Now()
			h.awaitReadyz(ctx, "temporal", hold)
			p.note = fmt.Sprintf("bridges' /readyz named temporal missing %.1fs after the kill", time.Since(t0).Seconds())
			h.sleep(hold - time.Since(t0))
			p.restart("temporal")
			t0 = time.Now()
			h.awaitReadyz(ctx, "", time.Minute)
			p.note += fmt.Sprintf(", ready again %.1fs after the restart", time.Since(t0).Seconds())
		}},
		{"PostgreSQL", func(p *haPhase) {
			p.kill("postgres")
			h.sleep(hold)
			p.restart("postgres")
		}},
		{"API replica mid-request (api-1)", func(p *haPhase) {
			// Kill it while it holds a request.
			deadline := time.Now().Add(20 * time.Second)
			for l.inflight[0].Load() == 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			p.note = fmt.Sprintf("%d request(s) in flight on it", l.inflight[0].Load())
			p.kill("api")
			h.sleep(hold)
			p.restart("api")
		}},
		{"worker mid-sagas (worker-1)", func(p *haPhase) {
			p.kill("worker-1")
			h.sleep(2 * hold) // the sagas in flight finish on worker-2
			p.restart("worker-1")
		}},
		{"2 of 3 Kafka brokers (below min.insync.replicas)", func(p *haPhase) {
			p.kill("kafka-2")
			p.kill("kafka-3")
			h.sleep(15 * time.Second)
			p.restart("kafka-2")
			p.restart("kafka-3")
			h.awaitFullISR(ctx)
		}},
	}
	var rows []*haPhase
	for i, ph := range phases {
		p := &haPhase{h: h, index: i, name: ph.name, start: time.Now()}
		rows = append(rows, p)
		l.phase.Store(int32(i))
		t.Logf("phase %d: %s", i, p.name)
		ph.run(p)
		p.end = time.Now()
		h.sleep(4 * time.Second) // load flows between kills
		if t.Failed() {
			break
		}
	}
	reqs := l.stop()
	t.Logf("load stopped: %d requests over %s", len(reqs), time.Since(rows[0].start).Round(time.Second))
	h.verify(ctx, rows, reqs, l)
	t.Logf("whole test %s", time.Since(t0).Round(time.Second))
}

// haSystem is the HA topology with the application on it.
type haSystem struct {
	t       *testing.T
	st      *devstack.Stack
	e       devstack.Endpoints
	app     *devstack.Group
	apis    []string // base URLs: api-1 (process "api"), api-2
	bridges map[string]string
	simURL  string
	keys    []string
	http    *http.Client
	tc      client.Client
	admin   sarama.ClusterAdmin
	// baseline is the simulator's inventory before the load.
	baseline  openstacksim.Inventory
	lastKafka string
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// startHA starts the HA infrastructure (devstack.StartHA, as `stack
// -topology ha`) and the application on it as `dev -topology ha` does, each
// process in a group the test can kill -9 and restart.
func startHA(t *testing.T, ctx context.Context) *haSystem {
	// PostgreSQL runs as the postgres user when we are root: it must be
	// able to enter the folder, and t.TempDir's parent is 0700.
	dir, err := os.MkdirTemp("", "cloudservers-ha-chaos-")
	must(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the logs are kept in %s", filepath.Join(devstack.HADataDir(dir), "logs"))
			return
		}
		os.RemoveAll(dir)
	})
	must(t, os.Chmod(dir, 0o755))
	st, err := devstack.StartHA(ctx, devstack.Config{DataDir: dir, Log: haLog{t}})
	must(t, err)
	t.Cleanup(func() { st.Stop() })
	h := &haSystem{t: t, st: st, e: st.Endpoints(), bridges: map[string]string{},
		http: &http.Client{Timeout: 15 * time.Second}}
	e := h.e
	h.app = devstack.NewGroup(haLog{t})
	t.Cleanup(func() { h.app.Stop() })
	logs := e.LogDir
	env := []string{
		"CLOUDSERVERS_KAFKA=" + strings.Join(e.Kafka, ","),
		"CLOUDSERVERS_TEMPORAL=" + e.Temporal,
		"CLOUDSERVERS_NAMESPACE=" + e.TemporalNamespace,
		"CLOUDSERVERS_ZOOKEEPER=" + e.ZooKeeper,
	}
	simAddr := freeAddr(t)
	h.simURL = "http://" + simAddr
	must(t, h.app.Start(ctx, devstack.Process{
		Name: "openstack-sim", Cmd: []string{binary, "sim", "-listen", simAddr, "-kafka", strings.Join(e.Kafka, ","),
			"-boot-time", "1s", "-delete-time", "500ms", "-reboot-time", "500ms",
			"-quota-instances", "-1", "-quota-cores", "-1", "-quota-ram", "-1", "-quota-ports", "-1", "-quota-floatingips", "-1"},
		Env: env, LogFile: filepath.Join(logs, "openstack-sim.log"),
		Ready: devstack.HTTPReady(h.simURL + "/identity/v3"),
	}))
	// The simulator's own clouds.yaml (its cloud is "openstacksim").
	clouds := filepath.Join(dir, "clouds.yaml")
	resp, err := h.http.Get(h.simURL + "/_sim/clouds.yaml")
	must(t, err)
	yaml, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	must(t, err)
	must(t, os.WriteFile(clouds, yaml, 0o600))
	env = append(env, "OS_CLIENT_CONFIG_FILE="+clouds, "OS_CLOUD=openstacksim")

	h.tc, err = client.DialContext(ctx, client.Options{HostPort: e.Temporal, Namespace: e.TemporalNamespace, Logger: tlog.NewStructuredLogger(sdkLog())})
	must(t, err)
	t.Cleanup(h.tc.Close)
	for i, w := range []string{"worker-1", "worker-2"} {
		must(t, h.app.Start(ctx, devstack.Process{
			Name: w, Cmd: []string{binary, "worker"}, Env: env, LogFile: filepath.Join(logs, w+".log"),
			Ready: func(ctx context.Context) error {
				d, err := h.tc.DescribeTaskQueue(ctx, workflows.TaskQueue, enumspb.TASK_QUEUE_TYPE_WORKFLOW)
				if err != nil {
					return err
				}
				if len(d.GetPollers()) < i+1 {
					return fmt.Errorf("%d pollers", len(d.GetPollers()))
				}
				return nil
			},
		}))
	}
	ids := []string{"bridge-a", "bridge-b", "bridge-c"}
	for _, id := range ids {
		addr := freeAddr(t)
		must(t, h.app.Start(ctx, devstack.Process{
			Name: id, Cmd: []string{binary, "bridge", "-id", id, "-processes", strings.Join(ids, ","),
				"-session-timeout", "4s", "-status-listen", addr},
			Env: env, LogFile: filepath.Join(logs, id+".log"),
			Ready: devstack.HTTPReady("http://" + addr + "/healthz"),
		}))
		h.bridges[id] = "http://" + addr + "/status"
	}
	for i, name := range []string{"api", "api-2"} {
		addr := freeAddr(t)
		must(t, h.app.Start(ctx, devstack.Process{
			Name: name, Cmd: []string{binary, "api", "-listen", addr, "-replica", "api-" + strconv.Itoa(i+1)}, Env: env,
			LogFile: filepath.Join(logs, name+".log"), Ready: devstack.HTTPReady("http://" + addr + "/readyz"),
		}))
		h.apis = append(h.apis, "http://"+addr)
	}
	// A member that dies unasked is a failure of the test.
	go func() {
		for ex := range h.app.Exits() {
			t.Errorf("%s exited unasked (%v): %s", ex.Name, ex.Err, ex.Tail)
		}
	}()
	go func() {
		for ex := range st.Exits() {
			t.Errorf("%s exited unasked (%v): %s", ex.Name, ex.Err, ex.Tail)
		}
	}()

	// Customers and their API keys, known to both replicas.
	p, err := kafka.NewProducer(e.Kafka, "chaos-ha")
	must(t, err)
	defer p.Close()
	for i := range 4 {
		key, rec, err := api.NewAPIKey(fmt.Sprintf("chaos-ha-customer-%d", i+1), "chaos", false, time.Now())
		must(t, err)
		v, _ := json.Marshal(rec)
		must(t, p.Send(ctx, cloudservers.TopicAPIKeys, []byte(rec.Hash), v))
		h.keys = append(h.keys, key)
	}
	for _, base := range h.apis {
		for _, key := range h.keys {
			eventually(t, time.Minute, "the API knows the customers' keys", func() error {
				code, body, _, err := h.do(ctx, base, key, "GET", "/v1/servers", "", nil)
				if err != nil || code != 200 {
					return fmt.Errorf("%d %s %v", code, body, err)
				}
				return nil
			})
		}
	}
	h.admin, err = sarama.NewClusterAdmin(e.Kafka, adminConfig())
	must(t, err)
	t.Cleanup(func() { h.admin.Close() })
	must(t, h.getJSON(h.simURL+"/_sim/inventory", &h.baseline))
	return h
}

func adminConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V3_6_0_0
	c.Admin.Timeout = 10 * time.Second
	c.Metadata.Retry.Max = 10
	c.Metadata.Retry.Backoff = 500 * time.Millisecond
	return c
}

// checkHAShape checks what the system runs on, as make test-ha does: 3
// brokers, every project topic with 3 in-sync replicas, min.insync.replicas
// 2 and no unclean election, 3 ZooKeeper servers with a leader, the
// Temporal server with more than one shard, its UI.
func checkHAShape(t *testing.T, ctx context.Context, h *haSystem) {
	brokers, _, err := h.admin.DescribeCluster()
	must(t, err)
	if len(brokers) != devstack.HAReplicationFactor {
		t.Fatalf("%d brokers", len(brokers))
	}
	h.awaitFullISR(ctx)
	if err := devstack.CheckTopicGuarantees(h.admin, devstack.Topics(h.e.RequestPartitions)); err != nil {
		t.Error(err)
	}
	resp, err := h.http.Get(h.e.TemporalUI + "/")
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("Temporal UI answered %s, want 200", resp.Status)
	}
	if h.zkMember(ctx, true) == "" {
		t.Fatal("no ZooKeeper leader")
	}
	info, err := h.tc.WorkflowService().GetClusterInfo(ctx, &workflowservice.GetClusterInfoRequest{})
	must(t, err)
	if info.GetHistoryShardCount() <= 1 || info.GetPersistenceStore() != "postgres12" {
		t.Fatalf("Temporal: %d history shards on %q, want more than 1 on postgres12", info.GetHistoryShardCount(), info.GetPersistenceStore())
	}
}

func (h *haSystem) sleep(d time.Duration) { time.Sleep(d) }

type haLog struct{ t *testing.T }

func (w haLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// do sends one request; code 0 with err when no answer came.
func (h *haSystem) do(ctx context.Context, base, key, method, path, idem string, body any) (int, []byte, http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idem != "" {
		req.Header.Set("Idempotency-Key", idem)
	}
	resp, err := h.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header, err
}

// read GETs path as customer c for the verdict, waiting out the rate
// limit (the verdict reads much faster than 10 per second).
func (h *haSystem) read(ctx context.Context, c int, path string) (int, []byte, error) {
	for range 30 {
		code, b, hdr, err := h.do(ctx, h.apis[1], h.keys[c], "GET", path, "", nil)
		if err != nil || code != http.StatusTooManyRequests {
			return code, b, err
		}
		wait, _ := strconv.Atoi(hdr.Get("Retry-After"))
		time.Sleep(time.Duration(max(wait, 1)) * time.Second)
	}
	return 0, nil, fmt.Errorf("GET %s: still rate limited after 30 tries", path)
}

func (h *haSystem) getJSON(url string, v any) error {
	resp, err := h.http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

// ---- the kills ----

// haPhase is one kill and what followed, a row of the table.
type haPhase struct {
	h          *haSystem
	index      int
	name, note string
	start, end time.Time
	killedAt   time.Time // the first kill
	restarts   []string
	// ownership: changes of a partition's owner and moments a partition
	// had two owners, seen while a ZooKeeper member was down.
	flaps, doubles int
	watched        bool
	paused         string
	tails          []string
}

func (p *haPhase) group(name string) *devstack.Group {
	if strings.HasPrefix(name, "api") || strings.HasPrefix(name, "worker") || strings.HasPrefix(name, "bridge") {
		return p.h.app
	}
	return p.h.st.Group()
}

func (p *haPhase) kill(name string) {
	at := time.Now()
	must(p.h.t, p.group(name).Kill(name))
	if p.killedAt.IsZero() {
		p.killedAt = at
	}
	if strings.HasPrefix(name, "kafka-") {
		p.h.lastKafka = name
	}
}

func (p *haPhase) restart(name string) {
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	must(p.h.t, p.group(name).Restart(ctx, name))
	p.restarts = append(p.restarts, fmt.Sprintf("%s up in %.1fs", name, time.Since(t0).Seconds()))
}

// leaderOf returns the broker ("kafka-N") leading the most partitions of
// topics, preferring one other than not.
func (h *haSystem) leaderOf(ctx context.Context, topics []string, not string) string {
	metas, err := h.admin.DescribeTopics(topics)
	must(h.t, err)
	count := map[int32]int{}
	for _, m := range metas {
		for _, p := range m.Partitions {
			count[p.Leader]++
		}
	}
	best, bestN := "", -1
	for id, n := range count {
		name := "kafka-" + strconv.Itoa(int(id))
		if n > bestN || (n == bestN && name < best) {
			if name == not && len(count) > 1 {
				continue
			}
			best, bestN = name, n
		}
	}
	h.t.Logf("partition leaders of %v: %v; killing %s", topics, count, best)
	return best
}

var raftTransition = regexp.MustCompile(`Completed transition to (\w+)\(.*?epoch=(\d+)`)

// activeController reads the KRaft quorum's leader from the nodes' logs:
// the node whose last raft transition is to Leader at the highest epoch.
func (h *haSystem) activeController(t *testing.T) string {
	best, bestEpoch := "", -1
	for i := 1; i <= 3; i++ {
		name := "kafka-" + strconv.Itoa(i)
		b, err := os.ReadFile(filepath.Join(h.e.LogDir, name+".log"))
		must(t, err)
		state, epoch := "", -1
		for _, m := range raftTransition.FindAllStringSubmatch(string(b), -1) {
			if e, _ := strconv.Atoi(m[2]); e >= epoch {
				state, epoch = m[1], e
			}
		}
		if state == "Leader" && epoch > bestEpoch {
			best, bestEpoch = name, epoch
		}
	}
	if best == "" {
		t.Fatal("no Kafka node's log says it leads the KRaft quorum")
	}
	t.Logf("the active controller is %s (epoch %d)", best, bestEpoch)
	return best
}

// awaitFullISR waits until every partition of every project topic has all
// its replicas in sync (the next kill must not take the ISR below 2).
func (h *haSystem) awaitFullISR(ctx context.Context) {
	var names []string
	for _, ts := range devstack.Topics(h.e.RequestPartitions) {
		names = append(names, ts.Name)
	}
	t0 := time.Now()
	eventually(h.t, 3*time.Minute, "every partition with 3 in-sync replicas", func() error {
		admin, err := sarama.NewClusterAdmin(h.e.Kafka, adminConfig())
		if err != nil {
			return err
		}
		defer admin.Close()
		metas, err := admin.DescribeTopics(names)
		if err != nil {
			return err
		}
		for _, m := range metas {
			for _, p := range m.Partitions {
				if len(p.Isr) != devstack.HAReplicationFactor || p.Leader < 0 {
					return fmt.Errorf("%s/%d: leader %d, isr %v", m.Name, p.ID, p.Leader, p.Isr)
				}
			}
		}
		return nil
	})
	h.t.Logf("every partition fully in sync after %.1fs", time.Since(t0).Seconds())
}

// zkMember returns the ZooKeeper leader, or a follower.
func (h *haSystem) zkMember(ctx context.Context, leader bool) string {
	var got string
	eventually(h.t, time.Minute, "3 ZooKeeper servers serving", func() error {
		got = ""
		for i, addr := range h.e.ZooKeeperServers {
			mode, err := devstack.ZooKeeperMode(ctx, addr)
			if err != nil {
				return err
			}
			if (mode == "leader") == leader {
				got = "zookeeper-" + strconv.Itoa(i+1)
			}
		}
		if got == "" {
			return fmt.Errorf("none")
		}
		return nil
	})
	return got
}

// leaseRun is one run of a bridge's ZooKeeper lease (a requests
// partition, a notification partition or a singleton), from its logs:
// "lease acquired, starting run" to "run stopped".
type leaseRun struct {
	bridge, key, token string
	// from the lease to the run's cancellation ("cancelling run": the
	// bridge gives the lease up, and its effects are fenced from then on),
	// to when the run returned ("run stopped"); zero while running.
	from, cancel, to time.Time
	reason           string // why it stopped
}

// end is when the run stopped counting as the owner.
func (r *leaseRun) end() time.Time {
	if !r.cancel.IsZero() {
		return r.cancel
	}
	return r.to
}

// leaseRuns reads every run of every bridge from their logs.
func (h *haSystem) leaseRuns() []*leaseRun {
	var runs []*leaseRun
	for id := range h.bridges {
		b, err := os.ReadFile(filepath.Join(h.e.LogDir, id+".log"))
		must(h.t, err)
		open := map[string]*leaseRun{}
		for _, s := range strings.Split(string(b), "\n") {
			l := parseLine(s)
			key := l.kv["singleton"]
			if key == "" {
				key = l.kv["topic"] + "/" + l.kv["partition"]
			}
			switch l.msg {
			case "lease acquired, starting run":
				r := &leaseRun{bridge: id, key: key, token: l.kv["token"], from: l.at}
				open[r.token+r.key] = r
				runs = append(runs, r)
			case "cancelling run":
				if r := open[l.kv["token"]+key]; r != nil && r.cancel.IsZero() {
					r.cancel = l.at
				}
			case "run stopped":
				if r := open[l.kv["token"]+key]; r != nil {
					r.to, r.reason = l.at, l.kv["reason"]
					delete(open, l.kv["token"]+key)
				}
			}
		}
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].from.Before(runs[j].from) })
	return runs
}

// ownership checks the lease runs: no lease held by two bridges at once
// over the whole test, and, in each phase that killed a ZooKeeper member,
// no lease that moved to another bridge or came back with a new lock (a
// session that moved to another member is no lost lock); the runs paused
// on the disconnection and resumed with the same lock are counted.
func (h *haSystem) ownership(rows []*haPhase) {
	runs := h.leaseRuns()
	byKey := map[string][]*leaseRun{}
	for _, r := range runs {
		byKey[r.key] = append(byKey[r.key], r)
	}
	for key, rs := range byKey {
		for i, a := range rs {
			for _, b := range rs[i+1:] {
				if a.bridge == b.bridge {
					continue
				}
				p := rows[max(phaseAt(rows, b.from), 0)]
				switch {
				case a.end().IsZero() || b.from.Before(a.end()):
					p.doubles++
					h.t.Errorf("lease %s held by %s (from %s) and %s (from %s) at once", key, a.bridge, a.from.Format(time.StampMilli), b.bridge, b.from.Format(time.StampMilli))
				case !a.to.IsZero() && b.from.Before(a.to):
					// a's run was cancelled (ZooKeeper disconnected) but
					// had not returned yet when its session expired and b
					// took the lease: fenced, but worth showing.
					p.tails = append(p.tails, fmt.Sprintf("%s's cancelled run of %s returned %s after %s took the lease", a.bridge, key, a.to.Sub(b.from).Round(time.Millisecond), b.bridge))
				}
			}
		}
	}
	for _, p := range rows {
		if !p.watched {
			continue
		}
		var resumed []time.Duration
		for key, rs := range byKey {
			for i, r := range rs {
				if i == 0 || r.from.Before(p.start) || r.from.After(p.end) {
					continue
				}
				prev := rs[i-1]
				switch {
				case prev.bridge != r.bridge:
					p.flaps++
					h.t.Errorf("phase %q: lease %s moved from %s to %s", p.name, key, prev.bridge, r.bridge)
				case prev.token != r.token:
					p.flaps++
					h.t.Errorf("phase %q: %s took lease %s again with a new lock: the session's move was taken for a lost lock", p.name, r.bridge, key)
				case prev.reason == "disconnected":
					resumed = append(resumed, r.from.Sub(prev.to))
				}
			}
		}
		slices.Sort(resumed)
		if len(resumed) > 0 {
			p.paused = fmt.Sprintf("%d lease runs paused on the disconnection and resumed with the same lock after %.1f-%.1f s",
				len(resumed), resumed[0].Seconds(), resumed[len(resumed)-1].Seconds())
		}
	}
}

// awaitReadyz waits until every bridge's /readyz names missing among its
// missing dependencies (503), or, with missing "", answers 200.
func (h *haSystem) awaitReadyz(ctx context.Context, missing string, timeout time.Duration) {
	what := "every bridge's /readyz answers 200"
	if missing != "" {
		what = "every bridge's /readyz answers 503 naming " + missing
	}
	eventually(h.t, timeout, what, func() error {
		for id, status := range h.bridges {
			resp, err := h.http.Get(strings.TrimSuffix(status, "/status") + "/readyz")
			if err != nil {
				return err
			}
			var body struct {
				Missing      []string          `json:"missing"`
				Dependencies map[string]string `json:"dependencies"`
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", id, err)
			}
			switch {
			case missing == "" && resp.StatusCode != http.StatusOK:
				return fmt.Errorf("%s: %s %v", id, resp.Status, body.Dependencies)
			case missing != "" && (resp.StatusCode != http.StatusServiceUnavailable || !slices.Contains(body.Missing, missing) || resp.Header.Get("Retry-After") == ""):
				return fmt.Errorf("%s: %s, missing %v, Retry-After %q", id, resp.Status, body.Missing, resp.Header.Get("Retry-After"))
			}
		}
		return nil
	})
}

// ---- the load ----

// haReq is one request of a customer, retried until it is accepted.
type haReq struct {
	phase    int
	customer int
	kind     string // create, reboot, delete
	server   string
	op       string
	idem     string
	sent     time.Time
	accepted time.Time // zero: never accepted
	// refused counts 5xx answers (503 included), noAnswer requests that got
	// no answer (a killed replica); otherReplica the retries that went to
	// the other replica after either.
	refused, noAnswer, otherReplica int
	rejected                        int // 4xx answers (e.g. server_locked), not retried
	retryAfterMissing               int
	completedAt                     time.Time
	status                          string
}

type haLoad struct {
	h        *haSystem
	phase    atomic.Int32
	stopping atomic.Bool
	wg       sync.WaitGroup
	inflight [2]atomic.Int32
	mu       sync.Mutex
	reqs     []*haReq
	// reads that failed on both replicas, by phase; reads done
	readFails map[int]int
	reads     int
}

// startLoad runs customers, each sending a request every period: a create
// while it has fewer than 3 servers, else a reboot of its oldest server
// when it is active, or its deletion once rebooted; while that server is
// busy (an outage holds its operation), a create (up to 12 servers, under
// the quota of 25).
func (h *haSystem) startLoad(customers int, period time.Duration) *haLoad {
	l := &haLoad{h: h, readFails: map[int]int{}}
	for c := range customers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.customer(c, period)
		}()
		time.Sleep(period / time.Duration(customers))
	}
	return l
}

func (l *haLoad) stop() []*haReq {
	l.stopping.Store(true)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.reqs)
}

type haServer struct {
	id       string
	rebooted bool
}

func (l *haLoad) customer(c int, period time.Duration) {
	var live []*haServer
	create := func(n int) {
		r := l.send(c, "create", "", "POST", "/v1/servers", map[string]any{
			"name": fmt.Sprintf("ha-%d-%d", c, n), "size": "s-1vcpu-64mb", "image": "tiny", "region": "region-one"})
		if r.op != "" {
			live = append(live, &haServer{id: r.server})
		}
	}
	for n := 0; !l.stopping.Load(); n++ {
		time.Sleep(period)
		// A read on each tick: the list, from either replica.
		l.read(c)
		if len(live) < 3 {
			create(n)
			continue
		}
		s := live[0]
		var v api.ServerView
		code, body, _, err := l.h.do(context.Background(), l.h.apis[c%2], l.h.keys[c], "GET", "/v1/servers/"+s.id, "", nil)
		if err != nil || code != 200 || json.Unmarshal(body, &v) != nil || v.Status != "active" || v.Operation != nil {
			// Busy (an outage holds its operation, or this replica is
			// down): create another instead, so that requests keep coming.
			if len(live) < 12 {
				create(n)
			}
			continue
		}
		if !s.rebooted {
			if r := l.send(c, "reboot", s.id, "POST", "/v1/servers/"+s.id+"/actions", map[string]any{"type": "reboot"}); r.op != "" {
				s.rebooted = true
			}
			continue
		}
		if r := l.send(c, "delete", s.id, "DELETE", "/v1/servers/"+s.id, nil); r.op != "" {
			live = live[1:]
		}
	}
}

func (l *haLoad) read(c int) {
	l.mu.Lock()
	l.reads++
	l.mu.Unlock()
	for i := range 2 {
		code, _, _, err := l.h.do(context.Background(), l.h.apis[(c+i)%2], l.h.keys[c], "GET", "/v1/servers", "", nil)
		if err == nil && code == 200 {
			return
		}
	}
	l.mu.Lock()
	l.readFails[int(l.phase.Load())]++
	l.mu.Unlock()
}

// send sends a mutation with an Idempotency-Key, and on no answer or a 5xx
// retries the same key on the other replica, as long as it takes (up to 3
// minutes), waiting what Retry-After says.
func (l *haLoad) send(c int, kind, server, method, path string, body any) *haReq {
	r := &haReq{phase: int(l.phase.Load()), customer: c, kind: kind, server: server, idem: uuid.NewString(), sent: time.Now()}
	l.mu.Lock()
	l.reqs = append(l.reqs, r)
	l.mu.Unlock()
	replica := c % 2
	deadline := time.Now().Add(3 * time.Minute)
	for {
		l.inflight[replica].Add(1)
		code, b, hdr, err := l.h.do(context.Background(), l.h.apis[replica], l.h.keys[c], method, path, r.idem, body)
		l.inflight[replica].Add(-1)
		wait := 500 * time.Millisecond
		switch {
		case err != nil:
			r.noAnswer++
		case code == http.StatusAccepted:
			var op api.OperationView
			if err := json.Unmarshal(b, &op); err != nil || op.ID == "" {
				l.h.t.Errorf("202 without an operation: %s", b)
				return r
			}
			l.mu.Lock()
			r.op, r.server, r.accepted = op.ID, op.ServerID, time.Now()
			l.mu.Unlock()
			return r
		case code == http.StatusTooManyRequests:
			wait = time.Second
		case code >= 500:
			r.refused++
			if s, err := strconv.Atoi(hdr.Get("Retry-After")); err == nil && s > 0 {
				wait = min(time.Duration(s)*time.Second, 2*time.Second)
			} else if code == http.StatusServiceUnavailable {
				r.retryAfterMissing++
			}
		default:
			r.rejected++
			if r.rejected == 1 && code != http.StatusConflict {
				l.h.t.Logf("%s %s: %d %s", method, path, code, b)
			}
			return r
		}
		if time.Now().After(deadline) {
			return r
		}
		time.Sleep(wait)
		if err != nil || code >= 500 {
			replica = 1 - replica
			r.otherReplica++
		}
	}
}

// ---- the verdict ----

func (h *haSystem) verify(ctx context.Context, rows []*haPhase, reqs []*haReq, l *haLoad) {
	t := h.t
	accepted := map[string]*haReq{} // op -> request
	for _, r := range reqs {
		if r.op != "" {
			if prev, dup := accepted[r.op]; dup {
				t.Errorf("two requests got the same operation %s: %+v and %+v", r.op, prev, r)
			}
			accepted[r.op] = r
		}
	}
	// Every accepted request completes.
	t0 := time.Now()
	pending := map[string]*haReq{}
	for op, r := range accepted {
		pending[op] = r
	}
	deadline := time.Now().Add(4 * time.Minute)
	for len(pending) > 0 && time.Now().Before(deadline) {
		for op, r := range pending {
			var v api.OperationView
			code, b, err := h.read(ctx, r.customer, "/v1/operations/"+op)
			if err != nil || code != 200 || json.Unmarshal(b, &v) != nil {
				continue
			}
			if v.Status == "succeeded" || v.Status == "failed" {
				r.status = v.Status
				if v.CompletedAt != nil {
					r.completedAt = *v.CompletedAt
				}
				delete(pending, op)
				if v.Status == "failed" {
					t.Errorf("operation %s (%s of %s, phase %d) failed: %s at %s", op, r.kind, r.server, r.phase, v.Error, v.FailedStep)
				}
			}
		}
		if len(pending) > 0 {
			time.Sleep(time.Second)
		}
	}
	t.Logf("every accepted request finished %.1fs after the load stopped (%d pending)", time.Since(t0).Seconds(), len(pending))
	for op, r := range pending {
		t.Errorf("accepted request lost: %s %s of server %s (phase %d, accepted %s)", op, r.kind, r.server, r.phase, r.accepted.Format(time.RFC3339Nano))
	}

	// Duplicates: every operation of a server is one the clients got, and
	// every server of a customer is one the clients created.
	servers := map[string]*haReq{} // server -> its create
	for _, r := range accepted {
		if r.kind == "create" {
			servers[r.server] = r
		}
	}
	dup := map[int]int{}
	for id, cr := range servers {
		var ops struct {
			Operations []api.OperationView `json:"operations"`
		}
		code, b, err := h.read(ctx, cr.customer, "/v1/servers/"+id+"/operations?page_size=100")
		if err != nil || code != 200 || json.Unmarshal(b, &ops) != nil {
			t.Errorf("operations of %s: %d %s %v", id, code, b, err)
			continue
		}
		for _, o := range ops.Operations {
			if accepted[o.ID] == nil {
				dup[cr.phase]++
				t.Errorf("server %s has an operation no client was given: %s %s", id, o.ID, o.Type)
			}
		}
	}
	for c := range h.keys {
		var list api.ServerList
		code, b, err := h.read(ctx, c, "/v1/servers?page_size=100")
		if err != nil || code != 200 || json.Unmarshal(b, &list) != nil {
			t.Errorf("servers of customer %d: %d %s %v", c, code, b, err)
			continue
		}
		for _, s := range list.Servers {
			if servers[s.ID] == nil {
				dup[phaseAt(rows, s.CreatedAt)]++
				t.Errorf("customer %d has a server no client created: %s (%s)", c, s.ID, s.Name)
			}
		}
	}
	var calls openstacksim.CallStats
	must(t, h.getJSON(h.simURL+"/_sim/calls", &calls))
	// Counts covers every call (Calls only the latest): one Nova create
	// per accepted create (a create that failed would be answered 4xx/5xx
	// and retried; the simulator injects no faults here).
	if n := calls.Count("POST /compute/v2.1/servers"); n != len(servers) {
		t.Errorf("the simulator received %d Nova creates for %d accepted creates", n, len(servers))
	} else {
		t.Logf("%d Nova creates for %d accepted creates", n, len(servers))
	}

	// Leaks: the simulator holds the servers not deleted, and nothing else.
	deleted := map[string]bool{}
	for _, r := range accepted {
		if r.kind == "delete" && r.status == "succeeded" {
			deleted[r.server] = true
		}
	}
	var inv openstacksim.Inventory
	must(t, h.getJSON(h.simURL+"/_sim/inventory", &inv))
	leaked := map[int]int{}
	novaIDs := map[string]bool{}
	byName := map[string]int{}
	for _, s := range inv.Servers {
		byName[s.Name]++
		novaIDs[s.ID] = true
	}
	for id, cr := range servers {
		want := 1
		if deleted[id] {
			want = 0
		}
		if n := byName[cloudservers.NovaServerName(id)]; n != want {
			t.Errorf("server %s (created in phase %d, deleted %v) has %d Nova instances, want %d", id, cr.phase, deleted[id], n, want)
			if n > want {
				leaked[cr.phase] += n - want
			}
		}
		delete(byName, cloudservers.NovaServerName(id))
	}
	for name, n := range byName {
		leaked[-1] += n
		t.Errorf("Nova server %s (x%d) belongs to no server of the clients", name, n)
	}
	known := map[string]bool{}
	for _, p := range h.baseline.Ports {
		known[p.ID] = true
	}
	for _, p := range inv.Ports {
		if !known[p.ID] && p.DeviceID != "" && !novaIDs[p.DeviceID] {
			leaked[-1]++
			t.Errorf("port %s (%s) of a Nova server that is gone", p.ID, p.Name)
		}
		if !known[p.ID] && p.DeviceID == "" && strings.HasPrefix(p.Name, cloudservers.NovaNamePrefix) {
			leaked[-1]++
			t.Errorf("port %s (%s) left unattached", p.ID, p.Name)
		}
	}
	knownFIP := map[string]bool{}
	for _, f := range h.baseline.FloatingIPs {
		knownFIP[f.ID] = true
	}
	for _, f := range inv.FloatingIPs {
		if !knownFIP[f.ID] && f.PortID == "" {
			leaked[-1]++
			t.Errorf("floating IP %s left unattached", f.Address)
		}
	}

	h.ownership(rows)

	// The table.
	var out strings.Builder
	fmt.Fprintf(&out, "\n| kill -9 | requests flow again | accepted (202) | completed | lost | duplicated | leaked | refused 5xx/503 | no answer | reads failed | notes |\n")
	fmt.Fprintf(&out, "|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range rows {
		var acc, done, lost, refused, noAnswer, retryAfterMissing int
		flow := time.Duration(-1)
		var worst time.Duration
		for _, r := range reqs {
			if r.phase != p.index {
				continue
			}
			refused += r.refused
			noAnswer += r.noAnswer
			retryAfterMissing += r.retryAfterMissing
			if r.op == "" {
				continue
			}
			acc++
			if r.status == "succeeded" {
				done++
				if lat := r.completedAt.Sub(r.sent); lat > worst {
					worst = lat
				}
				if !p.killedAt.IsZero() && !r.sent.Before(p.killedAt) {
					if d := r.completedAt.Sub(p.killedAt); flow < 0 || d < flow {
						flow = d
					}
				}
			} else if r.status != "failed" {
				lost++
			}
		}
		flowS := "-"
		if flow >= 0 {
			flowS = fmt.Sprintf("%.1f s", flow.Seconds())
		}
		notes := []string{fmt.Sprintf("slowest request %.1f s from send to done", worst.Seconds())}
		if p.note != "" {
			notes = append(notes, p.note)
		}
		notes = append(notes, p.restarts...)
		if p.watched {
			notes = append(notes, fmt.Sprintf("bridge leases: %d moved or re-locked, %d held twice", p.flaps, p.doubles))
			if p.paused != "" {
				notes = append(notes, p.paused)
			}
		}
		if len(p.tails) > 0 {
			notes = append(notes, fmt.Sprintf("%d leases taken over from a session that expired (the machine starved ZooKeeper's clients) while the old owner's cancelled run was still returning, e.g. %s", len(p.tails), p.tails[0]))
		}
		if retryAfterMissing > 0 {
			notes = append(notes, fmt.Sprintf("%d 503s without Retry-After", retryAfterMissing))
			t.Errorf("phase %q: %d 503 answers without Retry-After", p.name, retryAfterMissing)
		}
		fmt.Fprintf(&out, "| %s | %s | %d | %d | %d | %d | %d | %d | %d | %d | %s |\n", p.name, flowS, acc, done, lost, dup[p.index], leaked[p.index],
			refused, noAnswer, l.readFails[p.index], strings.Join(notes, "; "))
		if l.readFails[p.index] > 0 {
			t.Errorf("phase %q: %d reads failed on both replicas", p.name, l.readFails[p.index])
		}
		if strings.Contains(p.name, "min.insync") && refused == 0 {
			t.Errorf("phase %q: no mutation was refused with 5xx while below min.insync.replicas", p.name)
		}
		if acc == 0 {
			t.Errorf("phase %q: no request was accepted", p.name)
		}
	}
	if leaked[-1] > 0 || dup[-1] > 0 {
		fmt.Fprintf(&out, "| (no phase) | | | | | %d | %d | | | | |\n", dup[-1], leaked[-1])
	}
	fmt.Fprintf(&out, "%d reads (GET /v1/servers, one per request tick)\n", l.reads)
	for _, line := range strings.Split(out.String(), "\n") {
		t.Log("HA-CHAOS " + line)
	}
}

// phaseAt is the index of the phase running at time at (-1 before the
// first).
func phaseAt(rows []*haPhase, at time.Time) int {
	idx := -1
	for _, p := range rows {
		if !at.Before(p.start) {
			idx = p.index
		}
	}
	return idx
}
