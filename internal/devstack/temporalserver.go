package devstack

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/cloudservers/cloudservers/internal/setup"
)

// The Temporal server of the HA topology is built from go.temporal.io/server
// at the version the Temporal CLI (TemporalCLIVersion) depends on, inside a
// module whose go.mod is the CLI's: the same versions of every dependency,
// so the module cache and the build cache of the CLI's build serve most of
// it. Three programs are built into <cache>/bin:
//
//	temporal-server     go.temporal.io/server/cmd/server
//	temporal-sql-tool   go.temporal.io/server/cmd/tools/sql
//	temporal-ui-server  github.com/temporalio/ui-server/v2/cmd/server
//
// and the server's PostgreSQL schema files are copied to
// <cache>/temporal-server-<version>/schema/postgresql/v12.

type temporalServerTools struct {
	version   string // go.temporal.io/server's
	server    string
	sqlTool   string
	ui        string
	schemaDir string // .../schema/postgresql/v12
}

const (
	temporalCLIModulePath = "github.com/temporalio/cli"
	temporalServerModule  = "go.temporal.io/server"
	temporalUIModule      = "github.com/temporalio/ui-server/v2"
)

type goModInfo struct {
	Path, Version, Dir, GoMod, GoSum string
}

// goModDownload runs `go mod download -json mod@version` (a no-op when the
// module cache has it).
func goModDownload(ctx context.Context, goBin, dir, mod string) (goModInfo, error) {
	var info goModInfo
	cmd := exec.CommandContext(ctx, goBin, "mod", "download", "-json", mod)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GO111MODULE=on", "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return info, fmt.Errorf("go mod download %s: %v: %s %s", mod, err, strings.TrimSpace(string(out)), strings.TrimSpace(string(ee.Stderr)))
		}
		return info, fmt.Errorf("go mod download %s: %w", mod, err)
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return info, fmt.Errorf("go mod download %s: %w", mod, err)
	}
	return info, nil
}

// requiredVersion returns the version of mod in the go.mod at path.
func requiredVersion(path, mod string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "require "))
		if len(fields) >= 2 && fields[0] == mod {
			return fields[1], nil
		}
	}
	return "", fmt.Errorf("%s does not require %s", path, mod)
}

