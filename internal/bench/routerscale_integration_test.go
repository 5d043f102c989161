//go:build integration

package bench

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudservers/cloudservers/internal/devstack"
)

// TestRouterScale runs RouterScale on the test stack and prints its table
// (and JSON with -v), checking that every one of the system's own
// notifications that a saga waits for was signalled, once, whatever the process count. The
// targets (per process >= 0.8x the bare consumer, 3 processes >= 2.4x one,
// 0 Temporal calls per 1,000 foreign) are reported, not asserted: the
// figures depend on the machine. CLOUDSERVERS_BENCH_NOTIFICATIONS sets the
// topic's size (default 3,000 here; make bench's report uses 30,000).
//
//	scripts/test-stack.sh go test -tags integration -count=1 -v -run TestRouterScale ./internal/bench/
func TestRouterScale(t *testing.T) {
	ends := devstack.TestEndpoints(t)
	// A test checks that each notification is handled right; the figures
	// come from make bench (30,000): a few thousand keep make test short.
	n, _ := strconv.Atoi(os.Getenv("CLOUDSERVERS_BENCH_NOTIFICATIONS"))
	if n == 0 {
		n = 3000
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := RouterScale(ctx, RouterScaleConfig{Brokers: ends.Kafka, Notifications: n})
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	res.WriteTable(&table)
	t.Logf("\n%s", table.String())
	j, _ := json.Marshal(res)
	t.Logf("json: %s", j)
	for _, row := range res.Rows {
		if row.OwnSignals != int64(row.AwaitedOwn) {
			t.Errorf("%d processes: %d signals to the system's operations, want %d (one per notification a saga waits for; the chatter costs none)", row.Processes, row.OwnSignals, row.AwaitedOwn)
		}
		if row.ForeignSignals != 0 {
			t.Errorf("%d processes: %d signals to servers that are not the system's", row.Processes, row.ForeignSignals)
		}
		meets := func(ok bool) string {
			if ok {
				return "met"
			}
			return "NOT met"
		}
		t.Logf("%d processes: per process %.2fx the bare consumer (target 0.8: %s); %.1f Temporal calls per 1,000 foreign (target 0: %s)",
			row.Processes, row.PerProcessVsBare, meets(row.PerProcessVsBare >= 0.8), row.TemporalCallsPer1000Foreign, meets(row.TemporalCallsPer1000Foreign == 0))
		if row.Processes == 3 {
			t.Logf("3 processes: %.2fx one (target 2.4: %s)", row.VsOneProcess, meets(row.VsOneProcess >= 2.4))
		}
	}
}
