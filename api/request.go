package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
)

// decode reads a JSON body strictly: the right content type, no unknown
// fields, nothing after the object. It returns the raw body for the
// idempotency fingerprint.
func (s *Server) decode(c *gin.Context, v any) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, errorf(CodeUnsupportedMedia, "Content-Type must be application/json", "Content-Type")
	}
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, errorf(CodeTooLarge, fmt.Sprintf("request body over %d bytes", s.cfg.MaxBodyBytes))
		}
		return nil, errorf(CodeInvalidRequest, "could not read the request body")
	}
	if err := decodeJSON(body, v); err != nil {
		return nil, err
	}
	return body, nil
}

// decodeJSON decodes one JSON object strictly into v; errors name the field
// in JSON terms, never a Go type.
func decodeJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		detail, field := jsonProblem(err)
		if field != "" {
			return errorf(CodeInvalidRequest, "invalid JSON body: "+detail, field)
		}
		return errorf(CodeInvalidRequest, "invalid JSON body: "+detail)
	}
	if bytes.Equal(bytes.TrimSpace(body), []byte("null")) {
		return errorf(CodeInvalidRequest, "invalid JSON body: the body must be a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errorf(CodeInvalidRequest, "invalid JSON body: data after the object")
	}
	return nil
}

// jsonProblem describes a decoding error for the customer, and the field
// at fault when there is one.
func jsonProblem(err error) (detail, field string) {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at byte %d", syn.Offset), ""
	case errors.As(err, &typ):
		if typ.Field == "" {
			return "the body must be a JSON " + jsonType(typ.Type), ""
		}
		return fmt.Sprintf("field %q must be a JSON %s, not %s", typ.Field, jsonType(typ.Type), typ.Value), typ.Field
	case errors.Is(err, io.EOF):
		return "empty body", ""
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the body ends early", ""
	}
	if _, f, ok := strings.Cut(err.Error(), "json: unknown field "); ok {
		f = strings.Trim(f, `"`)
		return fmt.Sprintf("unknown field %q", f), f
	}
	return "malformed JSON", ""
}

// jsonType names a Go type the way JSON does.
func jsonType(t reflect.Type) string {
	if t == nil {
		return "value"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Map, reflect.Struct:
		return "object"
	case reflect.Pointer:
		return jsonType(t.Elem())
	}
	return "value"
}

// parseID checks a path ID: a UUID in its canonical form (any case). It
// returns the lower-case form the read model is keyed by.
func parseID(raw, what string) (string, error) {
	u, err := uuid.Parse(raw)
	if err != nil || len(raw) != 36 {
		return "", errorf(CodeInvalidRequest, fmt.Sprintf("%q is not a %s ID (a UUID such as 01937c3e-7f7a-7b6e-9a51-6a1f2b3c4d5e)", clip(raw), what), "id")
	}
	return u.String(), nil
}

// clip shortens customer input echoed in an error.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// query checks a request's query string: it parses, names only allowed
// parameters, and names each at most once.
func query(c *gin.Context, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(c.Request.URL.RawQuery)
	if err != nil {
		return nil, errorf(CodeInvalidRequest, "malformed query string")
	}
	for k, v := range q {
		if !slices.Contains(allowed, k) {
			if len(allowed) == 0 {
				return nil, errorf(CodeInvalidRequest, fmt.Sprintf("unknown query parameter %q: this endpoint takes none", clip(k)), clip(k))
			}
			return nil, errorf(CodeInvalidRequest, fmt.Sprintf("unknown query parameter %q (known: %s)", clip(k), strings.Join(allowed, ", ")), clip(k))
		}
		if len(v) > 1 {
			return nil, errorf(CodeInvalidRequest, fmt.Sprintf("query parameter %q given %d times", k, len(v)), k)
		}
	}
	return q, nil
}

// noQuery refuses any query parameter.
func (s *Server) noQuery(c *gin.Context) bool {
	if _, err := query(c); err != nil {
		s.abort(c, err)
		return false
	}
	return true
}

// Pagination. Lists are in a stable order: creation time, then ID. A
// cursor is the position of the last item of a page; the next page starts
// after it. Cursors are opaque to clients.
const (
	defaultPageSize = 20
	maxPageSize     = 100
)

type cursor struct {
	At time.Time `json:"t"`
	ID string    `json:"i"`
}

// after reports whether an item at (at, id) comes after the cursor (a zero
// cursor is before everything).
func (cur cursor) after(at time.Time, id string) bool {
	if cur.ID == "" {
		return true
	}
	if !at.Equal(cur.At) {
		return at.After(cur.At)
	}
	return id > cur.ID
}

func encodeCursor(cur cursor) string {
	b, _ := json.Marshal(cur)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (cursor, error) {
	var cur cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cur, err
	}
	if err := json.Unmarshal(b, &cur); err != nil || cur.ID == "" {
		return cur, errors.New("bad cursor")
	}
	return cur, nil
}

// page is a request for one page of a list.
type page struct {
	size  int
	after cursor
}

func parsePage(q url.Values) (page, error) {
	p := page{size: defaultPageSize}
	if v := q.Get("page_size"); q.Has("page_size") {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			return p, errorf(CodeInvalidRequest, fmt.Sprintf("page_size must be an integer from 1 to %d", maxPageSize), "page_size")
		}
		p.size = n
	}
	if v := q.Get("page_token"); q.Has("page_token") {
		cur, err := decodeCursor(v)
		if err != nil {
			return p, errorf(CodeInvalidRequest, "invalid page_token: pass the one from the previous page's next link", "page_token")
		}
		p.after = cur
	}
	return p, nil
}

// paginate returns the items of one page of a sorted list and the link to
// the next page ("" on the last).
func paginate[T any](items []T, pos func(T) (time.Time, string), p page, path string, q url.Values) ([]T, string) {
	out := make([]T, 0, min(p.size, len(items)))
	for _, it := range items {
		at, id := pos(it)
		if !p.after.after(at, id) {
			continue
		}
		if len(out) == p.size {
			lastAt, lastID := pos(out[len(out)-1])
			next := url.Values{}
			for k, v := range q {
				next[k] = v
			}
			next.Set("page_token", encodeCursor(cursor{At: lastAt, ID: lastID}))
			next.Set("page_size", strconv.Itoa(p.size))
			return out, path + "?" + next.Encode()
		}
		out = append(out, it)
	}
	return out, ""
}