// ensureTemporalServer builds the three programs the first time and
// returns them. A stamp names the server and UI versions they were built
// from; another version is rebuilt.
func ensureTemporalServer(ctx context.Context, cfg Config) (temporalServerTools, error) {
	var ts temporalServerTools
	binDir := filepath.Join(cfg.CacheDir, "bin")
	ts.server = filepath.Join(binDir, "temporal-server")
	ts.sqlTool = filepath.Join(binDir, "temporal-sql-tool")
	ts.ui = filepath.Join(binDir, "temporal-ui-server")
	stamp := ts.server + ".version"
	if b, err := os.ReadFile(stamp); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 && f[0] == TemporalCLIVersion && isExecutable(ts.server) && isExecutable(ts.sqlTool) && isExecutable(ts.ui) {
			ts.version = f[1]
			ts.schemaDir = filepath.Join(cfg.CacheDir, "temporal-server-"+ts.version, "schema", "postgresql", "v12")
			if _, err := os.Stat(ts.schemaDir); err == nil {
				return ts, nil
			}
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return ts, &MissingToolError{Tool: "go", Why: "to build the Temporal server, its SQL tool and the Web UI server",
			Install: "Go 1.24 or newer (https://go.dev/doc/install)"}
	}
	t0 := time.Now()
	src := filepath.Join(cfg.CacheDir, "src", "temporal-server")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return ts, err
	}
	cli, err := goModDownload(ctx, goBin, cfg.CacheDir, temporalCLIModulePath+"@"+TemporalCLIVersion)
	if err != nil {
		return ts, fmt.Errorf("devstack: the Temporal CLI's module: %w", err)
	}
	if ts.version, err = requiredVersion(cli.GoMod, temporalServerModule); err != nil {
		return ts, fmt.Errorf("devstack: %w", err)
	}
	uiVersion, err := requiredVersion(cli.GoMod, temporalUIModule)
	if err != nil {
		return ts, fmt.Errorf("devstack: %w", err)
	}
	// The build module: the CLI's requirements under another name.
	gomod, err := os.ReadFile(cli.GoMod)
	if err != nil {
		return ts, err
	}
	lines := strings.SplitN(string(gomod), "\n", 2)
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "module ") {
		return ts, fmt.Errorf("devstack: unexpected first line in %s", cli.GoMod)
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("// Written by cloudservers: the Temporal CLI "+TemporalCLIVersion+"'s requirements, to build the server from them.\nmodule cloudservers.local/temporal-server-build\n"+lines[1]), 0o644); err != nil {
		return ts, err
	}
	if sum, err := os.ReadFile(filepath.Join(cli.Dir, "go.sum")); err == nil {
		if err := os.WriteFile(filepath.Join(src, "go.sum"), sum, 0o644); err != nil {
			return ts, err
		}
	}
	logPath := filepath.Join(cfg.CacheDir, "logs", "temporal-server-build.log")
	fmt.Fprintf(cfg.Log, "building the Temporal server %s, temporal-sql-tool and the UI server %s with go build (first time only: minutes, fewer after the CLI's build; log: %s)\n",
		ts.version, uiVersion, logPath)
	tmpBin := filepath.Join(cfg.CacheDir, fmt.Sprintf("bin.tmp-server-%d", os.Getpid()))
	_ = os.RemoveAll(tmpBin)
	defer os.RemoveAll(tmpBin)
	builds := []struct{ out, pkg string }{
		{"temporal-server", temporalServerModule + "/cmd/server"},
		{"temporal-sql-tool", temporalServerModule + "/cmd/tools/sql"},
		{"temporal-ui-server", temporalUIModule + "/cmd/server"},
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return ts, err
	}
	_ = os.Remove(logPath)
	for _, b := range builds {
		args := []string{"-n", "10", goBin, "build", "-mod=mod", "-o", filepath.Join(tmpBin, b.out), b.pkg}
		nice, err := exec.LookPath("nice")
		if err != nil { // nice is in coreutils; without it, build at normal priority
			nice, args = goBin, args[3:]
		}
		cmd := exec.CommandContext(ctx, nice, args...)
		cmd.Dir = src
		// The flags of the CLI's go install (no -trimpath, cgo as it was): the
		// packages it compiled come from the build cache (measured: the server in
		// 47 s after the CLI's build, 13m41s with -trimpath, which misses it).
		cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false", "GO111MODULE=on")
		tb := time.Now()
		partLog := logPath + "." + b.out
		err = runLogged(cmd, partLog, func(string) {}, 30*time.Second, func() {
			fmt.Fprintf(cfg.Log, "  %s: building, %s\n", b.out, time.Since(t0).Round(time.Second))
		})
		appendFile(logPath, partLog)
		if err != nil {
			if ctx.Err() != nil {
				return ts, ctx.Err()
			}
			return ts, fmt.Errorf("devstack: building %s failed (%v)\n--- last lines of %s ---\n%s", b.pkg, err, logPath, TailFile(logPath, 0, 30))
		}
		fmt.Fprintf(cfg.Log, "  %s built in %s\n", b.out, time.Since(tb).Round(time.Second))
	}
	// The schema files, from the server module the build used.
	srv, err := goModDownload(ctx, goBin, src, temporalServerModule+"@"+ts.version)
	if err != nil {
		return ts, err
	}
	ts.schemaDir = filepath.Join(cfg.CacheDir, "temporal-server-"+ts.version, "schema", "postgresql", "v12")
	_ = os.RemoveAll(ts.schemaDir)
	if err := copyTree(filepath.Join(srv.Dir, "schema", "postgresql", "v12"), ts.schemaDir); err != nil {
		return ts, fmt.Errorf("devstack: copy the PostgreSQL schema: %w", err)
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return ts, err
	}
	for _, b := range builds {
		if err := os.Rename(filepath.Join(tmpBin, b.out), filepath.Join(binDir, b.out)); err != nil {
			return ts, err
		}
	}
	if err := os.WriteFile(stamp, []byte(TemporalCLIVersion+" "+ts.version+" "+uiVersion+"\n"), 0o644); err != nil {
		return ts, err
	}
	fmt.Fprintf(cfg.Log, "  the Temporal server, its SQL tool and the UI server were built in %s\n", time.Since(t0).Round(time.Second))
	return ts, nil
}

