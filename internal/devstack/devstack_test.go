package devstack

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudservers/cloudservers"
)

func TestConfigDefaults(t *testing.T) {
	data, cache := t.TempDir(), t.TempDir()
	t.Setenv("CLOUDSERVERS_DATA", data)
	t.Setenv("CLOUDSERVERS_CACHE", cache)
	c, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != data || c.CacheDir != cache {
		t.Errorf("DataDir %q CacheDir %q, want %q %q", c.DataDir, c.CacheDir, data, cache)
	}
	if c.RequestPartitions != 6 || c.Namespace != "cloudservers" || c.KafkaHeap == "" || c.Log == nil {
		t.Errorf("defaults not filled: %+v", c)
	}
	if _, err := (Config{KafkaPort: 70000}).withDefaults(); err == nil || !strings.Contains(err.Error(), "Kafka broker port 70000") {
		t.Errorf("out of range port: %v", err)
	}
}

func TestDefaultDataDirIsRepoRoot(t *testing.T) {
	t.Setenv("CLOUDSERVERS_DATA", "")
	d := DefaultDataDir()
	// The tests run in internal/devstack: the root is two levels up.
	want, _ := filepath.Abs("../../.data")
	if d != want {
		t.Errorf("DefaultDataDir = %q, want %q", d, want)
	}
}

func listen(t *testing.T) (int, func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l.Addr().(*net.TCPAddr).Port, func() { l.Close() }
}

func TestResolvePortsFree(t *testing.T) {
	c := Config{DataDir: t.TempDir()}
	if err := c.resolvePorts(); err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, r := range c.ports() {
		if *r.port <= 0 || seen[*r.port] {
			t.Fatalf("%s: port %d (zero or duplicate)", r.component, *r.port)
		}
		seen[*r.port] = true
	}
	// The same data folder gets the same ports again when they are free.
	d := Config{DataDir: c.DataDir}
	if err := d.resolvePorts(); err != nil {
		t.Fatal(err)
	}
	if d.KafkaPort != c.KafkaPort || d.TemporalUIPort != c.TemporalUIPort || d.ZooKeeperPort != c.ZooKeeperPort {
		t.Errorf("ports not remembered: first %+v, then %+v", c, d)
	}
}

func TestResolvePortsRememberedButTaken(t *testing.T) {
	dir := t.TempDir()
	busy, release := listen(t)
	defer release()
	os.WriteFile(filepath.Join(dir, portsFile), []byte(`{"kafka": `+strconv.Itoa(busy)+`}`), 0o644)
	c := Config{DataDir: dir}
	if err := c.resolvePorts(); err != nil {
		t.Fatal(err)
	}
	if c.KafkaPort == busy || c.KafkaPort == 0 {
		t.Errorf("Kafka got port %d; the remembered %d is taken and must be replaced by a free one", c.KafkaPort, busy)
	}
}

func TestResolvePortsBusy(t *testing.T) {
	busy, release := listen(t)
	defer release()
	c := Config{DataDir: t.TempDir(), ZooKeeperPort: busy}
	err := c.resolvePorts()
	var pb *PortBusyError
	if !errors.As(err, &pb) {
		t.Fatalf("want *PortBusyError, got %v", err)
	}
	if pb.Key != "zookeeper" || pb.Port != busy {
		t.Errorf("PortBusyError %+v", pb)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, strconv.Itoa(busy)) || !strings.Contains(msg, "ZooKeeper") {
		t.Errorf("message should be one line naming the port and the component: %q", msg)
	}
	// Nothing is silently moved to another port.
	if c.ZooKeeperPort != busy {
		t.Errorf("port changed to %d", c.ZooKeeperPort)
	}
}

func TestResolvePortsDuplicate(t *testing.T) {
	p, release := listen(t)
	release()
	c := Config{DataDir: t.TempDir(), KafkaPort: p, TemporalPort: p}
	if err := c.resolvePorts(); err == nil || !strings.Contains(err.Error(), "both") {
		t.Errorf("want a duplicate port error, got %v", err)
	}
}

