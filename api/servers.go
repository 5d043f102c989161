package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/workflows"
)

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$`)
	// idempotencyNS derives operation and server IDs from an
	// Idempotency-Key: two replicas given the same key produce the same
	// IDs, and the lifecycle deduplicates by operation ID.
	idempotencyNS = uuid.MustParse("6f1c1f7e-5d0a-4c1e-9a0e-2b8f5d6c7a10")
)

// createServer godoc
//
//	@Summary		Create a server
//	@Description	Accepted once Kafka has the request. Follow the returned operation, or the server's status.
//	@Tags			servers
//	@Accept			json
//	@Produce		json
//	@Security		BearerAuth
//	@Param			Idempotency-Key	header		string				false	"Makes retries safe: the same key and body return the original answer"
//	@Param			body			body		CreateServerRequest	true	"The server"
//	@Success		202				{object}	OperationView
//	@Header			202				{string}	Location	"The new server"
//	@Failure		400				{object}	Problem
//	@Failure		401				{object}	Problem
//	@Failure		403				{object}	Problem	"quota exceeded"
//	@Failure		413				{object}	Problem
//	@Failure		415				{object}	Problem
//	@Failure		422				{object}	Problem
//	@Router			/v1/servers [post]
func (s *Server) createServer(c *gin.Context) {
	var req CreateServerRequest
	body, err := s.decode(c, &req)
	if err != nil {
		s.abort(c, err)
		return
	}
	var fields []string
	var problems []string
	if !nameRE.MatchString(req.Name) {
		fields, problems = append(fields, "name"), append(problems, "name must be 1-63 letters, digits, dots or hyphens, starting and ending with a letter or digit")
	}
	size, ok := s.cfg.Catalog.Size(req.Size)
	if !ok {
		fields, problems = append(fields, "size"), append(problems, fmt.Sprintf("unknown size %q (see GET /v1/sizes)", req.Size))
	}
	if _, ok := s.cfg.Catalog.Image(req.Image); !ok {
		fields, problems = append(fields, "image"), append(problems, fmt.Sprintf("unknown image %q (see GET /v1/images)", req.Image))
	}
	if _, ok := s.cfg.Catalog.Region(req.Region); !ok {
		fields, problems = append(fields, "region"), append(problems, fmt.Sprintf("unknown region %q (see GET /v1/regions)", req.Region))
	}
	if len(fields) > 0 {
		s.abort(c, errorf(CodeValidation, strings.Join(problems, "; "), fields...))
		return
	}
	customer := customerOf(c)
	if err := s.checkQuota(customer, size); err != nil {
		s.abort(c, err)
		return
	}
	params, _ := json.Marshal(cloudservers.CreateParams{Name: req.Name, Size: req.Size, Image: req.Image, Region: req.Region})
	s.mutate(c, body, cloudservers.OpCreate, "", params)
}

func (s *Server) checkQuota(customer string, size cloudservers.Size) error {
	live := s.rm.Servers(customer, func(sv cloudservers.Server) bool {
		return sv.Status != cloudservers.StatusDeleted
	})
	vcpus := size.VCPUs
	for _, sv := range live {
		if sz, ok := s.cfg.Catalog.Size(sv.Size); ok {
			vcpus += sz.VCPUs
		}
	}
	if len(live)+1 > s.cfg.MaxServers {
		return errorf(CodeQuotaExceeded, fmt.Sprintf("server quota exceeded: %d of %d servers in use", len(live), s.cfg.MaxServers))
	}
	if vcpus > s.cfg.MaxVCPUs {
		return errorf(CodeQuotaExceeded, fmt.Sprintf("vCPU quota exceeded: this server needs %d, %d of %d in use", size.VCPUs, vcpus-size.VCPUs, s.cfg.MaxVCPUs))
	}
	return nil
}

// getServer godoc
//
//	@Summary	Get a server
//	@Tags		servers
//	@Produce	json
//	@Security	BearerAuth
//	@Param		id	path		string	true	"Server ID"
//	@Success	200	{object}	ServerView
//	@Failure	400	{object}	Problem
//	@Failure	401	{object}	Problem
//	@Failure	404	{object}	Problem
//	@Router		/v1/servers/{id} [get]
func (s *Server) getServer(c *gin.Context) {
	srv, err := s.ownServer(c)
	if err != nil {
		s.abort(c, err)
		return
	}
	c.JSON(http.StatusOK, serverView(srv))
}

// deleteServer godoc
//
//	@Summary	Delete a server
//	@Tags		servers
//	@Produce	json
//	@Security	BearerAuth
//	@Param		id				path		string	true	"Server ID"
//	@Param		Idempotency-Key	header		string	false	"Makes retries safe"
//	@Success	202				{object}	OperationView
//	@Failure	400				{object}	Problem
//	@Failure	401				{object}	Problem
//	@Failure	404				{object}	Problem
//	@Failure	409				{object}	Problem	"an operation is in flight (server_locked) or the server cannot be deleted now (invalid_state)"
//	@Failure	422				{object}	Problem
//	@Router		/v1/servers/{id} [delete]
func (s *Server) deleteServer(c *gin.Context) {
	srv, err := s.ownServer(c)
	if err != nil {
		s.abort(c, err)
		return
	}
	if err := s.checkState(srv, cloudservers.OpDelete); err != nil {
		s.abort(c, err)
		return
	}
	s.mutate(c, nil, cloudservers.OpDelete, srv.ID, nil)
}

// serverAction godoc
//
//	@Summary		Act on a server
//	@Description	One action per request, named by type: reboot (reboot_type soft, the default, or hard), power_off, power_on, resize (size). The actions are the operations of the saga registry.
//	@Tags			servers
//	@Accept			json
//	@Produce		json
//	@Security		BearerAuth
//	@Param			id				path		string			true	"Server ID"
//	@Param			Idempotency-Key	header		string			false	"Makes retries safe"
//	@Param			body			body		ActionRequest	true	"The action"
//	@Success		202				{object}	OperationView
//	@Failure		400				{object}	Problem
//	@Failure		401				{object}	Problem
//	@Failure		404				{object}	Problem
//	@Failure		409				{object}	Problem	"an operation is in flight (server_locked) or the action does not apply now (invalid_state)"
//	@Failure		413				{object}	Problem
//	@Failure		415				{object}	Problem
//	@Failure		422				{object}	Problem
//	@Router			/v1/servers/{id}/actions [post]
func (s *Server) serverAction(c *gin.Context) {
	srv, err := s.ownServer(c)
	if err != nil {
		s.abort(c, err)
		return
	}
	var fields map[string]json.RawMessage
	body, err := s.decode(c, &fields)
	if err != nil {
		s.abort(c, err)
		return
	}
	var typ string
	if raw, ok := fields["type"]; !ok || json.Unmarshal(raw, &typ) != nil || typ == "" {
		s.abort(c, errorf(CodeValidation, "type must name the action: "+strings.Join(actionTypes(), ", "), "type"))
		return
	}
	delete(fields, "type")
	op := cloudservers.OperationType(typ)
	def, ok := workflows.Lookup(op)
	if !ok || op == cloudservers.OpCreate || op == cloudservers.OpDelete {
		s.abort(c, errorf(CodeValidation, fmt.Sprintf("unknown action type %q: %s", typ, strings.Join(actionTypes(), ", ")), "type"))
		return
	}
	params := mustJSON(fields)
	if err := def.ValidateParams(params, s.cfg.Catalog); err != nil {
		s.abort(c, paramProblem(err))
		return
	}
	if op == cloudservers.OpResize {
		var p cloudservers.ResizeParams
		_ = json.Unmarshal(params, &p)
		if p.Size == srv.Size {
			s.abort(c, errorf(CodeValidation, "the server already has size "+p.Size, "size"))
			return
		}
	}
	if err := s.checkState(srv, op); err != nil {
		s.abort(c, err)
		return
	}
	s.mutate(c, body, op, srv.ID, params)
}

// actionTypes are the operations the action endpoint accepts: every saga of
// the registry but create and delete, which have their own endpoints.
func actionTypes() []string {
	var out []string
	for _, d := range workflows.Registry() {
		if d.Operation != cloudservers.OpCreate && d.Operation != cloudservers.OpDelete {
			out = append(out, string(d.Operation))
		}
	}
	return out
}

// paramProblem turns a saga's parameter validation error into a 422 naming
// the field.
func paramProblem(err error) error {
	var pe *workflows.ParamError
	if errors.As(err, &pe) {
		return errorf(CodeValidation, pe.Problem, pe.Field)
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "invalid parameters: json: unknown field "); ok {
		f = strings.Trim(f, `"`)
		return errorf(CodeValidation, "unknown field "+f, f)
	}
	return errorf(CodeValidation, msg)
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only for types of ours that always marshal
	}
	return b
}

