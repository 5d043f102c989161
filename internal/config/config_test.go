package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/internal/config"
)

// TestExampleFile: the documented example (docs/cloudservers.example.yaml)
// is valid, and its catalog replaces the built-in one.
func TestExampleFile(t *testing.T) {
	f, err := config.Load("../../docs/cloudservers.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := f.CatalogOr(cloudservers.DefaultCatalog())
	if s, ok := c.Size("s-1vcpu-64mb"); !ok || s.Flavor != "m1.tiny" {
		t.Errorf("catalog %+v", c)
	}
	if f.Quotas.Servers == nil || *f.Quotas.Servers != 25 || f.RateLimit.PerSecond == nil || *f.RateLimit.PerSecond != 10 {
		t.Errorf("quotas %+v rate %+v", f.Quotas, f.RateLimit)
	}
}

// TestEveryProblemAtOnce: unknown keys, wrong types and impossible values
// of one file are all reported, in one error.
func TestEveryProblemAtOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	err := os.WriteFile(path, []byte(`
kafka:
  brokers: [kafka-1]
temporal:
  adress: temporal:7233
topics:
  replication_factor: three
  min_insync_replicas: -1
quotas:
  servers: 0
rate_limit:
  per_second: -1
catalog:
  sizes:
    - {name: small, flavor: m1.small, vcpus: 0, memory_mb: 512}
    - {name: small, flavor: m1.small, vcpus: 1, memory_mb: 512}
  images:
    - {name: debian}
  regions:
    - {name: one, openstack_region: RegionOne, network: net1, external_network: public}
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	_, err = config.Load(path)
	if err == nil {
		t.Fatal("a bad file was accepted")
	}
	for _, want := range []string{
		`field adress not found`,
		`line 7: cannot unmarshal !!str ` + "`three`",
		`kafka.brokers: "kafka-1" is not host:port`,
		`topics.min_insync_replicas: -1`,
		`quotas.servers: 0, must be at least 1`,
		`rate_limit.per_second: -1, must be more than 0`,
		`catalog.sizes[0] (small): vcpus and memory_mb must be at least 1`,
		`catalog.sizes: "small" is listed twice`,
		`catalog.images[0]: needs a name and a glance image name`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q:\n%v", want, err)
		}
	}
	if !strings.Contains(err.Error(), "10 problems") {
		t.Errorf("want 10 problems counted:\n%v", err)
	}
}

func TestEmptyFileIsValid(t *testing.T) {
	f, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.CatalogOr(cloudservers.DefaultCatalog()).Sizes) != 2 {
		t.Error("an empty file does not keep the built-in catalog")
	}
}
