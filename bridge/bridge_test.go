package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/internal/notification"
	"github.com/cloudservers/cloudservers/workflows"
)

const (
	opID     = "0190a5a0-0000-7000-8000-0000000000a1"
	serverID = "0190a5a0-0000-7000-8000-0000000000b1"
)

func validRequest() map[string]any {
	return map[string]any{
		"operation_id": opID, "server_id": serverID, "customer_id": "cust-1", "operation": "create",
		"params":       map[string]any{"name": "web-1", "size": "s-1vcpu-64mb", "image": "tiny", "region": "region-one"},
		"requested_at": "2025-03-01T12:00:00Z",
	}
}

func encode(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func TestDecodeRequest(t *testing.T) {
	req, err := DecodeRequest(encode(t, validRequest()))
	require.NoError(t, err)
	assert.Equal(t, opID, req.OperationID)
	assert.Equal(t, serverID, req.ServerID)
	assert.Equal(t, cloudservers.OpCreate, req.Operation)
	assert.JSONEq(t, `{"name":"web-1","size":"s-1vcpu-64mb","image":"tiny","region":"region-one"}`, string(req.Params))

	without := func(key string) []byte {
		m := validRequest()
		delete(m, key)
		return encode(t, m)
	}
	with := func(key string, v any) []byte {
		m := validRequest()
		m[key] = v
		return encode(t, m)
	}
	for _, tt := range []struct {
		name  string
		value []byte
		want  string
	}{
		{"not JSON", []byte("{not json"), "malformed request: invalid character"},
		{"empty", nil, "malformed request: unexpected end of JSON input"},
		{"JSON but not an object", []byte(`["create"]`), "malformed request: json: cannot unmarshal array"},
		{"no operation ID", without("operation_id"), "malformed request: no operation_id"},
		{"no server ID", without("server_id"), "malformed request: no server_id"},
		{"no customer ID", without("customer_id"), "malformed request: no customer_id"},
		{"unknown operation", with("operation", "migrate"), `malformed request: unknown operation "migrate"`},
		{"no operation", without("operation"), `malformed request: unknown operation ""`},
		{"wrong type", with("server_id", 42), "malformed request: json: cannot unmarshal number"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeRequest(tt.value)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	t.Run("every operation of the registry is accepted", func(t *testing.T) {
		for _, d := range workflows.Registry() {
			_, err := DecodeRequest(with("operation", string(d.Operation)))
			assert.NoError(t, err, d.Operation)
		}
	})
}

// capturedEvent decodes a notification captured from a real Nova, with
// edit applied to its raw bytes.
func capturedEvent(t *testing.T, file string, edit func(string) string) notification.Event {
	t.Helper()
	b, err := os.ReadFile("../internal/notification/testdata/" + file)
	require.NoError(t, err)
	ev, err := notification.Decode([]byte(edit(string(b))))
	require.NoError(t, err)
	return ev
}

func TestServerOf(t *testing.T) {
	const versioned = "a-create/0022-versioned_notifications.info-instance.create.end.json"
	const legacy = "a-create/0021-notifications.info-compute.instance.create.end.json"
	same := func(s string) string { return s }
	named := func(s string) string { return strings.ReplaceAll(s, "cap-vm", "cs-"+serverID) }
	// The captures' metadata is {"purpose": "capture"} (JSON inside the
	// envelope's JSON string, hence the escaped quotes).
	withMetadata := func(s string) string {
		return strings.ReplaceAll(s, `\"purpose\": \"capture\"`, `\"`+cloudservers.MetadataServerID+`\": \"`+serverID+`\"`)
	}
	for _, tt := range []struct {
		name   string
		file   string
		edit   func(string) string
		want   string
		wantOK bool
	}{
		{"versioned, someone else's instance", versioned, same, "", false},
		{"legacy, someone else's instance", legacy, same, "", false},
		{"versioned, by display name", versioned, named, serverID, true},
		{"legacy, by display name", legacy, named, serverID, true},
		{"versioned, by metadata", versioned, withMetadata, serverID, true},
		{"legacy, by metadata", legacy, withMetadata, serverID, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ev := capturedEvent(t, tt.file, tt.edit)
			got, ok := ServerOf(ev)
			assert.Equal(t, tt.wantOK, ok)
			assert.Equal(t, tt.want, got)
		})
	}
	t.Run("metadata wins over the name", func(t *testing.T) {
		got, ok := ServerOf(notification.Event{DisplayName: "cs-other", Metadata: map[string]string{cloudservers.MetadataServerID: serverID}})
		assert.True(t, ok)
		assert.Equal(t, serverID, got)
	})
	t.Run("the bare prefix names no server", func(t *testing.T) {
		_, ok := ServerOf(notification.Event{DisplayName: "cs-"})
		assert.False(t, ok)
	})
}

// fakeTemporal records signal-with-starts and signals.
type fakeTemporal struct {
	mu      sync.Mutex
	started []string // workflow IDs
	signals []string
	err     error
	block   chan struct{} // when set, SignalWithStart waits for it (or ctx)
}

func (f *fakeTemporal) SignalWithStartWorkflow(ctx context.Context, workflowID string, signalName string, signalArg any,
	options client.StartWorkflowOptions, workflow any, workflowArgs ...any) (client.WorkflowRun, error) {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	if options.WorkflowIDReusePolicy != enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE {
		return nil, errors.New("lifecycles must never be started twice")
	}
	req := signalArg.(cloudservers.Request)
	f.started = append(f.started, workflowID+" "+signalName+" "+req.OperationID)
	return nil, nil
}

func (f *fakeTemporal) SignalWorkflow(ctx context.Context, workflowID string, runID string, signalName string, arg any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.signals = append(f.signals, workflowID+" "+signalName)
	return f.err
}

// fakeDeadLetters records what is sent to the dead-letter topic.
type fakeDeadLetters struct {
	mu   sync.Mutex
	sent []sentMessage
	err  error
}

type sentMessage struct {
	topic      string
	key, value []byte
}

func (d *fakeDeadLetters) Send(ctx context.Context, topic string, key, value []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return d.err
	}
	d.sent = append(d.sent, sentMessage{topic, key, value})
	return nil
}

func logTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func TestDeadLetterRecord(t *testing.T) {
	dl := &fakeDeadLetters{}
	msg := &sarama.ConsumerMessage{Topic: cloudservers.TopicRequests, Partition: 4, Offset: 1234, Value: []byte("{not json\x00\xff")}
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	require.NoError(t, deadLetter(context.Background(), dl, msg, errors.New("malformed request: boom"), at))
	require.Len(t, dl.sent, 1)
	assert.Equal(t, cloudservers.TopicDeadLetter, dl.sent[0].topic)
	assert.Nil(t, dl.sent[0].key)
	assert.JSONEq(t, `{"topic":"cloudservers.requests","partition":4,"offset":1234,"error":"malformed request: boom",
		"value":"e25vdCBqc29uAP8=","at":"2025-03-01T12:00:00Z"}`, string(dl.sent[0].value),
		"the value travels as base64: any bytes survive")
	var back DeadLetter
	require.NoError(t, json.Unmarshal(dl.sent[0].value, &back))
	assert.Equal(t, msg.Value, back.Value, "the original message is recoverable byte for byte")
}

func TestRequestsHandle(t *testing.T) {
	newRequests := func(tc *fakeTemporal, dl *fakeDeadLetters, log io.Writer) *Requests {
		return &Requests{Temporal: tc, DeadLetters: dl, Log: logTo(log), Stats: &Stats{}, TaskQueue: "tq"}
	}
	t.Run("a request goes to its server's lifecycle", func(t *testing.T) {
		tc, dl := &fakeTemporal{}, &fakeDeadLetters{}
		r := newRequests(tc, dl, io.Discard)
		msg := &sarama.ConsumerMessage{Topic: cloudservers.TopicRequests, Partition: 1, Offset: 7, Value: encode(t, validRequest())}
		require.NoError(t, r.handle(context.Background(), msg))
		assert.Equal(t, []string{"server/" + serverID + " request " + opID}, tc.started)
		assert.Empty(t, dl.sent)
		assert.Equal(t, map[string]int64{"consumed": 1, "delivered": 1, "duplicates": 0, "skipped": 0, "dead_letters": 0}, r.Stats.Snapshot())
	})
	t.Run("a malformed request is logged, counted, dead-lettered and passed", func(t *testing.T) {
		tc, dl := &fakeTemporal{}, &fakeDeadLetters{}
		var log bytes.Buffer
		r := newRequests(tc, dl, &log)
		msg := &sarama.ConsumerMessage{Topic: cloudservers.TopicRequests, Partition: 3, Offset: 99, Value: []byte("garbage")}
		require.NoError(t, r.handle(context.Background(), msg), "the partition moves on")
		assert.Empty(t, tc.started)
		require.Len(t, dl.sent, 1)
		var rec DeadLetter
		require.NoError(t, json.Unmarshal(dl.sent[0].value, &rec))
		assert.Equal(t, int32(3), rec.Partition)
		assert.Equal(t, int64(99), rec.Offset)
		assert.Contains(t, rec.Error, "malformed request")
		assert.Equal(t, []byte("garbage"), rec.Value)
		assert.Equal(t, int64(1), r.Stats.DeadLetters.Load())
		assert.Contains(t, log.String(), "partition=3 offset=99")
	})
	t.Run("when the dead-letter topic is unreachable the message is retried, not skipped", func(t *testing.T) {
		r := newRequests(&fakeTemporal{}, &fakeDeadLetters{err: errors.New("kafka down")}, io.Discard)
		msg := &sarama.ConsumerMessage{Topic: cloudservers.TopicRequests, Value: []byte("garbage")}
		err := r.handle(context.Background(), msg)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "dead-letter: kafka down")
		assert.Zero(t, r.Stats.DeadLetters.Load())
	})
	t.Run("a request for a deleted server's ended lifecycle is dropped", func(t *testing.T) {
		tc := &fakeTemporal{err: serviceerror.NewWorkflowExecutionAlreadyStarted("ended", "", "")}
		r := newRequests(tc, &fakeDeadLetters{}, io.Discard)
		require.NoError(t, r.handle(context.Background(), &sarama.ConsumerMessage{Value: encode(t, validRequest())}))
		assert.Equal(t, int64(1), r.Stats.Skipped.Load())
	})
	t.Run("Temporal unavailable is an error: the message is retried", func(t *testing.T) {
		tc := &fakeTemporal{err: serviceerror.NewUnavailable("down")}
		r := newRequests(tc, &fakeDeadLetters{}, io.Discard)
		err := r.handle(context.Background(), &sarama.ConsumerMessage{Value: encode(t, validRequest())})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "deliver create "+opID+" of server "+serverID)
	})
}

