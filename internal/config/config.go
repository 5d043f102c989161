// Package config reads the one configuration file of every command
// (YAML). A value comes from, first to last: the command's flag, its
// CLOUDSERVERS_* variable, this file, the built-in default. Load reports
// every problem of a file at once: unknown keys, wrong types (both with
// their line) and impossible values.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/cloudservers/cloudservers"
)

// File is the configuration file. Every field is optional; an absent one
// leaves the flag's default.
type File struct {
	Kafka struct {
		Brokers []string `yaml:"brokers"`
	} `yaml:"kafka"`
	// ZooKeeper is the connect string with its chroot:
	// zk1:2181,zk2:2181,zk3:2181/cloudservers.
	ZooKeeper string `yaml:"zookeeper"`
	Temporal  struct {
		Address   string `yaml:"address"`
		Namespace string `yaml:"namespace"`
	} `yaml:"temporal"`
	// Topics: what `setup` creates.
	Topics struct {
		ReplicationFactor *int `yaml:"replication_factor"`
		MinInsyncReplicas *int `yaml:"min_insync_replicas"`
		RequestPartitions *int `yaml:"request_partitions"`
	} `yaml:"topics"`
	// Catalog replaces the built-in one (cloudservers.DefaultCatalog)
	// when it lists anything.
	Catalog struct {
		Sizes   []Size   `yaml:"sizes"`
		Images  []Image  `yaml:"images"`
		Regions []Region `yaml:"regions"`
	} `yaml:"catalog"`
	Quotas struct {
		Servers *int `yaml:"servers"`
		VCPUs   *int `yaml:"vcpus"`
		SSHKeys *int `yaml:"ssh_keys"`
	} `yaml:"quotas"`
	RateLimit struct {
		PerSecond *float64 `yaml:"per_second"`
		Burst     *int     `yaml:"burst"`
	} `yaml:"rate_limit"`
}

// Size maps a size customers order to a Nova flavor.
type Size struct {
	Name     string `yaml:"name"`
	Flavor   string `yaml:"flavor"`
	VCPUs    int    `yaml:"vcpus"`
	MemoryMB int    `yaml:"memory_mb"`
	DiskGB   int    `yaml:"disk_gb"`
}

// Image maps an image customers boot from to a Glance image, by name.
type Image struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	Glance      string `yaml:"glance"`
}

// Region maps a region customers choose to an OpenStack region and its
// networks.
type Region struct {
	Name            string `yaml:"name"`
	Description     string `yaml:"description"`
	OpenStackRegion string `yaml:"openstack_region"`
	Network         string `yaml:"network"`
	ExternalNetwork string `yaml:"external_network"`
}

// EnvFile names the variable that gives the file when -config does not.
const EnvFile = "CLOUDSERVERS_CONFIG"

// Load reads and checks the file at path. The error lists every problem.
func Load(path string) (File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("config: %w", err)
	}
	f, err := Parse(b)
	if err != nil {
		return f, fmt.Errorf("config %s: %w", path, err)
	}
	return f, nil
}

