package zkcoord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
)

// ErrClosed is returned by calls on a Coordinator after Close.
var ErrClosed = errors.New("zookeeper coordinator closed")

// ErrAlreadyRunning is returned by OwnPartition and RunSingleton when this
// Coordinator already runs a loop for the same partition or singleton.
var ErrAlreadyRunning = errors.New("already running in this process")

// Coordinator is one ZooKeeper session shared by all partition owners and
// singletons of a process. It is safe for concurrent use.
type Coordinator struct {
	cfg    Config
	log    *slog.Logger
	conn   *zk.Conn
	events <-chan zk.Event // closed when the client's goroutines end
	dialer *dialer
	sess   *sessionTracker

	// closeCtx ends every OwnPartition/RunSingleton loop when Close is called.
	closeCtx context.Context
	cancel   context.CancelFunc

	mu     sync.Mutex // guards closed, active and the Add side of loops
	closed bool
	active map[string]bool // "partition 3", "singleton router": loops running
	loops  sync.WaitGroup
}

// Connect opens a ZooKeeper session and creates the chroot if it is missing.
// While ZooKeeper is unreachable it logs every failed attempt and retries
// with backoff (1 s, 2 s, 4 s, 8 s, then every 15 s) until ctx ends;
// it then returns an error naming the servers and the last connection
// error. It never gives up on its own.
func Connect(ctx context.Context, cfg Config) (*Coordinator, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "zkcoord", "process", cfg.ProcessID)
	servers := strings.Join(cfg.Servers, ",")
	backoff := time.Second
	for attempt := 1; ; attempt++ {
		c, err := dial(ctx, cfg, log)
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("connect to zookeeper %s: %w (last error: %v)", servers, ctx.Err(), err)
		}
		// Only errors before any dial get here (no server name resolves,
		// the chroot cannot be created): the client retries dials itself.
		log.Warn("zookeeper unreachable, retrying", "servers", servers, "attempt", attempt, "err", err, "retry_in", backoff)
		if !sleepCtx(ctx, backoff, nil) {
			return nil, fmt.Errorf("connect to zookeeper %s: %w (last error: %v)", servers, ctx.Err(), err)
		}
		backoff = min(backoff*2, 15*time.Second)
	}
}

// dial opens a session, waiting for it as long as ctx allows, and creates
// the chroot.
func dial(ctx context.Context, cfg Config, log *slog.Logger) (*Coordinator, error) {
	sess := newSessionTracker(log)
	d := &dialer{servers: len(cfg.Servers), sess: sess, log: log, stop: make(chan struct{})}
	zlog := &zkLogger{log: cfg.Logger.With("component", "zookeeper-client", "process", cfg.ProcessID), sess: sess}
	conn, events, err := zk.Connect(cfg.Servers, cfg.SessionTimeout,
		zk.WithLogger(zlog),
		zk.WithDialer(d.dial),
		// The callback runs synchronously in the client's connection loop
		// and, unlike the event channel (6 slots, drops when full), never
		// loses a session event. It must not block.
		zk.WithEventCallback(sess.handle),
	)
	if err != nil { // bad server list or DNS failure for every server
		return nil, err
	}
	sess.bind(conn)
	abort := func() {
		d.close()
		closeConn(conn, events)
	}

	for {
		v := sess.view()
		if v.live && v.id != 0 {
			break
		}
		select {
		case <-v.changed:
		case <-ctx.Done():
			abort()
			return nil, errOr(d.lastErr(), errors.New("no session established"))
		}
	}

	closeCtx, cancel := context.WithCancel(context.Background())
	c := &Coordinator{cfg: cfg, log: log, conn: conn, events: events, dialer: d, sess: sess, closeCtx: closeCtx, cancel: cancel}
	for _, p := range []string{cfg.Chroot, c.partitionsPath(), c.routesPath(), c.singletonsPath()} {
		for {
			err := c.ensurePath(p)
			if err == nil {
				break
			}
			if !isConnErr(err) || ctx.Err() != nil {
				cancel()
				abort()
				return nil, fmt.Errorf("create %s: %w", p, err)
			}
			sleepCtx(ctx, 250*time.Millisecond, nil)
		}
	}
	log.Info("connected to zookeeper", "servers", strings.Join(cfg.Servers, ","), "chroot", cfg.Chroot,
		"session", sessionHex(conn.SessionID()), "session_timeout", c.SessionTimeout())
	return c, nil
}

