package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cloudservers/cloudservers"
)

// The event stream (GET /v1/events) is built from the changes the read
// model applies from the servers and operations topics, and from the
// requests topic (a mutation's initial state).
//
// Event IDs are positions in Kafka, not counters of a replica: an ID is the
// vector of "next offset" per partition of those topics that this stream
// had reached at the event, e.g. "s0:12.s2:7.o1:5" (servers partition 0 up
// to offset 12, ...). Every change below the vector was either sent or was
// not the customer's. A client resuming with Last-Event-ID, on any replica,
// gets exactly the changes at or above the vector: the replica replays them
// from its bounded history, then streams live ones, skipping those it
// reads later that are below the vector. Compaction is harmless: a
// compacted-away record was superseded by a newer one of the same server or
// operation, which comes later in its partition. When the history no longer
// reaches back to the vector the stream says so with a resync event:
// re-read the lists, then carry on.
//
// Each stream has a buffer; the broadcaster never blocks on a stream. A
// stream that falls a buffer behind is ended, and its client resumes with
// Last-Event-ID from the history. The HTTP handler goroutine owns its
// stream and unsubscribes when the client goes away, the write deadline
// passes or the API shuts down.

// vector is the next offset per partition of the servers and operations
// topics.
type vector map[topicPartition]int64

func (v vector) clone() vector {
	out := make(vector, len(v))
	for k, x := range v {
		out[k] = x
	}
	return out
}

// merge raises v to at least w, partition by partition.
func (v vector) merge(w vector) {
	for k, x := range w {
		if x > v[k] {
			v[k] = x
		}
	}
}

var topicCodes = map[string]string{cloudservers.TopicServers: "s", cloudservers.TopicOperations: "o", cloudservers.TopicRequests: "r"}

// codeTopics is topicCodes reversed.
var codeTopics = map[string]string{"s": cloudservers.TopicServers, "o": cloudservers.TopicOperations, "r": cloudservers.TopicRequests}

// String encodes the vector as an event ID.
func (v vector) String() string {
	tps := make([]topicPartition, 0, len(v))
	for tp := range v {
		tps = append(tps, tp)
	}
	slices.SortFunc(tps, func(a, b topicPartition) int {
		if a.topic != b.topic {
			return strings.Compare(topicCodes[a.topic], topicCodes[b.topic])
		}
		return int(a.partition - b.partition)
	})
	parts := make([]string, 0, len(tps))
	for _, tp := range tps {
		parts = append(parts, topicCodes[tp.topic]+strconv.Itoa(int(tp.partition))+":"+strconv.FormatInt(v[tp], 10))
	}
	return strings.Join(parts, ".")
}

var eventIDPart = regexp.MustCompile(`^([sor])([0-9]{1,5}):([0-9]{1,18})$`)

// parseEventID decodes a Last-Event-ID.
func parseEventID(id string) (vector, error) {
	bad := errorf(CodeInvalidRequest, "Last-Event-ID is not an event ID of this stream", "Last-Event-ID")
	if len(id) > 4096 {
		return nil, bad
	}
	v := vector{}
	for _, p := range strings.Split(id, ".") {
		m := eventIDPart.FindStringSubmatch(p)
		if m == nil {
			return nil, bad
		}
		topic := codeTopics[m[1]]
		part, _ := strconv.Atoi(m[2])
		off, _ := strconv.ParseInt(m[3], 10, 64)
		tp := topicPartition{topic, int32(part)}
		if _, dup := v[tp]; dup {
			return nil, bad
		}
		v[tp] = off
	}
	return v, nil
}

// event is a change with the vector reached after it.
type event struct {
	change
	at vector
}

// broadcaster fans changes out to event streams and keeps a bounded
// history for resumption.
type broadcaster struct {
	mu          sync.Mutex
	applied     vector
	history     []event // ring of size cap(history)
	head        int     // index of the oldest event once the ring is full
	evicted     vector  // per partition: the offset after the newest evicted change
	subs        map[*subscription]struct{}
	perCustomer map[string]int
	bufSize     int
	maxStreams  int
	closed      bool
}

