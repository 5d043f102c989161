package bridge

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/IBM/sarama"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/internal/kafka"
	"github.com/cloudservers/cloudservers/workflows"
)

// Default reaper timing.
const (
	DefaultReapInterval = 10 * time.Minute
	DefaultReapGrace    = 15 * time.Minute
)

// Reaper is the single-instance service that removes what sagas leaked:
// OpenStack instances, ports and floating IPs that carry this system's mark
// (cs-<server id>) but belong to no live server. It does nothing to
// OpenStack itself: every interval it starts a reap workflow
// (workflows.ReapWorkflow, ID reap/<time>, search attribute
// Operation = "reap") so that support sees in Temporal what was found and
// what was removed. The workflow asks the reaper which servers are live
// (CheckServersLive, on the reaper's own task queue): a server is live when
// its latest record on the servers topic (compacted, read here from the
// start) has a status other than deleted.
//
// Run it under a ZooKeeper singleton election: exactly one process reaps;
// a standby that takes over catches up on the servers topic, then reaps.
type Reaper struct {
	// Temporal starts the reap workflows and hosts CheckServersLive.
	Temporal client.Client
	// Kafka answers end offsets; Consumer (on a client of its own) reads
	// the servers topic.
	Kafka    sarama.Client
	Consumer sarama.Consumer
	// TaskQueue of the reap workflow (the worker's); default
	// workflows.TaskQueue.
	TaskQueue string
	// LivenessTaskQueue is where this process answers CheckServersLive
	// while it leads; default TaskQueue + "-reaper".
	LivenessTaskQueue string
	// Interval between reaps; default DefaultReapInterval. GracePeriod
	// spares resources younger than it; default DefaultReapGrace.
	Interval    time.Duration
	GracePeriod time.Duration
	// MaxOrphans is the reap workflow's safety limit (0: its default).
	MaxOrphans int
	// DryRun finds orphans without removing them.
	DryRun bool
	Log    *slog.Logger

	mu   sync.Mutex
	last ReapStatus
}

// ReapStatus is the last reap this process started, for the status
// endpoint.
type ReapStatus struct {
	WorkflowID string                `json:"workflow_id,omitempty"`
	Started    time.Time             `json:"started,omitzero"`
	Finished   time.Time             `json:"finished,omitzero"`
	Result     *workflows.ReapResult `json:"result,omitempty"`
	Error      string                `json:"error,omitempty"`
}

// Last returns the last reap this process started.
func (r *Reaper) Last() ReapStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

func (r *Reaper) taskQueue() string { return cmp.Or(r.TaskQueue, workflows.TaskQueue) }

// LivenessQueue is the task queue of CheckServersLive.
func (r *Reaper) LivenessQueue() string { return cmp.Or(r.LivenessTaskQueue, r.taskQueue()+"-reaper") }

// Run reads the servers topic, answers CheckServersLive, and reaps every
// interval (the first time as soon as it has caught up) until ctx ends.
func (r *Reaper) Run(ctx context.Context) error {
	log := r.Log
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	view := newServerView()
	table := &kafka.Table{Client: r.Kafka, Consumer: r.Consumer, Topics: []string{cloudservers.TopicServers}, Apply: func(msg *sarama.ConsumerMessage) { view.apply(msg, log) }, Log: log}
	tableDone := make(chan error, 1)
	go func() { tableDone <- table.Run(ctx) }()
	defer func() { cancel(); <-tableDone }()

	w := sdkworker.New(r.Temporal, r.LivenessQueue(), sdkworker.Options{})
	w.RegisterActivityWithOptions(func(ctx context.Context, ids []string) ([]string, error) {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := table.Sync(sctx); err != nil {
			return nil, fmt.Errorf("the reaper's view of %s is not up to date: %w", cloudservers.TopicServers, err)
		}
		return view.live(ids), nil
	}, activity.RegisterOptions{Name: workflows.CheckServersLiveActivity})
	if err := w.Start(); err != nil {
		return fmt.Errorf("reaper worker on %s: %w", r.LivenessQueue(), err)
	}
	defer w.Stop()

	for {
		if err := table.Sync(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("reaper cannot catch up on the servers topic; retrying", "error", err)
			if !sleep(ctx, 5*time.Second) {
				return nil
			}
			continue
		}
		break
	}
	log.Info("reaper ready", "servers_known", view.count(), "interval", cmp.Or(r.Interval, DefaultReapInterval),
		"grace", cmp.Or(r.GracePeriod, DefaultReapGrace), "liveness_task_queue", r.LivenessQueue())
	for {
		r.reap(ctx)
		if !sleep(ctx, cmp.Or(r.Interval, DefaultReapInterval)) {
			return nil
		}
	}
}

// reap runs one reap workflow and waits for it.
func (r *Reaper) reap(ctx context.Context) {
	now := time.Now()
	id := workflows.ReapWorkflowID(now)
	st := ReapStatus{WorkflowID: id, Started: now.UTC()}
	r.mu.Lock()
	r.last = st
	r.mu.Unlock()
	in := workflows.ReapInput{GracePeriod: cmp.Or(r.GracePeriod, DefaultReapGrace), LivenessTaskQueue: r.LivenessQueue(),
		MaxOrphans: r.MaxOrphans, DryRun: r.DryRun}
	run, err := r.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                r.taskQueue(),
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowExecutionTimeout: 2 * time.Hour,
		TypedSearchAttributes:    temporal.NewSearchAttributes(workflows.AttrOperation.ValueSet(string(cloudservers.OpReap))),
	}, workflows.ReapWorkflow, in)
	var res workflows.ReapResult
	if err == nil {
		err = run.Get(ctx, &res)
	}
	if ctx.Err() != nil {
		return // leadership ended; the workflow finishes on its own
	}
	st.Finished = time.Now().UTC()
	if err != nil {
		st.Error = err.Error()
		r.Log.Error("reap failed", "workflow", id, "error", err)
	} else {
		st.Result = &res
		level := slog.LevelInfo
		if len(res.Failed) > 0 {
			level = slog.LevelWarn
		}
		r.Log.Log(ctx, level, "reaped", "workflow", id, "examined", res.Examined, "live", res.Live,
			"orphans", len(res.Orphans), "removed", len(res.Removed), "failed", len(res.Failed))
	}
	r.mu.Lock()
	r.last = st
	r.mu.Unlock()
}

// serverView is the reaper's read model of the servers topic: the latest
// status of every server (a kafka.Table applies the records).
type serverView struct {
	mu     sync.Mutex
	status map[string]cloudservers.ServerStatus
}

func newServerView() *serverView {
	return &serverView{status: map[string]cloudservers.ServerStatus{}}
}

func (v *serverView) apply(msg *sarama.ConsumerMessage, log *slog.Logger) {
	if msg.Value == nil { // a tombstone: the server is gone
		v.mu.Lock()
		delete(v.status, string(msg.Key))
		v.mu.Unlock()
		return
	}
	var s cloudservers.Server
	if err := json.Unmarshal(msg.Value, &s); err != nil || s.ID == "" {
		log.Warn("servers topic: record skipped", "partition", msg.Partition, "offset", msg.Offset, "error", err)
		return
	}
	v.mu.Lock()
	v.status[s.ID] = s.Status
	v.mu.Unlock()
}

// live returns the IDs among ids whose latest record is not deleted.
func (v *serverView) live(ids []string) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := []string{}
	for _, id := range ids {
		if st, ok := v.status[id]; ok && st != cloudservers.StatusDeleted {
			out = append(out, id)
		}
	}
	return out
}

func (v *serverView) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.status)
}
