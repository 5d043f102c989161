//go:build integration

package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/cloudservers/cloudservers/internal/devstack"
)

// TestSetupCommand: `cloudservers setup` against the dev stack finds the
// topics and the namespace the stack made exactly as configured (the stack
// creates them through the same code, with replication factor 1), plans
// only the missing chroot on a dry run and changes nothing then; the real
// run creates it; the next finds nothing to change.
func TestSetupCommand(t *testing.T) {
	ep := devstack.TestEndpoints(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	chroot := "/setup-cmd-" + uuid.NewString()[:8]
	args := []string{"-kafka", strings.Join(ep.Kafka, ","), "-temporal", ep.Temporal, "-namespace", ep.TemporalNamespace,
		"-zookeeper", ep.ZooKeeper + chroot, "-replication-factor", "1", "-min-insync-replicas", "0",
		"-request-partitions", "6", "-admin-customer", ""}
	run := func(extra ...string) string {
		t.Helper()
		var out strings.Builder
		if err := setupCommand(ctx, append(append([]string{}, args...), extra...), &out); err != nil {
			t.Fatalf("setup %v: %v\n%s", extra, err, out.String())
		}
		return out.String()
	}
	out := run("-dry-run")
	if !strings.Contains(out, "would     zookeeper "+chroot+": create the chroot") ||
		!strings.Contains(out, "1 changes planned, 14 things as configured, 0 differences") {
		t.Fatalf("dry run:\n%s", out)
	}
	if out := run("-dry-run"); !strings.Contains(out, "1 changes planned") {
		t.Fatalf("the dry run changed something:\n%s", out)
	}
	if out := run(); !strings.Contains(out, "changed   zookeeper "+chroot+": create the chroot") || !strings.Contains(out, "1 changes made") {
		t.Fatalf("first run:\n%s", out)
	}
	if out := run(); !strings.Contains(out, "nothing to change: 15 things checked are as configured") {
		t.Fatalf("second run:\n%s", out)
	}
	// A mismatch (the stack's requests topic has 6 partitions) fails the
	// command and names the topic.
	var buf strings.Builder
	err := setupCommand(ctx, append(append([]string{}, args...), "-request-partitions", "8"), &buf)
	if err == nil || !strings.Contains(buf.String(), "differs   topic cloudservers.requests: has 6 partitions, the configuration says 8") {
		t.Fatalf("mismatch: err %v\n%s", err, buf.String())
	}
}
