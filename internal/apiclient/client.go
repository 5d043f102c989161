// Package apiclient is a Go client of the customer REST API, used by the
// CLI: typed calls, problem documents as errors, safe retries of mutations
// (every mutation carries an Idempotency-Key), and the event stream with
// resumption.
package apiclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cloudservers/cloudservers/api"
)

// Client calls one API with one API key.
type Client struct {
	BaseURL string
	Key     string
	// HTTP serves ordinary calls; its Timeout bounds each. Stream serves
	// the event stream: no overall timeout, but bounded dialing and
	// headers.
	HTTP   *http.Client
	Stream *http.Client
	// Retries is how often a call refused with 429 or 503, or cut by the
	// network, is retried (mutations with the same Idempotency-Key).
	Retries int
}

// New returns a client with sensible timeouts.
func New(baseURL, key string) *Client {
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
	}
	return &Client{
		BaseURL: strings.TrimRight(baseURL, "/"),
		Key:     key,
		HTTP:    &http.Client{Transport: transport, Timeout: 30 * time.Second},
		Stream:  &http.Client{Transport: transport},
		Retries: 4,
	}
}

// Error is an error answer of the API: its problem document.
type Error struct {
	api.Problem
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s (%d %s): %s", e.Code, e.Status, e.Title, e.Detail)
	if len(e.Fields) > 0 {
		s += " [" + strings.Join(e.Fields, ", ") + "]"
	}
	return s
}

// IsCode reports whether err is an API error with the given code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// NewIdempotencyKey returns a random Idempotency-Key.
func NewIdempotencyKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "cli-" + hex.EncodeToString(b)
}

// call sends one request, retrying what is safe to retry, and decodes the
// answer into out.
func (c *Client) call(ctx context.Context, method, path string, body any, idempotencyKey string, out any) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return err
		}
	}
	// A mutation is retried only with an Idempotency-Key.
	retryable := method == http.MethodGet || idempotencyKey != ""
	backoff := 500 * time.Millisecond
	for attempt := 0; ; attempt++ {
		wait, err := c.once(ctx, method, path, payload, idempotencyKey, out)
		if err == nil {
			return nil
		}
		if !retryable || attempt >= c.Retries || wait < 0 {
			return err
		}
		if wait == 0 {
			wait = backoff
			backoff = min(2*backoff, 8*time.Second)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// once sends one request. A wait < 0 means do not retry; wait > 0 is the
// server's Retry-After; 0 means retry after a backoff.
func (c *Client) once(ctx context.Context, method, path string, payload []byte, idempotencyKey string, out any) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, bytes.NewReader(payload))
	if err != nil {
		return -1, err
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.Key)
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return -1, err
		}
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		e := &Error{}
		if json.Unmarshal(b, &e.Problem) != nil || e.Code == "" {
			e.Problem = api.Problem{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode), Code: "http_" + strconv.Itoa(resp.StatusCode), Detail: strings.TrimSpace(string(b))}
		}
		switch resp.StatusCode {
		case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
			wait := time.Duration(0)
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
				wait = time.Duration(s) * time.Second
			}
			return wait, e
		}
		return -1, e
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return -1, fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
		}
	}
	return -1, nil
}

// CreateServer asks for a server.
func (c *Client) CreateServer(ctx context.Context, r api.CreateServerRequest, idempotencyKey string) (api.OperationView, error) {
	var op api.OperationView
	return op, c.call(ctx, http.MethodPost, "/v1/servers", r, idempotencyKey, &op)
}

// GetServer returns a server.
func (c *Client) GetServer(ctx context.Context, id string) (api.ServerView, error) {
	var s api.ServerView
	return s, c.call(ctx, http.MethodGet, "/v1/servers/"+url.PathEscape(id), nil, "", &s)
}

// ListServers returns every server (all pages), optionally only those in
// one status.
func (c *Client) ListServers(ctx context.Context, status string) ([]api.ServerView, error) {
	q := url.Values{"page_size": {"100"}}
	if status != "" {
		q.Set("status", status)
	}
	var out []api.ServerView
	next := "/v1/servers?" + q.Encode()
	for next != "" {
		var page api.ServerList
		if err := c.call(ctx, http.MethodGet, next, nil, "", &page); err != nil {
			return nil, err
		}
		out = append(out, page.Servers...)
		next = page.Next
	}
	return out, nil
}

