//go:build integration

package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/cloudservers/cloudservers/activities"
)

// TestReapListingPages walks OpenStack's limit/marker paging the way the
// reaper does, one resource a page: each marked port the test made is
// listed exactly once, no page holds more than asked, and the walk ends;
// the instances' and floating IPs' listings page the same way. On a real
// cloud this checks Nova's and Neutron's markers, not only the simulator's.
func TestReapListingPages(t *testing.T) {
	s := startSystem(t, options{})
	ctx := context.Background()
	acts := activities.New(s.inspect, s.catalog, nil)
	mine := map[string]bool{}
	for range 3 {
		port, err := acts.CreatePort(ctx, activities.CreatePortInput{ServerID: uuid.NewString(), CustomerID: s.customer, Region: "region-one"})
		must(t, err)
		mine[port.ID] = true
		t.Cleanup(func() { _ = acts.DeletePort(context.Background(), port.ID) })
	}
	for _, kind := range []string{activities.KindNovaServer, activities.KindPort, activities.KindFloatingIP} {
		seen := map[string]int{}
		pages := 0
		for marker := ""; ; {
			page, err := acts.ListMarkedPage(ctx, activities.ListMarkedPageInput{Kind: kind, CreatedBefore: time.Now().Add(time.Hour), Marker: marker, Limit: 1})
			must(t, err)
			pages++
			if page.Listed > 1 {
				t.Fatalf("%s: a page of limit 1 listed %d", kind, page.Listed)
			}
			for _, r := range page.Resources {
				seen[r.ID]++
			}
			if page.Next == "" {
				break
			}
			if pages > 10_000 {
				t.Fatalf("%s: the paging does not end (marker %s)", kind, marker)
			}
			marker = page.Next
		}
		t.Logf("%s: %d pages, %d marked", kind, pages, len(seen))
		if kind != activities.KindPort {
			continue
		}
		for id := range mine {
			if seen[id] != 1 {
				t.Errorf("port %s listed %d times", id, seen[id])
			}
		}
		if pages < len(mine)+1 {
			t.Errorf("%d pages for at least %d ports", pages, len(mine))
		}
	}
}