func TestRouterDeadLettersMalformedNotifications(t *testing.T) {
	tc, dl := &fakeSignals{}, &fakeDeadLetters{}
	var log bytes.Buffer
	r := &Router{Signals: tc, DeadLetters: dl, Log: logTo(&log), Stats: &Stats{}}
	msg := &sarama.ConsumerMessage{Topic: "notifications.info", Partition: 2, Offset: 5, Value: []byte("not a notification")}
	require.NoError(t, r.handle(context.Background(), msg))
	require.Len(t, dl.sent, 1)
	var rec DeadLetter
	require.NoError(t, json.Unmarshal(dl.sent[0].value, &rec))
	assert.Equal(t, "notifications.info", rec.Topic)
	assert.Equal(t, int64(5), rec.Offset)
	assert.Equal(t, int64(1), r.Stats.DeadLetters.Load())
	assert.Contains(t, log.String(), "topic=notifications.info partition=2 offset=5")
	assert.Empty(t, tc.sent)
}

func TestProcessFinishesTheMessageInHand(t *testing.T) {
	// The tenure ends while Temporal is answering: the delivery still
	// completes and its offset is committed, so the next owner does not
	// deliver it again.
	tc := &fakeTemporal{block: make(chan struct{})}
	r := &Requests{Temporal: tc, DeadLetters: &fakeDeadLetters{}, Log: logTo(io.Discard), Stats: &Stats{}}
	ctx, cancel := context.WithCancel(context.Background())
	var committed []int64
	commit := func(ctx context.Context, msg *sarama.ConsumerMessage) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		committed = append(committed, msg.Offset+1)
		return nil
	}
	done := make(chan error, 1)
	go func() {
		done <- process(ctx, &sarama.ConsumerMessage{Offset: 41, Value: encode(t, validRequest())}, r.handle, commit, r.Log)
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	time.Sleep(50 * time.Millisecond)
	close(tc.block) // Temporal answers after the cancellation, within the grace
	require.NoError(t, <-done)
	assert.Len(t, tc.started, 1)
	assert.Equal(t, []int64{42}, committed)
}

