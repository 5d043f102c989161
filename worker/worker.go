// Package worker hosts the workflows and activities on the task queue.
// Every saga in the workflows registry is registered here; nothing else
// needs to change when a saga is added.
package worker

import (
	"context"

	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/cloudservers/cloudservers/activities"
	"github.com/cloudservers/cloudservers/workflows"
)

// Register registers the lifecycle workflow, the reap workflow, every saga
// of the registry and the activities with w.
func Register(w sdkworker.Registry, a *activities.Activities) {
	workflows.Register(w)
	w.RegisterActivity(a)
}

// Run polls taskQueue (workflows.TaskQueue in production; tests use their
// own) until ctx ends.
func Run(ctx context.Context, c client.Client, taskQueue string, a *activities.Activities) error {
	w := sdkworker.New(c, taskQueue, sdkworker.Options{})
	Register(w, a)
	if err := w.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	w.Stop()
	return nil
}