// checkState refuses an operation on a server that has one in flight
// (server_locked: retry once it completes) or whose status it does not
// apply to (invalid_state).
func (s *Server) checkState(srv cloudservers.Server, op cloudservers.OperationType) error {
	if srv.OperationID != "" {
		return errorf(CodeLocked, fmt.Sprintf("server %s has operation %s in flight; retry when it completes", srv.ID, srv.OperationID))
	}
	def, ok := workflows.Lookup(op)
	if !ok {
		return errorf(CodeValidation, "unknown operation "+string(op))
	}
	if err := def.Allowed(srv.Status); err != nil {
		return errorf(CodeInvalidState, err.Error())
	}
	return nil
}

// listServers godoc
//
//	@Summary	List servers
//	@Tags		servers
//	@Produce	json
//	@Security	BearerAuth
//	@Param		status		query		string	false	"Only servers in this status"
//	@Param		page_size	query		int		false	"1 to 100, default 20"
//	@Param		page_token	query		string	false	"From the previous page's next link"
//	@Success	200			{object}	ServerList
//	@Failure	400			{object}	Problem
//	@Failure	401			{object}	Problem
//	@Router		/v1/servers [get]
func (s *Server) listServers(c *gin.Context) {
	size := 20
	if v := c.Query("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			s.abort(c, errorf(CodeInvalidRequest, "page_size must be an integer from 1 to 100", "page_size"))
			return
		}
		size = n
	}
	status := c.Query("status")
	if status != "" && !knownStatus(status) {
		s.abort(c, errorf(CodeInvalidRequest, fmt.Sprintf("unknown status %q", status), "status"))
		return
	}
	var after cursor
	if v := c.Query("page_token"); v != "" {
		cur, err := decodeCursor(v)
		if err != nil {
			s.abort(c, errorf(CodeInvalidRequest, "invalid page_token", "page_token"))
			return
		}
		after = cur
	}
	all := s.rm.Servers(customerOf(c), func(sv cloudservers.Server) bool {
		return status == "" || string(sv.Status) == status
	})
	sortServers(all)
	out := ServerList{Servers: []ServerView{}}
	for _, sv := range all {
		if !after.before(sv) {
			continue
		}
		if len(out.Servers) == size {
			last := out.Servers[len(out.Servers)-1]
			q := c.Request.URL.Query()
			q.Set("page_token", encodeCursor(cursor{At: last.CreatedAt, ID: last.ID}))
			q.Set("page_size", strconv.Itoa(size))
			out.Next = "/v1/servers?" + q.Encode()
			break
		}
		out.Servers = append(out.Servers, serverView(sv))
	}
	c.JSON(http.StatusOK, out)
}

