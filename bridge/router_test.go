package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/grpc"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/internal/notification"
	"github.com/cloudservers/cloudservers/workflows"
)

// fakeSignals records the signals the router sends; err, when set, is
// every answer.
type fakeSignals struct {
	mu   sync.Mutex
	sent []*workflowservice.SignalWorkflowExecutionRequest
	err  error
}

func (f *fakeSignals) SignalWorkflowExecution(_ context.Context, in *workflowservice.SignalWorkflowExecutionRequest, _ ...grpc.CallOption) (*workflowservice.SignalWorkflowExecutionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, in)
	return &workflowservice.SignalWorkflowExecutionResponse{}, f.err
}

// delivered returns, per request ID, the event type signalled, and the
// workflows signalled.
func (f *fakeSignals) delivered(t *testing.T) (byRequest map[string]string, targets []string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	byRequest = map[string]string{}
	for _, s := range f.sent {
		var ev notification.Event
		require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(s.Input, &ev))
		byRequest[s.RequestId] = ev.EventType
		if !slices.Contains(targets, s.WorkflowExecution.WorkflowId) {
			targets = append(targets, s.WorkflowExecution.WorkflowId)
		}
	}
	return byRequest, targets
}

// testRoutes is a Routes fed by hand, whose every catch-up is already done
// (a catch-up would need Kafka): a miss is final.
func testRoutes(t testing.TB, records ...*sarama.ConsumerMessage) *Routes {
	t.Helper()
	r := &Routes{Log: logTo(io.Discard)}
	r.init()
	r.synced = time.Now().Add(time.Hour)
	for _, m := range records {
		r.apply(m)
	}
	return r
}

func serverRecord(t testing.TB, s cloudservers.Server) *sarama.ConsumerMessage {
	return &sarama.ConsumerMessage{Topic: cloudservers.TopicServers, Key: []byte(s.ID), Value: encode(t, s)}
}

func instanceRecord(t *testing.T, instance, server string) *sarama.ConsumerMessage {
	return &sarama.ConsumerMessage{Topic: cloudservers.TopicInstances, Key: []byte(instance),
		Value: encode(t, cloudservers.InstanceRecord{InstanceID: instance, ServerID: server})}
}

// scenario reads a notification capture of the real OpenStack kit, in
// arrival order, with its instance renamed as the system names its own
// (when serverID is not empty).
func scenario(t testing.TB, name, serverID string) [][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "internal", "notification", "testdata", name, "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	sort.Strings(files)
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		if serverID != "" {
			b = captureName.ReplaceAll(b, []byte(cloudservers.NovaServerName(serverID)))
		}
		out = append(out, b)
	}
	return out
}

// captureName matches the names the kit gave its instances (cap-vm,
// cap-vm-nobind, ...).
var captureName = regexp.MustCompile(`cap-vm[A-Za-z0-9-]*`)

func newTestRouter(sig *fakeSignals, routes *Routes) *Router {
	return &Router{Signals: sig, Namespace: "cloudservers", Routes: routes, DeadLetters: &fakeDeadLetters{}, Log: logTo(io.Discard), Stats: &Stats{}}
}

// Each real capture of the kit, both formats as Nova sends them, routed to
// the operation running on the server: only the events its saga waits
// for are signalled, to op/<id> and never to the lifecycle, and the two
// copies of one event share a request ID, by which Temporal keeps one.
func TestRouterDeliversWhatTheSagaWaitsFor(t *testing.T) {
	const server, op = "0190a5a0-0000-7000-8000-0000000000aa", "0190a5a0-0000-7000-8000-0000000000bb"
	for _, tc := range []struct {
		scenario string
		want     []string // event types delivered, once each
	}{
		{"a-create", []string{"instance.create.end"}},
		{"b-reboot-soft", []string{"instance.reboot.end"}},
		{"e-delete", []string{"instance.delete.end"}},
		{"f-create-fail-novalidhost", []string{"compute_task.build_instances.error", "instance.update"}},
		{"h-create-fail-compute-portbinding", []string{"compute_task.build_instances.error", "instance.create.error", "instance.update"}},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			sig := &fakeSignals{}
			r := newTestRouter(sig, testRoutes(t, serverRecord(t, cloudservers.Server{ID: server, OperationID: op})))
			records := scenario(t, tc.scenario, server)
			for i, b := range records {
				ev, err := notification.Decode(b)
				require.NoError(t, err)
				if ServerOf(ev); ev.DisplayName == "" && ev.InstanceID != "" {
					r.Routes.apply(instanceRecord(t, ev.InstanceID, server)) // as CreateNovaServer publishes it
				}
				require.NoError(t, r.handle(context.Background(), &sarama.ConsumerMessage{Offset: int64(i), Value: b, Timestamp: time.Now()}))
			}
			byRequest, targets := sig.delivered(t)
			var types []string
			for _, e := range byRequest {
				types = append(types, e)
			}
			sort.Strings(types)
			assert.Equal(t, tc.want, types, "one signal per event the saga waits for")
			assert.Equal(t, []string{workflows.OperationWorkflowID(op)}, targets)
			assert.Equal(t, int64(len(records)), r.Stats.Consumed.Load())
			assert.Equal(t, int64(len(sig.sent)), r.Stats.Delivered.Load())
			t.Logf("%s: %d notifications, %d signal calls, %d distinct signals", tc.scenario, len(records), len(sig.sent), len(byRequest))
		})
	}
}

