package workflows_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/cloudservers/cloudservers/activities"
	"github.com/cloudservers/cloudservers/workflows"
)

const (
	liveServer   = "0190a5a0-0000-7000-8000-000000000001"
	deadServer   = "0190a5a0-0000-7000-8000-000000000002"
	deletedSrv   = "0190a5a0-0000-7000-8000-000000000003"
	livenessTQ   = "test-reaper"
	reapGrace    = 10 * time.Minute
	reapInstance = "inst-dead"
)

// reapEnv runs ReapWorkflow with the inventory and the live servers given,
// recording the removals.
type reapEnv struct {
	env      *testsuite.TestWorkflowEnvironment
	mu       sync.Mutex
	calls    []string
	listedAt time.Time
}

func newReapEnv(t *testing.T, marked []activities.MarkedResource, live []string) *reapEnv {
	var s testsuite.WorkflowTestSuite
	r := &reapEnv{env: s.NewTestWorkflowEnvironment()}
	var a *activities.Activities
	r.env.RegisterActivity(a)
	r.env.RegisterActivityWithOptions(func(ctx context.Context, ids []string) ([]string, error) {
		assert.Equal(t, livenessTQ, activity.GetInfo(ctx).TaskQueue, "CheckServersLive runs on the reaper's queue")
		r.record("CheckServersLive " + join(ids))
		var out []string
		for _, id := range ids {
			if slices.Contains(live, id) {
				out = append(out, id)
			}
		}
		return out, nil
	}, activity.RegisterOptions{Name: workflows.CheckServersLiveActivity})
	r.env.OnActivity(a.ListMarkedResources, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.ListMarkedInput) ([]activities.MarkedResource, error) {
			r.listedAt = in.CreatedBefore
			return marked, nil
		})
	r.env.OnActivity(a.ReleaseFloatingIP, mock.Anything, mock.Anything).Return(func(_ context.Context, id string) error {
		r.record("ReleaseFloatingIP " + id)
		return nil
	})
	r.env.OnActivity(a.DeleteNovaServer, mock.Anything, mock.Anything).Return(func(_ context.Context, id string) (activities.NovaAction, error) {
		r.record("DeleteNovaServer " + id)
		return activities.NovaAction{InstanceID: id}, nil
	})
	r.env.OnActivity(a.DeletePort, mock.Anything, mock.Anything).Return(func(_ context.Context, id string) error {
		r.record("DeletePort " + id)
		if id == "port-broken" {
			return temporal.NewNonRetryableApplicationError("delete port port-broken: OpenStack answered 400", activities.ErrInvalidRequest, nil)
		}
		return nil
	})
	return r
}

func (r *reapEnv) record(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
}

func join(ss []string) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += ","
		}
		out += s
	}
	return out
}

func (r *reapEnv) run(t *testing.T, in workflows.ReapInput) (workflows.ReapResult, error) {
	t.Helper()
	r.env.ExecuteWorkflow(workflows.ReapWorkflow, in)
	require.True(t, r.env.IsWorkflowCompleted())
	var res workflows.ReapResult
	err := r.env.GetWorkflowError()
	if err == nil {
		require.NoError(t, r.env.GetWorkflowResult(&res))
	}
	return res, err
}

func marked(kind, id, server string) activities.MarkedResource {
	return activities.MarkedResource{Kind: kind, ID: id, Name: "cs-" + server, ServerID: server}
}

