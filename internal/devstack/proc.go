package devstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process describes one child process for a Group.
type Process struct {
	// Name identifies the process in the group and in messages ("kafka",
	// "bridge-1"). Names are unique within a group.
	Name string
	// Cmd is the argv; Cmd[0] is looked up in PATH when it has no slash.
	Cmd []string
	// Dir is the working directory ("" = the caller's).
	Dir string
	// Env is added to the parent's environment (later entries win).
	Env []string
	// LogFile receives the process's stdout and stderr (appended, the
	// folder is created). Empty means the output is discarded, and failures
	// then carry no log tail: set it.
	LogFile string
	// Ready, when set, is polled (every ReadyInterval) after the start until
	// it returns nil; Start returns only then. Each call gets a context
	// bounded by the remaining ReadyTimeout. Start fails at once if the
	// process exits while it is polled. Nil means "ready once started".
	Ready func(ctx context.Context) error
	// ReadyTimeout bounds the wait for Ready (default 2 minutes).
	ReadyTimeout time.Duration
	// ReadyInterval is the pause between Ready calls (default 200ms).
	ReadyInterval time.Duration
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL
	// (default 20 seconds).
	StopTimeout time.Duration
	// Credential, when set, runs the process as another user (PostgreSQL
	// refuses to run as root). Go sets it before Pdeathsig, so the child
	// still dies with its parent.
	Credential *syscall.Credential
}

// Exit reports a process of a Group that ended on its own (not through
// Stop, StopProcess or Kill).
type Exit struct {
	Name string
	Pid  int
	Err  error // from (*exec.Cmd).Wait; nil for exit status 0
	Tail string
}

// Group supervises child processes. Every child runs in its own process
// group (Setpgid) with Pdeathsig SIGKILL, so none outlives the supervising
// process, even when that one is killed with SIGKILL. The zero value is not
// usable: call NewGroup.
type Group struct {
	log io.Writer

	mu      sync.Mutex
	procs   []*proc // in start order
	exits   chan Exit
	stopped bool
}

type proc struct {
	spec      Process
	cmd       *exec.Cmd
	pid       int
	logFile   *os.File
	logOffset int64 // where this run's output starts in LogFile
	done      chan struct{}
	waitErr   error
	expected  bool // set before we signal it: its exit is not reported on Exits
	ready     bool // Start succeeded
	reported  bool // sent on Exits
}

// NewGroup returns an empty Group. Progress lines ("started kafka (pid
// 123)") go to log, which may be nil.
func NewGroup(log io.Writer) *Group {
	if log == nil {
		log = io.Discard
	}
	return &Group{log: log, exits: make(chan Exit, 64)}
}

// Exits delivers the processes that end on their own after Start returned
// successfully (a crash, or an exit nobody asked for). The channel is
// buffered; reports that do not fit are dropped.
func (g *Group) Exits() <-chan Exit { return g.exits }

// Start starts p and waits until p.Ready succeeds. On failure the process
// is stopped and the error carries the last lines of its log. A process of
// the same name that has exited (Kill, StopProcess, a crash) is replaced.
func (g *Group) Start(ctx context.Context, p Process) error {
	q, err := g.launch(p)
	if err != nil {
		return err
	}
	return g.awaitReady(ctx, q)
}

// launch starts p and registers it, without waiting for Ready.
func (g *Group) launch(p Process) (*proc, error) {
	if p.Name == "" || len(p.Cmd) == 0 {
		return nil, errors.New("devstack: Process needs a Name and a Cmd")
	}
	g.mu.Lock()
	if g.stopped {
		g.mu.Unlock()
		return nil, fmt.Errorf("devstack: group stopped, cannot start %s", p.Name)
	}
	for _, q := range g.procs {
		if q.spec.Name == p.Name && q.isRunning() {
			g.mu.Unlock()
			return nil, fmt.Errorf("devstack: %s is already running (pid %d)", p.Name, q.pid)
		}
	}
	g.mu.Unlock()

	if p.ReadyTimeout <= 0 {
		p.ReadyTimeout = 2 * time.Minute
	}
	if p.ReadyInterval <= 0 {
		p.ReadyInterval = 200 * time.Millisecond
	}
	if p.StopTimeout <= 0 {
		p.StopTimeout = 20 * time.Second
	}

	q := &proc{spec: p, done: make(chan struct{})}
	cmd := exec.Command(p.Cmd[0], p.Cmd[1:]...)
	cmd.Dir = p.Dir
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: p.Credential}
	if p.LogFile != "" {
		if err := os.MkdirAll(filepath.Dir(p.LogFile), 0o755); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(p.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		off, _ := f.Seek(0, io.SeekEnd)
		fmt.Fprintf(f, "\n===== %s: %s starting: %s\n", time.Now().Format(time.RFC3339), p.Name, strings.Join(p.Cmd, " "))
		q.logFile, q.logOffset = f, off
		cmd.Stdout, cmd.Stderr = f, f
	}
	q.cmd = cmd
	if err := startCmd(cmd); err != nil {
		q.closeLog()
		return nil, fmt.Errorf("devstack: start %s: %w", p.Name, err)
	}
	q.pid = cmd.Process.Pid
	go func() {
		q.waitErr = cmd.Wait()
		q.closeLog()
		close(q.done)
		g.maybeReportExit(q)
	}()

	// Registered before Ready so that a Stop from another goroutine (say,
	// Ctrl-C during a slow start) also stops this one.
	g.mu.Lock()
	if g.stopped {
		g.mu.Unlock()
		g.terminate(q)
		return nil, fmt.Errorf("devstack: group stopped while starting %s", p.Name)
	}
	replaced := false
	for i, old := range g.procs { // a restart keeps its place in the stop order
		if old.spec.Name == p.Name {
			g.procs[i], replaced = q, true
			break
		}
	}
	if !replaced {
		g.procs = append(g.procs, q)
	}
	g.mu.Unlock()

	return q, nil
}

