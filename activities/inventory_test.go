package activities_test

import (
	"context"
	"testing"
	"time"

	"github.com/cloudservers/cloudservers/activities"
	"github.com/cloudservers/cloudservers/internal/openstacksim"
)

// ListMarkedResources finds what the sagas make (an instance, a port and a
// floating IP marked cs-<server id>) and nothing else: not a port someone
// named cs-web by hand, not a resource younger than the cut-off.
func TestListMarkedResources(t *testing.T) {
	a, sim := newActivities(t, openstacksim.Config{})
	ctx := context.Background()
	const server = "0190a5a0-0000-7000-8000-0000000000c1"
	port, err := a.CreatePort(ctx, activities.CreatePortInput{ServerID: server, CustomerID: "c1", Region: "region-one"})
	if err != nil {
		t.Fatal(err)
	}
	inst, err := a.CreateNovaServer(ctx, activities.CreateNovaServerInput{ServerID: server, CustomerID: "c1", Size: "s-1vcpu-64mb", Image: "tiny", PortID: port.ID})
	if err != nil {
		t.Fatal(err)
	}
	fip, err := a.AllocateFloatingIP(ctx, activities.AllocateFloatingIPInput{ServerID: server, Region: "region-one"})
	if err != nil {
		t.Fatal(err)
	}
	// Not ours: the mark names no server ID.
	if _, err := a.CreatePort(ctx, activities.CreatePortInput{ServerID: "web", CustomerID: "c1", Region: "region-one"}); err != nil {
		t.Fatal(err)
	}
	if n := len(sim.Inventory().Ports); n < 2 {
		t.Fatalf("%d ports in the simulator", n)
	}

	got, err := a.ListMarkedResources(ctx, activities.ListMarkedInput{CreatedBefore: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, r := range got {
		if r.ServerID != server || r.Name != "cs-"+server || r.CreatedAt.IsZero() {
			t.Errorf("marked resource %+v", r)
		}
		kinds = append(kinds, r.Kind+" "+r.ID)
	}
	want := []string{activities.KindNovaServer + " " + inst.InstanceID, activities.KindPort + " " + port.ID, activities.KindFloatingIP + " " + fip.ID}
	if len(kinds) != 3 || kinds[0] != want[0] || kinds[1] != want[1] || kinds[2] != want[2] {
		t.Fatalf("listed %v, want %v", kinds, want)
	}

	// The grace period: nothing created after the cut-off.
	got, err = a.ListMarkedResources(ctx, activities.ListMarkedInput{CreatedBefore: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("resources younger than the cut-off were listed: %+v", got)
	}
}
