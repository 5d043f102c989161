package activities_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/activities"
	"github.com/cloudservers/cloudservers/internal/openstack"
	"github.com/cloudservers/cloudservers/internal/openstacksim"
)

// TestCheckCatalog: the built-in catalog matches the simulated cloud; a
// catalog with a flavor, an image and a network the cloud lacks is refused
// with all three named.
func TestCheckCatalog(t *testing.T) {
	sim := openstacksim.New(openstacksim.Config{})
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { srv.Close(); sim.Close() })
	clients, err := openstack.ConnectWith(context.Background(), sim.AuthOptions(srv.URL), gophercloud.EndpointOpts{Region: sim.Region()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := activities.New(clients, cloudservers.DefaultCatalog(), &recorder{}).CheckCatalog(ctx); err != nil {
		t.Fatalf("the built-in catalog against the simulator: %v", err)
	}
	bad := cloudservers.DefaultCatalog()
	bad.Sizes = append(bad.Sizes, cloudservers.Size{Name: "huge", Flavor: "m9.absent", VCPUs: 64, MemoryMB: 1 << 18})
	bad.Images = append(bad.Images, cloudservers.Image{Name: "debian", GlanceName: "debian-13"})
	bad.Regions[0].Network = "net-missing"
	err = activities.New(clients, bad, &recorder{}).CheckCatalog(ctx)
	if err == nil {
		t.Fatal("a catalog the cloud lacks was accepted")
	}
	for _, want := range []string{"size huge: Nova flavor m9.absent not found", "image debian: Glance image debian-13 not found", "region region-one: network net-missing not found"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "m1.tiny") || strings.Contains(err.Error(), "public") {
		t.Errorf("the error names entries the cloud has:\n%v", err)
	}
}
