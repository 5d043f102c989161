package zkcoord

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// DefaultChroot is the ZooKeeper path under which everything of this package
// lives when Config.Chroot is empty.
const DefaultChroot = "/cloudservers"

// DefaultSessionTimeout is used when Config.SessionTimeout is zero. Failover
// takes about one session timeout, so this is the main knob for how long a
// partition stays unowned after its owner dies.
const DefaultSessionTimeout = 4 * time.Second

// Config says where ZooKeeper is and who this process is.
type Config struct {
	// Servers are ZooKeeper "host:port" addresses. An entry may carry a
	// chroot suffix in the Java client's style ("zk1:2181,zk2:2181/chroot");
	// see ParseConnectString.
	Servers []string
	// Chroot is the ZooKeeper path every node of this package lives under.
	// It is created (with its parents) if missing. Default DefaultChroot.
	Chroot string
	// SessionTimeout is the requested ZooKeeper session timeout. The server
	// clamps it to [minSessionTimeout, maxSessionTimeout] (by default
	// 2×tickTime and 20×tickTime); Coordinator.SessionTimeout reports the
	// negotiated value. Default DefaultSessionTimeout.
	SessionTimeout time.Duration
	// ProcessID names this process in candidate lists and lock nodes. It must
	// be a valid znode name (no '/'). It may be empty for a read-only
	// coordinator that only calls Status.
	ProcessID string
	// Logger receives this package's and the ZooKeeper client's logs.
	// Default slog.Default().
	Logger *slog.Logger
}

// ParseConnectString splits a ZooKeeper connect string in the Java client's
// form "host1:2181,host2:2181/some/chroot" into servers and chroot (empty
// when there is none).
func ParseConnectString(s string) (servers []string, chroot string) {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s, chroot = s[:i], s[i:]
	}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			servers = append(servers, part)
		}
	}
	return servers, chroot
}

func (cfg Config) withDefaults() (Config, error) {
	var servers []string
	for _, s := range cfg.Servers {
		srv, chroot := ParseConnectString(s)
		servers = append(servers, srv...)
		if chroot != "" && cfg.Chroot == "" {
			cfg.Chroot = chroot
		}
	}
	cfg.Servers = servers
	if len(cfg.Servers) == 0 {
		return cfg, errors.New("zookeeper: no servers configured")
	}
	if cfg.Chroot == "" {
		cfg.Chroot = DefaultChroot
	}
	cfg.Chroot = "/" + strings.Trim(cfg.Chroot, "/")
	if cfg.Chroot == "/" || cfg.Chroot == "/zookeeper" || strings.HasPrefix(cfg.Chroot, "/zookeeper/") {
		return cfg, fmt.Errorf("zookeeper: chroot %q: the root node and /zookeeper are not allowed", cfg.Chroot)
	}
	for _, part := range strings.Split(cfg.Chroot[1:], "/") {
		if err := checkNodeName(part); err != nil {
			return cfg, fmt.Errorf("zookeeper: chroot %q: %w", cfg.Chroot, err)
		}
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = DefaultSessionTimeout
	}
	if cfg.ProcessID != "" {
		if err := checkNodeName(cfg.ProcessID); err != nil {
			return cfg, fmt.Errorf("process ID %q: %w", cfg.ProcessID, err)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}

// checkNodeName rejects names that cannot be one znode path component.
func checkNodeName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case name == "." || name == "..":
		return errors.New("reserved name")
	case strings.ContainsAny(name, "/\x00"):
		return errors.New("contains '/' or NUL")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return errors.New("contains a control character")
		}
	}
	return nil
}
