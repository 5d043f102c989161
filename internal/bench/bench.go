// Package bench is the system's benchmark report (`cloudservers bench`,
// `make bench`): it starts the whole system as `make run` does, on a data
// folder of its own, and measures each hop beside a raw baseline on the
// same engines in the same run — POST /v1/servers beside a bare sarama
// produce of the same durability, creates and deletes end to end beside a
// bare Temporal workflow of the same shape, and the Temporal history each
// operation costs beside that shape's. It prints a table, and writes it as
// JSON and as a picture.
package bench

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/cloudservers/cloudservers/internal/devstack"
)

// Config sets what the benchmark does. The defaults (DefaultConfig) finish
// in about four minutes on 2 cores.
type Config struct {
	// Topology is what the system runs on, as `dev -topology`: "single"
	// (one broker, one ZooKeeper, the Temporal dev server on SQLite; the
	// default) or "ha" (3 brokers RF 3, 3 ZooKeeper, the Temporal server
	// on PostgreSQL, 2 API replicas, 3 bridges, 2 workers).
	Topology   string        `json:"topology"`
	N          int           `json:"n"`           // creates (and deletes) end to end
	C          int           `json:"c"`           // concurrent clients for them
	BootTime   time.Duration `json:"boot_time"`   // the simulator's create-to-ACTIVE time
	DeleteTime time.Duration `json:"delete_time"` // the simulator's delete-to-gone time
	// AcceptSingle POSTs are sent one at a time, AcceptConcurrent by
	// AcceptClients concurrent clients.
	AcceptSingle     int `json:"accept_single"`
	AcceptConcurrent int `json:"accept_concurrent"`
	AcceptClients    int `json:"accept_clients"`
	// Customers spread the load under the per-customer rate limit and
	// quota.
	Customers int `json:"customers"`
	// HistorySample servers have their histories counted.
	HistorySample int           `json:"history_sample"`
	OpTimeout     time.Duration `json:"op_timeout"` // wait for a burst's operations at most this long

	JSONPath    string `json:"-"`
	PicturePath string `json:"-"`
	DataDir     string `json:"-"` // "" = a fresh temporary folder, removed at the end
	KeepData    bool   `json:"-"`
	CacheDir    string `json:"-"`

	// Sections run after the built-in ones, on the same running system,
	// and add their rows to the report (the router's scale benchmark, say).
	Sections []Section `json:"-"`
}

// Section is an extra part of the report.
type Section struct {
	Name string
	Run  func(ctx context.Context, env *Env, rep *Report) error
}

// Env is what a section gets: the running system.
type Env struct {
	Endpoints Endpoints
	Temporal  client.Client
	Log       io.Writer
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		N: 100, C: 20, BootTime: 3 * time.Second, DeleteTime: time.Second,
		AcceptSingle: 20, AcceptConcurrent: 80, AcceptClients: 20, Customers: 40,
		HistorySample: 10, OpTimeout: 3 * time.Minute,
		JSONPath: "bench/report.json", PicturePath: "bench/report.png", Topology: devstack.TopologySingle,
	}
}

// Validate rejects settings that cannot give a meaningful run.
func (c Config) Validate() error {
	switch {
	case c.N < 1 || c.C < 1:
		return fmt.Errorf("n and c must be at least 1 (got %d, %d)", c.N, c.C)
	case c.BootTime <= 0 || c.DeleteTime <= 0:
		return fmt.Errorf("boot and delete times must be positive")
	case c.AcceptSingle < 1 || c.AcceptConcurrent < 1 || c.AcceptClients < 1:
		return fmt.Errorf("accept counts and clients must be at least 1")
	case c.Customers < 1:
		return fmt.Errorf("customers must be at least 1")
	case c.Topology != "" && c.Topology != devstack.TopologySingle && c.Topology != devstack.TopologyHA:
		return fmt.Errorf("topology %q: use %q or %q", c.Topology, devstack.TopologySingle, devstack.TopologyHA)
	}
	// 25 servers per customer is the API's quota; leave room.
	if total := c.N + c.AcceptSingle + c.AcceptConcurrent; total > 20*c.Customers {
		return fmt.Errorf("%d servers over %d customers exceeds 20 each (the quota is 25): raise -customers to %d", total, c.Customers, (total+19)/20)
	}
	return nil
}

// Run starts the system with self (this binary), runs every section and
// returns the report, written to the configured paths.
func Run(ctx context.Context, self string, cfg Config, log io.Writer) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rep := &Report{Started: time.Now(), Config: cfg, Machine: fmt.Sprintf("%s/%s, %d CPUs", runtime.GOOS, runtime.GOARCH, runtime.NumCPU())}
	st, err := StartStack(ctx, self, cfg, log)
	if err != nil {
		return nil, err
	}
	defer func() {
		fmt.Fprintln(log, "stopping the system ...")
		st.Stop()
	}()
	// The system's death ends the run, with its reason.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-st.Exited:
			cancel(st.Err)
		case <-ctx.Done():
		}
	}()
	r := &runner{cfg: cfg, rep: rep, log: log, e: st.Endpoints}
	err = r.run(ctx)
	if cause := context.Cause(ctx); cause != nil && cause != context.Canceled {
		err = cause
	}
	rep.Duration = time.Since(rep.Started).Round(time.Second).String()
	if err != nil {
		return rep, err
	}
	if cfg.JSONPath != "" {
		if err := rep.WriteJSON(cfg.JSONPath); err != nil {
			return rep, err
		}
	}
	if cfg.PicturePath != "" {
		if err := rep.WritePicture(cfg.PicturePath); err != nil {
			return rep, fmt.Errorf("picture: %w", err)
		}
	}
	return rep, nil
}

// Print writes the table to w.
func Print(w io.Writer, rep *Report) { _ = rep.WriteTable(w) }