// DeleteServer asks for a server's deletion.
func (c *Client) DeleteServer(ctx context.Context, id, idempotencyKey string) (api.OperationView, error) {
	var op api.OperationView
	return op, c.call(ctx, http.MethodDelete, "/v1/servers/"+url.PathEscape(id), nil, idempotencyKey, &op)
}

// Act asks for an action on a server (an operation the API exposes as one).
// The body is an api.ActionRequest, or a map of the action's type and
// parameters (the CLI builds one from the operations table).
func (c *Client) Act(ctx context.Context, id string, a any, idempotencyKey string) (api.OperationView, error) {
	var op api.OperationView
	return op, c.call(ctx, http.MethodPost, "/v1/servers/"+url.PathEscape(id)+"/actions", a, idempotencyKey, &op)
}

// Rename renames a server (PATCH /v1/servers/{id}); the body is an
// api.UpdateServerRequest or a map of its fields.
func (c *Client) Rename(ctx context.Context, id string, body any, idempotencyKey string) (api.OperationView, error) {
	var op api.OperationView
	return op, c.call(ctx, http.MethodPatch, "/v1/servers/"+url.PathEscape(id), body, idempotencyKey, &op)
}

// GetOperation returns an operation.
func (c *Client) GetOperation(ctx context.Context, id string) (api.OperationView, error) {
	var op api.OperationView
	return op, c.call(ctx, http.MethodGet, "/v1/operations/"+url.PathEscape(id), nil, "", &op)
}

// ListOperations returns a server's operations, oldest first (all pages).
func (c *Client) ListOperations(ctx context.Context, serverID string) ([]api.OperationView, error) {
	var out []api.OperationView
	next := "/v1/servers/" + url.PathEscape(serverID) + "/operations?page_size=100"
	for next != "" {
		var page api.OperationList
		if err := c.call(ctx, http.MethodGet, next, nil, "", &page); err != nil {
			return nil, err
		}
		out = append(out, page.Operations...)
		next = page.Next
	}
	return out, nil
}

// Sizes lists the server sizes.
func (c *Client) Sizes(ctx context.Context) ([]api.SizeView, error) {
	var l api.SizeList
	return l.Sizes, c.call(ctx, http.MethodGet, "/v1/sizes", nil, "", &l)
}

// Images lists the images.
func (c *Client) Images(ctx context.Context) ([]api.ImageView, error) {
	var l api.ImageList
	return l.Images, c.call(ctx, http.MethodGet, "/v1/images", nil, "", &l)
}

// Regions lists the regions.
func (c *Client) Regions(ctx context.Context) ([]api.RegionView, error) {
	var l api.RegionList
	return l.Regions, c.call(ctx, http.MethodGet, "/v1/regions", nil, "", &l)
}

// CreateSSHKey stores an SSH public key.
func (c *Client) CreateSSHKey(ctx context.Context, name, publicKey, idempotencyKey string) (api.SSHKeyView, error) {
	var k api.SSHKeyView
	return k, c.call(ctx, http.MethodPost, "/v1/ssh_keys", api.CreateSSHKeyRequest{Name: name, PublicKey: publicKey}, idempotencyKey, &k)
}

// ListSSHKeys returns every SSH key (all pages).
func (c *Client) ListSSHKeys(ctx context.Context) ([]api.SSHKeyView, error) {
	var out []api.SSHKeyView
	next := "/v1/ssh_keys?page_size=100"
	for next != "" {
		var page api.SSHKeyList
		if err := c.call(ctx, http.MethodGet, next, nil, "", &page); err != nil {
			return nil, err
		}
		out = append(out, page.SSHKeys...)
		next = page.Next
	}
	return out, nil
}

// GetSSHKey returns an SSH key by ID or name.
func (c *Client) GetSSHKey(ctx context.Context, ref string) (api.SSHKeyView, error) {
	var k api.SSHKeyView
	return k, c.call(ctx, http.MethodGet, "/v1/ssh_keys/"+url.PathEscape(ref), nil, "", &k)
}

// DeleteSSHKey deletes an SSH key by ID or name.
func (c *Client) DeleteSSHKey(ctx context.Context, ref, idempotencyKey string) error {
	return c.call(ctx, http.MethodDelete, "/v1/ssh_keys/"+url.PathEscape(ref), nil, idempotencyKey, nil)
}
