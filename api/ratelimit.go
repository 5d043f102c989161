package api

import (
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"
)

// limiters holds one token bucket per API key. Buckets of keys idle for
// longer than it takes to refill are dropped now and then: a fresh bucket
// is full, so dropping one changes nothing for its client.
type limiters struct {
	mu        sync.Mutex
	rate      rate.Limit
	burst     int
	buckets   map[string]*bucket
	sweepAt   int
	idleAfter time.Duration
}

type bucket struct {
	lim      *rate.Limiter
	lastSeen time.Time
}

func newLimiters(perSecond float64, burst int) *limiters {
	idle := time.Duration(float64(burst)/perSecond*float64(time.Second)) + time.Minute
	return &limiters{rate: rate.Limit(perSecond), burst: burst, buckets: map[string]*bucket{}, sweepAt: 1024, idleAfter: idle}
}

// quota is the outcome of taking one token: whether the request may
// proceed and the values of the RateLimit headers.
type quota struct {
	allowed    bool
	limit      int
	remaining  int
	reset      int // seconds until the bucket is full again
	retryAfter int // seconds until one token is available (when refused)
}

func (l *limiters) take(key string, now time.Time) quota {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.sweepAt {
			for k, v := range l.buckets {
				if now.Sub(v.lastSeen) > l.idleAfter {
					delete(l.buckets, k)
				}
			}
			l.sweepAt = max(1024, 2*len(l.buckets))
		}
		b = &bucket{lim: rate.NewLimiter(l.rate, l.burst)}
		l.buckets[key] = b
	}
	b.lastSeen = now
	q := quota{limit: l.burst, allowed: b.lim.AllowN(now, 1)}
	tokens := b.lim.TokensAt(now)
	q.remaining = max(0, int(math.Floor(tokens)))
	q.reset = int(math.Ceil((float64(l.burst) - tokens) / float64(l.rate)))
	if !q.allowed {
		q.retryAfter = max(1, int(math.Ceil((1-tokens)/float64(l.rate))))
	}
	return q
}

// rateLimit applies the per-key token bucket and sets the RateLimit-Limit,
// RateLimit-Remaining and RateLimit-Reset headers (IETF
// draft-ietf-httpapi-ratelimit-headers) on every answer; a request over the
// limit gets 429 rate_limited with Retry-After.
func (s *Server) rateLimit(c *gin.Context) {
	q := s.limits.take(c.GetString(keyHashKey), s.now())
	h := c.Writer.Header()
	h.Set("RateLimit-Limit", strconv.Itoa(q.limit))
	h.Set("RateLimit-Remaining", strconv.Itoa(q.remaining))
	h.Set("RateLimit-Reset", strconv.Itoa(q.reset))
	if !q.allowed {
		e := errorf(CodeRateLimited, "too many requests for this API key: at most "+
			strconv.FormatFloat(float64(s.limits.rate), 'f', -1, 64)+" per second, bursts of "+strconv.Itoa(q.limit))
		e.RetryAfter = q.retryAfter
		s.abort(c, e)
		return
	}
	c.Next()
}