// awaitReady waits for q's Ready; on failure it stops q.
func (g *Group) awaitReady(ctx context.Context, q *proc) error {
	t0 := time.Now()
	if err := g.waitReady(ctx, q); err != nil {
		g.mu.Lock()
		q.expected = true
		g.mu.Unlock()
		g.terminate(q)
		return err
	}
	g.mu.Lock()
	q.ready = true
	g.mu.Unlock()
	g.maybeReportExit(q) // in case it exited right after its last check
	fmt.Fprintf(g.log, "  %s ready (pid %d, %.1fs)\n", q.spec.Name, q.pid, time.Since(t0).Seconds())
	return nil
}

// maybeReportExit sends q's exit on Exits once, if q had been ready and
// nobody asked it to stop. A failed start is reported by Start instead.
func (g *Group) maybeReportExit(q *proc) {
	if q.isRunning() {
		return
	}
	g.mu.Lock()
	report := q.ready && !q.expected && !q.reported
	q.reported = q.reported || report
	g.mu.Unlock()
	if report {
		select {
		case g.exits <- Exit{Name: q.spec.Name, Pid: q.pid, Err: q.waitErr, Tail: q.tail(30)}:
		default:
		}
	}
}

func (g *Group) waitReady(ctx context.Context, q *proc) error {
	p := q.spec
	if p.Ready == nil {
		select {
		case <-q.done:
			return q.failure("exited at once", nil)
		case <-time.After(50 * time.Millisecond):
			return nil
		}
	}
	deadline := time.Now().Add(p.ReadyTimeout)
	var last error
	for {
		select {
		case <-q.done:
			return q.failure("exited before it was ready", last)
		default:
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			return q.failure(fmt.Sprintf("not ready after %s", p.ReadyTimeout), last)
		}
		cctx, cancel := context.WithTimeout(ctx, min(remaining, 10*time.Second))
		last = p.Ready(cctx)
		cancel()
		if last == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("devstack: %s: %w", p.Name, ctx.Err())
		}
		select {
		case <-q.done:
			return q.failure("exited before it was ready", last)
		case <-ctx.Done():
			return fmt.Errorf("devstack: %s: %w", p.Name, ctx.Err())
		case <-time.After(p.ReadyInterval):
		}
	}
}

// ProcessError is a process that failed to start or become ready. Its
// Error() ends with the tail of the process's log.
type ProcessError struct {
	Name    string
	Reason  string
	Exit    error // the exit status, when it exited
	Probe   error // the last error of Ready, if any
	LogFile string
	Tail    string
}

func (e *ProcessError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", e.Name, e.Reason)
	if e.Exit != nil {
		fmt.Fprintf(&b, " (%v)", e.Exit)
	}
	if e.Probe != nil {
		fmt.Fprintf(&b, "; last check: %v", e.Probe)
	}
	if e.LogFile != "" {
		fmt.Fprintf(&b, "\n--- last lines of %s ---\n%s--- end of %s ---", e.LogFile, e.Tail, filepath.Base(e.LogFile))
	}
	return b.String()
}

func (q *proc) failure(reason string, probe error) error {
	e := &ProcessError{Name: q.spec.Name, Reason: reason, Probe: probe, LogFile: q.spec.LogFile}
	select {
	case <-q.done:
		e.Exit = q.waitErr
		if e.Exit == nil {
			e.Exit = errors.New("exit status 0")
		}
	default:
	}
	e.Tail = q.tail(30)
	return e
}

// tail returns the last n lines this run wrote to its log file.
func (q *proc) tail(n int) string {
	if q.spec.LogFile == "" {
		return ""
	}
	return TailFile(q.spec.LogFile, q.logOffset, n)
}

