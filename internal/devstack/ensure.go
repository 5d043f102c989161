package devstack

import (
	"bufio"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

//go:embed maven/kafka/pom.xml maven/zookeeper/pom.xml
var poms embed.FS

// tools are the resolved programs and folders the stack runs from.
type tools struct {
	java         string
	kafkaLib     string // folder of jars
	zookeeperLib string
	temporal     string
}

// MissingToolError says that a program the stack needs is not installed.
type MissingToolError struct {
	Tool    string // "java", "mvn", "go"
	Install string // what to install
	Why     string
}

func (e *MissingToolError) Error() string {
	return fmt.Sprintf("devstack: %s not found (needed %s): install %s", e.Tool, e.Why, e.Install)
}

// Ensure makes sure everything the stack runs is in cfg.CacheDir: the
// Kafka and ZooKeeper jars (fetched with Maven from the poms embedded in
// this package) and the Temporal CLI (built with `go install`). Each
// missing piece is reported on cfg.Log with progress; the first run takes
// minutes (the Temporal build about 8 minutes on 2 cores), later runs only
// check stamps. Concurrent callers sharing a cache folder wait for each
// other.
func Ensure(ctx context.Context, cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	_, err = ensure(ctx, cfg)
	return err
}

func ensure(ctx context.Context, cfg Config) (tools, error) {
	var t tools
	java, err := findJava()
	if err != nil {
		return t, err
	}
	t.java = java
	if err := os.MkdirAll(cfg.CacheDir, 0o755); err != nil {
		return t, err
	}
	unlock, err := lockFile(ctx, filepath.Join(cfg.CacheDir, ".lock"), cfg.Log,
		"waiting for another cloudservers process that is filling the cache "+cfg.CacheDir)
	if err != nil {
		return t, err
	}
	defer unlock()

	if t.zookeeperLib, err = ensureJars(ctx, cfg, "zookeeper", "ZooKeeper "+ZooKeeperVersion, java); err != nil {
		return t, err
	}
	if t.kafkaLib, err = ensureJars(ctx, cfg, "kafka", "Kafka "+KafkaVersion, java); err != nil {
		return t, err
	}
	if t.temporal, err = ensureTemporal(ctx, cfg); err != nil {
		return t, err
	}
	return t, nil
}

// findJava finds a java of version 17 or newer: $JAVA_HOME/bin/java, else
// java on PATH.
func findJava() (string, error) {
	missing := &MissingToolError{Tool: "java", Why: "to run Kafka and ZooKeeper",
		Install: "a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless) or set JAVA_HOME"}
	java := ""
	if jh := os.Getenv("JAVA_HOME"); jh != "" {
		if p := filepath.Join(jh, "bin", "java"); isExecutable(p) {
			java = p
		}
	}
	if java == "" {
		p, err := exec.LookPath("java")
		if err != nil {
			return "", missing
		}
		java = p
	}
	out, err := exec.Command(java, "-version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("devstack: %s -version failed: %v: %s", java, err, strings.TrimSpace(string(out)))
	}
	if v := javaMajor(string(out)); v > 0 && v < 17 {
		missing.Why = fmt.Sprintf("to run Kafka 4 (found Java %d at %s)", v, java)
		missing.Tool = "Java 17+"
		return "", missing
	}
	return java, nil
}

var javaVersionRE = regexp.MustCompile(`version "(\d+)(?:\.(\d+))?`)

// javaMajor parses the major version from `java -version` output (0 if
// unknown). "1.8.0_x" is 8.
func javaMajor(out string) int {
	m := javaVersionRE.FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	v, _ := strconv.Atoi(m[1])
	if v == 1 && m[2] != "" {
		v, _ = strconv.Atoi(m[2])
	}
	return v
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// lockFile takes an exclusive flock on path, printing msg once if it has
// to wait. The returned func releases it.
func lockFile(ctx context.Context, path string, log io.Writer, msg string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	said := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("devstack: lock %s: %w", path, err)
		}
		if !said {
			fmt.Fprintln(log, msg)
			said = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// ensureJars fetches the jars of the embedded maven/<name>/pom.xml into
// <cache>/jars/<name>-<hash of the pom>/lib and returns that folder. A
// stamp file makes the next call a no-op; a changed pom gets a new folder
// and the old ones are removed.
func ensureJars(ctx context.Context, cfg Config, name, title, java string) (string, error) {
	pom, err := poms.ReadFile("maven/" + name + "/pom.xml")
	if err != nil {
		return "", err
	}
	dir := jarsDir(cfg.CacheDir, name, pom)
	lib := filepath.Join(dir, "lib")
	stamp := filepath.Join(dir, "complete")
	if _, err := os.Stat(stamp); err == nil {
		return lib, nil
	}

	mvn, err := exec.LookPath("mvn")
	if err != nil {
		return "", &MissingToolError{Tool: "mvn", Why: "to fetch the Kafka and ZooKeeper jars from Maven Central",
			Install: "Apache Maven (Debian: apt-get install maven)"}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	pomPath := filepath.Join(dir, "pom.xml")
	if err := os.WriteFile(pomPath, pom, 0o644); err != nil {
		return "", err
	}
	tmp := lib + ".tmp"
	_ = os.RemoveAll(tmp)
	logPath := filepath.Join(cfg.CacheDir, "logs", "maven-"+name+".log")
	fmt.Fprintf(cfg.Log, "fetching the %s jars with Maven into %s (first time only; log: %s)\n", title, dir, logPath)
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, mvn, "-B", "-Dstyle.color=never", "-f", pomPath,
		"dependency:copy-dependencies", "-DincludeScope=runtime", "-DoutputDirectory="+tmp)
	cmd.Dir = dir
	if javaHome := filepath.Dir(filepath.Dir(resolveLink(java))); os.Getenv("JAVA_HOME") == "" && javaHome != "/" {
		cmd.Env = append(os.Environ(), "JAVA_HOME="+javaHome)
	}
	counter := &mavenProgress{}
	err = runLogged(cmd, logPath, counter.line, 3*time.Second, func() {
		fmt.Fprintf(cfg.Log, "  %s: %d files downloaded (%.1f MB), %s\n", name, counter.files(), counter.mb(), time.Since(t0).Round(time.Second))
	})
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("devstack: fetching the %s jars with Maven failed (%v); is Maven Central reachable (see ~/.m2/settings.xml for a mirror or proxy)?\n--- last lines of %s ---\n%s",
			title, err, logPath, TailFile(logPath, 0, 30))
	}
	jars, _ := filepath.Glob(filepath.Join(tmp, "*.jar"))
	if len(jars) == 0 {
		return "", fmt.Errorf("devstack: Maven copied no jar for %s; see %s", title, logPath)
	}
	_ = os.RemoveAll(lib)
	if err := os.Rename(tmp, lib); err != nil {
		return "", err
	}
	if err := os.WriteFile(stamp, []byte(time.Now().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return "", err
	}
	fmt.Fprintf(cfg.Log, "  %s: %d jars ready in %s\n", name, len(jars), time.Since(t0).Round(100*time.Millisecond))
	// Drop the jars of other poms fetched more than a week ago (not at
	// once: a stack started from an older binary may be using them).
	old, _ := filepath.Glob(filepath.Join(cfg.CacheDir, "jars", name+"-*"))
	for _, o := range old {
		if st, err := os.Stat(filepath.Join(o, "complete")); o != dir && (err != nil || time.Since(st.ModTime()) > 7*24*time.Hour) {
			_ = os.RemoveAll(o)
		}
	}
	return lib, nil
}

// jarsDir is where the jars of a pom go: a changed pom gets a new folder.
func jarsDir(cache, name string, pom []byte) string {
	sum := sha256.Sum256(pom)
	return filepath.Join(cache, "jars", name+"-"+hex.EncodeToString(sum[:6]))
}

func resolveLink(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// mavenProgress counts Maven's "Downloaded from ...: URL (12 kB at ...)" lines.
type mavenProgress struct {
	mu    sync.Mutex
	n     int
	bytes float64
}

var mavenDownloadedRE = regexp.MustCompile(`Downloaded from [^:]+: \S+ \(([\d.,]+) (B|kB|KB|MB|GB)`)

func (m *mavenProgress) line(s string) {
	g := mavenDownloadedRE.FindStringSubmatch(s)
	if g == nil {
		return
	}
	v, _ := strconv.ParseFloat(strings.ReplaceAll(g[1], ",", ""), 64)
	switch g[2] {
	case "kB", "KB":
		v *= 1e3
	case "MB":
		v *= 1e6
	case "GB":
		v *= 1e9
	}
	m.mu.Lock()
	m.n++
	m.bytes += v
	m.mu.Unlock()
}

func (m *mavenProgress) files() int { m.mu.Lock(); defer m.mu.Unlock(); return m.n }
func (m *mavenProgress) mb() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bytes / 1e6
}

// runLogged runs cmd with its output appended to logPath, feeding every
// line to onLine and calling tick every interval until it ends.
func runLogged(cmd *exec.Cmd, logPath string, onLine func(string), interval time.Duration, tick func()) error {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return err
	}
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "$ %s\n", strings.Join(cmd.Args, " "))
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := startCmd(cmd); err != nil {
		return err
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(f, line)
			onLine(line)
		}
		io.Copy(io.Discard, pr)
	}()
	waited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		pw.Close()
		waited <- err
	}()
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		select {
		case err := <-waited:
			<-scanned
			return err
		case <-tk.C:
			tick()
		}
	}
}

