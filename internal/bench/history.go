package bench

import (
	"context"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
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
	var h historyCount
	it := tc.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return h, fmt.Errorf("history of %s: %w", id, err)
		}
		h.Events++
		if ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED {
			h.Signals++
		}
	}
	return h, nil
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