// TailFile returns the last n lines of path from byte offset from on (at
// most the last 64 KiB), each ending in a newline.
func TailFile(path string, from int64, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	start := max(from, st.Size()-64<<10)
	if start < 0 {
		start = 0
	}
	buf := make([]byte, st.Size()-start)
	if _, err := f.ReadAt(buf, start); err != nil && err != io.EOF {
		return ""
	}
	buf = bytes.TrimRight(buf, "\n")
	lines := bytes.Split(buf, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 1 && len(lines[0]) == 0 {
		return ""
	}
	return string(bytes.Join(lines, []byte("\n"))) + "\n"
}

func (q *proc) closeLog() {
	if q.logFile != nil {
		q.logFile.Close()
	}
}

// terminate sends SIGTERM to q's process group, waits up to StopTimeout,
// then SIGKILLs the group. It returns once the process has exited.
func (g *Group) terminate(q *proc) {
	select {
	case <-q.done:
		_ = syscall.Kill(-q.pid, syscall.SIGKILL) // leftovers in its group, if any
		return
	default:
	}
	_ = syscall.Kill(-q.pid, syscall.SIGTERM)
	select {
	case <-q.done:
	case <-time.After(q.spec.StopTimeout):
		fmt.Fprintf(g.log, "  %s did not stop within %s, killing it\n", q.spec.Name, q.spec.StopTimeout)
		_ = syscall.Kill(-q.pid, syscall.SIGKILL)
		<-q.done
	}
	_ = syscall.Kill(-q.pid, syscall.SIGKILL)
}

func (g *Group) find(name string) *proc {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, q := range g.procs {
		if q.spec.Name == name {
			return q
		}
	}
	return nil
}

// Stop stops every process in reverse start order (SIGTERM, then SIGKILL
// after its StopTimeout) and waits for each. The group cannot be used
// afterwards. Stop is safe to call more than once and from any goroutine.
func (g *Group) Stop() error {
	g.mu.Lock()
	g.stopped = true
	procs := append([]*proc(nil), g.procs...)
	for _, q := range procs {
		q.expected = true
	}
	g.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		q := procs[i]
		select {
		case <-q.done:
			continue
		default:
		}
		t0 := time.Now()
		g.terminate(q)
		fmt.Fprintf(g.log, "  stopped %s (%.1fs)\n", q.spec.Name, time.Since(t0).Seconds())
	}
	return nil
}

// StopProcess stops one process gracefully (SIGTERM, then SIGKILL after
// its StopTimeout). It can be started again with Restart.
func (g *Group) StopProcess(name string) error {
	q := g.find(name)
	if q == nil {
		return fmt.Errorf("devstack: no process %q", name)
	}
	g.mu.Lock()
	q.expected = true
	g.mu.Unlock()
	g.terminate(q)
	return nil
}

// Kill sends SIGKILL to the process group of name and waits until the
// process is gone: a crash, for failover demonstrations. It can be started
// again with Restart.
func (g *Group) Kill(name string) error {
	q := g.find(name)
	if q == nil {
		return fmt.Errorf("devstack: no process %q", name)
	}
	g.mu.Lock()
	q.expected = true
	g.mu.Unlock()
	_ = syscall.Kill(-q.pid, syscall.SIGKILL)
	<-q.done
	fmt.Fprintf(g.log, "  killed %s (pid %d)\n", name, q.pid)
	return nil
}

// Restart starts an exited process again with the same Process spec.
func (g *Group) Restart(ctx context.Context, name string) error {
	q := g.find(name)
	if q == nil {
		return fmt.Errorf("devstack: no process %q", name)
	}
	select {
	case <-q.done:
	default:
		return fmt.Errorf("devstack: %s is still running (pid %d)", name, q.pid)
	}
	return g.Start(ctx, q.spec)
}

// Pid returns the pid of name's current run (0 if unknown).
func (g *Group) Pid(name string) int {
	if q := g.find(name); q != nil {
		return q.pid
	}
	return 0
}

// Pids returns the pid of every process started in the group, in start
// order, whether still running or not.
func (g *Group) Pids() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	var pids []int
	for _, q := range g.procs {
		pids = append(pids, q.pid)
	}
	return pids
}

// PidsByName returns the pid of each process's current run by its name.
func (g *Group) PidsByName() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]int, len(g.procs))
	for _, q := range g.procs {
		out[q.spec.Name] = q.pid
	}
	return out
}

// Running reports whether name is running.
func (g *Group) Running(name string) bool {
	q := g.find(name)
	return q != nil && q.isRunning()
}

func (q *proc) isRunning() bool {
	select {
	case <-q.done:
		return false
	default:
		return true
	}
}

// Wait blocks until name's current run exits or ctx ends, and returns its
// exit error.
func (g *Group) Wait(ctx context.Context, name string) error {
	q := g.find(name)
	if q == nil {
		return fmt.Errorf("devstack: no process %q", name)
	}
	select {
	case <-q.done:
		return q.waitErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Tail returns the last n lines that name's current run wrote to its log.
func (g *Group) Tail(name string, n int) string {
	if q := g.find(name); q != nil {
		return q.tail(n)
	}
	return ""
}

// TCPReady is a Ready probe that succeeds once addr accepts a connection.
func TCPReady(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// HTTPReady is a Ready probe that succeeds once GET url answers with a
// status below 500.
func HTTPReady(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}