// Other tenants' instances (the kit's captures as they are: named cap-vm,
// metadata of their own) cost no signal and no lookup.
func TestRouterIgnoresOtherTenants(t *testing.T) {
	sig := &fakeSignals{}
	routes := testRoutes(t)
	routes.synced = time.Time{} // a lookup would need Kafka, which this test has not: it would fail
	r := newTestRouter(sig, routes)
	n := 0
	for _, name := range []string{"a-create", "b-reboot-soft", "d-resize-confirm", "e-delete", "h-create-fail-compute-portbinding"} {
		for _, b := range scenario(t, name, "") {
			ev, err := notification.Decode(b)
			require.NoError(t, err)
			if ev.DisplayName == "" && len(ev.Metadata) == 0 {
				continue // UUID-only events are looked up: see below
			}
			require.NoError(t, r.handle(context.Background(), &sarama.ConsumerMessage{Value: b, Timestamp: time.Now()}))
			n++
		}
	}
	assert.Empty(t, sig.sent)
	assert.Equal(t, int64(n), r.Stats.Skipped.Load())
}

func TestRouterMapsUUIDOnlyNotifications(t *testing.T) {
	const server, op, instance = "srv-1", "op-1", "0f5cbe4c-7d3c-4a5e-9c1e-2b4d6f8a0c11"
	uuidOnly := func(instanceID string) []byte {
		msg, _ := json.Marshal(map[string]any{
			"event_type": "compute_task.build_instances", "priority": "ERROR", "publisher_id": "nova-conductor:ctl",
			"timestamp": "2026-11-25 21:05:00.000000", "message_id": "m1",
			"payload": map[string]any{"instance_properties": map[string]any{"uuid": instanceID}, "reason": "No valid host was found.",
				"instance_id": instanceID},
		})
		return msg
	}
	sig := &fakeSignals{}
	r := newTestRouter(sig, testRoutes(t, instanceRecord(t, instance, server), serverRecord(t, cloudservers.Server{ID: server, OperationID: op})))
	ev, err := notification.Decode(uuidOnly(instance))
	require.NoError(t, err)
	require.Equal(t, "compute_task.build_instances.error", ev.EventType)
	require.Empty(t, ev.DisplayName)
	require.NoError(t, r.handle(context.Background(), &sarama.ConsumerMessage{Value: uuidOnly(instance), Timestamp: time.Now()}))
	require.NoError(t, r.handle(context.Background(), &sarama.ConsumerMessage{Value: uuidOnly("11111111-2222-4333-8444-555555555555"), Timestamp: time.Now()}))
	_, targets := sig.delivered(t)
	assert.Equal(t, []string{workflows.OperationWorkflowID(op)}, targets, "ours is mapped through the instances topic, the stranger is skipped")
	assert.Len(t, sig.sent, 1)
}

func TestRouterWithNothingRunning(t *testing.T) {
	const server = "0190a5a0-0000-7000-8000-0000000000aa"
	sig := &fakeSignals{}
	// The operation ended: its server record carries no operation ID.
	r := newTestRouter(sig, testRoutes(t,
		serverRecord(t, cloudservers.Server{ID: server, OperationID: "op-old"}),
		serverRecord(t, cloudservers.Server{ID: server, Status: cloudservers.StatusActive})))
	for _, b := range scenario(t, "b-reboot-soft", server) {
		require.NoError(t, r.handle(context.Background(), &sarama.ConsumerMessage{Value: b, Timestamp: time.Now()}))
	}
	assert.Empty(t, sig.sent, "an event no operation waits for costs no signal")
}

