//go:build integration

package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudservers/cloudservers/api"
	"github.com/cloudservers/cloudservers/internal/openstacksim"
)

// TestCreateFailsCleanlyAtEveryCall injects a fault at every OpenStack call
// a create makes, and at the build itself: each time the server ends in
// error with a reason naming the failed step, OpenStack holds nothing of
// it afterwards, and nothing polled Nova.
func TestCreateFailsCleanlyAtEveryCall(t *testing.T) {
	needsSimulator(t, "injects HTTP faults and boot failures; TestCreateFailsOnTheComputeHost provokes a compute-side failure on a real cloud")
	cases := []struct {
		name     string
		inject   func(f *openstacksim.Faults) error
		failStep string
		fault    []string // Nova's reason, which the customer's error must give (one of)
	}{
		{"network lookup", httpFault("GET", "/network/v2.0/networks", 400), "CreatePort", nil},
		{"port lookup", httpFault("GET", "/network/v2.0/ports", 400), "CreatePort", nil},
		{"port create", httpFault("POST", "/network/v2.0/ports", 400), "CreatePort", nil},
		{"server lookup", httpFault("GET", "/compute/v2.1/servers/detail", 400), "CreateNovaServer", nil},
		{"flavor lookup", httpFault("GET", "/compute/v2.1/flavors/detail", 400), "CreateNovaServer", nil},
		{"image lookup", httpFault("GET", "/image/v2/images", 400), "CreateNovaServer", nil},
		{"server create quota", httpFault("POST", "/compute/v2.1/servers", 403), "CreateNovaServer", nil},
		{"build fails on the compute host", func(f *openstacksim.Faults) error {
			_, err := f.FailBoot(openstacksim.BootFault{Mode: "compute", Count: 1})
			return err
		}, "WaitForNovaBuild", []string{"PortBindingFailed", "Exceeded maximum number of retries"}},
		{"no valid host", func(f *openstacksim.Faults) error {
			_, err := f.FailBoot(openstacksim.BootFault{Mode: "novalidhost", Count: 1})
			return err
		}, "WaitForNovaBuild", []string{"No valid host"}},
		{"floating IP lookup", httpFault("GET", "/network/v2.0/floatingips", 400), "AllocateFloatingIP", nil},
		{"floating IP create", httpFault("POST", "/network/v2.0/floatingips", 400), "AllocateFloatingIP", nil},
		{"floating IP associate", httpFault("PUT", "/network/v2.0/floatingips/{id}", 400), "AssociateFloatingIP", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := startSystem(t, options{sim: openstacksim.Config{BootTime: 100 * time.Millisecond, DeleteTime: 100 * time.Millisecond}})
			must(t, tc.inject(s.sim.Faults()))
			var op api.OperationView
			if code := s.call("POST", "/v1/servers", createBody("doomed"), &op); code != 202 {
				t.Fatalf("create answered %d", code)
			}
			srv := s.waitServer(op.ServerID, 60*time.Second, "error", "active")
			if srv.Status != "error" || srv.Error == "" {
				t.Fatalf("server after a failed create: %+v", srv)
			}
			got := s.waitOperation(op.ID, 10*time.Second)
			if got.Status != "failed" || got.FailedStep != tc.failStep || got.Error == "" {
				t.Fatalf("operation: status %s, failed step %q (want %s), error %q", got.Status, got.FailedStep, tc.failStep, got.Error)
			}
			t.Logf("error shown to the customer: %s", got.Error)
			if len(tc.fault) > 0 && !slices.ContainsFunc(tc.fault, func(f string) bool { return strings.Contains(got.Error, f) }) {
				t.Fatalf("the error does not give Nova's reason %q: %s", tc.fault, got.Error)
			}
			assertNothingLeft(t, s, op.ServerID)
			// No polling: at most the one read for the reason, made when
			// the event that carries it is late.
			if n := s.calls.Count(getServer); n > 1 {
				t.Fatalf("%d status reads during a failed create (polling)", n)
			}
		})
	}
}

func httpFault(method, path string, status int) func(f *openstacksim.Faults) error {
	return func(f *openstacksim.Faults) error {
		f.AddHTTP(openstacksim.HTTPFault{Method: method, Path: path, Status: status, Message: "injected by the test", Count: 100})
		return nil
	}
}

// TestLostNotificationIsReconciledWithOneRead loses instance.create.end in
// every format: after the event timeout the saga makes exactly one
// reconciliation read, sees the server ACTIVE and carries on.
func TestLostNotificationIsReconciledWithOneRead(t *testing.T) {
	needsSimulator(t, "makes the simulator lose instance.create.end")
	s := startSystem(t, options{
		sim:          openstacksim.Config{BootTime: 100 * time.Millisecond, DeleteTime: 100 * time.Millisecond},
		eventTimeout: 2 * time.Second,
	})
	_, err := s.sim.Faults().AddNotification(openstacksim.NotificationFault{EventType: "instance.create.end", Action: "lose", Count: 10})
	must(t, err)
	var op api.OperationView
	if code := s.call("POST", "/v1/servers", createBody("lossy"), &op); code != 202 {
		t.Fatalf("create answered %d", code)
	}
	srv := s.waitServer(op.ServerID, 60*time.Second, "active", "error")
	if srv.Status != "active" {
		t.Fatalf("server: %+v", srv)
	}
	if n := s.calls.Count(getServer); n != 1 {
		t.Fatalf("%d reads of the server, want exactly 1 reconciliation read", n)
	}
}
