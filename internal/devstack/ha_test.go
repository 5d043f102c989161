package devstack

import (
	"strings"
	"testing"
)

// Temporal stores its services' ports as smallint in PostgreSQL: a port
// from the kernel's ephemeral range (32768+) made the server exit at start.
func TestResolveHAPortsTemporalBelowSmallint(t *testing.T) {
	dir := t.TempDir()
	ports, err := resolveHAPorts(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]string{}
	for _, k := range haPortKeys() {
		p := ports[k]
		if p <= 0 {
			t.Fatalf("%s: no port", k)
		}
		if other, dup := seen[p]; dup {
			t.Fatalf("port %d given to %s and %s", p, other, k)
		}
		seen[p] = k
		if strings.HasPrefix(k, "temporal") && k != "temporal_ui" && p > 32767 {
			t.Errorf("%s = %d, above smallint", k, p)
		}
	}
	again, err := resolveHAPorts(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again["temporal_ui"] != ports["temporal_ui"] {
		t.Errorf("the UI port changed between runs of one folder: %d, then %d", ports["temporal_ui"], again["temporal_ui"])
	}
}

func TestKafkaHAPropertiesDurability(t *testing.T) {
	p := kafkaHAProperties(2, 9001, 9002, "1@127.0.0.1:1,2@127.0.0.1:9002,3@127.0.0.1:3", "/d")
	for _, want := range []string{"node.id=2\n", "controller.quorum.voters=1@127.0.0.1:1,2@127.0.0.1:9002,3@127.0.0.1:3\n",
		"default.replication.factor=3\n", "min.insync.replicas=2\n", "unclean.leader.election.enable=false\n",
		"offsets.topic.replication.factor=3\n", "transaction.state.log.min.isr=2\n"} {
		if !strings.Contains(p, want) {
			t.Errorf("server.properties lacks %q", want)
		}
	}
	if id := newKafkaClusterID(); id == "" || id[0] == '-' {
		t.Errorf("cluster id %q", id)
	}
}
