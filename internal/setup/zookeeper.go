package setup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/internal/zkcoord"
)

// BucketMapFunc plans the bucket map in ZooKeeper (issue 11): given a
// session and the chroot, it returns the step that writes the map when it
// is absent (nil when it is there) or a problem when the map there does not
// fit the configuration (BucketMap is the one setup uses).
type BucketMapFunc func(ctx context.Context, conn *zk.Conn, chroot string) (*Step, *Problem, error)

// dialZooKeeper opens a session to connect (servers and chroot, in the
// Java client's form) and waits for it as long as ctx allows.
func dialZooKeeper(ctx context.Context, connect string) (*zk.Conn, string, error) {
	servers, chroot := zkcoord.ParseConnectString(connect)
	if len(servers) == 0 {
		return nil, "", errors.New("zookeeper: no servers in " + connect)
	}
	if chroot == "" {
		chroot = zkcoord.DefaultChroot
	}
	chroot = "/" + strings.Trim(chroot, "/")
	if chroot == "/" || chroot == "/zookeeper" || strings.HasPrefix(chroot, "/zookeeper/") {
		return nil, "", fmt.Errorf("zookeeper: chroot %q: the root node and /zookeeper are not allowed", chroot)
	}
	conn, events, err := zk.Connect(servers, 10*time.Second, zk.WithLogger(zkQuiet{}))
	if err != nil {
		return nil, "", fmt.Errorf("zookeeper %s: %w", strings.Join(servers, ","), err)
	}
	for {
		select {
		case ev := <-events:
			if ev.State == zk.StateHasSession {
				go drain(events)
				return conn, chroot, nil
			}
		case <-ctx.Done():
			conn.Close()
			return nil, "", fmt.Errorf("zookeeper %s: no session: %w", strings.Join(servers, ","), ctx.Err())
		}
	}
}

// drain empties the session's event channel until Close closes it.
func drain(events <-chan zk.Event) {
	for range events {
	}
}

type zkQuiet struct{}

func (zkQuiet) Printf(format string, args ...any) {
	slog.Debug("zookeeper client: " + fmt.Sprintf(format, args...))
}

// planZooKeeper returns the step that creates the chroot (with its
// parents) when it is missing, then the bucket map's.
func planZooKeeper(ctx context.Context, conn *zk.Conn, chroot string, cfg Config) (steps []Step, problems []Problem, unchanged []string, err error) {
	target := "zookeeper " + chroot
	ok, _, err := conn.Exists(chroot)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("zookeeper: exists %s: %w", chroot, err)
	}
	if ok {
		unchanged = append(unchanged, target)
	} else {
		steps = append(steps, Step{Target: target, Action: "create the chroot",
			apply: func(context.Context) error { return createPath(conn, chroot) }})
	}
	// The bucket map (issue 11): written when absent, after the chroot.
	if cfg.BucketMap != nil {
		step, problem, err := cfg.BucketMap(ctx, conn, chroot)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("bucket map: %w", err)
		}
		switch {
		case step != nil:
			steps = append(steps, *step)
		case problem != nil:
			problems = append(problems, *problem)
		default:
			unchanged = append(unchanged, "bucket map "+chroot)
		}
	}
	return steps, problems, unchanged, nil
}

// createPath creates path and its missing parents (persistent, empty).
func createPath(conn *zk.Conn, path string) error {
	p := ""
	for _, part := range strings.Split(strings.Trim(path, "/"), "/") {
		p += "/" + part
		_, err := conn.Create(p, nil, 0, zk.WorldACL(zk.PermAll))
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("create %s: %w", p, err)
		}
	}
	return nil
}

// BucketMap is the bucket map's step for a system whose requests topic has
// partitions partitions, in the ZooKeeper of connect: the map is written
// (version 1, bucket % partitions) when absent; one that is there is
// checked, and a corrupted map, or one that routes to a partition the
// topic lacks, is a problem setup never overwrites (admin buckets moves
// buckets; docs/scale-out.md).
func BucketMap(connect string, partitions int32) BucketMapFunc {
	return func(ctx context.Context, conn *zk.Conn, chroot string) (*Step, *Problem, error) {
		path := zkcoord.BucketMapPath(chroot)
		data, _, err := conn.Get(path)
		if errors.Is(err, zk.ErrNoNode) {
			return &Step{Target: "bucket map " + path,
				Action: fmt.Sprintf("create: %d buckets over %d partitions (bucket %% %d)", cloudservers.Buckets, partitions, partitions),
				apply: func(ctx context.Context) error {
					_, _, err := zkcoord.EnsureMap(ctx, connect, partitions, slog.New(slog.DiscardHandler))
					return err
				}}, nil, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", path, err)
		}
		m, err := zkcoord.DecodeBucketMap(path, data, cloudservers.Buckets)
		if err != nil {
			return nil, &Problem{Target: "bucket map " + path, Detail: err.Error()}, nil
		}
		if m.Partitions > partitions {
			return nil, &Problem{Target: "bucket map " + path, Detail: fmt.Sprintf(
				"routes over %d partitions, the requests topic is configured with %d", m.Partitions, partitions)}, nil
		}
		return nil, nil, nil
	}
}