func knownStatus(s string) bool {
	switch cloudservers.ServerStatus(s) {
	case cloudservers.StatusQueued, cloudservers.StatusCreating, cloudservers.StatusActive, cloudservers.StatusOff,
		cloudservers.StatusRebooting, cloudservers.StatusStopping, cloudservers.StatusStarting, cloudservers.StatusResizing,
		cloudservers.StatusDeleting, cloudservers.StatusDeleted, cloudservers.StatusError:
		return true
	}
	return false
}

// cursor is a position in the stable list order: creation time, then ID.
type cursor struct {
	At time.Time `json:"t"`
	ID string    `json:"i"`
}

// before reports whether sv comes after the cursor (a zero cursor is
// before everything).
func (cur cursor) before(sv cloudservers.Server) bool {
	if cur.ID == "" {
		return true
	}
	if !sv.CreatedAt.Equal(cur.At) {
		return sv.CreatedAt.After(cur.At)
	}
	return sv.ID > cur.ID
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

func sortServers(all []cloudservers.Server) {
	// Stable order: creation time, then ID.
	for i := 1; i < len(all); i++ {
		for j := i; j > 0 && less(all[j], all[j-1]); j-- {
			all[j], all[j-1] = all[j-1], all[j]
		}
	}
}

func less(a, b cloudservers.Server) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return a.CreatedAt.Before(b.CreatedAt)
	}
	return a.ID < b.ID
}