func appendFile(dst, src string) {
	b, err := os.ReadFile(src)
	if err != nil {
		return
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	f.Write(b)
	os.Remove(src)
}

// copyTree copies the regular files under src to dst (the module cache is
// read-only; the copies are writable).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

// startTemporalServer runs PostgreSQL, sets up the schema, runs the
// Temporal server, registers the namespace and its search attributes, and
// runs the UI server: each ready before the next starts.
func (s *Stack) startTemporalServer(ctx context.Context, pt postgresTools, ts temporalServerTools, ports map[string]int) error {
	cfg := s.cfg
	pgProc, err := postgresPrepare(ctx, cfg, pt, filepath.Join(cfg.DataDir, "postgres"), ports["postgres"])
	if err != nil {
		return err
	}
	if err := s.group.Start(ctx, pgProc); err != nil {
		return err
	}
	if err := setupTemporalSchema(ctx, cfg, ts, ports["postgres"]); err != nil {
		return err
	}

	dir := filepath.Join(cfg.DataDir, "temporal")
	if err := os.MkdirAll(filepath.Join(dir, "config"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config", "development.yaml"), []byte(temporalServerConfig(ports, filepath.Join(dir, "dynamicconfig.yaml"))), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "dynamicconfig.yaml"), []byte(temporalDynamicConfig), 0o644); err != nil {
		return err
	}
	frontend := hostPort(ports["temporal"])
	if err := s.group.Start(ctx, Process{
		Name:    "temporal",
		Cmd:     []string{ts.server, "--root", dir, "--config", "config", "--env", "development", "--allow-no-auth", "start"},
		Dir:     dir,
		LogFile: filepath.Join(cfg.DataDir, "logs", "temporal.log"),
		Ready: func(ctx context.Context) error {
			c, err := client.DialContext(ctx, client.Options{HostPort: frontend, Namespace: "temporal-system", Logger: quietLogger})
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.CheckHealth(ctx, &client.CheckHealthRequest{})
			return err
		},
		ReadyTimeout: 3 * time.Minute,
		StopTimeout:  20 * time.Second,
	}); err != nil {
		return err
	}
	if _, err := setup.Run(ctx, setup.Config{Temporal: frontend, Namespace: cfg.Namespace, Log: cfg.Log}); err != nil {
		return fmt.Errorf("devstack: temporal namespace %s: %w", cfg.Namespace, err)
	}
	// The namespace reaches every service's cache within its refresh
	// interval (set to 2 s in the dynamic config).
	if err := pollUntil(ctx, 90*time.Second, func(ctx context.Context) error { return TemporalReady(ctx, frontend, cfg.Namespace) }); err != nil {
		return fmt.Errorf("devstack: temporal: %w\n--- last lines of temporal.log ---\n%s", err, s.group.Tail("temporal", 20))
	}

	uiDir := filepath.Join(cfg.DataDir, "temporal-ui")
	if err := os.MkdirAll(filepath.Join(uiDir, "config"), 0o755); err != nil {
		return err
	}
	uiConf := fmt.Sprintf(`# Written by cloudservers stack -topology ha on every start; edits are overwritten.
temporalGrpcAddress: %s
host: 127.0.0.1
port: %d
enableUi: true
defaultNamespace: %s
refreshInterval: 1m
showTemporalSystemNamespace: false
notifyOnNewVersion: false
cors:
  cookieInsecure: true
  allowOrigins: []
`, frontend, ports["temporal_ui"], cfg.Namespace)
	if err := os.WriteFile(filepath.Join(uiDir, "config", "development.yaml"), []byte(uiConf), 0o644); err != nil {
		return err
	}
	ui := fmt.Sprintf("http://127.0.0.1:%d/", ports["temporal_ui"])
	return s.group.Start(ctx, Process{
		Name:         "temporal-ui",
		Cmd:          []string{ts.ui, "--root", uiDir, "--config", "config", "--env", "development", "start"},
		Dir:          uiDir,
		LogFile:      filepath.Join(cfg.DataDir, "logs", "temporal-ui.log"),
		Ready:        HTTPReady(ui),
		ReadyTimeout: time.Minute,
		StopTimeout:  10 * time.Second,
	})
}

func pollUntil(ctx context.Context, timeout time.Duration, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		cctx, c := context.WithTimeout(ctx, 10*time.Second)
		err := f(cctx)
		c()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// setupTemporalSchema creates the two databases and brings their schemas
// to the newest version with temporal-sql-tool (each step is idempotent:
// a later start finds them done).
func setupTemporalSchema(ctx context.Context, cfg Config, ts temporalServerTools, port int) error {
	logPath := filepath.Join(cfg.DataDir, "logs", "temporal-sql-tool.log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	t0 := time.Now()
	for _, db := range []struct{ name, schema string }{
		{"temporal", "temporal"},
		{"temporal_visibility", "visibility"},
	} {
		base := []string{"--plugin", "postgres12", "--ep", "127.0.0.1", "-p", strconv.Itoa(port), "-u", pgUser, "--db", db.name}
		// What Temporal's own auto-setup does on every start: the version
		// tables (setup-schema -v 0.0, no-op when present), then every
		// versioned step not applied yet.
		steps := [][]string{
			{"create-database"},
			{"setup-schema", "-v", "0.0"},
			{"update-schema", "-d", filepath.Join(ts.schemaDir, db.schema, "versioned")},
		}
		for _, step := range steps {
			args := append(append([]string{}, base...), step...)
			fmt.Fprintf(f, "\n$ temporal-sql-tool %s\n", strings.Join(args, " "))
			cmd := exec.CommandContext(ctx, ts.sqlTool, args...)
			out, err := cmd.CombinedOutput()
			f.Write(out)
			if err != nil && !(step[0] == "create-database" && strings.Contains(string(out), "already exists")) {
				return fmt.Errorf("devstack: temporal-sql-tool %s on %s failed (%v)\n%s", step[0], db.name, err, lastLines(string(out), 20))
			}
		}
	}
	fmt.Fprintf(cfg.Log, "  temporal schema ready (temporal-sql-tool, %.1fs)\n", time.Since(t0).Seconds())
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// temporalDynamicConfig: a namespace created at start-up is seen by every
// service within seconds instead of the default 10 s.
const temporalDynamicConfig = `# Written by cloudservers stack -topology ha on every start; edits are overwritten.
system.namespaceCacheRefreshInterval:
  - value: 2s
frontend.enableUpdateWorkflowExecution:
  - value: true
`

// temporalServerConfig is the server's static configuration: every
// service in one process, on loopback, on PostgreSQL, with HAHistoryShards
// shards (fixed when the cluster is first created).
func temporalServerConfig(ports map[string]int, dynamicConfig string) string {
	pg := hostPort(ports["postgres"])
	return fmt.Sprintf(`# Written by cloudservers stack -topology ha on every start; edits are overwritten.
log:
  stdout: true
  level: warn

persistence:
  defaultStore: postgres-default
  visibilityStore: postgres-visibility
  numHistoryShards: %[1]d
  datastores:
    postgres-default:
      sql:
        pluginName: "postgres12"
        databaseName: "temporal"
        connectAddr: "%[2]s"
        connectProtocol: "tcp"
        user: "%[3]s"
        password: ""
        maxConns: 20
        maxIdleConns: 20
        maxConnLifetime: "1h"
    postgres-visibility:
      sql:
        pluginName: "postgres12"
        databaseName: "temporal_visibility"
        connectAddr: "%[2]s"
        connectProtocol: "tcp"
        user: "%[3]s"
        password: ""
        maxConns: 5
        maxIdleConns: 5
        maxConnLifetime: "1h"

global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: "127.0.0.1"
  metrics:
    prometheus:
      framework: "tally"
      timerType: "histogram"
      listenAddress: "127.0.0.1:%[4]d"

services:
  frontend:
    rpc:
      grpcPort: %[5]d
      membershipPort: %[6]d
      bindOnLocalHost: true
      httpPort: %[7]d
  history:
    rpc:
      grpcPort: %[8]d
      membershipPort: %[9]d
      bindOnLocalHost: true
  matching:
    rpc:
      grpcPort: %[10]d
      membershipPort: %[11]d
      bindOnLocalHost: true
  worker:
    rpc:
      grpcPort: %[12]d
      membershipPort: %[13]d
      bindOnLocalHost: true

clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: "active"
  currentClusterName: "active"
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: "frontend"
      rpcAddress: "127.0.0.1:%[5]d"
      httpAddress: "127.0.0.1:%[7]d"

dcRedirectionPolicy:
  policy: "noop"

dynamicConfigClient:
  filepath: "%[14]s"
  pollInterval: "10s"
`, HAHistoryShards, pg, pgUser, ports["temporal_metrics"],
		ports["temporal"], ports["temporal_frontend_membership"], ports["temporal_http"],
		ports["temporal_history"], ports["temporal_history_membership"],
		ports["temporal_matching"], ports["temporal_matching_membership"],
		ports["temporal_worker"], ports["temporal_worker_membership"],
		dynamicConfig)
}
