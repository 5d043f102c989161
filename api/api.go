// Package api is the customer REST API: a Gin server, annotated for swaggo,
// that turns every mutation into a request on Kafka and answers reads from
// a read model materialized from Kafka's compacted state topics.
//
//	@title						Cloud Servers API
//	@version					1.0
//	@description				Provision and manage cloud servers. Every mutation of a server is asynchronous: it answers 202 with an operation you can follow (GET /v1/operations/{id}, or the live event stream GET /v1/events). A server with an operation in flight refuses further mutations with 409 server_locked.
//	@description				Idempotency: send an Idempotency-Key header (1-255 printable ASCII characters) with any POST or DELETE. The same key with the same request returns the original answer, from any replica, for 24 hours; the same key with a different request answers 422 idempotency_key_reused.
//	@description				Errors are application/problem+json (RFC 9457) with a stable machine-readable code and, for invalid input, the names of the fields at fault. Lists are paginated with an opaque cursor (page_token, from the next link). Every authenticated answer carries RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset headers; over the limit you get 429 rate_limited with Retry-After.
//	@BasePath					/
//	@securityDefinitions.apikey	BearerAuth
//	@in							header
//	@name						Authorization
//	@description				"Bearer <API key>"
package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cloudservers/cloudservers"
)

// Producer writes messages to Kafka and returns once they are acknowledged.
// A nil value writes a tombstone.
type Producer interface {
	Send(ctx context.Context, topic string, key, value []byte) error
}

// RequestProducer writes a request to an explicit partition.
type RequestProducer interface {
	SendToPartition(ctx context.Context, topic string, partition int32, key, value []byte) error
}

// Config configures the API. Zero values take the documented defaults.
type Config struct {
	Catalog cloudservers.Catalog
	// Partitions of the requests topic; buckets map onto them by the
	// initial spread when Buckets is nil.
	Partitions int32
	// Buckets is the bucket map in force (watched in ZooKeeper); nil
	// routes by the initial spread over Partitions, for ever.
	Buckets *BucketRoutes
	// FreezeWait is how long a mutation of a bucket being moved waits for
	// the move to end before it is refused with 503 and Retry-After.
	// Default 2 s.
	FreezeWait time.Duration
	// MaxBodyBytes bounds request bodies (413 beyond). Default 64 KiB.
	MaxBodyBytes int64
	// IdempotencyTTL is how long an Idempotency-Key is remembered.
	// Default 24 hours.
	IdempotencyTTL time.Duration
	// WriteTimeout bounds a mutation, from its arrival to its answer
	// (its sync with Kafka and its writes included). Default 10 s.
	WriteTimeout time.Duration
	// MaxPendingWrites bounds the Kafka writes in flight (waiting for
	// their acknowledgement) at once; a mutation beyond it answers 503
	// with Retry-After at once instead of queueing. Default 1024.
	MaxPendingWrites int
	// SyncTimeout bounds the wait for this replica to catch up with Kafka
	// (read-your-writes, and before deciding a mutation). Default 3 s.
	SyncTimeout time.Duration
	// Quotas per customer. Defaults: 25 servers, 50 vCPUs, 100 SSH keys.
	MaxServers int
	MaxVCPUs   int
	MaxSSHKeys int
	// RateLimit is the sustained requests per second allowed per API key,
	// RateBurst the bucket size. Defaults 10/s, bursts of 30.
	RateLimit float64
	RateBurst int
	// MaxStreams bounds a customer's concurrent event streams. Default 10.
	MaxStreams int
	// EventHistory is how many changes a replica keeps for resuming event
	// streams (Last-Event-ID). Default 10000.
	EventHistory int
	// EventBuffer is each stream's buffer of changes; a client that falls
	// further behind is disconnected and resumes. Default 256.
	EventBuffer int
	// Heartbeat is the interval of comment lines on idle event streams.
	// Default 15 s.
	Heartbeat time.Duration
	// PendingLock is how long an accepted operation that its server's
	// lifecycle has not picked up yet locks the server. Default 10 min.
	PendingLock time.Duration
	// Metrics receives the API's metrics (NewMetrics); nil: none.
	Metrics *Metrics
}