// dialer wraps the client's TCP dials: it logs failures and, until the
// first session exists, stretches the client's fixed 1 s pause between
// rounds over all servers into an exponential backoff. Once a session has
// existed it adds no delay: reconnecting quickly is what saves a session.
type dialer struct {
	servers int
	sess    *sessionTracker
	log     *slog.Logger
	stop    chan struct{} // closed by close: no more waiting
	once    sync.Once

	mu       sync.Mutex
	failures int // consecutive failed dials
	err      error
}

func (d *dialer) dial(network, address string, timeout time.Duration) (net.Conn, error) {
	d.mu.Lock()
	rounds := d.failures / d.servers
	startup := !d.sess.everLive.Load()
	d.mu.Unlock()
	if startup && rounds >= 2 && d.failures%d.servers == 0 {
		// the client itself already paused 1 s before this round
		extra := min(time.Second<<(rounds-1), 15*time.Second) - time.Second
		t := time.NewTimer(extra)
		select {
		case <-t.C:
		case <-d.stop:
			t.Stop()
			return nil, ErrClosed
		}
	}
	conn, err := net.DialTimeout(network, address, timeout)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		d.failures = 0
		return conn, nil
	}
	d.failures++
	d.err = err
	// Every attempt is logged while starting; while reconnecting, the
	// first few and then one in 30 (the client retries every second).
	if startup || d.failures <= 3 || d.failures%30 == 0 {
		next := time.Duration(0)
		if d.failures%d.servers == 0 {
			next = time.Second
			if startup && d.failures/d.servers >= 2 {
				next = min(time.Second<<(d.failures/d.servers-1), 15*time.Second)
			}
		}
		d.log.Warn("zookeeper unreachable, retrying", "server", address, "attempt", d.failures, "err", err, "retry_in", next)
	}
	return nil, err
}

func (d *dialer) close() { d.once.Do(func() { close(d.stop) }) }

func (d *dialer) lastErr() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// Close stops every OwnPartition and RunSingleton loop (each cancels its run
// and waits for it to return, then deletes its nodes), waits for them, and
// closes the ZooKeeper session.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.loops.Wait()
	c.sess.closing.Store(true)
	c.dialer.close()
	closeConn(c.conn, c.events)
	c.log.Info("zookeeper session closed")
	return nil
}

// closeConn closes the session and waits for the client library's
// connection goroutine to end: it closes the event channel as its last act.
// Session events themselves are taken from the event callback, which never
// drops one; the channel (6 slots, dropping when full) is only drained here.
func closeConn(conn *zk.Conn, events <-chan zk.Event) {
	conn.Close()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-timeout.C:
			return
		}
	}
}

// SessionTimeout is the session timeout negotiated with the server (which
// may differ from the requested Config.SessionTimeout).
func (c *Coordinator) SessionTimeout() time.Duration {
	if d := c.sess.negotiated(); d > 0 {
		return d
	}
	return c.cfg.SessionTimeout
}

// SessionID is the current ZooKeeper session ID (0 while there is none).
func (c *Coordinator) SessionID() int64 { return c.sess.view().id }

// Connected reports whether the client is connected with a session now
// (false from a disconnection until the session resumes or a new one
// starts).
func (c *Coordinator) Connected() bool {
	v := c.sess.view()
	return v.live && v.id != 0
}

// ProcessID is the configured process ID.
func (c *Coordinator) ProcessID() string { return c.cfg.ProcessID }

// startLoop registers a loop with Close and returns its context, which ends
// with ctx or with Close. One loop per lock and process: two would share
// the session's ephemeral nodes and each take the other's for its own.
func (c *Coordinator) startLoop(ctx context.Context, key string) (context.Context, func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil, ErrClosed
	}
	if c.active[key] {
		return nil, nil, fmt.Errorf("%s: %w", key, ErrAlreadyRunning)
	}
	if c.active == nil {
		c.active = map[string]bool{}
	}
	c.active[key] = true
	c.loops.Add(1)
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(c.closeCtx, cancel)
	return ctx, func() {
		stop()
		cancel()
		c.mu.Lock()
		delete(c.active, key)
		c.mu.Unlock()
		c.loops.Done()
	}, nil
}

// loopEnd is what an OwnPartition/RunSingleton loop returns when its context
// ended: nil for the caller's ctx, ErrClosed for Close.
func (c *Coordinator) loopEnd() error {
	if c.closeCtx.Err() != nil {
		return ErrClosed
	}
	return nil
}

func (c *Coordinator) partitionsPath() string { return c.cfg.Chroot + "/partitions" }
func (c *Coordinator) routesPath() string     { return c.cfg.Chroot + "/" + routesDir }