func TestReapRemovesOnlyTheResourcesOfServersThatAreNotLive(t *testing.T) {
	inv := []activities.MarkedResource{
		marked(activities.KindNovaServer, "inst-live", liveServer),
		marked(activities.KindNovaServer, reapInstance, deadServer),
		marked(activities.KindPort, "port-live", liveServer),
		marked(activities.KindPort, "port-dead", deadServer),
		marked(activities.KindPort, "port-deleted", deletedSrv),
		marked(activities.KindFloatingIP, "fip-dead", deadServer),
		marked(activities.KindFloatingIP, "fip-live", liveServer),
	}
	r := newReapEnv(t, inv, []string{liveServer})
	start := r.env.Now()
	res, err := r.run(t, workflows.ReapInput{GracePeriod: reapGrace, LivenessTaskQueue: livenessTQ})
	require.NoError(t, err)

	assert.True(t, start.Add(-reapGrace).Equal(r.listedAt), "only resources older than the grace period are listed")
	assert.Equal(t, 7, res.Examined)
	assert.Equal(t, 3, res.Live)
	assert.Len(t, res.Orphans, 4)
	// The resources of one kind are removed in parallel: their order is
	// free, the order of the kinds is not.
	require.Len(t, r.calls, 5, "calls %v", r.calls)
	assert.Equal(t, []string{
		"CheckServersLive " + liveServer + "," + deadServer + "," + deletedSrv,
		"ReleaseFloatingIP fip-dead",
		"DeleteNovaServer " + reapInstance,
	}, r.calls[:3], "the liveness check first; then floating IPs, instances, ports; nothing of the live server")
	assert.ElementsMatch(t, []string{"DeletePort port-dead", "DeletePort port-deleted"}, r.calls[3:], "the ports last")
	assert.Len(t, res.Removed, 4)
	assert.Empty(t, res.Failed)
}

func TestReapReportsAFailedRemovalAndGoesOn(t *testing.T) {
	inv := []activities.MarkedResource{
		marked(activities.KindPort, "port-broken", deadServer),
		marked(activities.KindPort, "port-dead", deadServer),
	}
	r := newReapEnv(t, inv, nil)
	res, err := r.run(t, workflows.ReapInput{GracePeriod: reapGrace, LivenessTaskQueue: livenessTQ})
	require.NoError(t, err)
	assert.Equal(t, []string{"port port-dead (cs-" + deadServer + ", server " + deadServer + ")"}, res.Removed)
	require.Len(t, res.Failed, 1)
	assert.Contains(t, res.Failed[0], "port-broken")
	assert.Contains(t, res.Failed[0], "OpenStack answered 400")
}

func TestReapWithNothingMarkedAsksNobody(t *testing.T) {
	r := newReapEnv(t, nil, nil)
	res, err := r.run(t, workflows.ReapInput{GracePeriod: reapGrace, LivenessTaskQueue: livenessTQ})
	require.NoError(t, err)
	assert.Zero(t, res.Examined)
	assert.Empty(t, r.calls)
}

func TestReapDryRunRemovesNothing(t *testing.T) {
	r := newReapEnv(t, []activities.MarkedResource{marked(activities.KindPort, "port-dead", deadServer)}, nil)
	res, err := r.run(t, workflows.ReapInput{GracePeriod: reapGrace, LivenessTaskQueue: livenessTQ, DryRun: true})
	require.NoError(t, err)
	assert.Len(t, res.Orphans, 1)
	assert.Equal(t, []string{"CheckServersLive " + deadServer}, r.calls)
}

func TestReapRefusesMoreOrphansThanItsLimit(t *testing.T) {
	var inv []activities.MarkedResource
	for _, id := range []string{"p1", "p2", "p3"} {
		inv = append(inv, marked(activities.KindPort, id, deadServer))
	}
	r := newReapEnv(t, inv, nil)
	_, err := r.run(t, workflows.ReapInput{GracePeriod: reapGrace, LivenessTaskQueue: livenessTQ, MaxOrphans: 2})
	require.Error(t, err)
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "%v", err)
	assert.Equal(t, "TooManyOrphans", ae.Type())
	assert.Contains(t, err.Error(), "3 orphaned resources exceed the limit of 2")
	assert.Equal(t, []string{"CheckServersLive " + deadServer}, r.calls, "nothing removed")
}

func TestReapWorkflowID(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 30, 5, 999, time.FixedZone("x", 3600))
	assert.Equal(t, "reap/2025-03-01T11:30:05.000Z", workflows.ReapWorkflowID(at))
}
