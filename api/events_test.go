package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/api"
)

type sseEvent struct {
	id, event, data string
}

// summary identifies the change an event reports: kind, ID and status.
func (ev sseEvent) summary(t testing.TB) string {
	var v struct{ ID, Status string }
	if err := json.Unmarshal([]byte(ev.data), &v); err != nil {
		t.Fatalf("event data %q: %v", ev.data, err)
	}
	return ev.event + "/" + v.ID[len(v.ID)-4:] + "/" + v.Status
}

type stream struct {
	resp   *http.Response
	events chan sseEvent
	cancel context.CancelFunc
	done   chan struct{}
}

// openStream connects to GET /v1/events and parses the stream in a
// goroutine that ends when the stream does (close ends it).
func openStream(t testing.TB, base, key, lastID string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/events", nil)
	r.Header.Set("Authorization", "Bearer "+key)
	if lastID != "" {
		r.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	seen.add("GET", "/v1/events", resp.StatusCode)
	s := &stream{resp: resp, events: make(chan sseEvent, 1000), cancel: cancel, done: make(chan struct{})}
	if resp.StatusCode != 200 {
		close(s.events)
		close(s.done)
		return s
	}
	go func() {
		defer close(s.done)
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.event != "" {
					s.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			case strings.HasPrefix(line, ":"):
				if strings.HasPrefix(line, ": keep-alive") {
					s.events <- sseEvent{event: "keep-alive"}
				}
			}
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *stream) close() {
	s.cancel()
	s.resp.Body.Close()
	<-s.done
}

// next returns the next event that is not a keep-alive.
func (s *stream) next(t testing.TB) sseEvent {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				t.Fatal("the stream ended")
			}
			if ev.event != "keep-alive" {
				return ev
			}
		case <-timeout:
			t.Fatal("no event within 5s")
		}
	}
}

// quiet checks that no event (but keep-alives) comes for a while.
func (s *stream) quiet(t testing.TB, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case ev, ok := <-s.events:
			if ok && ev.event != "keep-alive" {
				t.Fatalf("unexpected event %+v", ev)
			}
			if !ok {
				return
			}
		case <-timeout:
			return
		}
	}
}

func serve(t testing.TB, e *env, readTimeout time.Duration) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(e.h)
	srv.Config.ReadTimeout = readTimeout
	srv.Start()
	t.Cleanup(func() {
		e.api.Shutdown()
		srv.Close()
	})
	return srv.URL
}

func TestEventsLive(t *testing.T) {
	e := newEnv(t, api.Config{})
	base := serve(t, e, 0)
	alice := openStream(t, base, e.alice, "")
	bob := openStream(t, base, e.bob, "")
	if ct := alice.resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	if alice.resp.Header.Get("RateLimit-Limit") == "" {
		t.Error("no RateLimit headers on the stream")
	}
	op := e.create(e.alice, "a")
	var got []string
	for range 2 {
		ev := alice.next(t)
		if ev.id == "" {
			t.Errorf("event without ID: %+v", ev)
		}
		got = append(got, ev.summary(t))
	}
	want := []string{"server/" + op.ServerID[32:] + "/queued", "operation/" + op.ID[32:] + "/pending"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("events %v, want %v", got, want)
	}
	e.lifecycle(op.ServerID, cloudservers.StatusCreating, op.ID, cloudservers.OperationRunning)
	e.lifecycle(op.ServerID, cloudservers.StatusActive, op.ID, cloudservers.OperationSucceeded)
	for _, w := range []string{"server/" + op.ServerID[32:] + "/creating", "operation/" + op.ID[32:] + "/running", "server/" + op.ServerID[32:] + "/active", "operation/" + op.ID[32:] + "/succeeded"} {
		if ev := alice.next(t); ev.summary(t) != w {
			t.Errorf("event %s, want %s", ev.summary(t), w)
		}
	}
	// Bob sees none of it, only his own.
	bobs := e.create(e.bob, "b")
	if ev := bob.next(t); ev.summary(t) != "server/"+bobs.ServerID[32:]+"/queued" {
		t.Errorf("bob's first event %+v", ev)
	}
	alice.quiet(t, 100*time.Millisecond)
}

