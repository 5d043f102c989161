package workflows_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/workflows"
)

func TestRouted(t *testing.T) {
	for _, tc := range []struct {
		event, state string
		want         bool
	}{
		{"instance.create.end", "active", true},
		{"compute_task.build_instances.error", "error", true},
		{"instance.delete.end", "deleted", true},
		{"instance.update", "error", true}, // ends any wait
		{"instance.update", "active", false},
		{"instance.update", "building", false},
		{"instance.create.start", "building", false},
		{"instance.shutdown.end", "active", false},
		{"instance.exists", "active", false},
		{"scheduler.select_destinations.end", "", false},
	} {
		assert.Equal(t, tc.want, workflows.Routed(tc.event, tc.state), "%s %s", tc.event, tc.state)
	}
	for _, d := range workflows.Registry() {
		if d.Operation == cloudservers.OpRename {
			assert.Empty(t, d.Awaits, "a rename asks nothing of Nova")
			continue
		}
		assert.NotEmpty(t, d.Awaits, "%s waits for Nova", d.Operation)
	}
}
