package bridge

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Both consumers' counters register in one registry (as a bridge does)
// and report what their Stats counted.
func TestStatsMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	var requests, router Stats
	RegisterStats(reg, "requests", &requests, []float64{1})
	RegisterStats(reg, "router", &router, []float64{1})
	requests.Consumed.Add(2)
	requests.Delivered.Add(1)
	requests.DeadLetters.Add(1)
	router.Consumed.Add(5)
	router.Decoded.Add(2)
	router.Skipped.Add(4)
	router.Delivered.Add(1)
	want := `
# HELP cloudservers_bridge_messages_total Messages a consumer of this process handled, by consumer (requests, router) and outcome: consumed (read), decoded (notifications that needed decoding), delivered (handed to Temporal: requests started or signalled, notifications routed to the saga waiting for them), duplicates, skipped (another tenant's, or no saga waits for it), dead_lettered.
# TYPE cloudservers_bridge_messages_total counter
cloudservers_bridge_messages_total{consumer="requests",outcome="consumed"} 2
cloudservers_bridge_messages_total{consumer="requests",outcome="dead_lettered"} 1
cloudservers_bridge_messages_total{consumer="requests",outcome="decoded"} 0
cloudservers_bridge_messages_total{consumer="requests",outcome="delivered"} 1
cloudservers_bridge_messages_total{consumer="requests",outcome="duplicates"} 0
cloudservers_bridge_messages_total{consumer="requests",outcome="skipped"} 0
cloudservers_bridge_messages_total{consumer="router",outcome="consumed"} 5
cloudservers_bridge_messages_total{consumer="router",outcome="dead_lettered"} 0
cloudservers_bridge_messages_total{consumer="router",outcome="decoded"} 2
cloudservers_bridge_messages_total{consumer="router",outcome="delivered"} 1
cloudservers_bridge_messages_total{consumer="router",outcome="duplicates"} 0
cloudservers_bridge_messages_total{consumer="router",outcome="skipped"} 4
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "cloudservers_bridge_messages_total"); err != nil {
		t.Fatal(err)
	}
}
