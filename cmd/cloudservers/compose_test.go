package main

import (
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cloudservers/cloudservers/internal/devstack"
)

// TestComposeRunsTheHATopology: docker/compose.yaml's application services
// are the HA topology's processes (dev -topology ha: haAPIIDs,
// haBridgeIDs, haWorkerIDs), each with the command and flags dev gives it
// (apiArgs, bridgeArgs, workerArgs, with the containers' listen
// addresses), and the environment dev gives them. So the tests of the HA
// topology cover what compose runs.
func TestComposeRunsTheHATopology(t *testing.T) {
	b, err := os.ReadFile("../../docker/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	session := 4 * time.Second // dev's -session-timeout default
	want := map[string][]string{}
	for _, id := range haAPIIDs {
		want[id] = apiArgs(":8080", id)
	}
	for _, id := range haBridgeIDs {
		want[id] = bridgeArgs(id, haBridgeIDs, session, ":9100")
	}
	for _, id := range haWorkerIDs {
		want[id] = workerArgs(":9090")
	}
	var have []string
	for name, svc := range doc.Services {
		if svc.Image != "cloudservers:latest" || name == "setup" {
			continue
		}
		have = append(have, name)
		w, ok := want[name]
		if !ok {
			t.Errorf("compose service %s is not a process of the HA topology", name)
			continue
		}
		if !slices.Equal(svc.Command, w) {
			t.Errorf("compose service %s runs %q, the HA topology %q", name, svc.Command, w)
		}
		for _, kv := range appEnv(devstack.Endpoints{}) {
			k, _, _ := strings.Cut(kv, "=")
			if svc.Environment[k] == "" {
				t.Errorf("compose service %s does not set %s", name, k)
			}
		}
		if !strings.HasSuffix(svc.Environment["CLOUDSERVERS_ZOOKEEPER"], "/cloudservers") {
			t.Errorf("compose service %s: ZooKeeper %q has no chroot", name, svc.Environment["CLOUDSERVERS_ZOOKEEPER"])
		}
	}
	sort.Strings(have)
	all := slices.Sorted(maps.Keys(want))
	if !slices.Equal(have, all) {
		t.Errorf("compose runs %v, the HA topology %v", have, all)
	}
	// The setup job bootstraps what the HA topology's stack makes.
	setup := doc.Services["setup"].Command
	if !slices.Equal(setup, []string{"setup", "-replication-factor", "3", "-min-insync-replicas", "2", "-request-partitions", "6"}) ||
		devstack.HAReplicationFactor != 3 || devstack.HAMinInsyncReplicas != 2 {
		t.Errorf("setup job %q, HA topology RF %d min ISR %d", setup, devstack.HAReplicationFactor, devstack.HAMinInsyncReplicas)
	}
}