func TestJavaMajor(t *testing.T) {
	for out, want := range map[string]int{
		`openjdk version "17.0.15" 2025-04-15`: 17,
		`openjdk version "25" 2025-09-16`:      25,
		`java version "1.8.0_412"`:             8,
		`garbage`:                              0,
	} {
		if got := javaMajor(out); got != want {
			t.Errorf("javaMajor(%q) = %d, want %d", out, got, want)
		}
	}
}

func TestMissingTools(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv("JAVA_HOME", "")
	_, err := findJava()
	var mt *MissingToolError
	if !errors.As(err, &mt) || mt.Tool != "java" || strings.Contains(err.Error(), "\n") {
		t.Errorf("findJava without java: %v", err)
	}
	cfg, _ := Config{CacheDir: t.TempDir(), DataDir: t.TempDir()}.withDefaults()
	if _, err := ensureJars(context.Background(), cfg, "kafka", "Kafka", "/bin/false"); !errors.As(err, &mt) || mt.Tool != "mvn" {
		t.Errorf("ensureJars without mvn: %v", err)
	} else if !strings.Contains(err.Error(), "install Apache Maven") {
		t.Errorf("message should say what to install: %v", err)
	}
	if _, err := ensureTemporal(context.Background(), cfg); !errors.As(err, &mt) || mt.Tool != "go" {
		t.Errorf("ensureTemporal without go: %v", err)
	}
}

func TestJarsStampSkipsMaven(t *testing.T) {
	cfg, _ := Config{CacheDir: t.TempDir(), DataDir: t.TempDir()}.withDefaults()
	t.Setenv("PATH", t.TempDir()) // no mvn: must not be needed
	pom, _ := poms.ReadFile("maven/zookeeper/pom.xml")
	lib1, err := ensureJars(context.Background(), cfg, "zookeeper", "ZooKeeper", "/bin/false")
	if err == nil {
		t.Fatalf("no stamp yet, want an error, got %s", lib1)
	}
	// Fake a completed fetch.
	dir := filepath.Dir(lib1ForPom(cfg.CacheDir, "zookeeper", pom))
	os.MkdirAll(filepath.Join(dir, "lib"), 0o755)
	os.WriteFile(filepath.Join(dir, "complete"), nil, 0o644)
	lib, err := ensureJars(context.Background(), cfg, "zookeeper", "ZooKeeper", "/bin/false")
	if err != nil || lib != filepath.Join(dir, "lib") {
		t.Errorf("with stamp: %q, %v", lib, err)
	}
}

func lib1ForPom(cache, name string, pom []byte) string {
	return filepath.Join(jarsDir(cache, name, pom), "lib")
}

func TestTailFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.log")
	var b strings.Builder
	b.WriteString("old run\n")
	from := int64(b.Len())
	for i := 1; i <= 50; i++ {
		b.WriteString("line " + strconv.Itoa(i) + "\n")
	}
	os.WriteFile(p, []byte(b.String()), 0o644)
	tail := TailFile(p, from, 3)
	if tail != "line 48\nline 49\nline 50\n" {
		t.Errorf("tail = %q", tail)
	}
	if got := TailFile(p, from, 100); strings.Contains(got, "old run") || !strings.HasPrefix(got, "line 1\n") {
		t.Errorf("tail from offset includes the previous run or misses lines: %q", got[:20])
	}
	if TailFile(filepath.Join(t.TempDir(), "none"), 0, 3) != "" {
		t.Error("tail of a missing file")
	}
}

func TestEndpointsRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "endpoints.json")
	e := Endpoints{ZooKeeper: "127.0.0.1:1", Kafka: []string{"127.0.0.1:2"}, Temporal: "127.0.0.1:3",
		TemporalNamespace: "cloudservers", TemporalUI: "http://127.0.0.1:4", Pids: map[string]int{"kafka": 7}}
	if err := WriteEndpoints(p, e); err != nil {
		t.Fatal(err)
	}
	got, err := LoadEndpoints(p)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(e)
	b, _ := json.Marshal(got)
	if string(a) != string(b) {
		t.Errorf("round trip: %s != %s", a, b)
	}
	// Fields added later (by newer writers) are ignored by older readers.
	os.WriteFile(p, []byte(`{"zookeeper":"h:1","kafka":["h:2"],"api":"http://h:3","customers":[{"id":"c1"}]}`), 0o644)
	if got, err := LoadEndpoints(p); err != nil || got.ZooKeeper != "h:1" {
		t.Errorf("extended file: %+v %v", got, err)
	}
	os.WriteFile(p, []byte(`{}`), 0o644)
	if _, err := LoadEndpoints(p); err == nil {
		t.Error("an empty endpoints file must be an error")
	}
}

func TestTestEndpoints(t *testing.T) {
	p := filepath.Join(t.TempDir(), "e.json")
	WriteEndpoints(p, Endpoints{Kafka: []string{"127.0.0.1:9"}})
	t.Setenv(EndpointsEnv, p)
	if e := TestEndpoints(t); e.Kafka[0] != "127.0.0.1:9" {
		t.Errorf("TestEndpoints = %+v", e)
	}
}

func TestTopics(t *testing.T) {
	ts := Topics(8)
	byName := map[string]TopicSpec{}
	for _, x := range ts {
		byName[x.Name] = x
	}
	if byName[cloudservers.TopicRequests].Partitions != 8 {
		t.Errorf("requests partitions: %+v", byName[cloudservers.TopicRequests])
	}
	for _, n := range append([]string{cloudservers.TopicServers, cloudservers.TopicOperations, cloudservers.TopicSSHKeys, cloudservers.TopicInstances}, cloudservers.StateTopics...) {
		if !strings.HasPrefix(byName[n].Config["cleanup.policy"], "compact") {
			t.Errorf("%s must be compacted: %+v", n, byName[n])
		}
	}
	// Idempotency records expire: compacted, and deleted after two days.
	if idem := byName[cloudservers.TopicIdempotency].Config; idem["cleanup.policy"] != "compact,delete" || idem["retention.ms"] != "172800000" {
		t.Errorf("idempotency topic: %+v", idem)
	}
	if byName[cloudservers.TopicDeadLetter].Partitions != 1 {
		t.Errorf("deadletter: %+v", byName[cloudservers.TopicDeadLetter])
	}
	for _, n := range cloudservers.NotificationTopics {
		if byName[n].Partitions != NotificationPartitions {
			t.Errorf("notification topic %s: %+v", n, byName[n])
		}
	}
	if len(ts) != 4+len(cloudservers.StateTopics)+len(cloudservers.NotificationTopics) { // requests, dead letters, SSH keys, instances
		t.Errorf("%d topics", len(ts))
	}
}

func TestKafkaConfig(t *testing.T) {
	for range 1000 { // 1 in 64 random IDs would start with '-'
		id := newKafkaClusterID()
		if len(id) != 22 || strings.ContainsAny(id, "+/=") || id[0] == '-' {
			t.Fatalf("cluster id %q", id)
		}
	}
	props := kafkaServerProperties(Config{KafkaPort: 1111, KafkaControllerPort: 2222}, "/d")
	for _, want := range []string{
		"listeners=PLAINTEXT://127.0.0.1:1111,CONTROLLER://127.0.0.1:2222",
		"controller.quorum.voters=1@127.0.0.1:2222",
		"auto.create.topics.enable=false",
		"offsets.topic.replication.factor=1",
		"transaction.state.log.min.isr=1",
		"group.initial.rebalance.delay.ms=0",
		"log.dirs=/d",
	} {
		if !strings.Contains(props, want+"\n") {
			t.Errorf("server.properties lacks %q", want)
		}
	}
}