// ensureTemporal returns <cache>/bin/temporal, building it with `go
// install` when it is missing or not the expected version.
func ensureTemporal(ctx context.Context, cfg Config) (string, error) {
	bin := filepath.Join(cfg.CacheDir, "bin", "temporal")
	stamp := bin + ".version" // the CLI version the binary was built from
	if isExecutable(bin) {
		if b, err := os.ReadFile(stamp); err == nil && strings.TrimSpace(string(b)) == TemporalCLIVersion {
			return bin, nil
		}
		// A binary without a stamp (built by hand): ask Go what it is.
		if v := goBinaryModuleVersion(ctx, bin, "github.com/temporalio/cli"); v == TemporalCLIVersion {
			_ = os.WriteFile(stamp, []byte(TemporalCLIVersion+"\n"), 0o644)
			return bin, nil
		} else {
			fmt.Fprintf(cfg.Log, "%s is not Temporal CLI %s (%q): rebuilding\n", bin, TemporalCLIVersion, v)
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", &MissingToolError{Tool: "go", Why: "to build the Temporal CLI (the Temporal dev server and its Web UI)",
			Install: "Go 1.24 or newer (https://go.dev/doc/install)"}
	}
	tmpBin := filepath.Join(cfg.CacheDir, fmt.Sprintf("bin.tmp-%d", os.Getpid()))
	_ = os.RemoveAll(tmpBin)
	defer os.RemoveAll(tmpBin)
	logPath := filepath.Join(cfg.CacheDir, "logs", "temporal-build.log")
	pkg := temporalCLIModule + "@" + TemporalCLIVersion
	fmt.Fprintf(cfg.Log, "building the Temporal CLI %s (dev server + Web UI) with go install: first time only, about 8 minutes on 2 cores (log: %s)\n",
		TemporalCLIVersion, logPath)
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, goBin, "install", "-v", pkg)
	cmd.Dir = cfg.CacheDir // outside any module
	cmd.Env = append(os.Environ(), "GOBIN="+tmpBin, "GOFLAGS=-buildvcs=false", "GO111MODULE=on")
	var mu sync.Mutex
	downloads, compiled := 0, 0
	onLine := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case strings.HasPrefix(s, "go: downloading "):
			downloads++
		case !strings.HasPrefix(s, "go: ") && !strings.HasPrefix(s, "#") && !strings.Contains(s, " "):
			compiled++ // -v prints each package as it is built
		}
	}
	err = runLogged(cmd, logPath, onLine, 15*time.Second, func() {
		mu.Lock()
		defer mu.Unlock()
		phase := fmt.Sprintf("%d packages compiled", compiled)
		if compiled == 0 {
			phase = fmt.Sprintf("%d modules downloaded", downloads)
		}
		fmt.Fprintf(cfg.Log, "  temporal: building, %s, %s\n", phase, time.Since(t0).Round(time.Second))
	})
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("devstack: building the Temporal CLI failed (%v)\n--- last lines of %s ---\n%s", err, logPath, TailFile(logPath, 0, 30))
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(filepath.Join(tmpBin, "temporal"), bin); err != nil {
		return "", fmt.Errorf("devstack: install the built temporal binary: %w", err)
	}
	if err := os.WriteFile(stamp, []byte(TemporalCLIVersion+"\n"), 0o644); err != nil {
		return "", err
	}
	fmt.Fprintf(cfg.Log, "  temporal: built in %s\n", time.Since(t0).Round(time.Second))
	return bin, nil
}

// goBinaryModuleVersion returns the version of module mod that the Go
// binary bin was built from ("" if unknown), using `go version -m`.
func goBinaryModuleVersion(ctx context.Context, bin, mod string) string {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return ""
	}
	out, err := exec.CommandContext(ctx, goBin, "version", "-m", bin).Output()
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "mod" && f[1] == mod {
			return f[2]
		}
	}
	return ""
}
