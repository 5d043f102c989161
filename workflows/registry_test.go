package workflows_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/workflows"
)

// The operations table (domain data) and the registry (their sagas) have
// the same keys: an operation without a saga would be accepted and never
// run, a saga without an operation never asked for.
func TestRegistryCoversTheOperations(t *testing.T) {
	var ops, sagas []cloudservers.OperationType
	for _, d := range cloudservers.Operations() {
		ops = append(ops, d.Type)
	}
	for _, d := range workflows.Registry() {
		sagas = append(sagas, d.Operation)
	}
	assert.Equal(t, ops, sagas, "cloudservers.Operations and workflows.Registry list the same operations, in the same order")
}
