package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/cloudservers/cloudservers"
)

// idempotencyNS derives IDs from an Idempotency-Key (UUIDv5).
var idempotencyNS = uuid.MustParse("6f1c1f7e-5d0a-4c1e-9a0e-2b8f5d6c7a10")

// maxIdempotencyKey is the longest Idempotency-Key accepted.
const maxIdempotencyKey = 255

// idempotency is a mutation's Idempotency-Key, resolved by beginMutation.
type idempotency struct {
	customer    string
	key         string // the header; "" without one
	fingerprint string // method, path and canonical body
	window      int64  // which TTL-long window the request falls in
}

// recordKey is the key of the idempotency record: the customer's, so two
// customers' keys never collide.
func (i *idempotency) recordKey() string { return i.customer + "/" + i.key }

// newID returns a fresh time-ordered UUIDv7 or, with an Idempotency-Key,
// an ID derived from the customer, the key, the request and the TTL window.
// Two replicas handed the same request at the same time (before either has
// recorded it) then derive the same IDs, and the lifecycle deduplicates by
// operation ID; a different request with the same key, or the same one
// after the key expired, gets different IDs.
func (i *idempotency) newID(kind string) string {
	if i.key == "" {
		return uuid.Must(uuid.NewV7()).String()
	}
	var w [8]byte
	binary.BigEndian.PutUint64(w[:], uint64(i.window))
	name := i.customer + "\x00" + i.key + "\x00" + i.fingerprint + "\x00" + string(w[:]) + "\x00" + kind
	return uuid.NewSHA1(idempotencyNS, []byte(name)).String()
}

