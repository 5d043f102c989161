//go:build integration

package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the cloudservers binary the tests start, built by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "cloudservers")
	build := exec.Command("go", "build", "-o", binary, "github.com/cloudservers/cloudservers/cmd/cloudservers")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "chaos: building the cloudservers binary:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// line is one log line of a child process (slog's text format).
type line struct {
	run int       // which start of the process wrote it (1, 2...)
	at  time.Time // slog's time, else when it was read
	msg string
	kv  map[string]string
	raw string
}

func (l line) is(msg string, kv ...string) bool {
	if l.msg != msg {
		return false
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if l.kv[kv[i]] != kv[i+1] {
			return false
		}
	}
	return true
}

// parseLine reads key=value pairs, values quoted Go-style when they contain
// spaces. A repeated key keeps its first value.
func parseLine(s string) line {
	l := line{raw: s, kv: map[string]string{}}
	rest := s
	for rest != "" {
		rest = strings.TrimLeft(rest, " ")
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			break
		}
		key := rest[:eq]
		if strings.ContainsAny(key, " \"") {
			break
		}
		rest = rest[eq+1:]
		var val string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				break
			}
			val, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else if sp := strings.IndexByte(rest, ' '); sp >= 0 {
			val, rest = rest[:sp], rest[sp:]
		} else {
			val, rest = rest, ""
		}
		if _, seen := l.kv[key]; !seen {
			l.kv[key] = val
		}
	}
	l.msg = l.kv["msg"]
	if t, err := time.Parse(time.RFC3339Nano, l.kv["time"]); err == nil {
		l.at = t
	}
	return l
}

// proc is a child process of the test: a bridge (or another subcommand)
// whose output is kept, line by line, across restarts.
type proc struct {
	t       *testing.T
	name    string
	args    []string
	logPath string

	mu      sync.Mutex
	cmd     *exec.Cmd
	runs    int
	lines   []line
	changed chan struct{} // closed and replaced when a line arrives or the process exits
	exited  chan struct{}
}

// startProc starts `cloudservers <args...>`; the process is stopped when
// the test ends and its log tail is shown if the test failed.
func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, args: args, logPath: filepath.Join(t.TempDir(), name+".log"), changed: make(chan struct{})}
	p.start()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("---- last lines of %s (%s) ----\n%s", name, p.logPath, p.tail(80))
		}
	})
	return p
}

func (p *proc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.runs++
	run := p.runs
	cmd := exec.Command(binary, p.args...)
	cmd.Env = childEnv()
	// Its own process group, and killed if the test binary dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	fmt.Fprintf(logf, "==== run %d: %s %s\n", run, binary, strings.Join(p.args, " "))
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	p.cmd = cmd
	exited := make(chan struct{})
	p.exited = exited
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			text := sc.Text()
			fmt.Fprintln(logf, text)
			l := parseLine(text)
			l.run = run
			if l.at.IsZero() {
				l.at = time.Now()
			}
			p.mu.Lock()
			p.lines = append(p.lines, l)
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		readers.Wait()
		fmt.Fprintf(logf, "==== run %d exited: %v\n", run, err)
		logf.Close()
		p.mu.Lock()
		close(exited)
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}()
}

// childEnv is the test's environment without the CLOUDSERVERS_ variables
// of a dev session, which would configure the child behind the test's back.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "CLOUDSERVERS_") && !strings.HasPrefix(kv, "CLOUDSERVERS_DEBUG=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL (no chance to clean up: its ZooKeeper session and
// group membership end only when they time out) and waits for the exit.
func (p *proc) kill() time.Time {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	at := time.Now()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	return at
}

// stop sends SIGTERM and waits (SIGKILL after 30 s).
func (p *proc) stop() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	select {
	case <-exited:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		p.t.Logf("%s did not stop within 30s of SIGTERM; killing it", p.name)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
}

// restart starts the process again with the same arguments.
func (p *proc) restart() {
	p.t.Helper()
	if p.running() {
		p.t.Fatalf("restart %s: still running", p.name)
	}
	p.start()
}