func TestProcessGivesUpAfterTheGrace(t *testing.T) {
	tc := &fakeTemporal{block: make(chan struct{})} // Temporal never answers
	r := &Requests{Temporal: tc, DeadLetters: &fakeDeadLetters{}, Log: logTo(io.Discard), Stats: &Stats{}}
	ctx, cancel := context.WithCancel(context.Background())
	committed := 0
	commit := func(context.Context, *sarama.ConsumerMessage) error { committed++; return nil }
	done := make(chan error, 1)
	go func() {
		done <- process(ctx, &sarama.ConsumerMessage{Offset: 41, Value: encode(t, validRequest())}, r.handle, commit, r.Log)
	}()
	cancel()
	start := time.Now()
	select {
	case err := <-done:
		require.NoError(t, err, "a stop is not an error")
	case <-time.After(10 * time.Second):
		t.Fatal("process did not return after the grace")
	}
	assert.Less(t, time.Since(start), finishGrace+2*time.Second)
	assert.Zero(t, committed, "nothing handled, nothing committed: the next owner delivers it")
}

func TestGroupProcess(t *testing.T) {
	assert.Equal(t, "bridge-a", GroupProcess(GroupClientIDPrefix+"bridge-a"+GroupClientIDSuffix))
	assert.Equal(t, "sarama", GroupProcess("sarama"))
	assert.Equal(t, "cloudservers-bridge-x", GroupProcess("cloudservers-bridge-x"))
}