type subscription struct {
	customer string
	from     vector
	ch       chan event
	done     chan struct{} // closed when the broadcaster ends the stream
	why      string
}

func newBroadcaster(history, buf, maxStreams int) *broadcaster {
	return &broadcaster{
		applied: vector{}, history: make([]event, 0, history), evicted: vector{},
		subs: map[*subscription]struct{}{}, perCustomer: map[string]int{}, bufSize: buf, maxStreams: maxStreams,
	}
}

// publish is the read model's watcher. It never blocks.
func (b *broadcaster) publish(ch change) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ch.offset+1 > b.applied[ch.tp] {
		b.applied[ch.tp] = ch.offset + 1
	}
	ev := event{change: ch, at: b.applied.clone()}
	if len(b.history) < cap(b.history) {
		b.history = append(b.history, ev)
	} else if cap(b.history) > 0 {
		old := b.history[b.head]
		if old.offset+1 > b.evicted[old.tp] {
			b.evicted[old.tp] = old.offset + 1
		}
		b.history[b.head] = ev
		b.head = (b.head + 1) % cap(b.history)
	}
	customer := ch.customer()
	for sub := range b.subs {
		if sub.customer != customer || ch.offset < sub.from[ch.tp] {
			continue
		}
		select {
		case sub.ch <- ev:
		default:
			b.drop(sub, "the client fell behind")
		}
	}
}

// subscribe registers a stream of the customer's changes. With resume, it
// starts at the vector from (a Last-Event-ID) and returns the backlog from
// the history, and gap reports that the history no longer reaches back
// that far. Without, it starts now.
func (b *broadcaster) subscribe(customer string, from vector, resume bool) (sub *subscription, backlog []event, gap bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		e := errorf(CodeUnavailable, "the API is shutting down; reconnect")
		e.RetryAfter = 1
		return nil, nil, false, e
	}
	if b.perCustomer[customer] >= b.maxStreams {
		e := errorf(CodeRateLimited, fmt.Sprintf("at most %d event streams at once per customer", b.maxStreams))
		e.RetryAfter = 5
		return nil, nil, false, e
	}
	if !resume {
		from = b.applied.clone()
	}
	for tp, off := range b.evicted {
		if from[tp] < off {
			gap = true
		}
	}
	if resume {
		n := len(b.history)
		for i := range n {
			ev := b.history[(b.head+i)%n]
			if ev.customer() == customer && ev.offset >= from[ev.tp] {
				backlog = append(backlog, ev)
			}
		}
	}
	sub = &subscription{customer: customer, from: from, ch: make(chan event, b.bufSize), done: make(chan struct{})}
	b.subs[sub] = struct{}{}
	b.perCustomer[customer]++
	return sub, backlog, gap, nil
}

// unsubscribe ends a stream (idempotent).
func (b *broadcaster) unsubscribe(sub *subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.drop(sub, "")
}

// drop removes a subscription and tells its handler why (caller holds the
// lock).
func (b *broadcaster) drop(sub *subscription, why string) {
	if _, ok := b.subs[sub]; !ok {
		return
	}
	delete(b.subs, sub)
	if b.perCustomer[sub.customer]--; b.perCustomer[sub.customer] <= 0 {
		delete(b.perCustomer, sub.customer)
	}
	sub.why = why
	close(sub.done)
}

// close ends every stream and refuses new ones.
func (b *broadcaster) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for sub := range b.subs {
		b.drop(sub, "the API is shutting down")
	}
}

// streams returns the number of open streams (tests).
func (b *broadcaster) streams() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// streamWriteTimeout bounds each write to a stream: a client that stops
// reading is disconnected.
const streamWriteTimeout = 10 * time.Second

