package workflows

import "go.temporal.io/sdk/workflow"

// CodeLevel is the level of the workflow code in this build. An execution
// started at level L (LifecycleInput.Level, OperationInput.Level) takes the
// new side of every change that levelChanges lists at L or below without
// asking workflow.GetVersion, which records a marker and upserts the
// TemporalChangeVersion search attribute: two history events per change
// per execution, which every create paid for every change ever made. An
// execution started at level 0 (before levels existed) asks GetVersion,
// and its history answers.
//
// A history recorded by a worker that did not know levels yet (a rolling
// upgrade) holds markers the new code no longer asks for; the SDK skips a
// version marker and its upsert when it replays, so it still replays.
//
// A change made after this level is a plain GetVersion in the code (through
// changed, with no entry here) until a new level lists it.
const CodeLevel = 1

// levelChanges maps a change ID to the level from which an execution always
// takes its new side.
var levelChanges = map[string]int{
	"wait-for-cancelled-activities": 1,
	"provisional-build-errors":      1,
	"failure-waits-for-build-error": 1,
	"error-update-waits-for-fault":  1,
	"fault-read-after-grace":        1,
	"direct-notifications":          1,
}

type levelKey struct{}

func withLevel(ctx workflow.Context, level int) workflow.Context {
	return workflow.WithValue(ctx, levelKey{}, level)
}

// changed reports whether the execution takes the new side of a change
// (version 1 of changeID): at once when its level includes the change, else
// as workflow.GetVersion answers.
func changed(ctx workflow.Context, changeID string) bool {
	if since, ok := levelChanges[changeID]; ok {
		if level, _ := ctx.Value(levelKey{}).(int); level >= since {
			return true
		}
	}
	return workflow.GetVersion(ctx, changeID, workflow.DefaultVersion, 1) == 1
}
