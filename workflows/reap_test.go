package workflows_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

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
	pages    int
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
	// OpenStack's limit/marker paging over the inventory of each kind.
	r.env.OnActivity(a.ListMarkedPage, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.ListMarkedPageInput) (activities.MarkedPage, error) {
			r.mu.Lock()
			r.listedAt = in.CreatedBefore
			r.pages++
			r.mu.Unlock()
			var ofKind []activities.MarkedResource
			for _, m := range marked {
				if m.Kind == in.Kind {
					ofKind = append(ofKind, m)
				}
			}
			if in.Marker != "" {
				i := slices.IndexFunc(ofKind, func(m activities.MarkedResource) bool { return m.ID == in.Marker })
				require.GreaterOrEqual(t, i, 0, "marker %s", in.Marker)
				ofKind = ofKind[i+1:]
			}
			page := activities.MarkedPage{Resources: []activities.MarkedResource{}}
			for _, m := range ofKind {
				if len(page.Resources) == in.Limit {
					break
				}
				page.Resources = append(page.Resources, m)
			}
			page.Listed = len(page.Resources)
			if page.Listed == in.Limit {
				page.Next = page.Resources[page.Listed-1].ID
			}
			return page, nil
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

// mixedInventory holds each kind of resource of a live server, of a server
// that is gone from the servers topic, and (a port) of a deleted server.
func mixedInventory() []activities.MarkedResource {
	return []activities.MarkedResource{
		marked(activities.KindNovaServer, "inst-live", liveServer),
		marked(activities.KindNovaServer, reapInstance, deadServer),
		marked(activities.KindPort, "port-live", liveServer),
		marked(activities.KindPort, "port-dead", deadServer),
		marked(activities.KindPort, "port-deleted", deletedSrv),
		marked(activities.KindFloatingIP, "fip-dead", deadServer),
		marked(activities.KindFloatingIP, "fip-live", liveServer),
	}
}

func TestReapRemovesOnlyTheResourcesOfServersThatAreNotLive(t *testing.T) {
	inv := mixedInventory()
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
	require.Len(t, r.calls, 6, "calls %v", r.calls)
	assert.Equal(t, []string{
		"CheckServersLive " + liveServer + "," + deadServer,
		"CheckServersLive " + deletedSrv,
		"ReleaseFloatingIP fip-dead",
		"DeleteNovaServer " + reapInstance,
	}, r.calls[:4], "each page's new servers checked once; then floating IPs, instances, ports; nothing of the live server")
	assert.ElementsMatch(t, []string{"DeletePort port-dead", "DeletePort port-deleted"}, r.calls[4:], "the ports last")
	assert.Len(t, res.Removed, 4)
	assert.Empty(t, res.Failed)
}

// A cloud larger than a page: the reap lists it page by page, asks about
// each server once, and removes every orphan of every page.
func TestReapPageByPage(t *testing.T) {
	inv := mixedInventory()
	r := newReapEnv(t, inv, []string{liveServer})
	res, err := r.run(t, workflows.ReapInput{GracePeriod: reapGrace, LivenessTaskQueue: livenessTQ, PageSize: 1})
	require.NoError(t, err)
	// Pages of one: 2 instances + 3 ports + 2 floating IPs, each kind with
	// one more (empty) page after a full one.
	assert.Equal(t, 10, r.pages)
	assert.Equal(t, 7, res.Examined)
	assert.Equal(t, 3, res.Live)
	assert.Len(t, res.Removed, 4)
	var checks []string
	for _, c := range r.calls {
		if strings.HasPrefix(c, "CheckServersLive") {
			checks = append(checks, c)
		}
	}
	assert.Equal(t, []string{"CheckServersLive " + liveServer, "CheckServersLive " + deadServer, "CheckServersLive " + deletedSrv}, checks, "each server asked about once")
}

// A reap stops at the first page that takes it past the limit, before it
// removes anything.
func TestReapStopsListingPastTheLimit(t *testing.T) {
	var inv []activities.MarkedResource
	for _, id := range []string{"p1", "p2", "p3", "p4", "p5"} {
		inv = append(inv, marked(activities.KindPort, id, deadServer))
	}
	r := newReapEnv(t, inv, nil)
	_, err := r.run(t, workflows.ReapInput{GracePeriod: reapGrace, LivenessTaskQueue: livenessTQ, MaxOrphans: 2, PageSize: 1})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "3 orphaned resources exceed the limit of 2")
	assert.Equal(t, 1+3, r.pages, "the instances' empty page, then three ports")
	assert.Equal(t, []string{"CheckServersLive " + deadServer}, r.calls, "nothing removed")
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

// A reap started before the listing was paged replays on the old path: one
// listing of everything, one liveness check.
func TestReapStartedBeforePagingKeepsItsPath(t *testing.T) {
	inv := []activities.MarkedResource{
		marked(activities.KindNovaServer, reapInstance, deadServer),
		marked(activities.KindPort, "port-live", liveServer),
		marked(activities.KindPort, "port-dead", deadServer),
	}
	r := newReapEnv(t, nil, []string{liveServer})
	var a *activities.Activities
	r.env.OnGetVersion("paged-listing", workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	r.env.OnActivity(a.ListMarkedResources, mock.Anything, mock.Anything).Return(inv, nil)
	res, err := r.run(t, workflows.ReapInput{GracePeriod: reapGrace, LivenessTaskQueue: livenessTQ})
	require.NoError(t, err)
	assert.Zero(t, r.pages, "no paged listing")
	assert.Equal(t, 3, res.Examined)
	assert.Equal(t, 1, res.Live)
	require.Len(t, r.calls, 3, "calls %v", r.calls)
	assert.Equal(t, "CheckServersLive "+liveServer+","+deadServer, r.calls[0])
	assert.Equal(t, []string{"DeleteNovaServer " + reapInstance, "DeletePort port-dead"}, r.calls[1:])
}