// Parse decodes and checks a file's bytes.
func Parse(b []byte) (File, error) {
	var f File
	var problems []string
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return f, err // not YAML at all: one problem, with its line
		}
		// Unknown keys and wrong types, each with its line; the rest of
		// the file is decoded and checked too.
		problems = append(problems, te.Errors...)
	}
	problems = append(problems, f.check()...)
	if len(problems) > 0 {
		return f, fmt.Errorf("%d problems:\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
	return f, nil
}

// check returns the impossible values.
func (f File) check() []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	for _, b := range f.Kafka.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			add("kafka.brokers: %q is not host:port", b)
		}
	}
	if f.ZooKeeper != "" {
		servers, _, _ := strings.Cut(f.ZooKeeper, "/")
		for _, s := range strings.Split(servers, ",") {
			if _, _, err := net.SplitHostPort(s); err != nil {
				add("zookeeper: %q is not host:port", s)
			}
		}
	}
	if a := f.Temporal.Address; a != "" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			add("temporal.address: %q is not host:port", a)
		}
	}
	rf := 0
	if v := f.Topics.ReplicationFactor; v != nil {
		rf = *v
		if rf < 1 {
			add("topics.replication_factor: %d, must be at least 1", rf)
		}
	}
	if v := f.Topics.MinInsyncReplicas; v != nil && (*v < 0 || (rf > 0 && *v > rf)) {
		add("topics.min_insync_replicas: %d, must be between 0 and the replication factor", *v)
	}
	if v := f.Topics.RequestPartitions; v != nil && *v < 1 {
		add("topics.request_partitions: %d, must be at least 1", *v)
	}
	for _, q := range []struct {
		name string
		v    *int
	}{{"quotas.servers", f.Quotas.Servers}, {"quotas.vcpus", f.Quotas.VCPUs}, {"quotas.ssh_keys", f.Quotas.SSHKeys}, {"rate_limit.burst", f.RateLimit.Burst}} {
		if q.v != nil && *q.v < 1 {
			add("%s: %d, must be at least 1", q.name, *q.v)
		}
	}
	if v := f.RateLimit.PerSecond; v != nil && *v <= 0 {
		add("rate_limit.per_second: %g, must be more than 0", *v)
	}
	c := f.Catalog
	listed := len(c.Sizes) + len(c.Images) + len(c.Regions)
	if listed > 0 && (len(c.Sizes) == 0 || len(c.Images) == 0 || len(c.Regions) == 0) {
		add("catalog: lists sizes, images and regions, or none of them (it replaces the built-in catalog)")
	}
	seen := map[string]bool{}
	dup := func(kind, name string) {
		if seen[kind+"/"+name] {
			add("catalog.%s: %q is listed twice", kind, name)
		}
		seen[kind+"/"+name] = true
	}
	for i, s := range c.Sizes {
		at := fmt.Sprintf("catalog.sizes[%d]", i)
		if s.Name == "" || s.Flavor == "" {
			add("%s: needs a name and a flavor", at)
		}
		if s.VCPUs < 1 || s.MemoryMB < 1 || s.DiskGB < 0 {
			add("%s (%s): vcpus and memory_mb must be at least 1, disk_gb at least 0", at, s.Name)
		}
		dup("sizes", s.Name)
	}
	for i, im := range c.Images {
		if im.Name == "" || im.Glance == "" {
			add("catalog.images[%d]: needs a name and a glance image name", i)
		}
		dup("images", im.Name)
	}
	for i, r := range c.Regions {
		if r.Name == "" || r.OpenStackRegion == "" || r.Network == "" || r.ExternalNetwork == "" {
			add("catalog.regions[%d]: needs a name, an openstack_region, a network and an external_network", i)
		}
		dup("regions", r.Name)
	}
	return p
}

// CatalogOr is the file's catalog, or def when the file lists none.
func (f File) CatalogOr(def cloudservers.Catalog) cloudservers.Catalog {
	c := f.Catalog
	if len(c.Sizes) == 0 {
		return def
	}
	var out cloudservers.Catalog
	for _, s := range c.Sizes {
		out.Sizes = append(out.Sizes, cloudservers.Size{Name: s.Name, Flavor: s.Flavor, VCPUs: s.VCPUs, MemoryMB: s.MemoryMB, DiskGB: s.DiskGB})
	}
	for _, im := range c.Images {
		out.Images = append(out.Images, cloudservers.Image{Name: im.Name, Description: im.Description, GlanceName: im.Glance})
	}
	for _, r := range c.Regions {
		out.Regions = append(out.Regions, cloudservers.Region{Name: r.Name, Description: r.Description,
			OpenStackRegion: r.OpenStackRegion, Network: r.Network, ExternalNetwork: r.ExternalNetwork})
	}
	return out
}
