package bench

import (
	"context"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
)

// historyCount is the size of a workflow's history: its events and the
// WorkflowExecutionSignaled ones among them.
type historyCount struct {
	Events, Signals int
}

func (h historyCount) minus(o historyCount) historyCount {
	return historyCount{h.Events - o.Events, h.Signals - o.Signals}
}

func (h historyCount) plus(o historyCount) historyCount {
	return historyCount{h.Events + o.Events, h.Signals + o.Signals}
}

// countHistory counts the events of the latest run of workflow id.
func countHistory(ctx context.Context, tc client.Client, id string) (historyCount, error) {
	events, err := history(ctx, tc, id)
	if err != nil {
		return historyCount{}, err
	}
	h := historyCount{Events: len(events)}
	for _, ev := range events {
		if ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED {
			h.Signals++
		}
	}
	return h, nil
}

// history returns every event of the latest run of workflow id.
func history(ctx context.Context, tc client.Client, id string) ([]*historypb.HistoryEvent, error) {
	var out []*historypb.HistoryEvent
	it := tc.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("history of %s: %w", id, err)
		}
		out = append(out, ev)
	}
	return out, nil
}

// meanCount is the mean of counts, as floats.
func meanCount(cs []historyCount) (events, signals float64) {
	if len(cs) == 0 {
		return 0, 0
	}
	for _, c := range cs {
		events += float64(c.Events)
		signals += float64(c.Signals)
	}
	return events / float64(len(cs)), signals / float64(len(cs))
}