// ownServer returns the customer's server named in the path. Another
// customer's server is "not found", exactly like a missing one. A server
// not yet in this replica's read model is waited for briefly: another
// replica may have just accepted it.
func (s *Server) ownServer(c *gin.Context) (cloudservers.Server, error) {
	id := c.Param("id")
	if _, err := uuid.Parse(id); err != nil {
		return cloudservers.Server{}, errorf(CodeInvalidRequest, fmt.Sprintf("%q is not a server ID (a UUID)", id), "id")
	}
	srv, ok := s.rm.Server(id)
	if !ok {
		s.sync(c.Request.Context())
		srv, ok = s.rm.Server(id)
	}
	if !ok || srv.CustomerID != customerOf(c) {
		return cloudservers.Server{}, errorf(CodeNotFound, "server "+id+" not found")
	}
	return srv, nil
}

func (s *Server) sync(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SyncTimeout)
	defer cancel()
	if err := s.rm.Sync(ctx, s.kafka); err != nil {
		s.log.Warn("read-your-writes sync incomplete", "error", err)
	}
}

// decode reads a JSON body strictly: the right content type, no unknown
// fields, nothing after the object. It returns the raw body for the
// idempotency fingerprint.
func (s *Server) decode(c *gin.Context, v any) ([]byte, error) {
	ct := c.GetHeader("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return nil, errorf(CodeUnsupportedMedia, "Content-Type must be application/json")
	}
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, errorf(CodeTooLarge, fmt.Sprintf("request body over %d bytes", s.cfg.MaxBodyBytes))
		}
		return nil, errorf(CodeInvalidRequest, "could not read the request body")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return nil, errorf(CodeInvalidRequest, "invalid JSON body: "+jsonProblem(err))
	}
	if dec.More() {
		return nil, errorf(CodeInvalidRequest, "invalid JSON body: data after the object")
	}
	return body, nil
}

func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q must be a %s", typ.Field, typ.Type)
	case errors.Is(err, io.EOF):
		return "empty body"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	return "malformed"
}

