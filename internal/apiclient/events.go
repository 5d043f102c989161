package apiclient

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cloudservers/cloudservers/api"
)

// Event is one event of the stream: its ID (a position to resume from),
// its type ("server", "operation" or "resync") and its JSON data.
type Event struct {
	ID   string
	Type string
	Data json.RawMessage
}

// Server decodes a "server" event.
func (e Event) Server() (api.ServerView, error) {
	var s api.ServerView
	return s, json.Unmarshal(e.Data, &s)
}

// Operation decodes an "operation" event.
func (e Event) Operation() (api.OperationView, error) {
	var o api.OperationView
	return o, json.Unmarshal(e.Data, &o)
}

// idleTimeout ends a stream that sends nothing, not even a keep-alive,
// for this long: the connection is dead without the client being told.
const idleTimeout = 45 * time.Second

// Stream is an open event stream. Next returns its events; Close ends it.
type Stream struct {
	body   io.ReadCloser
	sc     *bufio.Scanner
	cancel context.CancelFunc
	idle   *time.Timer
	mu     sync.Mutex
	lastID string
}

// Subscribe opens the event stream, resuming after lastID when it is not
// empty. It returns once the API has accepted the stream.
func (c *Client) Subscribe(ctx context.Context, lastID string) (*Stream, error) {
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+"/v1/events", nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+c.Key)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := c.Stream.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("event stream: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		defer cancel()
		e := &Error{}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &e.Problem) != nil || e.Code == "" {
			e.Problem = api.Problem{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode), Detail: strings.TrimSpace(string(b))}
		}
		return nil, e
	}
	s := &Stream{body: resp.Body, cancel: cancel, lastID: lastID}
	s.sc = bufio.NewScanner(resp.Body)
	s.sc.Buffer(make([]byte, 64<<10), 1<<20)
	s.idle = time.AfterFunc(idleTimeout, cancel)
	return s, nil
}

// Next returns the next event. It fails when the stream ends; resume with
// Subscribe(ctx, s.LastID()).
func (s *Stream) Next() (Event, error) {
	var ev Event
	var data []string
	for s.sc.Scan() {
		s.idle.Reset(idleTimeout)
		line := s.sc.Text()
		if line == "" {
			if ev.Type == "" && data == nil {
				continue // a comment block or a retry hint
			}
			if ev.Type == "" {
				ev.Type = "message"
			}
			ev.Data = json.RawMessage(strings.Join(data, "\n"))
			if ev.ID != "" {
				s.mu.Lock()
				s.lastID = ev.ID
				s.mu.Unlock()
			}
			return ev, nil
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.ID = value
		case "event":
			ev.Type = value
		case "data":
			data = append(data, value)
		}
	}
	if err := s.sc.Err(); err != nil {
		return Event{}, fmt.Errorf("event stream: %w", err)
	}
	return Event{}, fmt.Errorf("event stream: %w", io.ErrUnexpectedEOF)
}

// LastID is the ID of the last event returned: where to resume.
func (s *Stream) LastID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastID
}

// Close ends the stream (a nil stream is closed already).
func (s *Stream) Close() error {
	if s == nil {
		return nil
	}
	s.idle.Stop()
	s.cancel()
	return s.body.Close()
}

// Progress is one step of an operation being followed: the operation's or
// its server's new status.
type Progress struct {
	At        time.Time
	Operation *api.OperationView // set when the operation changed
	Server    *api.ServerView    // set when the server changed
}

// Follow waits until an operation finishes, reporting each change of the
// operation and of its server as it happens (through the event stream;
// a dropped stream is resumed where it stopped). It returns the finished
// operation; a failed operation is not an error of Follow.
func (c *Client) Follow(ctx context.Context, opID string, progress func(Progress)) (api.OperationView, error) {
	s, err := c.resubscribe(ctx, "")
	if err != nil {
		return api.OperationView{}, err
	}
	defer func() { s.Close() }()
	var lastOp, lastServer string
	report := func(op *api.OperationView, srv *api.ServerView) {
		switch {
		case op != nil && op.Status != lastOp:
			lastOp = op.Status
		case srv != nil && srv.Status != lastServer:
			lastServer = srv.Status
		default:
			return
		}
		if progress != nil {
			progress(Progress{At: time.Now(), Operation: op, Server: srv})
		}
	}
	// What happened before the stream was open.
	op, err := c.GetOperation(ctx, opID)
	if err != nil {
		return op, err
	}
	report(&op, nil)
	if srv, err := c.GetServer(ctx, op.ServerID); err == nil {
		report(nil, &srv)
	}
	for !finished(op) {
		ev, err := s.Next()
		if err != nil {
			if ctx.Err() != nil {
				return op, ctx.Err()
			}
			// Resume where the stream stopped; meanwhile re-read.
			last := s.LastID()
			s.Close()
			if s, err = c.resubscribe(ctx, last); err != nil {
				return op, err
			}
			if op, err = c.GetOperation(ctx, opID); err != nil {
				return op, err
			}
			report(&op, nil)
			continue
		}
		switch ev.Type {
		case "operation":
			o, err := ev.Operation()
			if err == nil && o.ID == opID {
				op = o
				report(&op, nil)
			}
		case "server":
			sv, err := ev.Server()
			if err == nil && sv.ID == op.ServerID {
				report(nil, &sv)
			}
		case "resync":
			if op, err = c.GetOperation(ctx, opID); err != nil {
				return op, err
			}
			report(&op, nil)
		}
	}
	return op, nil
}

// resubscribe opens the stream, retrying with backoff what may pass
// (429, 5xx, network errors).
func (c *Client) resubscribe(ctx context.Context, lastID string) (*Stream, error) {
	backoff := 250 * time.Millisecond
	for attempt := 0; ; attempt++ {
		s, err := c.Subscribe(ctx, lastID)
		if err == nil {
			return s, nil
		}
		var apiErr *Error
		if errors.As(err, &apiErr) && apiErr.Status != http.StatusTooManyRequests && apiErr.Status < 500 {
			return nil, err
		}
		if attempt >= 8 {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func finished(op api.OperationView) bool {
	return op.Status == "succeeded" || op.Status == "failed"
}
