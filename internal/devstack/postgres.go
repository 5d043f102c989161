package devstack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// PostgreSQL for the HA topology's Temporal server: Debian's packages
// (postgresql), a cluster of our own initialised in the data folder and
// run in the foreground under the supervisor, on a loopback port, with
// trust authentication for the superuser "temporal" (loopback only). The
// postgres programs refuse to run as root; as root they run as the
// "postgres" user the Debian package creates.

const pgUser = "temporal" // the database superuser the Temporal server connects as

type postgresTools struct {
	bin     string // folder of postgres, initdb, pg_ctl, pg_isready
	version string
	cred    *syscall.Credential // nil: run as ourselves
}

// findPostgres finds the newest /usr/lib/postgresql/<v>/bin (Debian's
// layout), else postgres on PATH.
func findPostgres() (postgresTools, error) {
	var pt postgresTools
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "postgres")) && isExecutable(filepath.Join(d, "initdb")) {
			pt.bin = d
			break
		}
	}
	if pt.bin == "" {
		if p, err := exec.LookPath("postgres"); err == nil {
			pt.bin = filepath.Dir(resolveLink(p))
		}
	}
	if pt.bin == "" || !isExecutable(filepath.Join(pt.bin, "initdb")) || !isExecutable(filepath.Join(pt.bin, "pg_isready")) {
		return pt, &MissingToolError{Tool: "postgres", Why: "for the Temporal server of the HA topology",
			Install: "PostgreSQL (Debian: apt-get install postgresql)"}
	}
	if out, err := exec.Command(filepath.Join(pt.bin, "postgres"), "--version").Output(); err == nil {
		// "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
		if f := strings.Fields(string(out)); len(f) >= 3 {
			pt.version = f[2]
		}
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return pt, fmt.Errorf("devstack: PostgreSQL refuses to run as root and there is no user \"postgres\" to run it as (%v): create one (useradd --system postgres) or run as another user", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		pt.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	return pt, nil
}

func pgMajor(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// postgresPrepare initialises the cluster in dir the first time (pg_ctl
// initdb) and returns the supervised postgres process.
func postgresPrepare(ctx context.Context, cfg Config, pt postgresTools, dir string, port int) (Process, error) {
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Process{}, err
	}
	if pt.cred != nil {
		if err := os.Chown(dir, int(pt.cred.Uid), int(pt.cred.Gid)); err != nil {
			return Process{}, err
		}
		if bad := firstClosedAncestor(dir); bad != "" {
			return Process{}, fmt.Errorf("devstack: PostgreSQL runs as user postgres, which cannot enter %s (mode %s): choose a data folder outside it (-data, or CLOUDSERVERS_DATA)",
				bad, modeOf(bad))
		}
	}
	logs := filepath.Join(cfg.DataDir, "logs")
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		fmt.Fprintf(cfg.Log, "  initialising a PostgreSQL %s cluster in %s\n", pt.version, data)
		logPath := filepath.Join(logs, "postgres-initdb.log")
		cmd := exec.CommandContext(context.WithoutCancel(ctx), filepath.Join(pt.bin, "pg_ctl"), "initdb", "-s", "-D", data,
			"-o", "--auth=trust --username="+pgUser+" --encoding=UTF8 --no-locale")
		cmd.Dir = dir
		if err := runLoggedAs(cmd, pt.cred, logPath); err != nil {
			_ = os.RemoveAll(data) // half a cluster would not start; the next run tries again
			return Process{}, fmt.Errorf("devstack: initdb failed (%v)\n--- last lines of %s ---\n%s", err, logPath, TailFile(logPath, 0, 30))
		}
	}
	addr := hostPort(port)
	return Process{
		Name: "postgres",
		Cmd: []string{filepath.Join(pt.bin, "postgres"), "-D", data, "-p", strconv.Itoa(port),
			"-c", "listen_addresses=127.0.0.1",
			"-c", "unix_socket_directories=", // TCP on loopback only
			"-c", "max_connections=100",
			"-c", "shared_buffers=64MB",
			"-c", "log_min_messages=warning",
			"-c", "log_line_prefix=%m [%p] ",
		},
		Dir:        dir,
		Credential: pt.cred,
		LogFile:    filepath.Join(logs, "postgres.log"),
		Ready: func(ctx context.Context) error {
			out, err := exec.CommandContext(ctx, filepath.Join(pt.bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", pgUser).CombinedOutput()
			if err != nil {
				return fmt.Errorf("postgres at %s not accepting connections (%v) %s", addr, err, strings.TrimSpace(string(out)))
			}
			return nil
		},
		ReadyTimeout: time.Minute,
		// SIGTERM is a "smart" shutdown; the Temporal server, its only
		// client, is stopped before it.
		StopTimeout: 30 * time.Second,
	}, nil
}

// runLoggedAs runs cmd as cred (nil: ourselves) with its output in logPath.
func runLoggedAs(cmd *exec.Cmd, cred *syscall.Credential, logPath string) error {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return err
	}
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "$ %s\n", strings.Join(cmd.Args, " "))
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	if err := startCmd(cmd); err != nil {
		return err
	}
	return cmd.Wait()
}

// firstClosedAncestor returns the first folder above dir that others
// cannot enter (no o+x), "" if there is none.
func firstClosedAncestor(dir string) string {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		if st, err := os.Stat(d); err == nil && st.Mode().Perm()&0o001 == 0 {
			return d
		}
		if d == filepath.Dir(d) {
			return ""
		}
	}
}

func modeOf(p string) string {
	if st, err := os.Stat(p); err == nil {
		return st.Mode().Perm().String()
	}
	return "?"
}
