package openstack_test

import (
	"context"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"

	"github.com/cloudservers/cloudservers/internal/openstack"
	"github.com/cloudservers/cloudservers/internal/openstacksim"
)

// TestCloudsYAMLCACert: a cloud behind TLS with a private CA (the
// simulator on an HTTPS server whose certificate no system root signs) is
// refused without clouds.yaml's cacert, naming the certificate problem,
// and reached with it; verify: false reaches it too.
func TestCloudsYAMLCACert(t *testing.T) {
	sim := openstacksim.New(openstacksim.Config{})
	srv := httptest.NewTLSServer(sim.Handler())
	t.Cleanup(func() { srv.Close(); sim.Close() })
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	connect := func(extra string) error {
		t.Helper()
		path := filepath.Join(dir, "clouds.yaml")
		if err := os.WriteFile(path, []byte(sim.CloudsYAML(srv.URL)+extra), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("OS_CLIENT_CONFIG_FILE", path)
		t.Setenv("OS_CLOUD", "openstacksim")
		ctx := context.Background()
		c, err := openstack.Connect(ctx)
		if err != nil {
			return err
		}
		// Every service's calls use the same transport.
		_, err = flavors.ListDetail(c.Compute, nil).AllPages(ctx)
		return err
	}
	if err := connect(""); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without cacert: %v, want a certificate error", err)
	}
	if err := connect("    cacert: " + ca + "\n"); err != nil {
		t.Fatalf("with cacert: %v", err)
	}
	if err := connect("    verify: false\n"); err != nil {
		t.Fatalf("with verify false: %v", err)
	}
}