func TestRouterTemporalAnswers(t *testing.T) {
	const server, op = "0190a5a0-0000-7000-8000-0000000000aa", "op-1"
	var end []byte
	for _, b := range scenario(t, "b-reboot-soft", server) {
		if strings.Contains(string(b), "instance.reboot.end") {
			end = b
		}
	}
	require.NotNil(t, end)
	routes := testRoutes(t, serverRecord(t, cloudservers.Server{ID: server, OperationID: op}))
	t.Run("the operation has just ended: skipped", func(t *testing.T) {
		r := newTestRouter(&fakeSignals{err: serviceerror.NewNotFound("closed")}, routes)
		require.NoError(t, r.handle(context.Background(), &sarama.ConsumerMessage{Value: end, Timestamp: time.Now()}))
		assert.Equal(t, int64(1), r.Stats.Skipped.Load())
	})
	t.Run("Temporal unavailable: an error, so the notification is retried", func(t *testing.T) {
		r := newTestRouter(&fakeSignals{err: serviceerror.NewUnavailable("down")}, routes)
		err := r.handle(context.Background(), &sarama.ConsumerMessage{Value: end, Timestamp: time.Now()})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "signal instance.reboot.end of server "+server+" to operation op-1")
	})
}

// The look at a glance decides what decoding would, or leaves the record
// to decoding: over every capture of the kit, as they are (other tenants'
// instances) and renamed as the system's own.
func TestForeignAtAGlance(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("..", "internal", "notification", "testdata", "*-*"))
	require.NoError(t, err)
	glanced, instanceEvents := 0, 0
	for _, d := range dirs {
		name := filepath.Base(d)
		for _, serverID := range []string{"", "0190a5a0-0000-7000-8000-0000000000aa"} {
			for _, b := range scenario(t, name, serverID) {
				ev, err := notification.Decode(b)
				require.NoError(t, err)
				_, ours := ServerOf(ev)
				if serverID == "" && ev.DisplayName != "" {
					instanceEvents++
				}
				if !foreignAtAGlance(b) {
					continue
				}
				glanced++
				assert.False(t, ours, "%s: a record of the system's own skipped at a glance: %s", name, ev.EventType)
				assert.True(t, ev.DisplayName != "" || len(ev.Metadata) > 0, "%s: %s has no name: it must be looked up", name, ev.EventType)
			}
		}
	}
	assert.Equal(t, instanceEvents, glanced, "every foreign record that names its instance is decided at a glance")
	unrouted, updates, chatter, chatterGlanced, errorUpdates := 0, 0, 0, 0, 0
	for _, d := range dirs {
		for _, serverID := range []string{"", "0190a5a0-0000-7000-8000-0000000000aa"} {
			for _, b := range scenario(t, filepath.Base(d), serverID) {
				ev, err := notification.Decode(b)
				require.NoError(t, err)
				routed := workflows.Routed(ev.EventType, ev.State)
				if unroutedAtAGlance(b) {
					unrouted++
					assert.False(t, routed, "%s (state %q) skipped at a glance but routed when decoded", ev.EventType, ev.State)
				}
				if ev.EventType != "instance.update" {
					continue
				}
				updates++
				if !routed {
					chatter++
					if unroutedAtAGlance(b) {
						chatterGlanced++
					}
				}
				// The same update saying ERROR, in either format: decoded,
				// never skipped at a glance.
				for _, from := range []string{`"state": "` + ev.State + `"`, `\"state\": \"` + ev.State + `\"`} {
					to := strings.ReplaceAll(from, ev.State, "error")
					if ev.State == "" || !bytes.Contains(b, []byte(from)) {
						continue
					}
					bad := bytes.ReplaceAll(b, []byte(from), []byte(to))
					errEv, err := notification.Decode(bad)
					require.NoError(t, err)
					require.Equal(t, "error", errEv.State)
					errorUpdates++
					assert.False(t, unroutedAtAGlance(bad), "an instance.update to ERROR skipped at a glance")
				}
			}
		}
	}
	assert.Greater(t, unrouted, 50, "the .start events, scheduler and audit records are decided at a glance")
	assert.Greater(t, chatter, 10)
	assert.Less(t, chatter, updates, "the captures hold updates to ERROR")
	assert.Equal(t, chatter, chatterGlanced, "every instance.update chatter record is decided at a glance")
	assert.Equal(t, updates, errorUpdates, "every instance.update was tried as an update to ERROR")
	assert.Greater(t, glanced, 50)
	assert.False(t, foreignAtAGlance([]byte(`{"event_type":"compute_task.build_instances.error","payload":{"instance_id":"x"}}`)), "a UUID-only record is looked up")
	assert.False(t, foreignAtAGlance([]byte(`{"payload":{"display_name":""}}`)), "an empty name is decoded")
}