func TestServerView(t *testing.T) {
	v := newServerView()
	rec := func(p int32, off int64, id string, st cloudservers.ServerStatus) {
		var value []byte
		if st != "" {
			value = encode(t, cloudservers.Server{ID: id, Status: st})
		}
		v.apply(&sarama.ConsumerMessage{Partition: p, Offset: off, Key: []byte(id), Value: value}, logTo(io.Discard))
	}
	rec(0, 0, "a", cloudservers.StatusCreating)
	rec(0, 1, "a", cloudservers.StatusActive)
	rec(1, 0, "b", cloudservers.StatusActive)
	rec(1, 1, "b", cloudservers.StatusDeleted)
	rec(2, 0, "c", cloudservers.StatusError)
	rec(2, 1, "d", cloudservers.StatusActive)
	rec(2, 2, "d", "") // tombstone
	v.apply(&sarama.ConsumerMessage{Partition: 2, Offset: 3, Value: []byte("junk")}, logTo(io.Discard))
	assert.Equal(t, []string{"a", "c"}, v.live([]string{"a", "b", "c", "d", "never-seen"}),
		"live: any status but deleted; a deleted, tombstoned or unknown server is not")
}

func TestGraceContext(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	g, stop := graceContext(parent, 100*time.Millisecond)
	defer stop()
	cancel()
	assert.NoError(t, g.Err(), "the grace context outlives its parent for a moment")
	select {
	case <-g.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the grace context never ended")
	}
}