// wait returns the first line (of any run) at or after since that matches,
// waiting up to timeout; it fails the test when none comes.
func (p *proc) wait(since time.Time, timeout time.Duration, what string, match func(line) bool) line {
	p.t.Helper()
	l, ok := p.waitOK(since, timeout, match)
	if !ok {
		p.t.Fatalf("%s: no log line within %s: %s", p.name, timeout, what)
	}
	return l
}

func (p *proc) waitOK(since time.Time, timeout time.Duration, match func(line) bool) (line, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		p.mu.Lock()
		lines := p.lines[seen:]
		seen = len(p.lines)
		changed := p.changed
		p.mu.Unlock()
		for _, l := range lines {
			if !l.at.Before(since) && match(l) {
				return l, true
			}
		}
		select {
		case <-changed:
		case <-deadline.C:
			return line{}, false
		}
	}
}

// find returns every line so far that matches.
func (p *proc) find(match func(line) bool) []line {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []line
	for _, l := range p.lines {
		if match(l) {
			out = append(out, l)
		}
	}
	return out
}

func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// statusURL is the /status address the current run announced.
func (p *proc) statusURL() string {
	p.t.Helper()
	p.mu.Lock()
	run := p.runs
	p.mu.Unlock()
	l := p.wait(time.Time{}, time.Minute, "status endpoint", func(l line) bool { return l.run == run && l.msg == "status endpoint" })
	return l.kv["url"]
}

// status fetches the process's /status.
func (p *proc) status() (bridgeStatus, error) {
	var st bridgeStatus
	resp, err := http.Get(p.statusURL())
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return st, fmt.Errorf("GET /status: %s: %s", resp.Status, b)
	}
	return st, json.Unmarshal(b, &st)
}

// bridgeStatus is the part of a bridge's /status the tests read.
type bridgeStatus struct {
	Process        string           `json:"process"`
	AssignmentMode string           `json:"assignment_mode"`
	Leading        map[string]int64 `json:"leading"`
	Routing        map[string]int64 `json:"routing"`
	Requests       map[string]int64 `json:"requests"`
	Router         map[string]int64 `json:"router"`
	LastReap       *struct {
		WorkflowID string `json:"workflow_id"`
		Error      string `json:"error"`
	} `json:"last_reap"`
	System struct {
		Mode       string `json:"assignment_mode"`
		Partitions []struct {
			Partition      int32    `json:"partition"`
			Owner          string   `json:"owner"`
			Candidates     []string `json:"candidates"`
			Alive          []string `json:"alive"`
			Committed      int64    `json:"committed"`
			CommitMetadata string   `json:"commit_metadata"`
			End            int64    `json:"end"`
			Lag            int64    `json:"lag"`
		} `json:"partitions"`
		BucketMap *struct {
			Version      int64 `json:"version"`
			PerPartition []int `json:"buckets_per_partition"`
		} `json:"bucket_map"`
		Routes []struct {
			Topic          string   `json:"topic"`
			Partition      int32    `json:"partition"`
			Owner          string   `json:"owner"`
			Candidates     []string `json:"candidates"`
			Fence          int64    `json:"fence"`
			Committed      int64    `json:"committed"`
			CommitMetadata string   `json:"commit_metadata"`
			End            int64    `json:"end"`
			Lag            int64    `json:"lag"`
		} `json:"routes"`
		Singletons []struct {
			Name   string `json:"name"`
			Leader string `json:"leader"`
		} `json:"singletons"`
	} `json:"system"`
}

// signal sends sig to the process (SIGSTOP freezes it: a zombie owner in
// the making; SIGCONT wakes it).
func (p *proc) signal(sig syscall.Signal) time.Time {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	// The processes log times to the millisecond: a line written right
	// after the signal must not look older than it.
	at := time.Now().Truncate(time.Millisecond)
	if err := cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s to %s: %v", sig, p.name, err)
	}
	return at
}
