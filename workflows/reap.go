package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/cloudservers/cloudservers/activities"
)

// The reap workflow removes what sagas leaked: OpenStack resources that
// carry this system's mark but belong to no live server. The reaper (a
// singleton of the bridge processes, see bridge.Reaper) starts one every
// interval as reap/<time>, with the search attribute Operation = "reap", so
// that support can see what it found and what it removed:
//
//  1. ListMarkedPage        one page of instances, ports or floating IPs
//     marked cs-<server id> and older than the grace period
//  2. CheckServersLive      which of that page's servers are live, answered
//     by the reaper from the servers topic (a record whose status is not
//     "deleted"); it runs on the reaper's own task queue
//     (1 and 2 repeat, page by page, kind by kind; more orphans than
//     MaxOrphans stop the reap before anything is removed)
//  3. ReleaseFloatingIP, DeleteNovaServer, DeletePort for every resource of
//     a server that is not live, in that order
//
// Every removal is idempotent ("already gone" is done), so two reaps
// overlapping (a zombie reaper) do no harm.

// ReapWorkflowID is the ID of the reap started at a time.
func ReapWorkflowID(at time.Time) string {
	return "reap/" + at.UTC().Format("2006-01-02T15:04:05.000Z")
}

// CheckServersLiveActivity is the activity the reaper hosts on its
// liveness task queue: func(ctx, serverIDs []string) ([]string, error)
// returns the IDs of the live servers among serverIDs.
const CheckServersLiveActivity = "CheckServersLive"

// DefaultMaxOrphans bounds what one reap removes unless ReapInput says
// otherwise.
const DefaultMaxOrphans = 100

// ReapInput configures one reap.
type ReapInput struct {
	// GracePeriod spares resources younger than it: a saga in progress
	// may have created them a moment ago.
	GracePeriod time.Duration `json:"grace_period"`
	// LivenessTaskQueue is where the reaper answers CheckServersLive.
	LivenessTaskQueue string `json:"liveness_task_queue"`
	// MaxOrphans is a safety limit: a reap that finds more orphans than
	// this removes nothing and fails (a read model that lost its servers
	// must not wipe a cloud). Zero means DefaultMaxOrphans.
	MaxOrphans int `json:"max_orphans,omitempty"`
	// DryRun finds the orphans and removes nothing.
	DryRun bool `json:"dry_run,omitempty"`
	// PageSize is how many resources one listing activity asks OpenStack
	// for; zero means activities.DefaultMarkedPageSize.
	PageSize int `json:"page_size,omitempty"`
}

// ReapResult is what a reap found and did.
type ReapResult struct {
	// Examined counts the marked resources older than the grace period.
	Examined int `json:"examined"`
	// Live counts those of them that belong to a live server.
	Live int `json:"live"`
	// Orphans are the others: what the reap removes.
	Orphans []activities.MarkedResource `json:"orphans"`
	// Removed and Failed describe each orphan's removal.
	Removed []string `json:"removed"`
	Failed  []string `json:"failed,omitempty"`
}

var reapOptions = workflow.ActivityOptions{
	StartToCloseTimeout: time.Minute,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval:        time.Second,
		BackoffCoefficient:     2,
		MaximumInterval:        30 * time.Second,
		MaximumAttempts:        5,
		NonRetryableErrorTypes: activities.NonRetryableErrorTypes,
	},
}

