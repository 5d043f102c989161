package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cloudservers/cloudservers"
)

// The admin API (/admin/v1) is for operators: it takes API keys with the
// Admin flag only, and names the customer in the path.

const adminKey = "admin"

var customerIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$`)

// requireAdmin refuses customer keys on the admin API.
func (s *Server) requireAdmin(c *gin.Context) {
	if !c.GetBool(adminKey) {
		s.abort(c, errorf(CodeForbidden, "this endpoint needs an admin API key"))
		return
	}
	c.Next()
}

func adminCustomer(c *gin.Context) (string, error) {
	id := c.Param("customer_id")
	if !customerIDRE.MatchString(id) {
		return "", errorf(CodeInvalidRequest, fmt.Sprintf("%q is not a customer ID (1-128 letters, digits, dots, underscores, @ or hyphens)", clip(id)), "customer_id")
	}
	return id, nil
}

// adminListServers godoc
//
//	@Summary		List a customer's servers (admin)
//	@Description	Same as GET /v1/servers, for any customer. Needs an admin API key.
//	@Tags			admin
//	@Produce		json,application/problem+json
//	@Security		BearerAuth
//	@Param			customer_id	path		string	true	"Customer ID"
//	@Param			status		query		string	false	"Only servers in this status"	Enums(queued,creating,active,off,rebooting,stopping,starting,resizing,rebuilding,deleting,deleted,error)
//	@Param			page_size	query		int		false	"1 to 100, default 20"	minimum(1)	maximum(100)
//	@Param			page_token	query		string	false	"From the previous page's next link"
//	@Success		200			{object}	ServerList
//	@Failure		400			{object}	Problem	"invalid_request"
//	@Failure		401			{object}	Problem	"unauthorized"
//	@Failure		403			{object}	Problem	"forbidden: not an admin key"
//	@Failure		429			{object}	Problem	"rate_limited"
//	@Header			all			{integer}	RateLimit-Limit		"Requests allowed in a burst"
//	@Header			all			{integer}	RateLimit-Remaining	"Requests left now"
//	@Header			all			{integer}	RateLimit-Reset		"Seconds until the limit is fully restored"
//	@Router			/admin/v1/customers/{customer_id}/servers [get]
func (s *Server) adminListServers(c *gin.Context) {
	customer, err := adminCustomer(c)
	if err != nil {
		s.abort(c, err)
		return
	}
	s.listServersOf(c, customer, "/admin/v1/customers/"+customer+"/servers")
}

// CreateKeyRequest is the body of POST /admin/v1/customers/{id}/keys.
type CreateKeyRequest struct {
	Name  string `json:"name" example:"ci"` // a label, 1-64 letters, digits, dots, underscores, @ or hyphens
	Admin bool   `json:"admin,omitempty"`   // an operator's key, for this admin API
} // @name CreateKeyRequest

// CreatedKey is a new API key: the secret is shown once, only its hash is
// stored.
type CreatedKey struct {
	CustomerID string    `json:"customer_id" example:"demo-alice"`
	Name       string    `json:"name" example:"ci"`
	Admin      bool      `json:"admin"`
	APIKey     string    `json:"api_key" example:"cs_3f1d..."`
	CreatedAt  time.Time `json:"created_at"`
} // @name CreatedKey

// adminCreateKey godoc
//
//	@Summary		Create an API key for a customer (admin)
//	@Description	The answer holds the key; it is shown once and only its hash is stored. For that reason this endpoint takes no Idempotency-Key: a retry makes another key (revoke the spare). Needs an admin API key.
//	@Tags			admin
//	@Accept			json
//	@Produce		json,application/problem+json
//	@Security		BearerAuth
//	@Param			customer_id	path		string				true	"Customer ID"
//	@Param			body		body		CreateKeyRequest	true	"The key"
//	@Success		201			{object}	CreatedKey
//	@Failure		400			{object}	Problem	"invalid_request (also: an Idempotency-Key was sent)"
//	@Failure		401			{object}	Problem	"unauthorized"
//	@Failure		403			{object}	Problem	"forbidden: not an admin key"
//	@Failure		413			{object}	Problem	"request_too_large"
//	@Failure		415			{object}	Problem	"unsupported_media_type"
//	@Failure		422			{object}	Problem	"validation_failed"
//	@Failure		429			{object}	Problem	"rate_limited"
//	@Failure		503			{object}	Problem	"service_unavailable"
//	@Header			all			{integer}	RateLimit-Limit		"Requests allowed in a burst"
//	@Header			all			{integer}	RateLimit-Remaining	"Requests left now"
//	@Header			all			{integer}	RateLimit-Reset		"Seconds until the limit is fully restored"
//	@Router			/admin/v1/customers/{customer_id}/keys [post]
func (s *Server) adminCreateKey(c *gin.Context) {
	if !s.noQuery(c) {
		return
	}
	customer, err := adminCustomer(c)
	if err != nil {
		s.abort(c, err)
		return
	}
	if _, ok := c.Request.Header["Idempotency-Key"]; ok {
		s.abort(c, errorf(CodeInvalidRequest, "this endpoint takes no Idempotency-Key: its answer holds a secret that is never stored", "Idempotency-Key"))
		return
	}
	var req CreateKeyRequest
	if _, err := s.decode(c, &req); err != nil {
		s.abort(c, err)
		return
	}
	if !sshKeyNameRE.MatchString(req.Name) {
		s.abort(c, errorf(CodeValidation, "name must be 1-64 letters, digits, dots, underscores, @ or hyphens, starting with a letter or digit", "name"))
		return
	}
	secret, rec, err := NewAPIKey(customer, req.Name, req.Admin, s.now())
	if err != nil {
		s.abort(c, err)
		return
	}
	err = s.write(c, func(ctx context.Context) error {
		return s.state.Send(ctx, cloudservers.TopicAPIKeys, []byte(rec.Hash), mustJSON(rec))
	})
	if err != nil {
		s.log.Error("API key not stored", "customer", customer, "error", err)
		s.abort(c, unavailable(err))
		return
	}
	s.rm.mu.Lock()
	s.rm.keys[rec.Hash] = rec
	s.rm.mu.Unlock()
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusCreated, CreatedKey{CustomerID: customer, Name: rec.Name, Admin: rec.Admin, APIKey: secret, CreatedAt: rec.CreatedAt})
}

// NewAPIKey makes a random API key and the record that stores its hash
// (publish the record to cloudservers.TopicAPIKeys, keyed by its Hash).
func NewAPIKey(customer, name string, admin bool, now time.Time) (secret string, rec APIKey, err error) {
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", APIKey{}, err
	}
	secret = "cs_" + hex.EncodeToString(raw)
	return secret, APIKey{Hash: HashKey(secret), CustomerID: customer, Name: name, Admin: admin, CreatedAt: now.UTC()}, nil
}