// mutate publishes a mutation and answers 202 with its operation. With an
// Idempotency-Key, a repeat with the same body gets the original answer
// (from any replica: the record is on Kafka) and a repeat with another body
// is refused.
func (s *Server) mutate(c *gin.Context, body []byte, op cloudservers.OperationType, serverID string, params json.RawMessage) {
	customer := customerOf(c)
	key := c.GetHeader("Idempotency-Key")
	if len(key) > 255 {
		s.abort(c, errorf(CodeInvalidRequest, "Idempotency-Key longer than 255 characters", "Idempotency-Key"))
		return
	}
	fingerprint := fingerprintOf(c.Request.Method, c.Request.URL.Path, body)
	recordKey := customer + "/" + key
	if key != "" {
		rec, ok := s.rm.Idempotency(recordKey)
		if !ok {
			s.sync(c.Request.Context())
			rec, ok = s.rm.Idempotency(recordKey)
		}
		if ok && s.now().Before(rec.ExpiresAt) {
			if rec.BodyHash != fingerprint {
				s.abort(c, errorf(CodeIdempotencyReuse, "this Idempotency-Key was used with a different request", "Idempotency-Key"))
				return
			}
			if rec.Location != "" {
				c.Header("Location", rec.Location)
			}
			c.Header("Idempotent-Replayed", "true")
			c.Data(rec.Status, "application/json; charset=utf-8", rec.Response)
			return
		}
	}
	now := s.now().UTC()
	opID := newID(key, customer, "operation")
	if op == cloudservers.OpCreate {
		serverID = newID(key, customer, "server")
	}
	req := cloudservers.Request{OperationID: opID, ServerID: serverID, CustomerID: customer, Operation: op, Params: params, RequestedAt: now}
	operation := cloudservers.Operation{ID: opID, ServerID: serverID, CustomerID: customer, Type: op, Status: cloudservers.OperationPending, CreatedAt: now, UpdatedAt: now}
	var server *cloudservers.Server
	if op == cloudservers.OpCreate {
		var p cloudservers.CreateParams
		_ = json.Unmarshal(params, &p)
		server = &cloudservers.Server{ID: serverID, CustomerID: customer, Name: p.Name, Status: cloudservers.StatusQueued,
			Size: p.Size, Image: p.Image, Region: p.Region, OperationID: opID, CreatedAt: now, UpdatedAt: now}
	}
	view := operationView(operation)
	resp := mustJSON(view)
	location := ""
	if op == cloudservers.OpCreate {
		location = "/v1/servers/" + serverID
	}
	var rec *IdempotencyRecord
	if key != "" {
		rec = &IdempotencyRecord{Key: recordKey, BodyHash: fingerprint, Method: c.Request.Method, Path: c.Request.URL.Path,
			Status: http.StatusAccepted, Response: resp, Location: location, CreatedAt: now, ExpiresAt: now.Add(s.cfg.IdempotencyTTL)}
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.WriteTimeout)
	defer cancel()
	if err := s.publish(ctx, req, server, operation, rec); err != nil {
		s.log.Error("mutation not accepted", "operation", opID, "error", err)
		s.abort(c, errorf(CodeUnavailable, "the request could not be queued; retry (with the same Idempotency-Key) shortly"))
		return
	}
	s.rm.Accepted(server, operation, rec)
	if location != "" {
		c.Header("Location", location)
	}
	c.Data(http.StatusAccepted, "application/json; charset=utf-8", resp)
}

// publish writes the request to its customer's partition, then the initial
// state records and the idempotency record. The state records carry version
// 0, so whatever the lifecycle publishes later wins regardless of arrival.
func (s *Server) publish(ctx context.Context, req cloudservers.Request, server *cloudservers.Server, op cloudservers.Operation, rec *IdempotencyRecord) error {
	partition := s.buckets.Partition(req.CustomerID)
	bucket := strconv.Itoa(cloudservers.Bucket(req.CustomerID))
	if err := s.requests.SendToPartition(ctx, cloudservers.TopicRequests, partition, []byte(bucket), mustJSON(req)); err != nil {
		return err
	}
	if server != nil {
		if err := s.state.Send(ctx, cloudservers.TopicServers, []byte(server.ID), mustJSON(server)); err != nil {
			return err
		}
	}
	if err := s.state.Send(ctx, cloudservers.TopicOperations, []byte(op.ID), mustJSON(op)); err != nil {
		return err
	}
	if rec != nil {
		if err := s.state.Send(ctx, cloudservers.TopicIdempotency, []byte(rec.Key), mustJSON(rec)); err != nil {
			return err
		}
	}
	return nil
}

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

// newID returns a time-ordered UUIDv7, or, with an idempotency key, a UUID
// derived from it so every replica derives the same one.
func newID(key, customer, kind string) string {
	if key != "" {
		return uuid.NewSHA1(idempotencyNS, []byte(customer+"\x00"+key+"\x00"+kind)).String()
	}
	return uuid.Must(uuid.NewV7()).String()
}