func (cfg *Config) defaults() {
	setDefault(&cfg.MaxBodyBytes, 64<<10)
	setDefault(&cfg.IdempotencyTTL, 24*time.Hour)
	setDefault(&cfg.WriteTimeout, 10*time.Second)
	setDefault(&cfg.SyncTimeout, 3*time.Second)
	setDefault(&cfg.MaxServers, 25)
	setDefault(&cfg.MaxVCPUs, 50)
	setDefault(&cfg.MaxSSHKeys, 100)
	setDefault(&cfg.RateLimit, 10)
	setDefault(&cfg.RateBurst, 30)
	setDefault(&cfg.MaxStreams, 10)
	setDefault(&cfg.EventHistory, 10000)
	setDefault(&cfg.EventBuffer, 256)
	setDefault(&cfg.Heartbeat, 15*time.Second)
	setDefault(&cfg.PendingLock, 10*time.Minute)
	setDefault(&cfg.MaxPendingWrites, 1024)
	setDefault(&cfg.FreezeWait, 2*time.Second)
	if cfg.Partitions <= 0 {
		cfg.Partitions = 1
	}
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Server is the API. Its dependencies come through New.
type Server struct {
	cfg      Config
	log      *slog.Logger
	rm       *ReadModel
	kafka    Offsets
	requests RequestProducer
	state    Producer
	// writes holds a token per Kafka write in flight (MaxPendingWrites).
	writes  chan struct{}
	buckets *BucketRoutes
	limits  *limiters
	events  *broadcaster
	now     func() time.Time
	metrics *Metrics
}

// New returns the API. kc (a sarama.Client) tells where the topics rm
// materializes end, for read-your-writes; nil disables those syncs
// (tests). A mutation is one record, its request, published through
// requests (an idempotent acks=all producer, kafka.Producer): rm
// materializes it as the initial state. state writes the API's other
// records.
func New(cfg Config, log *slog.Logger, rm *ReadModel, kc Offsets, requests RequestProducer, state Producer) *Server {
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rm.SetRequestsWindow(max(cfg.IdempotencyTTL, cfg.PendingLock))
	s := &Server{
		cfg: cfg, log: log, rm: rm, kafka: kc, requests: requests, state: state,
		writes:  make(chan struct{}, cfg.MaxPendingWrites),
		buckets: cfg.Buckets, now: time.Now,
		limits:  newLimiters(cfg.RateLimit, cfg.RateBurst),
		events:  newBroadcaster(cfg.EventHistory, cfg.EventBuffer, cfg.MaxStreams),
		metrics: cfg.Metrics,
	}
	if s.buckets == nil {
		s.buckets = StaticBucketRoutes(cfg.Partitions)
	}
	rm.watch(s.events.publish)
	return s
}

// SetClock replaces the clock (tests of expiry and rate limits).
func (s *Server) SetClock(now func() time.Time) {
	s.now = now
	s.rm.mu.Lock()
	s.rm.now = now
	s.rm.mu.Unlock()
}

// Shutdown ends the event streams, which would otherwise keep an
// http.Server's Shutdown waiting: register it with RegisterOnShutdown.
func (s *Server) Shutdown() { s.events.close() }

// Handler returns the HTTP handler with every route (a *gin.Engine).
func (s *Server) Handler() http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	// An API answers a wrong path with a problem, not a redirect.
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.Use(s.observe, s.recover, s.limitBody, s.bounded)
	r.NoRoute(func(c *gin.Context) {
		s.abort(c, errorf(CodeNotFound, fmt.Sprintf("no route %s %s", c.Request.Method, c.Request.URL.Path)))
	})
	r.NoMethod(func(c *gin.Context) {
		s.abort(c, errorf(CodeMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s (allowed: %s)",
			c.Request.Method, c.Request.URL.Path, c.Writer.Header().Get("Allow"))))
	})
	r.GET("/healthz", s.health)
	r.GET("/readyz", s.ready)
	s.swagger(r)

	v1 := r.Group("/v1", s.authenticate, s.rateLimit)
	v1.GET("/regions", s.listRegions)
	v1.GET("/sizes", s.listSizes)
	v1.GET("/images", s.listImages)
	v1.POST("/servers", s.createServer)
	v1.GET("/servers", s.listServers)
	v1.GET("/servers/:id", s.getServer)
	v1.DELETE("/servers/:id", s.deleteServer)
	v1.PUT("/servers/:id", s.renameServer)
	v1.PATCH("/servers/:id", s.renameServer)
	v1.POST("/servers/:id/actions", s.serverAction)
	v1.GET("/servers/:id/operations", s.listOperations)
	v1.GET("/operations/:id", s.getOperation)
	v1.POST("/ssh_keys", s.createSSHKey)
	v1.GET("/ssh_keys", s.listSSHKeys)
	v1.GET("/ssh_keys/:id", s.getSSHKey)
	v1.DELETE("/ssh_keys/:id", s.deleteSSHKey)
	v1.GET("/events", s.streamEvents)

	admin := r.Group("/admin/v1", s.authenticate, s.requireAdmin, s.rateLimit)
	admin.GET("/customers/:customer_id/servers", s.adminListServers)
	admin.POST("/customers/:customer_id/keys", s.adminCreateKey)
	return r
}