func TestEventsResume(t *testing.T) {
	e := newEnv(t, api.Config{})
	base := serve(t, e, 0)
	s := openStream(t, base, e.alice, "")
	a := e.create(e.alice, "a")
	e.create(e.bob, "bob")
	first := s.next(t)
	second := s.next(t)
	s.close()
	// Changes while disconnected.
	e.lifecycle(a.ServerID, cloudservers.StatusCreating, a.ID, cloudservers.OperationRunning)
	b := e.create(e.alice, "b")

	r := openStream(t, base, e.alice, second.id)
	var got []string
	for range 4 {
		got = append(got, r.next(t).summary(t))
	}
	want := []string{"server/" + a.ServerID[32:] + "/creating", "operation/" + a.ID[32:] + "/running", "server/" + b.ServerID[32:] + "/queued", "operation/" + b.ID[32:] + "/pending"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("resumed events %v, want %v", got, want)
	}
	r.quiet(t, 100*time.Millisecond)
	// The first two events are one request's (server queued, operation
	// pending): the first's ID is the position before the request, so
	// resuming from it replays both, never only the first.
	r2 := openStream(t, base, e.alice, first.id)
	if ev := r2.next(t); ev.summary(t) != first.summary(t) {
		t.Errorf("resumed after the first: %s", ev.summary(t))
	}
	if ev := r2.next(t); ev.summary(t) != second.summary(t) {
		t.Errorf("resumed after the first, then: %s", ev.summary(t))
	}
}

// TestEventsResumeOnAnotherReplica: event IDs are Kafka positions, so a
// stream resumes exactly on a replica that applied the same records in
// another interleaving of partitions.
func TestEventsResumeOnAnotherReplica(t *testing.T) {
	e := newEnv(t, api.Config{})
	base := serve(t, e, 0)
	s := openStream(t, base, e.alice, "")
	var all []string
	for i := range 6 {
		op := e.create(e.alice, fmt.Sprintf("s%d", i))
		e.create(e.bob, fmt.Sprintf("b%d", i))
		e.lifecycle(op.ServerID, cloudservers.StatusCreating, op.ID, cloudservers.OperationRunning)
	}
	for range 24 {
		all = append(all, s.next(t).summary(t))
	}
	// Replica 2 reads the partitions in another order: the requests
	// topic, then all of the operations topic, then the servers topic,
	// partition 2 first. (The requests come first, as in a replica that
	// was up when they were written: one that reads a request after its
	// server's newer records skips the superseded initial state.)
	rm2 := api.NewReadModel()
	s2 := api.New(api.Config{Catalog: testCatalog(), RateLimit: 1e6, RateBurst: 1e6}, nil, rm2, nil, e.kafka, e.kafka)
	for _, r := range e.kafka.records(cloudservers.TopicAPIKeys) {
		_ = rm2.ApplyRecord(r.topic, r.partition, r.offset, r.key, r.value)
	}
	for _, topic := range []string{cloudservers.TopicRequests, cloudservers.TopicOperations, cloudservers.TopicServers} {
		for p := int32(statePartitions - 1); p >= 0; p-- {
			for _, r := range e.kafka.records(topic) {
				if r.partition == p {
					_ = rm2.ApplyRecord(r.topic, r.partition, r.offset, r.key, r.value)
				}
			}
		}
	}
	rm2.MarkCaughtUp()
	e2 := *e
	e2.api, e2.rm, e2.h = s2, rm2, s2.Handler()
	base2 := serve(t, &e2, 0)
	// Resuming on replica 2 from any event of replica 1's stream gives
	// exactly the rest.
	for _, cut := range []int{1, 5, 11, 17, 23} {
		// The ID replica 1 gives the cut-th event (replayed from the start).
		r1 := openStream(t, base, e.alice, firstID())
		var id string
		for range cut {
			id = r1.next(t).id
		}
		r1.close()
		r2 := openStream(t, base2, e.alice, id)
		got := map[string]int{}
		n := 24 - cut
		if strings.HasSuffix(all[cut-1], "/queued") {
			// The first event of a request's pair: resumed before it.
			n++
			got[all[cut-1]] = -1 // expected once more: 0 after
		}
		for range n {
			got[r2.next(t).summary(t)]++
		}
		if strings.HasSuffix(all[cut-1], "/queued") && got[all[cut-1]] != 0 {
			t.Errorf("cut %d: %s (the first of a request's pair) not replayed once", cut, all[cut-1])
		}
		r2.quiet(t, 50*time.Millisecond)
		r2.close()
		for _, w := range all[cut:] {
			if got[w] != 1 {
				t.Errorf("cut %d: %s received %d times", cut, w, got[w])
			}
		}
	}
}