// resourcePath is the node holding the partitions of resource.
func (c *Coordinator) resourcePath(r Resource) string {
	if r == Requests {
		return c.partitionsPath()
	}
	return c.cfg.Chroot + "/" + string(r)
}
func (c *Coordinator) singletonsPath() string { return c.cfg.Chroot + "/singletons" }

// ensurePath creates a persistent node and its missing parents.
func (c *Coordinator) ensurePath(path string) error {
	ok, _, err := c.conn.Exists(path)
	if err != nil || ok {
		return err
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	cur := ""
	for _, part := range parts {
		cur += "/" + part
		_, err := c.conn.Create(cur, nil, 0, zk.WorldACL(zk.PermAll))
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return err
		}
	}
	return nil
}

// sessionTracker turns the client's session events into a view that loops
// can wait on: the current session ID, whether it is usable right now, and a
// channel closed at the next change.
type sessionTracker struct {
	log *slog.Logger

	mu        sync.Mutex
	conn      *zk.Conn
	id        int64
	live      bool
	changed   chan struct{}
	everLive  atomic.Bool // a session has existed: startup is over
	closing   atomic.Bool // Close was called: a disconnection is expected
	timeoutMs atomic.Int64
}

type sessionView struct {
	id      int64
	live    bool // connected with session id; false from StateDisconnected on
	changed <-chan struct{}
}

func newSessionTracker(log *slog.Logger) *sessionTracker {
	return &sessionTracker{log: log, changed: make(chan struct{})}
}

// bind gives the tracker the connection to read session IDs from. A session
// established before zk.Connect returned is resolved here.
func (s *sessionTracker) bind(conn *zk.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conn = conn
	if s.live && s.id == 0 {
		s.id = conn.SessionID()
		s.broadcast()
	}
}

func (s *sessionTracker) broadcast() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *sessionTracker) view() sessionView {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sessionView{id: s.id, live: s.live, changed: s.changed}
}

func (s *sessionTracker) negotiated() time.Duration {
	return time.Duration(s.timeoutMs.Load()) * time.Millisecond
}

// handle runs inside the ZooKeeper client's goroutines: no blocking, no
// calls back into the connection.
func (s *sessionTracker) handle(ev zk.Event) {
	if ev.Type != zk.EventSession {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id, live := s.id, s.live
	switch ev.State {
	case zk.StateHasSession:
		s.everLive.Store(true)
		id, live = 0, true
		if s.conn != nil {
			id = s.conn.SessionID()
		}
	case zk.StateExpired:
		id, live = 0, false
	case zk.StateDisconnected, zk.StateConnecting, zk.StateConnected, zk.StateAuthFailed:
		live = false
	default:
		return
	}
	if id == s.id && live == s.live {
		return
	}
	prev := s.id
	s.id, s.live = id, live
	s.broadcast()
	switch {
	case ev.State == zk.StateExpired:
		s.log.Warn("zookeeper session expired", "session", sessionHex(prev))
	case live && prev != 0 && prev == id:
		s.log.Info("zookeeper session resumed", "session", sessionHex(id), "server", ev.Server)
	case live:
		s.log.Info("zookeeper session established", "session", sessionHex(id), "server", ev.Server)
	case s.closing.Load():
	default:
		s.log.Warn("zookeeper connection lost", "session", sessionHex(id), "state", ev.State.String())
	}
}

// zkLogger routes the client library's Printf logs to slog and picks the
// negotiated session timeout out of its "authenticated" line (the library
// keeps it private).
type zkLogger struct {
	log  *slog.Logger
	sess *sessionTracker
}

func (l *zkLogger) Printf(format string, args ...any) {
	if format == "authenticated: id=%d, timeout=%d" && len(args) == 2 {
		if ms, ok := args[1].(int32); ok {
			l.sess.timeoutMs.Store(int64(ms))
		}
	}
	if strings.HasPrefix(format, "failed to connect to ") {
		return // the dialer logs these, with attempt counts
	}
	msg := fmt.Sprintf(format, args...)
	// Connection and session changes are logged by the session tracker;
	// the library's own account of them is detail.
	level := slog.LevelDebug
	lower := strings.ToLower(msg)
	if strings.Contains(lower, "fail") || strings.Contains(lower, "error") {
		level = slog.LevelWarn
	}
	l.log.Log(context.Background(), level, msg)
}

func errOr(err, fallback error) error {
	if err != nil {
		return err
	}
	return fallback
}

func sessionHex(id int64) string { return fmt.Sprintf("0x%x", id) }