// ReapWorkflow finds the resources of servers that are not live and removes
// them. A removal that fails is reported in the result (and removed by a
// later reap); the workflow fails only when it cannot find out what to
// remove, or when there is more than MaxOrphans.
func ReapWorkflow(ctx workflow.Context, in ReapInput) (ReapResult, error) {
	var a *activities.Activities
	res := ReapResult{Orphans: []activities.MarkedResource{}, Removed: []string{}}
	ctx = workflow.WithActivityOptions(ctx, reapOptions)
	log := workflow.GetLogger(ctx)
	if in.LivenessTaskQueue == "" {
		return res, temporal.NewNonRetryableApplicationError("reap: no liveness task queue", activities.ErrInvalidRequest, nil)
	}

	before := workflow.Now(ctx).Add(-in.GracePeriod)
	lctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           in.LivenessTaskQueue,
		StartToCloseTimeout: time.Minute,
		// No reaper polls while leadership moves: wait for the next one.
		ScheduleToCloseTimeout: time.Hour,
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second},
	})
	limit := in.MaxOrphans
	if limit <= 0 {
		limit = DefaultMaxOrphans
	}
	tooMany := func() error {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"reap: %d orphaned resources exceed the limit of %d; nothing removed (check the servers topic, then reap with a dry run or a higher limit)",
			len(res.Orphans), limit), "TooManyOrphans", nil)
	}
	if workflow.GetVersion(ctx, "paged-listing", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		// Reaps started before the listing was paged.
		if err := collectUnpaged(ctx, lctx, before, &res); err != nil {
			return res, err
		}
		if len(res.Orphans) > limit {
			return res, tooMany()
		}
	} else {
		// Page by page, each kind in turn: every result stays small
		// however large the cloud, and the liveness of each page's
		// servers is asked once.
		pageSize := in.PageSize
		if pageSize <= 0 {
			pageSize = activities.DefaultMarkedPageSize
		}
		liveness := map[string]bool{}
		for _, kind := range []string{activities.KindNovaServer, activities.KindPort, activities.KindFloatingIP} {
			for marker := ""; ; {
				var page activities.MarkedPage
				if err := workflow.ExecuteActivity(ctx, a.ListMarkedPage, activities.ListMarkedPageInput{Kind: kind, CreatedBefore: before, Marker: marker, Limit: pageSize}).Get(ctx, &page); err != nil {
					return res, err
				}
				if err := sortByLiveness(lctx, page.Resources, liveness, &res); err != nil {
					return res, err
				}
				if len(res.Orphans) > limit {
					// Stop here: the rest of the scan would not change
					// the verdict.
					return res, tooMany()
				}
				if page.Next == "" {
					break
				}
				marker = page.Next
			}
		}
	}
	if in.DryRun || len(res.Orphans) == 0 {
		return res, nil
	}

	// Floating IPs first (they hold scarce public addresses), then the
	// instances, then the ports the instances were using. Each kind goes
	// in parallel.
	for _, kind := range []string{activities.KindFloatingIP, activities.KindNovaServer, activities.KindPort} {
		type pending struct {
			r activities.MarkedResource
			f workflow.Future
		}
		var fs []pending
		for _, r := range res.Orphans {
			if r.Kind != kind {
				continue
			}
			var act any
			switch kind {
			case activities.KindFloatingIP:
				act = a.ReleaseFloatingIP
			case activities.KindNovaServer:
				act = a.DeleteNovaServer
			case activities.KindPort:
				act = a.DeletePort
			}
			fs = append(fs, pending{r, workflow.ExecuteActivity(ctx, act, r.ID)})
		}
		for _, p := range fs {
			what := fmt.Sprintf("%s %s (%s, server %s)", p.r.Kind, p.r.ID, p.r.Name, p.r.ServerID)
			if err := p.f.Get(ctx, nil); err != nil {
				var ae *temporal.ApplicationError
				msg := err.Error()
				if errors.As(err, &ae) {
					msg = ae.Error()
				}
				res.Failed = append(res.Failed, what+": "+msg)
				log.Warn("reap: removal failed", "resource", what, "error", err)
				continue
			}
			res.Removed = append(res.Removed, what)
		}
	}
	log.Info("reap done", "examined", res.Examined, "live", res.Live, "removed", len(res.Removed), "failed", len(res.Failed))
	return res, nil
}

// sortByLiveness asks the reaper which of the resources' servers are live
// (those not asked before) and counts each resource as live or orphaned.
func sortByLiveness(lctx workflow.Context, rs []activities.MarkedResource, liveness map[string]bool, res *ReapResult) error {
	res.Examined += len(rs)
	var ask []string
	for _, r := range rs {
		if _, known := liveness[r.ServerID]; !known && !slices.Contains(ask, r.ServerID) {
			ask = append(ask, r.ServerID)
		}
	}
	if len(ask) > 0 {
		slices.Sort(ask)
		var live []string
		if err := workflow.ExecuteActivity(lctx, CheckServersLiveActivity, ask).Get(lctx, &live); err != nil {
			return err
		}
		for _, id := range ask {
			liveness[id] = slices.Contains(live, id)
		}
	}
	for _, r := range rs {
		if liveness[r.ServerID] {
			res.Live++
		} else {
			res.Orphans = append(res.Orphans, r)
		}
	}
	return nil
}

// collectUnpaged is the listing of the reaps started before it was paged:
// everything in one activity result, then one liveness check.
func collectUnpaged(ctx, lctx workflow.Context, before time.Time, res *ReapResult) error {
	var a *activities.Activities
	var marked []activities.MarkedResource
	if err := workflow.ExecuteActivity(ctx, a.ListMarkedResources, activities.ListMarkedInput{CreatedBefore: before}).Get(ctx, &marked); err != nil {
		return err
	}
	if len(marked) == 0 {
		return nil
	}
	return sortByLiveness(lctx, marked, map[string]bool{}, res)
}