func (s *Server) recover(c *gin.Context) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.abort(c, fmt.Errorf("panic: %v", p))
		}
	}()
	c.Next()
}

// bounded gives every request but a GET (reads answer from memory; the
// event stream lasts) WriteTimeout from its arrival to its answer: the
// syncs and writes of a mutation all end by then, with 503 and
// Retry-After when Kafka did not answer in time.
func (s *Server) bounded(c *gin.Context) {
	if c.Request.Method == http.MethodGet || c.Request.Method == http.MethodHead {
		c.Next()
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.WriteTimeout)
	defer cancel()
	c.Request = c.Request.WithContext(ctx)
	c.Next()
}

func (s *Server) limitBody(c *gin.Context) {
	if c.Request.ContentLength > s.cfg.MaxBodyBytes {
		s.abort(c, errorf(CodeTooLarge, fmt.Sprintf("request body over %d bytes", s.cfg.MaxBodyBytes)))
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBodyBytes)
	c.Next()
}

// health godoc
//
//	@Summary	Liveness
//	@Tags		health
//	@Produce	json
//	@Success	200	{object}	map[string]string
//	@Router		/healthz [get]
func (s *Server) health(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// ready godoc
//
//	@Summary	Readiness: the read model has caught up with Kafka, and the bucket map (ZooKeeper) is in force
//	@Tags		health
//	@Produce	json,application/problem+json
//	@Success	200	{object}	map[string]string
//	@Failure	503	{object}	Problem	"service_unavailable: names the dependency missing (kafka: still reading the state topics; zookeeper: the bucket map cannot be read)"
//	@Router		/readyz [get]
func (s *Server) ready(c *gin.Context) {
	var missing []string
	if !s.rm.Ready() {
		missing = append(missing, "kafka: catching up with the state topics")
	}
	if s.buckets != nil {
		if err := s.buckets.Err(); err != nil {
			missing = append(missing, "zookeeper: "+err.Error())
		}
	}
	if len(missing) > 0 {
		e := errorf(CodeUnavailable, "not ready: "+strings.Join(missing, "; "))
		e.RetryAfter = 1
		s.abort(c, e)
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}

// Keys of the values authenticate puts in the Gin context.
const (
	customerKey = "customer"
	keyHashKey  = "key_hash"
)

// authenticate resolves the bearer API key to a customer.
func (s *Server) authenticate(c *gin.Context) {
	h := c.GetHeader("Authorization")
	scheme, token, _ := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if h == "" || !strings.EqualFold(scheme, "Bearer") || token == "" {
		c.Header("WWW-Authenticate", `Bearer realm="cloudservers"`)
		s.abort(c, errorf(CodeUnauthorized, "missing bearer API key: send the header Authorization: Bearer <API key>", "Authorization"))
		return
	}
	hash := HashKey(token)
	key, ok := s.rm.Key(hash)
	if !ok || key.Revoked {
		c.Header("WWW-Authenticate", `Bearer realm="cloudservers", error="invalid_token"`)
		s.abort(c, errorf(CodeUnauthorized, "invalid or revoked API key", "Authorization"))
		return
	}
	c.Set(customerKey, key.CustomerID)
	c.Set(keyHashKey, hash)
	if key.Admin {
		c.Set(adminKey, true)
	}
	c.Next()
}

// HashKey is how API keys are stored: their SHA-256, hex.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

func customerOf(c *gin.Context) string { return c.GetString(customerKey) }
