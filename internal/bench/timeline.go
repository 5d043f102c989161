package bench

import (
	"context"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"

	"github.com/cloudservers/cloudservers/workflows"
)

// taskWait is the time a workflow's tasks spent in Temporal's task queues
// before a worker started them: for every workflow task and activity,
// started minus scheduled. Beside the raw workflow's, it says whether a
// burst queues for the worker (or for matching) rather than for the work.
func taskWait(events []*historypb.HistoryEvent) time.Duration {
	scheduled := map[int64]time.Time{}
	var wait time.Duration
	for _, ev := range events {
		at := ev.GetEventTime().AsTime()
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			scheduled[ev.GetEventId()] = at
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED:
			if s, ok := scheduled[ev.GetWorkflowTaskStartedEventAttributes().GetScheduledEventId()]; ok {
				wait += at.Sub(s)
			}
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			if s, ok := scheduled[ev.GetActivityTaskStartedEventAttributes().GetScheduledEventId()]; ok {
				wait += at.Sub(s)
			}
		}
	}
	return wait
}

// createStages are where one create's time went, from the histories of its
// server's lifecycle and its operation, and the benchmark's own clock (the
// POST, the succeeded event on the stream; one machine, one clock).
type createStages struct {
	toTemporal  time.Duration // POST sent → the request signalled to server/<id> (API, Kafka, bridge)
	toOperation time.Duration // → op/<id> started (the lifecycle's workflow task, the child's start)
	toNova      time.Duration // → CreateNovaServer completed (CreatePort, CreateNovaServer)
	toEvent     time.Duration // → the awaited notification signalled (Nova's boot, notification, router)
	toDone      time.Duration // → op/<id> completed (the floating IP's activities)
	toSeen      time.Duration // → succeeded on the event stream (state publication, read model, SSE)
	taskWait    time.Duration // summed task-queue waits of both workflows (taskWait)
}

// stagesOf reads one create's stages; ok is false when its histories lack
// a landmark (the lifecycle continued as new, say).
func stagesOf(ctx context.Context, tc client.Client, o *op) (createStages, bool, error) {
	var st createStages
	life, err := history(ctx, tc, workflows.ServerWorkflowID(o.serverID))
	if err != nil {
		return st, false, err
	}
	opEvents, err := history(ctx, tc, workflows.OperationWorkflowID(o.id))
	if err != nil {
		return st, false, err
	}
	var request, started, nova, event, done time.Time
	for _, ev := range life {
		if ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED && request.IsZero() {
			request = ev.GetEventTime().AsTime()
		}
	}
	activityType := map[int64]string{}
	for _, ev := range opEvents {
		at := ev.GetEventTime().AsTime()
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
			started = at
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			activityType[ev.GetEventId()] = ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName()
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			if activityType[ev.GetActivityTaskCompletedEventAttributes().GetScheduledEventId()] == "CreateNovaServer" {
				nova = at
			}
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
			if event.IsZero() {
				event = at
			}
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
			done = at
		}
	}
	if request.IsZero() || started.IsZero() || nova.IsZero() || event.IsZero() || done.IsZero() || o.ended.IsZero() {
		return st, false, nil
	}
	st = createStages{
		toTemporal: request.Sub(o.posted), toOperation: started.Sub(request), toNova: nova.Sub(started),
		toEvent: event.Sub(nova), toDone: done.Sub(event), toSeen: o.ended.Sub(done),
		taskWait: taskWait(life) + taskWait(opEvents),
	}
	return st, true, nil
}

// stageRows adds where the sampled creates' time went (p50 of each stage),
// and their task-queue waits beside the raw workflows'.
func (r *runner) stageRows(ctx context.Context, ops []*op, rawIDs []string) {
	var stages []createStages
	for _, o := range ops {
		if len(stages) == r.cfg.HistorySample {
			break
		}
		st, ok, err := stagesOf(ctx, r.tc, o)
		if err != nil {
			r.rep.AddError("stages of create %s: %v", o.id, err)
			continue
		}
		if ok {
			stages = append(stages, st)
		}
	}
	var rawWaits []time.Duration
	for _, id := range rawIDs[:min(len(rawIDs), r.cfg.HistorySample)] {
		evs, err := history(ctx, r.tc, id)
		if err != nil {
			r.rep.AddError("raw history: %v", err)
			continue
		}
		rawWaits = append(rawWaits, taskWait(evs))
	}
	if len(stages) == 0 {
		r.rep.AddError("stages: no sampled create had every landmark")
		return
	}
	p50 := func(get func(createStages) time.Duration) float64 {
		ds := make([]time.Duration, len(stages))
		for i, s := range stages {
			ds[i] = get(s)
		}
		return Percentile(Millis(ds), 50)
	}
	note := fmt.Sprintf("p50 of %d sampled creates", len(stages))
	r.rep.Add(
		Row{Section: secStages, Measure: "POST → request in server/<id> (API, Kafka, bridge)", Unit: "ms", System: p50(func(s createStages) time.Duration { return s.toTemporal }), Note: note},
		Row{Section: secStages, Measure: "→ op/<id> started (lifecycle)", Unit: "ms", System: p50(func(s createStages) time.Duration { return s.toOperation })},
		Row{Section: secStages, Measure: "→ CreateNovaServer completed", Unit: "ms", System: p50(func(s createStages) time.Duration { return s.toNova })},
		Row{Section: secStages, Measure: "→ awaited notification signalled (boot " + r.cfg.BootTime.String() + ")", Unit: "ms", System: p50(func(s createStages) time.Duration { return s.toEvent })},
		Row{Section: secStages, Measure: "→ op/<id> completed (floating IP)", Unit: "ms", System: p50(func(s createStages) time.Duration { return s.toDone })},
		Row{Section: secStages, Measure: "→ succeeded on the event stream", Unit: "ms", System: p50(func(s createStages) time.Duration { return s.toSeen })},
	)
	if len(rawWaits) > 0 {
		r.rep.Add(Row{Section: secStages, Measure: "task-queue wait per create (workflow tasks and activities, scheduled → started)", Unit: "ms",
			System: p50(func(s createStages) time.Duration { return s.taskWait }), Baseline: Float(Percentile(Millis(rawWaits), 50))})
	}
}