// streamEvents godoc
//
//	@Summary		Live events: changes of the customer's servers and operations
//	@Description	A Server-Sent Events stream (text/event-stream). Each event is "event: server" with a Server as data, or "event: operation" with an Operation, sent when the change is read from Kafka. Event IDs are positions in Kafka, valid on every replica: reconnect with the Last-Event-ID header to resume exactly after the last event you saw (the EventSource API does so by itself). When the replica's history no longer reaches back that far, the stream starts with "event: resync": re-read what you need, then carry on. Without Last-Event-ID the stream starts with changes from now on. Comment lines keep idle streams alive. At most 10 streams per customer at once.
//	@Tags			events
//	@Produce		event-stream,application/problem+json
//	@Security		BearerAuth
//	@Param			Last-Event-ID	header		string	false	"Resume after this event"
//	@Success		200				{string}	string	"text/event-stream"
//	@Failure		400				{object}	Problem	"invalid_request: bad Last-Event-ID or a query parameter"
//	@Failure		401				{object}	Problem	"unauthorized"
//	@Failure		429				{object}	Problem	"rate_limited: too many requests or streams"
//	@Failure		503				{object}	Problem	"service_unavailable: shutting down"
//	@Header			all				{integer}	RateLimit-Limit		"Requests allowed in a burst"
//	@Header			all				{integer}	RateLimit-Remaining	"Requests left now"
//	@Header			all				{integer}	RateLimit-Reset		"Seconds until the limit is fully restored"
//	@Router			/v1/events [get]
func (s *Server) streamEvents(c *gin.Context) {
	if !s.noQuery(c) {
		return
	}
	var from vector
	lastID := strings.TrimSpace(c.GetHeader("Last-Event-ID"))
	if lastID != "" {
		v, err := parseEventID(lastID)
		if err != nil {
			s.abort(c, err)
			return
		}
		from = v
	}
	customer := customerOf(c)
	sub, backlog, gap, err := s.events.subscribe(customer, from, lastID != "")
	if err != nil {
		s.abort(c, err)
		return
	}
	defer s.events.unsubscribe(sub)

	w := c.Writer
	rc := http.NewResponseController(w)
	// The server's ReadTimeout would otherwise cancel the request (and so
	// the stream) once it passes.
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	cursor := sub.from.clone()
	send := func(chunks ...string) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		for _, ch := range chunks {
			if _, err := w.WriteString(ch); err != nil {
				return false
			}
		}
		return rc.Flush() == nil
	}
	sendEvent := func(ev event) bool {
		// A request's change is two events (server queued, operation
		// pending) at one position. The first carries the position before
		// the change: a client cut off between them resumes before both
		// and sees the server again, rather than never the operation.
		var before string
		if ev.server != nil && ev.op != nil {
			pre := cursor.clone()
			pre.merge(ev.at)
			pre[ev.tp] = max(cursor[ev.tp], ev.offset)
			before = pre.String()
		}
		cursor.merge(ev.at)
		var chunks []string
		if ev.server != nil {
			id := cursor.String()
			if before != "" {
				id = before
			}
			chunks = append(chunks, "id: ", id, "\nevent: server\ndata: ", string(mustJSON(serverView(*ev.server, nil))), "\n\n")
		}
		if ev.op != nil {
			chunks = append(chunks, "id: ", cursor.String(), "\nevent: operation\ndata: ", string(mustJSON(operationView(*ev.op))), "\n\n")
		}
		return send(chunks...)
	}
	if !send("retry: 2000\n: stream of ", customer, "'s servers and operations\n\n") {
		return
	}
	if gap {
		msg, _ := json.Marshal(map[string]string{"reason": "the history of this replica does not reach back to Last-Event-ID: re-read the servers and operations you follow"})
		if !send("event: resync\ndata: ", string(msg), "\n\n") {
			return
		}
	}
	for _, ev := range backlog {
		if !sendEvent(ev) {
			return
		}
	}
	heartbeat := time.NewTicker(s.cfg.Heartbeat)
	defer heartbeat.Stop()
	ctx := c.Request.Context()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sub.done:
			if sub.why != "" {
				send(": closing: ", sub.why, "; reconnect with Last-Event-ID\n\n")
			}
			return
		case ev := <-sub.ch:
			if !sendEvent(ev) {
				return
			}
		case <-heartbeat.C:
			if !send(": keep-alive\n\n") {
				return
			}
		}
	}
}
