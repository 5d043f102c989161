package buckets

import (
	"testing"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/internal/zkcoord"
)

func TestPlanMovesAThirdToTheNewPartition(t *testing.T) {
	m := zkcoord.BucketMap{Version: 2, Partitions: 3, Buckets: cloudservers.DefaultBucketMap(2)}
	plan := Plan(m)
	if len(plan) != 85 {
		t.Fatalf("%d moves, want 85 (256/3 rounded down, taken from partitions 0 and 1)", len(plan))
	}
	counts := []int{128, 128, 0}
	seen := map[int]bool{}
	for _, step := range plan {
		b, to := step[0], step[1]
		if to != 2 || seen[b] {
			t.Fatalf("step %v: want each bucket once, to partition 2", step)
		}
		seen[b] = true
		counts[m.Buckets[b]]--
		counts[to]++
	}
	for p, n := range counts {
		if n < 85 || n > 86 {
			t.Fatalf("partition %d ends with %d buckets: %v", p, n, counts)
		}
	}
	// Balanced already: nothing to do.
	m.Buckets = cloudservers.DefaultBucketMap(3)
	if plan := Plan(m); len(plan) != 0 {
		t.Fatalf("balanced map: %d moves", len(plan))
	}
}
