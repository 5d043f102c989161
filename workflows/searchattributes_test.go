package workflows_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/cloudservers/cloudservers/internal/devstack"
	"github.com/cloudservers/cloudservers/workflows"
)

// The dev stack registers exactly the search attributes the workflows set:
// one missing makes every start that sets it fail.
func TestDevStackRegistersEverySearchAttribute(t *testing.T) {
	var names []string
	for _, k := range workflows.SearchAttributes {
		names = append(names, k.GetName())
	}
	assert.ElementsMatch(t, names, devstack.SearchAttributes)
}
