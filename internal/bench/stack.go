package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cloudservers/cloudservers/internal/devstack"
)

// Endpoints is the part of the endpoints file that `cloudservers dev`
// writes to <data>/endpoints.json which the benchmark uses.
type Endpoints struct {
	Kafka             []string `json:"kafka"`
	Temporal          string   `json:"temporal"`
	TemporalNamespace string   `json:"temporal_namespace"`
	TemporalUI        string   `json:"temporal_ui"`
	TemporalMetrics   string   `json:"temporal_metrics"`
	API               string   `json:"api"`
	SimAdmin          string   `json:"sim_admin"`
	// Pids are the stack's processes by name (the engines and, from dev,
	// the application's): what the report samples their CPU time of.
	Pids      map[string]int `json:"pids"`
	Customers []struct {
		CustomerID string `json:"customer_id"`
		APIKey     string `json:"api_key"`
	} `json:"customers"`
}

// Stack is the whole system, run as `cloudservers dev` in a child process
// on a data folder of its own.
type Stack struct {
	Endpoints Endpoints
	DataDir   string
	runDir    string // where dev keeps the endpoints file and logs
	group     *devstack.Group
	keep      bool
	// Exited is closed when the dev process ends on its own; Err then says
	// why, with the tail of its log.
	Exited chan struct{}
	Err    error
}

// StartStack runs `self dev -data <fresh folder>` and waits until it has
// written its endpoints file. When it fails, the error names the component
// that did not start and carries the tail of its log.
func StartStack(ctx context.Context, self string, cfg Config, log io.Writer) (*Stack, error) {
	dir := cfg.DataDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "cloudservers-bench-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &Stack{DataDir: dir, group: devstack.NewGroup(log), keep: cfg.DataDir != "" || cfg.KeepData, Exited: make(chan struct{})}
	// The HA topology keeps its data (endpoints file and logs) in <data>/ha.
	s.runDir = dir
	if cfg.Topology == devstack.TopologyHA {
		s.runDir = devstack.HADataDir(dir)
		// PostgreSQL runs as the postgres user when we are root: it must
		// be able to enter the folder (MkdirTemp makes it 0700).
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, err
		}
	}
	path := filepath.Join(s.runDir, "endpoints.json")
	args := []string{self, "dev", "-data", dir, "-sim-boot-time", cfg.BootTime.String(), "-sim-delete-time", cfg.DeleteTime.String()}
	if cfg.Topology != "" {
		args = append(args, "-topology", cfg.Topology)
	}
	if cfg.CacheDir != "" {
		args = append(args, "-cache", cfg.CacheDir)
	}
	t0 := time.Now()
	fmt.Fprintf(log, "starting the system (%s) in %s ...\n", strings.Join(args[1:], " "), dir)
	err := s.group.Start(ctx, devstack.Process{
		Name: "dev", Cmd: args, LogFile: filepath.Join(s.runDir, "logs", "dev.log"),
		// The first run on a machine may fetch Kafka and build Temporal.
		ReadyTimeout: 15 * time.Minute, ReadyInterval: 250 * time.Millisecond, StopTimeout: 60 * time.Second,
		Ready: func(context.Context) error {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if err := json.Unmarshal(b, &s.Endpoints); err != nil {
				return err
			}
			if s.Endpoints.API == "" || s.Endpoints.SimAdmin == "" {
				return errors.New("endpoints file without the API or the simulator")
			}
			return nil
		},
	})
	if err != nil {
		err = fmt.Errorf("the system did not start: %w%s", err, s.componentTails())
		s.Stop()
		return nil, err
	}
	fmt.Fprintf(log, "system up in %.1fs: API %s, Temporal UI %s\n", time.Since(t0).Seconds(), s.Endpoints.API, s.Endpoints.TemporalUI)
	go func() {
		select {
		case ex := <-s.group.Exits():
			s.Err = fmt.Errorf("the system stopped during the benchmark (%v); last lines of its log:\n%s%s", ex.Err, ex.Tail, s.componentTails())
			close(s.Exited)
		case <-ctx.Done():
		}
	}()
	return s, nil
}

// componentTails returns the last lines of each component log that says
// it failed, so a broken start names the culprit even when dev's own
// message does not.
func (s *Stack) componentTails() string {
	logs := filepath.Join(s.runDir, "logs")
	entries, err := os.ReadDir(logs)
	if err != nil {
		return ""
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".log") && e.Name() != "dev.log" {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		tail := devstack.TailFile(filepath.Join(logs, n), 0, 8)
		low := strings.ToLower(tail)
		if strings.Contains(low, "error") || strings.Contains(low, "fatal") || strings.Contains(low, "exception") || strings.Contains(low, "panic") {
			fmt.Fprintf(&b, "\n--- %s (last lines) ---\n%s", n, tail)
		}
	}
	if b.Len() > 0 {
		return "\ncomponent logs that report errors (all logs: " + logs + "):" + b.String()
	}
	return "\nlogs: " + logs
}

// Stop stops the system (dev stops its children in order) and removes its
// data folder unless it is to be kept. Safe to call more than once.
func (s *Stack) Stop() {
	s.group.Stop()
	if !s.keep {
		os.RemoveAll(s.DataDir)
	}
}
