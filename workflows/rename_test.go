package workflows_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/workflows"
	"github.com/cloudservers/cloudservers/workflows/sagatest"
)

var renameSaga = sagatest.Saga{
	Workflow: workflows.RenameServerWorkflow,
	Input:    input(request("op-rename", cloudservers.OpRename, cloudservers.RenameParams{Name: "web-2"}), activeServer()),
	Steps:    nil, // OpenStack is not asked: Nova's name is the system's mark
}

func TestRenameSaga(t *testing.T) {
	t.Run("succeeds without calling OpenStack", renameSaga.RunSuccess)
	t.Run("renames only the server's record", func(t *testing.T) {
		o := renameSaga.Run(t, nil)
		require.NoError(t, o.Err)
		want := activeServer()
		want.Name = "web-2"
		assert.Equal(t, want, o.Result.Server)
		assert.Empty(t, o.Cloud.OpenStackCalls())
	})
}
