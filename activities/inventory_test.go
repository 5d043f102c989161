package activities_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

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

// ListMarkedPage walks a cloud with more resources than a page holds: every
// marked resource is listed exactly once across the pages, each page holds
// at most the limit, and an unknown kind is a clear non-retryable error.
func TestListMarkedPagePages(t *testing.T) {
	a, _ := newActivities(t, openstacksim.Config{})
	ctx := context.Background()
	want := map[string]bool{}
	for i := range 7 {
		server := fmt.Sprintf("0190a5a0-0000-7000-8000-0000000000%02d", i)
		port, err := a.CreatePort(ctx, activities.CreatePortInput{ServerID: server, CustomerID: "c1", Region: "region-one"})
		if err != nil {
			t.Fatal(err)
		}
		want[activities.KindPort+" "+port.ID] = true
		inst, err := a.CreateNovaServer(ctx, activities.CreateNovaServerInput{ServerID: server, CustomerID: "c1", Size: "s-1vcpu-64mb", Image: "tiny", PortID: port.ID})
		if err != nil {
			t.Fatal(err)
		}
		want[activities.KindNovaServer+" "+inst.InstanceID] = true
		fip, err := a.AllocateFloatingIP(ctx, activities.AllocateFloatingIPInput{ServerID: server, Region: "region-one"})
		if err != nil {
			t.Fatal(err)
		}
		want[activities.KindFloatingIP+" "+fip.ID] = true
	}
	got := map[string]bool{}
	for _, kind := range []string{activities.KindNovaServer, activities.KindPort, activities.KindFloatingIP} {
		marker, pages := "", 0
		for {
			page, err := a.ListMarkedPage(ctx, activities.ListMarkedPageInput{Kind: kind, CreatedBefore: time.Now().Add(time.Hour), Marker: marker, Limit: 3})
			if err != nil {
				t.Fatal(err)
			}
			pages++
			if page.Listed > 3 {
				t.Fatalf("%s page %d listed %d resources, limit 3", kind, pages, page.Listed)
			}
			for _, r := range page.Resources {
				key := r.Kind + " " + r.ID
				if got[key] {
					t.Errorf("%s listed twice", key)
				}
				got[key] = true
			}
			if page.Next == "" {
				break
			}
			marker = page.Next
		}
		if pages < 3 {
			t.Errorf("%s: %d pages for 7 resources, limit 3", kind, pages)
		}
	}
	for key := range want {
		if !got[key] {
			t.Errorf("%s not listed", key)
		}
	}
	if len(got) != len(want) {
		t.Errorf("listed %d, want %d", len(got), len(want))
	}

	_, err := a.ListMarkedPage(ctx, activities.ListMarkedPageInput{Kind: "volume"})
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || !ae.NonRetryable() || !strings.Contains(err.Error(), `unknown kind "volume"`) {
		t.Fatalf("unknown kind: %v", err)
	}
}
