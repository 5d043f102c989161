package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigPrecedence: a flag beats its CLOUDSERVERS_* variable, which
// beats the configuration file, which beats the default; a bad file stops
// the command with its problems.
func TestConfigPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cloudservers.yaml")
	if err := os.WriteFile(path, []byte("kafka: {brokers: [file:9092]}\ntemporal: {address: file:7233, namespace: from-file}\nzookeeper: file:2181/cs\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CLOUDSERVERS_TEMPORAL", "env:7233")
	var c common
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c.register(fs)
	if err := fs.Parse([]string{"-config", path, "-zookeeper", "flag:2181/cs"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.load(fs, nil); err != nil {
		t.Fatal(err)
	}
	if c.kafka != "file:9092" || c.temporal != "env:7233" || c.zookeeper != "flag:2181/cs" || c.namespace != "from-file" {
		t.Errorf("kafka %q temporal %q zookeeper %q namespace %q", c.kafka, c.temporal, c.zookeeper, c.namespace)
	}

	if err := os.WriteFile(path, []byte("kafka: {brokers: [nope]}\nzookeper: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	err := setupCommand(t.Context(), []string{"-config", path}, &out)
	if err == nil || !strings.Contains(err.Error(), "field zookeper not found") || !strings.Contains(err.Error(), `"nope" is not host:port`) {
		t.Errorf("a bad file: %v", err)
	}
}
