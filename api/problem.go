package api

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"
)

// Problem is an RFC 9457 problem document, the body of every error.
type Problem struct {
	Type     string   `json:"type" example:"https://cloudservers.dev/problems/not_found"`
	Title    string   `json:"title" example:"Not Found"`
	Status   int      `json:"status" example:"404"`
	Detail   string   `json:"detail" example:"server 0193... not found"`
	Code     string   `json:"code" example:"not_found"`
	Fields   []string `json:"fields,omitempty"`
	Instance string   `json:"instance,omitempty"`
} // @name Problem

// Error is a domain error with its stable code; the table below maps codes
// to HTTP statuses in one place.
type Error struct {
	Code   string
	Detail string
	Fields []string
}

func (e *Error) Error() string { return e.Code + ": " + e.Detail }

// Stable error codes.
const (
	CodeInvalidRequest   = "invalid_request"
	CodeValidation       = "validation_failed"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeLocked           = "server_locked"
	CodeInvalidState     = "invalid_state"
	CodeIdempotencyReuse = "idempotency_key_reused"
	CodeTooLarge         = "request_too_large"
	CodeUnsupportedMedia = "unsupported_media_type"
	CodeRateLimited      = "rate_limited"
	CodeQuotaExceeded    = "quota_exceeded"
	CodeUnavailable      = "service_unavailable"
	CodeInternal         = "internal_error"
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
	CodeIdempotencyReuse: http.StatusUnprocessableEntity,
	CodeTooLarge:         http.StatusRequestEntityTooLarge,
	CodeUnsupportedMedia: http.StatusUnsupportedMediaType,
	CodeRateLimited:      http.StatusTooManyRequests,
	CodeQuotaExceeded:    http.StatusForbidden,
	CodeUnavailable:      http.StatusServiceUnavailable,
	CodeInternal:         http.StatusInternalServerError,
}

func errorf(code, detail string, fields ...string) *Error {
	return &Error{Code: code, Detail: detail, Fields: fields}
}

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
	p := Problem{
		Type:     "https://cloudservers.dev/problems/" + e.Code,
		Title:    http.StatusText(status),
		Status:   status,
		Detail:   e.Detail,
		Code:     e.Code,
		Fields:   e.Fields,
		Instance: c.Request.URL.Path,
	}
	c.Header("Content-Type", "application/problem+json")
	c.AbortWithStatusJSON(status, p)
}