// firstID is a Last-Event-ID before every change: nothing read yet.
func firstID() string {
	parts := []string{}
	for p := range statePartitions {
		parts = append(parts, fmt.Sprintf("s%d:0", p))
	}
	for p := range statePartitions {
		parts = append(parts, fmt.Sprintf("o%d:0", p))
	}
	return strings.Join(parts, ".")
}

func TestEventsErrors(t *testing.T) {
	e := newEnv(t, api.Config{MaxStreams: 2})
	for _, bad := range []string{"x", "s0", "s0:-1", "q0:1", "s0:1.s0:2", "s0:1,o1:2", strings.Repeat("s0:1.", 1000)} {
		r := e.do(req{method: "GET", path: "/v1/events", key: e.alice, header: map[string]string{"Last-Event-ID": bad}})
		expect(t, r, 400, api.CodeInvalidRequest, nil, "Last-Event-ID")
	}
	expect(t, e.do(req{method: "GET", path: "/v1/events?since=1", key: e.alice}), 400, api.CodeInvalidRequest, nil)

	base := serve(t, e, 0)
	a := openStream(t, base, e.alice, "")
	openStream(t, base, e.alice, "")
	third := openStream(t, base, e.alice, "")
	if third.resp.StatusCode != 429 || third.resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third stream: %d %v", third.resp.StatusCode, third.resp.Header)
	}
	// Bob has his own allowance.
	if b := openStream(t, base, e.bob, ""); b.resp.StatusCode != 200 {
		t.Errorf("bob: %d", b.resp.StatusCode)
	}
	// A client that goes away frees its place.
	a.close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := openStream(t, base, e.alice, "")
		if s.resp.StatusCode == 200 {
			break
		}
		s.close()
		if time.Now().After(deadline) {
			t.Fatal("a closed stream still counts")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEventsHistoryGap(t *testing.T) {
	e := newEnv(t, api.Config{EventHistory: 3})
	base := serve(t, e, 0)
	s := openStream(t, base, e.alice, "")
	e.create(e.alice, "a")
	old := s.next(t).id
	for i := range 3 {
		e.create(e.alice, fmt.Sprintf("b%d", i))
	}
	r := openStream(t, base, e.alice, old)
	if ev := r.next(t); ev.event != "resync" {
		t.Fatalf("first event %+v, want resync", ev)
	}
	// Then what the history has.
	if ev := r.next(t); ev.event != "server" && ev.event != "operation" {
		t.Errorf("after resync: %+v", ev)
	}
}

func TestEventsSurviveReadTimeoutAndEndOnShutdown(t *testing.T) {
	e := newEnv(t, api.Config{Heartbeat: 50 * time.Millisecond})
	srv := httptest.NewUnstartedServer(e.h)
	srv.Config.ReadTimeout = 200 * time.Millisecond
	srv.Start()
	defer srv.Close()
	s := openStream(t, srv.URL, e.alice, "")
	time.Sleep(600 * time.Millisecond)
	op := e.create(e.alice, "late")
	if ev := s.next(t); !strings.Contains(ev.data, op.ServerID) {
		t.Errorf("event after the read timeout: %+v", ev)
	}
	e.api.Shutdown()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream outlived Shutdown")
	}
	// New streams are refused while shutting down.
	if n := openStream(t, srv.URL, e.alice, ""); n.resp.StatusCode != 503 {
		t.Errorf("stream after shutdown: %d", n.resp.StatusCode)
	}
}
