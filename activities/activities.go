// Package activities holds the Temporal activities of the sagas: calls to
// OpenStack through gophercloud and the publication of state to Kafka.
//
// Every activity is idempotent. A retried create first looks for what an
// earlier attempt created (by the names and descriptions derived from the
// server ID); a delete that finds nothing has succeeded. Failures that a
// retry cannot fix are returned as non-retryable application errors of the
// types below, so the workflows can fail the step at once.
package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"

	"github.com/gophercloud/gophercloud/v2"
	"go.temporal.io/sdk/temporal"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/internal/openstack"
)

// Error types of non-retryable failures (temporal.ApplicationError.Type()).
const (
	ErrQuotaExceeded  = "QuotaExceeded"
	ErrInvalidRequest = "InvalidRequest"
	ErrNotFound       = "NotFound"
	ErrConflict       = "Conflict"
)

// NonRetryableErrorTypes lists the error types retrying cannot fix; the
// workflows put them in their retry policies too.
var NonRetryableErrorTypes = []string{ErrQuotaExceeded, ErrInvalidRequest, ErrNotFound, ErrConflict}

// StatePublisher writes a record to a compacted state topic.
type StatePublisher interface {
	Send(ctx context.Context, topic string, key, value []byte) error
}

// Activities is registered with the worker; the workflows call its methods
// through a nil pointer.
type Activities struct {
	clients   openstack.Clients
	catalog   cloudservers.Catalog
	publisher StatePublisher

	// Name-to-ID lookups of immutable things (flavors, images, networks)
	// are cached: they never change meaning under the same name here.
	mu    sync.Mutex
	cache map[string]string
}

// New returns the activities using clients for OpenStack and publisher for
// state records.
func New(clients openstack.Clients, catalog cloudservers.Catalog, publisher StatePublisher) *Activities {
	return &Activities{clients: clients, catalog: catalog, publisher: publisher, cache: map[string]string{}}
}

// classify turns an OpenStack error into what the workflow needs to know:
// whether a retry can help. what names the call and resource for the
// support engineer reading the failure in the Temporal UI.
func classify(what string, err error) error {
	if err == nil {
		return nil
	}
	var code gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &code) {
		body := strings.TrimSpace(string(code.Body))
		msg := fmt.Sprintf("%s: OpenStack answered %d: %s", what, code.Actual, openstackMessage(code.Body))
		switch code.Actual {
		case http.StatusForbidden:
			if strings.Contains(strings.ToLower(body), "quota") {
				return temporal.NewNonRetryableApplicationError(msg, ErrQuotaExceeded, nil)
			}
			return temporal.NewNonRetryableApplicationError(msg, ErrInvalidRequest, nil)
		case http.StatusBadRequest:
			return temporal.NewNonRetryableApplicationError(msg, ErrInvalidRequest, nil)
		case http.StatusNotFound:
			return temporal.NewNonRetryableApplicationError(msg, ErrNotFound, nil)
		case http.StatusConflict:
			if strings.Contains(body, "OverQuota") || strings.Contains(strings.ToLower(body), "quota") {
				return temporal.NewNonRetryableApplicationError(msg, ErrQuotaExceeded, nil)
			}
			return temporal.NewApplicationError(msg, ErrConflict)
		}
		return errors.New(msg)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func requestID(h http.Header) string {
	if h == nil {
		return ""
	}
	if id := h.Get("X-Openstack-Request-Id"); id != "" {
		return id
	}
	return h.Get("X-Compute-Request-Id")
}

func (a *Activities) cached(key string, lookup func() (string, error)) (string, error) {
	a.mu.Lock()
	v, ok := a.cache[key]
	a.mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := lookup()
	if err != nil {
		return "", err
	}
	a.mu.Lock()
	a.cache[key] = v
	a.mu.Unlock()
	return v, nil
}

// openstackMessage is the human part of an OpenStack error body: Nova's
// {"badRequest": {"message": ...}}, Neutron's {"NeutronError": {"message":
// ...}}, Keystone's {"error": {"message": ...}}, or the text of an HTML page
// (Glance), so that customers and support read a sentence, not JSON.
func openstackMessage(body []byte) string {
	var outer map[string]json.RawMessage
	if json.Unmarshal(body, &outer) == nil {
		var m struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(body, &m) == nil && m.Message != "" {
			return m.Message
		}
		for _, v := range outer {
			if json.Unmarshal(v, &m) == nil && m.Message != "" {
				return m.Message
			}
		}
	}
	text := strings.Join(strings.Fields(htmlTag.ReplaceAllString(string(body), " ")), " ")
	if len(text) > 300 {
		text = text[:300] + "..."
	}
	if text == "" {
		return "(no message)"
	}
	return text
}

var htmlTag = regexp.MustCompile(`<[^>]*>`)