// validIdempotencyKey accepts 1-255 printable ASCII characters.
func validIdempotencyKey(k string) bool {
	if len(k) == 0 || len(k) > maxIdempotencyKey {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// beginMutation starts every mutation: it checks the Idempotency-Key,
// brings this replica up to date with Kafka (so the checks that follow see
// what other replicas accepted: idempotency records, locks, quotas) and, for
// a repeated request, answers with the remembered response. It reports
// whether the handler goes on.
func (s *Server) beginMutation(c *gin.Context, body []byte) (*idempotency, bool) {
	idem := &idempotency{customer: customerOf(c), fingerprint: fingerprintOf(c.Request.Method, c.Request.URL.Path, body)}
	if vals, ok := c.Request.Header["Idempotency-Key"]; ok {
		if len(vals) != 1 || !validIdempotencyKey(vals[0]) {
			s.abort(c, errorf(CodeInvalidRequest, fmt.Sprintf("Idempotency-Key must be one header of 1 to %d printable ASCII characters", maxIdempotencyKey), "Idempotency-Key"))
			return nil, false
		}
		idem.key = vals[0]
	}
	now := s.now()
	idem.window = now.UnixNano() / int64(s.cfg.IdempotencyTTL)
	if err := s.sync(c); err != nil && idem.key != "" {
		// Without knowing what other replicas recorded, a repeat could
		// be accepted twice.
		e := errorf(CodeUnavailable, "cannot check the Idempotency-Key now; retry shortly with the same key")
		e.RetryAfter = 1
		s.abort(c, e)
		return nil, false
	}
	if idem.key == "" {
		return idem, true
	}
	rec, ok := s.rm.Idempotency(idem.recordKey())
	if !ok {
		return idem, true
	}
	if rec.BodyHash != idem.fingerprint {
		s.abort(c, errorf(CodeIdempotencyReuse, fmt.Sprintf("this Idempotency-Key was used with a different request (%s %s) in the last %s; use a new key", rec.Method, rec.Path, humanDuration(s.cfg.IdempotencyTTL)), "Idempotency-Key"))
		return nil, false
	}
	s.replay(c, rec)
	return nil, false
}

// replay answers with a remembered response.
func (s *Server) replay(c *gin.Context, rec IdempotencyRecord) {
	if rec.Location != "" {
		c.Header("Location", rec.Location)
	}
	c.Header("Idempotent-Replayed", "true")
	if len(rec.Response) == 0 {
		c.Status(rec.Status)
		return
	}
	c.Data(rec.Status, "application/json; charset=utf-8", rec.Response)
}

// respond answers a mutation and, with an Idempotency-Key, first records
// the answer on Kafka so any replica can replay it. The mutation itself is
// already on Kafka: if the record cannot be written the answer still goes
// out (a retry then finds the mutation by its derived IDs).
func (s *Server) respond(c *gin.Context, idem *idempotency, status int, v any, location string) {
	var body []byte
	if v != nil {
		body = mustJSON(v)
	}
	if idem.key != "" {
		now := s.now().UTC()
		rec := IdempotencyRecord{Key: idem.recordKey(), BodyHash: idem.fingerprint, Method: c.Request.Method, Path: c.Request.URL.Path,
			Status: status, Response: body, Location: location, CreatedAt: now, ExpiresAt: now.Add(s.cfg.IdempotencyTTL)}
		err := s.write(c, func(ctx context.Context) error {
			return s.state.Send(ctx, cloudservers.TopicIdempotency, []byte(rec.Key), mustJSON(rec))
		})
		if err != nil {
			s.log.Warn("idempotency record not written", "key", rec.Key, "error", err)
		} else {
			s.rm.Accepted(nil, nil, &rec)
		}
	}
	s.reply(c, status, body, location)
}

// reply answers with body (nil: none) and, when given, a Location.
func (s *Server) reply(c *gin.Context, status int, body []byte, location string) {
	if location != "" {
		c.Header("Location", location)
	}
	if body == nil {
		c.Status(status)
		return
	}
	c.Data(status, "application/json; charset=utf-8", body)
}

// fingerprintOf identifies a request for idempotency: method, path and
// the body with insignificant whitespace removed.
func fingerprintOf(method, path string, body []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s %s\n", method, path)
	var canon bytes.Buffer
	if len(body) > 0 && json.Compact(&canon, body) == nil {
		h.Write(canon.Bytes())
	} else {
		h.Write(body)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// sync brings this replica up to date with the state topics, within
// SyncTimeout.
func (s *Server) sync(c *gin.Context) error {
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.SyncTimeout)
	defer cancel()
	err := s.rm.Sync(ctx, s.kafka)
	if err != nil {
		s.log.Warn("sync with Kafka incomplete", "error", err)
	}
	return err
}

// errOverloaded: MaxPendingWrites Kafka writes are in flight already.
var errOverloaded = errors.New("kafka write: too many writes in flight")

// write runs one Kafka write within WriteTimeout (and the request's own
// deadline, see bounded). The Kafka client's calls take no context (their
// own timeouts bound them); the answer does not wait longer for them, and
// a write that is still running holds its token of MaxPendingWrites until
// it ends, so that a Kafka that does not answer costs a bounded number of
// goroutines and later mutations are refused at once (errOverloaded)
// rather than queued behind them.
func (s *Server) write(c *gin.Context, f func(ctx context.Context) error) error {
	select {
	case s.writes <- struct{}{}:
	default:
		return errOverloaded
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.WriteTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() { <-s.writes }()
		done <- f(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("kafka write: %w", ctx.Err())
	}
}

// unavailable is the answer when Kafka did not take a mutation: err is
// the write's error.
func unavailable(err error) *Error {
	var refused *Error
	if errors.As(err, &refused) {
		return refused // the write was refused before Kafka, with its reason
	}
	if errors.Is(err, errOverloaded) {
		e := errorf(CodeUnavailable, "too many requests are being queued right now; retry shortly (with the same Idempotency-Key)")
		e.RetryAfter = 1
		return e
	}
	e := errorf(CodeUnavailable, "the request could not be queued; retry shortly (with the same Idempotency-Key)")
	e.RetryAfter = 2
	return e
}

// humanDuration writes whole hours and minutes as "24h" or "90m".
func humanDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}
