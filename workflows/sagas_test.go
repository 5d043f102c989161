package workflows_test

import (
	"testing"

	"github.com/cloudservers/cloudservers/workflows/sagatest"
)

// TestSagaFailurePaths runs every saga's generated table: the happy path;
// every step failing in every way it can (-> exactly the compensations of
// the steps before ran, in reverse order); every activity failing once with
// a retryable error (-> retried, the saga succeeds, nothing undone); a
// cancellation during every wait for Nova (-> the same compensations ran).
func TestSagaFailurePaths(t *testing.T) {
	for name, s := range map[string]sagatest.Saga{
		"create":        createSaga,
		"delete":        deleteSaga,
		"reboot_soft":   rebootSaga("soft"),
		"reboot_hard":   rebootSaga("hard"),
		"power_off":     powerOffSaga,
		"power_on":      powerOnSaga,
		"resize_active": resizeSaga(activeServer()),
		"resize_off":    resizeSaga(offServer()),
	} {
		t.Run(name, func(t *testing.T) {
			t.Run("succeeds", s.RunSuccess)
			t.Run("step_fails", s.RunFailures)
			t.Run("retryable_error", s.RunRetries)
			t.Run("cancelled_while_waiting", s.RunCancellations)
		})
	}
}
