package api_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The API reads the operations from cloudservers.Operations, domain data:
// it must build without the workflows package and without Temporal.
func TestAPIDoesNotDependOnTemporal(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "go.temporal.io/") || pkg == "github.com/cloudservers/cloudservers/workflows" ||
			strings.HasPrefix(pkg, "github.com/cloudservers/cloudservers/workflows/") {
			t.Errorf("api depends on %s", pkg)
		}
	}
}