func TestMavenProgress(t *testing.T) {
	var m mavenProgress
	m.line("[INFO] Downloaded from central: https://example.invalid/a.jar (1.5 MB at 3.0 MB/s)")
	m.line("[INFO] Downloaded from central: https://example.invalid/b.pom (12 kB at 100 kB/s)")
	m.line("[INFO] Downloading from central: https://example.invalid/c.jar")
	if m.files() != 2 || m.mb() < 1.5 || m.mb() > 1.52 {
		t.Errorf("files %d, %.3f MB", m.files(), m.mb())
	}
}

// ---- the supervisor ----

func shProcess(name, script, logFile string) Process {
	return Process{Name: name, Cmd: []string{"/bin/sh", "-c", script}, LogFile: logFile,
		ReadyTimeout: 5 * time.Second, StopTimeout: 2 * time.Second, ReadyInterval: 20 * time.Millisecond}
}

// alive reports whether pid is a live process (a zombie waiting for its
// new parent to reap it is not).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

func TestGroupStartStopOrder(t *testing.T) {
	dir := t.TempDir()
	order := filepath.Join(dir, "order")
	g := NewGroup(nil)
	ctx := context.Background()
	for _, n := range []string{"a", "b", "c"} {
		// Each writes its name to the order file when it gets SIGTERM.
		p := shProcess(n, `trap 'echo `+n+` >> `+order+`; exit 0' TERM; touch `+filepath.Join(dir, n)+`.up; while :; do sleep 0.05; done`,
			filepath.Join(dir, n+".log"))
		marker := filepath.Join(dir, n+".up")
		p.Ready = func(context.Context) error { _, err := os.Stat(marker); return err }
		if err := g.Start(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	pids := g.Pids()
	if len(pids) != 3 || !g.Running("b") {
		t.Fatalf("pids %v", pids)
	}
	g.Stop()
	b, _ := os.ReadFile(order)
	if string(b) != "c\nb\na\n" {
		t.Errorf("stop order %q, want c b a", b)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d still alive", pid)
		}
	}
	if err := g.Start(ctx, shProcess("d", "sleep 1", "")); err == nil {
		t.Error("a stopped group must refuse to start")
	}
}

func TestGroupExitBeforeReady(t *testing.T) {
	log := filepath.Join(t.TempDir(), "bad.log")
	os.WriteFile(log, []byte("from an earlier run\n"), 0o644)
	g := NewGroup(nil)
	defer g.Stop()
	p := shProcess("bad", `for i in $(seq 1 40); do echo "line $i"; done; echo "port already in use" >&2; exit 3`, log)
	p.Ready = func(context.Context) error { return errors.New("not yet") }
	err := g.Start(context.Background(), p)
	var pe *ProcessError
	if !errors.As(err, &pe) {
		t.Fatalf("want *ProcessError, got %v", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "exit status 3") || !strings.Contains(msg, "port already in use") || !strings.Contains(msg, "not yet") {
		t.Errorf("error lacks exit status, log tail or last check: %s", msg)
	}
	if strings.Contains(msg, "from an earlier run") || strings.Contains(msg, "line 5\n") {
		t.Errorf("tail must be the last lines of this run only: %s", msg)
	}
	select {
	case x := <-g.Exits():
		t.Errorf("a failed start is reported by Start, not on Exits: %+v", x)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestGroupReadyTimeoutKillsIt(t *testing.T) {
	g := NewGroup(nil)
	defer g.Stop()
	p := shProcess("slow", `trap '' TERM; while :; do sleep 0.05; done`, filepath.Join(t.TempDir(), "slow.log"))
	p.ReadyTimeout = 300 * time.Millisecond
	p.StopTimeout = 300 * time.Millisecond
	p.Ready = func(context.Context) error { return errors.New("nope") }
	t0 := time.Now()
	err := g.Start(context.Background(), p)
	if err == nil || !strings.Contains(err.Error(), "not ready after") {
		t.Fatalf("err = %v", err)
	}
	if pid := g.Pid("slow"); alive(pid) {
		t.Errorf("pid %d survived a failed start", pid)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("took %s", d)
	}
}

func TestGroupKillRestartAndGrandchildren(t *testing.T) {
	dir := t.TempDir()
	g := NewGroup(nil)
	defer g.Stop()
	ctx := context.Background()
	// A shell with a background child: Kill must take the whole group.
	child := filepath.Join(dir, "child.pid")
	p := shProcess("bridge-1", `sleep 300 & echo $! > `+child+`; wait`, filepath.Join(dir, "b.log"))
	// Ready once the pid is written: the shell creates the file before echo
	// fills it.
	p.Ready = func(context.Context) error {
		b, err := os.ReadFile(child)
		if err == nil && !strings.HasSuffix(string(b), "\n") {
			err = errors.New("pid not written yet")
		}
		return err
	}
	if err := g.Start(ctx, p); err != nil {
		t.Fatal(err)
	}
	first := g.Pid("bridge-1")
	b, _ := os.ReadFile(child)
	grandchild, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err := g.Kill("bridge-1"); err != nil {
		t.Fatal(err)
	}
	if g.Running("bridge-1") || alive(first) {
		t.Error("still running after Kill")
	}
	time.Sleep(50 * time.Millisecond)
	if grandchild == 0 || alive(grandchild) {
		t.Errorf("grandchild %d survived Kill", grandchild)
	}
	select {
	case x := <-g.Exits():
		t.Errorf("Kill must not be reported as an unexpected exit: %+v", x)
	default:
	}
	os.Remove(child)
	if err := g.Restart(ctx, "bridge-1"); err != nil {
		t.Fatal(err)
	}
	if g.Pid("bridge-1") == first || !g.Running("bridge-1") {
		t.Error("restart did not start a new process")
	}
	if err := g.Start(ctx, p); err == nil {
		t.Error("a second process with a running name must be refused")
	}
}

func TestGroupExitsReportsCrash(t *testing.T) {
	g := NewGroup(nil)
	defer g.Stop()
	p := shProcess("worker", `echo boom; sleep 0.3; exit 2`, filepath.Join(t.TempDir(), "w.log"))
	if err := g.Start(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	select {
	case x := <-g.Exits():
		if x.Name != "worker" || x.Err == nil || !strings.Contains(x.Tail, "boom") {
			t.Errorf("exit %+v", x)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("crash not reported")
	}
	if err := g.Wait(context.Background(), "worker"); err == nil {
		t.Error("Wait should return the exit error")
	}
}

func TestGroupStopEscalatesToKill(t *testing.T) {
	g := NewGroup(nil)
	p := shProcess("stubborn", `trap '' TERM; while :; do sleep 0.05; done`, filepath.Join(t.TempDir(), "s.log"))
	p.StopTimeout = 200 * time.Millisecond
	if err := g.Start(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	pid := g.Pid("stubborn")
	t0 := time.Now()
	g.Stop()
	if alive(pid) {
		t.Error("stubborn process survived Stop")
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("Stop took %s", d)
	}
}

func TestHTTPAndTCPReady(t *testing.T) {
	port, release := listen(t)
	if err := TCPReady("127.0.0.1:" + strconv.Itoa(port))(context.Background()); err != nil {
		t.Errorf("TCPReady on a listening port: %v", err)
	}
	release()
	if err := TCPReady("127.0.0.1:" + strconv.Itoa(port))(context.Background()); err == nil {
		t.Error("TCPReady on a closed port succeeded")
	}
	if err := HTTPReady("http://127.0.0.1:" + strconv.Itoa(port) + "/")(context.Background()); err == nil {
		t.Error("HTTPReady on a closed port succeeded")
	}
}
