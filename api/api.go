// Package api is the customer REST API: a Gin server, annotated for swaggo,
// that turns every mutation into a request on Kafka and answers reads from
// a read model materialized from Kafka's compacted state topics.
//
//	@title						Cloud Servers API
//	@version					1.0
//	@description				Provision and manage cloud servers. Every mutation is asynchronous: it answers 202 with an operation you can follow (GET /v1/operations/{id}).
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

	"github.com/IBM/sarama"
	"github.com/gin-gonic/gin"

	"github.com/cloudservers/cloudservers"
)

// Producer writes messages to Kafka and returns once they are acknowledged.
type Producer interface {
	Send(ctx context.Context, topic string, key, value []byte) error
}

// RequestProducer writes a request to an explicit partition.
type RequestProducer interface {
	SendToPartition(ctx context.Context, topic string, partition int32, key, value []byte) error
}

// Config configures the API.
type Config struct {
	Catalog cloudservers.Catalog
	// Partitions of the requests topic; buckets map onto them.
	Partitions int32
	// MaxBodyBytes bounds request bodies (413 beyond). Default 64 KiB.
	MaxBodyBytes int64
	// IdempotencyTTL is how long an Idempotency-Key is remembered.
	// Default 24 hours.
	IdempotencyTTL time.Duration
	// WriteTimeout bounds the Kafka writes of one mutation. Default 10 s.
	WriteTimeout time.Duration
	// SyncTimeout bounds the wait for this replica to catch up before
	// answering "not found" (read-your-writes). Default 3 s.
	SyncTimeout time.Duration
	// Quotas per customer.
	MaxServers int
	MaxVCPUs   int
}

// Server is the API. Its dependencies come through New.
type Server struct {
	cfg      Config
	log      *slog.Logger
	rm       *ReadModel
	kafka    sarama.Client
	requests RequestProducer
	state    Producer
	buckets  cloudservers.BucketMap
	now      func() time.Time
}

// New returns the API. kc is used for read-your-writes syncs.
func New(cfg Config, log *slog.Logger, rm *ReadModel, kc sarama.Client, requests RequestProducer, state Producer) *Server {
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 64 << 10
	}
	if cfg.IdempotencyTTL == 0 {
		cfg.IdempotencyTTL = 24 * time.Hour
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.SyncTimeout == 0 {
		cfg.SyncTimeout = 3 * time.Second
	}
	if cfg.MaxServers == 0 {
		cfg.MaxServers = 25
	}
	if cfg.MaxVCPUs == 0 {
		cfg.MaxVCPUs = 50
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = 1
	}
	return &Server{
		cfg: cfg, log: log, rm: rm, kafka: kc, requests: requests, state: state,
		buckets: cloudservers.DefaultBucketMap(cfg.Partitions), now: time.Now,
	}
}

// Handler returns the HTTP handler with every route.
func (s *Server) Handler() http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.Use(s.recover, s.limitBody)
	r.NoRoute(func(c *gin.Context) {
		s.abort(c, errorf(CodeNotFound, fmt.Sprintf("no route %s %s", c.Request.Method, c.Request.URL.Path)))
	})
	r.NoMethod(func(c *gin.Context) {
		s.abort(c, errorf(CodeMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s", c.Request.Method, c.Request.URL.Path)))
	})
	r.GET("/healthz", s.health)
	r.GET("/readyz", s.ready)
	s.swagger(r)

	v1 := r.Group("/v1", s.authenticate)
	v1.GET("/regions", s.listRegions)
	v1.GET("/sizes", s.listSizes)
	v1.GET("/images", s.listImages)
	v1.POST("/servers", s.createServer)
	v1.GET("/servers", s.listServers)
	v1.GET("/servers/:id", s.getServer)
	v1.DELETE("/servers/:id", s.deleteServer)
	v1.POST("/servers/:id/actions", s.serverAction)
	v1.GET("/servers/:id/operations", s.listOperations)
	v1.GET("/operations/:id", s.getOperation)
	return r
}

func (s *Server) recover(c *gin.Context) {
	defer func() {
		if p := recover(); p != nil {
			s.abort(c, fmt.Errorf("panic: %v", p))
		}
	}()
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
//	@Summary	Readiness: the read model has caught up with Kafka
//	@Tags		health
//	@Produce	json
//	@Success	200	{object}	map[string]string
//	@Failure	503	{object}	Problem
//	@Router		/readyz [get]
func (s *Server) ready(c *gin.Context) {
	if !s.rm.Ready() {
		s.abort(c, errorf(CodeUnavailable, "catching up with Kafka"))
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}

const customerKey = "customer"

// authenticate resolves the bearer API key to a customer.
func (s *Server) authenticate(c *gin.Context) {
	h := c.GetHeader("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || strings.TrimSpace(token) == "" {
		c.Header("WWW-Authenticate", `Bearer realm="cloudservers"`)
		s.abort(c, errorf(CodeUnauthorized, "missing bearer API key in the Authorization header"))
		return
	}
	key, ok := s.rm.Key(HashKey(strings.TrimSpace(token)))
	if !ok || key.Revoked {
		c.Header("WWW-Authenticate", `Bearer realm="cloudservers", error="invalid_token"`)
		s.abort(c, errorf(CodeUnauthorized, "invalid or revoked API key"))
		return
	}
	c.Set(customerKey, key.CustomerID)
	c.Next()
}

// HashKey is how API keys are stored: their SHA-256, hex.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

func customerOf(c *gin.Context) string { return c.GetString(customerKey) }
