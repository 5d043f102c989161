package api

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
)

// Problem is an RFC 9457 problem document, the body of every error.
type Problem struct {
	Type     string   `json:"type" example:"https://cloudservers.dev/problems/not_found"`
	Title    string   `json:"title" example:"Not Found"`
	Status   int      `json:"status" example:"404"`
	Detail   string   `json:"detail" example:"server 0193... not found"`
	Code     string   `json:"code" example:"not_found" enums:"invalid_request,validation_failed,unauthorized,forbidden,not_found,method_not_allowed,server_locked,invalid_state,already_exists,idempotency_key_reused,request_too_large,unsupported_media_type,rate_limited,quota_exceeded,service_unavailable,internal_error"`
	Fields   []string `json:"fields,omitempty" example:"size"` // the request fields, parameters or headers at fault
	Instance string   `json:"instance,omitempty" example:"/v1/servers/0193..."`
} // @name Problem

// Error is a domain error with its stable code; the table below maps codes
// to HTTP statuses in one place.
type Error struct {
	Code   string
	Detail string
	Fields []string
	// RetryAfter, when set, is sent as the Retry-After header (seconds).
	RetryAfter int
}

func (e *Error) Error() string { return e.Code + ": " + e.Detail }

// Stable error codes. Clients switch on these, never on the detail text.
const (
	CodeInvalidRequest   = "invalid_request"        // malformed JSON, parameter, header or ID
	CodeValidation       = "validation_failed"      // well-formed but invalid: unknown size, bad name...
	CodeUnauthorized     = "unauthorized"           // missing, unknown or revoked API key
	CodeForbidden        = "forbidden"              // an admin endpoint with a customer key
	CodeNotFound         = "not_found"              // no such resource (or another customer's), or route
	CodeMethodNotAllowed = "method_not_allowed"     // the route exists, not with this method
	CodeLocked           = "server_locked"          // the server has an operation in flight
	CodeInvalidState     = "invalid_state"          // the action does not apply to the server's status
	CodeAlreadyExists    = "already_exists"         // an SSH key with this name or fingerprint, or a server with this name, exists
	CodeIdempotencyReuse = "idempotency_key_reused" // the Idempotency-Key was used with another request
	CodeTooLarge         = "request_too_large"      // body over the limit
	CodeUnsupportedMedia = "unsupported_media_type" // body not application/json
	CodeRateLimited      = "rate_limited"           // too many requests (or event streams) for this key
	CodeQuotaExceeded    = "quota_exceeded"         // servers, vCPUs or SSH keys over the customer's quota
	CodeUnavailable      = "service_unavailable"    // Kafka unreachable, or not caught up yet
	CodeInternal         = "internal_error"         // a bug; never carries details
)

var statusOf = map[string]int{
	CodeInvalidRequest:   http.StatusBadRequest,
	CodeValidation:       http.StatusUnprocessableEntity,
	CodeUnauthorized:     http.StatusUnauthorized,
	CodeForbidden:        http.StatusForbidden,
	CodeNotFound:         http.StatusNotFound,
	CodeMethodNotAllowed: http.StatusMethodNotAllowed,
	CodeLocked:           http.StatusConflict,
	CodeInvalidState:     http.StatusConflict,
	CodeAlreadyExists:    http.StatusConflict,
	CodeIdempotencyReuse: http.StatusUnprocessableEntity,
	CodeTooLarge:         http.StatusRequestEntityTooLarge,
	CodeUnsupportedMedia: http.StatusUnsupportedMediaType,
	CodeRateLimited:      http.StatusTooManyRequests,
	CodeQuotaExceeded:    http.StatusForbidden,
	CodeUnavailable:      http.StatusServiceUnavailable,
	CodeInternal:         http.StatusInternalServerError,
}

// Codes returns every error code with its HTTP status (for documentation
// and tests).
func Codes() map[string]int {
	out := make(map[string]int, len(statusOf))
	for k, v := range statusOf {
		out[k] = v
	}
	return out
}

func errorf(code, detail string, fields ...string) *Error {
	return &Error{Code: code, Detail: detail, Fields: fields}
}

// problemType is the URI that identifies a problem code.
func problemType(code string) string { return "https://cloudservers.dev/problems/" + code }

// abort answers with the problem document of err and stops the chain.
// Errors that are not *Error are internal: their text is logged, never
// shown.
func (s *Server) abort(c *gin.Context, err error) {
	var e *Error
	if !errors.As(err, &e) {
		s.log.Error("internal error", "method", c.Request.Method, "path", c.FullPath(), "error", err)
		e = errorf(CodeInternal, "the request could not be completed; it is safe to retry with the same Idempotency-Key")
	}
	status := statusOf[e.Code]
	if status == 0 {
		status = http.StatusInternalServerError
	}
	if e.RetryAfter > 0 {
		c.Header("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	p := Problem{
		Type:     problemType(e.Code),
		Title:    http.StatusText(status),
		Status:   status,
		Detail:   e.Detail,
		Code:     e.Code,
		Fields:   e.Fields,
		Instance: c.Request.URL.Path,
	}
	if c.Writer.Written() {
		// A stream already started (events): nothing sensible can be sent.
		c.Abort()
		return
	}
	c.Header("Content-Type", "application/problem+json")
	c.Header("Cache-Control", "no-store")
	c.AbortWithStatusJSON(status, p)
}
