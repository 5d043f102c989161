package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cloudservers/cloudservers"
)

// createServer godoc
//
//	@Summary		Create a server
//	@Description	Accepted once Kafka has the request: the answer is the create operation, and the Location header names the new server (status queued, then creating, then active with its public IPv4). Follow the operation with GET /v1/operations/{id} or the event stream.
//	@Tags			servers
//	@Accept			json
//	@Produce		json,application/problem+json
//	@Security		BearerAuth
//	@Param			Idempotency-Key	header		string				false	"Makes retries safe: the same key and body return the original answer for 24 hours"
//	@Param			body			body		CreateServerRequest	true	"The server"
//	@Success		202				{object}	OperationView
//	@Header			202				{string}	Location	"The new server"
//	@Failure		400				{object}	Problem	"invalid_request: malformed JSON, unknown field, bad Idempotency-Key"
//	@Failure		401				{object}	Problem	"unauthorized"
//	@Failure		403				{object}	Problem	"quota_exceeded: servers or vCPUs"
//	@Failure		413				{object}	Problem	"request_too_large"
//	@Failure		415				{object}	Problem	"unsupported_media_type"
//	@Failure		422				{object}	Problem	"validation_failed (fields named), or idempotency_key_reused"
//	@Failure		429				{object}	Problem	"rate_limited"
//	@Failure		503				{object}	Problem	"service_unavailable: Kafka did not take the request; retry with the same Idempotency-Key"
//	@Header			all				{integer}	RateLimit-Limit		"Requests allowed in a burst"
//	@Header			all				{integer}	RateLimit-Remaining	"Requests left now"
//	@Header			all				{integer}	RateLimit-Reset		"Seconds until the limit is fully restored"
//	@Router			/v1/servers [post]
func (s *Server) createServer(c *gin.Context) {
	var req CreateServerRequest
	_, idem, ok := s.openMutation(c, nil, &req)
	if !ok {
		return
	}
	customer := customerOf(c)
	def, _ := cloudservers.LookupOperation(cloudservers.OpCreate)
	p := cloudservers.CreateParams{Name: req.Name, Size: req.Size, Image: req.Image, Region: req.Region}
	var bad invalid
	var pes cloudservers.ParamErrors
	if err := def.ValidateParams(mustJSON(p), s.cfg.Catalog); errors.As(err, &pes) {
		for _, pe := range pes {
			bad.add(pe.Field, pe.Problem)
		}
	} else if err != nil {
		s.abort(c, paramProblem(err))
		return
	}
	key, field, problem := s.serverSSHKey(customer, req)
	if problem != "" {
		bad.add(field, problem)
	}
	if err := bad.err(); err != nil {
		s.abort(c, err)
		return
	}
	if key != nil {
		p.SSHKey, p.KeyName = key.PublicKey, NovaKeyName(key.ID)
	}
	params := mustJSON(p)
	if err := s.checkQuota(customer, def.Quota(s.cfg.Catalog, cloudservers.Server{}, params)); err != nil {
		s.abort(c, err)
		return
	}
	s.accept(c, idem, mutation{op: cloudservers.OpCreate, params: params, create: &p})
}

// maxSSHKeysPerServer is how many SSH keys a server takes: Nova boots a
// server with one keypair.
const maxSSHKeysPerServer = 1

// serverSSHKey resolves the SSH key of a create request (by ID or name),
// or names the field at fault.
func (s *Server) serverSSHKey(customer string, req CreateServerRequest) (key *SSHKey, field, problem string) {
	refs, field := req.SSHKeys, "ssh_keys"
	if req.SSHKey != "" {
		if len(req.SSHKeys) > 0 {
			return nil, "ssh_key", "give ssh_key or ssh_keys, not both"
		}
		refs, field = []string{req.SSHKey}, "ssh_key"
	}
	if len(refs) == 0 {
		return nil, "", ""
	}
	if len(refs) > maxSSHKeysPerServer {
		return nil, field, fmt.Sprintf("a server takes %d SSH key (the keypair Nova boots it with), not %d", maxSSHKeysPerServer, len(refs))
	}
	k, ok := s.findSSHKey(customer, refs[0])
	if !ok {
		return nil, field, fmt.Sprintf("unknown SSH key %q (see GET /v1/ssh_keys)", clip(refs[0]))
	}
	return &k, "", ""
}

// checkQuota refuses a change that would take the customer over its server
// or vCPU quota: u's more servers and more vCPUs.
func (s *Server) checkQuota(customer string, u cloudservers.Usage) error {
	vcpus, servers := u.VCPUs, u.Servers
	live := s.rm.Servers(customer, func(sv cloudservers.Server) bool {
		return sv.Status != cloudservers.StatusDeleted
	})
	used := 0
	for _, sv := range live {
		if sz, ok := s.cfg.Catalog.Size(sv.Size); ok {
			used += sz.VCPUs
		}
	}
	if servers > 0 && len(live)+servers > s.cfg.MaxServers {
		return errorf(CodeQuotaExceeded, fmt.Sprintf("server quota exceeded: %d of %d servers in use; delete one first", len(live), s.cfg.MaxServers))
	}
	if vcpus > 0 && used+vcpus > s.cfg.MaxVCPUs {
		return errorf(CodeQuotaExceeded, fmt.Sprintf("vCPU quota exceeded: this needs %d more, %d of %d in use", vcpus, used, s.cfg.MaxVCPUs))
	}
	return nil
}

// getServer godoc
//
//	@Summary	Get a server
//	@Tags		servers
//	@Produce	json,application/problem+json
//	@Security	BearerAuth
//	@Param		id	path		string	true	"Server ID"	format(uuid)
//	@Success	200	{object}	ServerView
//	@Failure	400	{object}	Problem	"invalid_request: not a UUID"
//	@Failure	401	{object}	Problem	"unauthorized"
//	@Failure	404	{object}	Problem	"not_found (also another customer's server)"
//	@Failure	429	{object}	Problem	"rate_limited"
//	@Header		all	{integer}	RateLimit-Limit		"Requests allowed in a burst"
//	@Header		all	{integer}	RateLimit-Remaining	"Requests left now"
//	@Header		all	{integer}	RateLimit-Reset		"Seconds until the limit is fully restored"
//	@Router		/v1/servers/{id} [get]
func (s *Server) getServer(c *gin.Context) {
	if !s.noQuery(c) {
		return
	}
	id, err := parseID(c.Param("id"), "server")
	if err != nil {
		s.abort(c, err)
		return
	}
	srv, err := s.ownServer(c, customerOf(c), id)
	if err != nil {
		s.abort(c, err)
		return
	}
	c.JSON(http.StatusOK, s.serverView(srv))
}

func (s *Server) serverView(srv cloudservers.Server) ServerView {
	if op, ok := s.rm.inFlight(srv, s.now().Add(-s.cfg.PendingLock)); ok {
		return serverView(srv, &op)
	}
	return serverView(srv, nil)
}

// deleteServer godoc
//
//	@Summary		Delete a server
//	@Description	Deletes the server and everything the system made for it (port, floating IP). The server stays readable with status deleted.
//	@Tags			servers
//	@Produce		json,application/problem+json
//	@Security		BearerAuth
//	@Param			id				path		string	true	"Server ID"	format(uuid)
//	@Param			Idempotency-Key	header		string	false	"Makes retries safe: the same key returns the original answer for 24 hours"
//	@Success		202				{object}	OperationView
//	@Failure		400				{object}	Problem	"invalid_request"
//	@Failure		401				{object}	Problem	"unauthorized"
//	@Failure		404				{object}	Problem	"not_found"
//	@Failure		409				{object}	Problem	"server_locked: an operation is in flight; invalid_state: the server cannot be deleted now"
//	@Failure		422				{object}	Problem	"idempotency_key_reused"
//	@Failure		429				{object}	Problem	"rate_limited"
//	@Failure		503				{object}	Problem	"service_unavailable"
//	@Header			all				{integer}	RateLimit-Limit		"Requests allowed in a burst"
//	@Header			all				{integer}	RateLimit-Remaining	"Requests left now"
//	@Header			all				{integer}	RateLimit-Reset		"Seconds until the limit is fully restored"
//	@Router			/v1/servers/{id} [delete]
func (s *Server) deleteServer(c *gin.Context) {
	srv, idem, ok := s.serverMutation(c, nil)
	if !ok {
		return
	}
	if err := s.checkState(srv, cloudservers.OpDelete); err != nil {
		s.abort(c, err)
		return
	}
	s.accept(c, idem, mutation{op: cloudservers.OpDelete, serverID: srv.ID})
}

// serverAction godoc
//
//	@Summary		Act on a server
//	@Description	One action per request, named by type: reboot (reboot_type soft, the default, or hard), power_off, power_on, resize (size). The actions are the operations of the saga registry. Each answers 202 with the operation.
//	@Tags			servers
//	@Accept			json
//	@Produce		json,application/problem+json
//	@Security		BearerAuth
//	@Param			id				path		string			true	"Server ID"	format(uuid)
//	@Param			Idempotency-Key	header		string			false	"Makes retries safe: the same key and body return the original answer for 24 hours"
//	@Param			body			body		ActionRequest	true	"The action"
//	@Success		202				{object}	OperationView
//	@Failure		400				{object}	Problem	"invalid_request"
//	@Failure		401				{object}	Problem	"unauthorized"
//	@Failure		403				{object}	Problem	"quota_exceeded: a resize over the vCPU quota"
//	@Failure		404				{object}	Problem	"not_found"
//	@Failure		409				{object}	Problem	"server_locked: an operation is in flight; invalid_state: the action does not apply to the server's status"
//	@Failure		413				{object}	Problem	"request_too_large"
//	@Failure		415				{object}	Problem	"unsupported_media_type"
//	@Failure		422				{object}	Problem	"validation_failed (fields named), or idempotency_key_reused"
//	@Failure		429				{object}	Problem	"rate_limited"
//	@Failure		503				{object}	Problem	"service_unavailable"
//	@Header			all				{integer}	RateLimit-Limit		"Requests allowed in a burst"
//	@Header			all				{integer}	RateLimit-Remaining	"Requests left now"
//	@Header			all				{integer}	RateLimit-Reset		"Seconds until the limit is fully restored"
//	@Router			/v1/servers/{id}/actions [post]
func (s *Server) serverAction(c *gin.Context) {
	var fields map[string]json.RawMessage
	srv, idem, ok := s.serverMutation(c, &fields)
	if !ok {
		return
	}
	var typ string
	if raw, ok := fields["type"]; !ok || json.Unmarshal(raw, &typ) != nil || typ == "" {
		s.abort(c, errorf(CodeValidation, "type must name the action: "+strings.Join(actionTypes(), ", "), "type"))
		return
	}
	delete(fields, "type")
	op := cloudservers.OperationType(typ)
	def, ok := cloudservers.LookupOperation(op)
	if !ok || def.API != cloudservers.ExposeAction {
		s.abort(c, errorf(CodeValidation, fmt.Sprintf("unknown action type %q: %s", clip(typ), strings.Join(actionTypes(), ", ")), "type"))
		return
	}
	s.startOn(c, srv, idem, def, mustJSON(fields), nil)
}

// startOn accepts an operation of the table on a server once its
// parameters are valid (ValidateParams, then Applies), then also by check
// (when given), the server's status allows it, and the customer's quota
// has room for it.
func (s *Server) startOn(c *gin.Context, srv cloudservers.Server, idem *idempotency, def cloudservers.OperationDef, params json.RawMessage, check func() error) {
	if err := def.ValidateParams(params, s.cfg.Catalog); err != nil {
		s.abort(c, paramProblem(err))
		return
	}
	if def.Applies != nil {
		if pe := def.Applies(srv, params); pe != nil {
			s.abort(c, errorf(CodeValidation, pe.Problem, pe.Field))
			return
		}
	}
	if check != nil {
		if err := check(); err != nil {
			s.abort(c, err)
			return
		}
	}
	if err := s.checkState(srv, def.Type); err != nil {
		s.abort(c, err)
		return
	}
	if def.Quota != nil {
		if err := s.checkQuota(customerOf(c), def.Quota(s.cfg.Catalog, srv, params)); err != nil {
			s.abort(c, err)
			return
		}
	}
	s.accept(c, idem, mutation{op: def.Type, serverID: srv.ID, params: params})
}

// renameServer godoc
//
//	@Summary		Rename a server
//	@Description	Changes the server's name; PUT and PATCH take the same body. The name is the customer's: the Nova instance keeps the name the system recognises it by. Answers 202 with the rename operation.
//	@Tags			servers
//	@Accept			json
//	@Produce		json,application/problem+json
//	@Security		BearerAuth
//	@Param			id				path		string				true	"Server ID"	format(uuid)
//	@Param			Idempotency-Key	header		string				false	"Makes retries safe: the same key and body return the original answer for 24 hours"
//	@Param			body			body		UpdateServerRequest	true	"The new name"
//	@Success		202				{object}	OperationView
//	@Failure		400				{object}	Problem	"invalid_request"
//	@Failure		401				{object}	Problem	"unauthorized"
//	@Failure		404				{object}	Problem	"not_found"
//	@Failure		409				{object}	Problem	"already_exists: another of your servers has this name; server_locked: an operation is in flight; invalid_state"
//	@Failure		413				{object}	Problem	"request_too_large"
//	@Failure		415				{object}	Problem	"unsupported_media_type"
//	@Failure		422				{object}	Problem	"validation_failed (name), or idempotency_key_reused"
//	@Failure		429				{object}	Problem	"rate_limited"
//	@Failure		503				{object}	Problem	"service_unavailable"
//	@Header			all				{integer}	RateLimit-Limit		"Requests allowed in a burst"
//	@Header			all				{integer}	RateLimit-Remaining	"Requests left now"
//	@Header			all				{integer}	RateLimit-Reset		"Seconds until the limit is fully restored"
//	@Router			/v1/servers/{id} [put]
//	@Router			/v1/servers/{id} [patch]
func (s *Server) renameServer(c *gin.Context) {
	var fields map[string]json.RawMessage
	srv, idem, ok := s.serverMutation(c, &fields)
	if !ok {
		return
	}
	def, _ := cloudservers.LookupOperation(cloudservers.OpRename)
	params := mustJSON(fields)
	s.startOn(c, srv, idem, def, params, func() error {
		var p cloudservers.RenameParams
		_ = json.Unmarshal(params, &p)
		taken := s.rm.Servers(srv.CustomerID, func(sv cloudservers.Server) bool {
			return sv.ID != srv.ID && sv.Name == p.Name && sv.Status != cloudservers.StatusDeleted
		})
		if len(taken) > 0 {
			return errorf(CodeAlreadyExists, fmt.Sprintf("server %s is already named %s", taken[0].ID, p.Name), "name")
		}
		return nil
	})
}

// actionTypes are the operations the action endpoint accepts: those that
// cloudservers.Operations exposes as actions.
func actionTypes() []string {
	var out []string
	for _, d := range cloudservers.Operations() {
		if d.API == cloudservers.ExposeAction {
			out = append(out, string(d.Type))
		}
	}
	return out
}

// paramProblem turns a saga's parameter validation error into a 422 naming
// the field, in JSON terms.
func paramProblem(err error) error {
	var pe *cloudservers.ParamError
	if errors.As(err, &pe) {
		return errorf(CodeValidation, pe.Problem, pe.Field)
	}
	var pes cloudservers.ParamErrors
	if errors.As(err, &pes) {
		var bad invalid
		for _, pe := range pes {
			bad.add(pe.Field, pe.Problem)
		}
		return bad.err()
	}
	detail, field := jsonProblem(err)
	if field != "" {
		return errorf(CodeValidation, detail, field)
	}
	return errorf(CodeValidation, "invalid parameters: "+detail)
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
	if o, ok := s.rm.inFlight(srv, s.now().Add(-s.cfg.PendingLock)); ok {
		kind := string(o.Type)
		if kind == "" {
			kind = "an"
		}
		return errorf(CodeLocked, fmt.Sprintf("server %s has %s operation %s in flight (/v1/operations/%s); retry when it completes", srv.ID, kind, o.ID, o.ID))
	}
	def, ok := cloudservers.LookupOperation(op)
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
//	@Summary		List servers
//	@Description	Oldest first (creation time, then ID). Deleted servers are listed only with status=deleted.
//	@Tags			servers
//	@Produce		json,application/problem+json
//	@Security		BearerAuth
//	@Param			status		query		string	false	"Only servers in this status"	Enums(queued,creating,active,off,rebooting,stopping,starting,resizing,rebuilding,deleting,deleted,error)
//	@Param			page_size	query		int		false	"1 to 100, default 20"	minimum(1)	maximum(100)
//	@Param			page_token	query		string	false	"From the previous page's next link"
//	@Success		200			{object}	ServerList
//	@Failure		400			{object}	Problem	"invalid_request: unknown parameter or status, bad page_size or page_token"
//	@Failure		401			{object}	Problem	"unauthorized"
//	@Failure		429			{object}	Problem	"rate_limited"
//	@Header			all			{integer}	RateLimit-Limit		"Requests allowed in a burst"
//	@Header			all			{integer}	RateLimit-Remaining	"Requests left now"
//	@Header			all			{integer}	RateLimit-Reset		"Seconds until the limit is fully restored"
//	@Router			/v1/servers [get]
func (s *Server) listServers(c *gin.Context) {
	s.listServersOf(c, customerOf(c), "/v1/servers")
}

func (s *Server) listServersOf(c *gin.Context, customer, path string) {
	q, err := query(c, "status", "page_size", "page_token")
	if err != nil {
		s.abort(c, err)
		return
	}
	p, err := parsePage(q)
	if err != nil {
		s.abort(c, err)
		return
	}
	status := q.Get("status")
	if q.Has("status") && !cloudservers.ServerStatus(status).Known() {
		s.abort(c, errorf(CodeInvalidRequest, fmt.Sprintf("unknown status %q", clip(status)), "status"))
		return
	}
	all := s.rm.Servers(customer, func(sv cloudservers.Server) bool {
		if status == "" {
			return sv.Status != cloudservers.StatusDeleted
		}
		return string(sv.Status) == status
	})
	items, next := paginate(all, func(sv cloudservers.Server) (time.Time, string) { return sv.CreatedAt, sv.ID }, p, path, q)
	out := ServerList{Servers: make([]ServerView, 0, len(items)), Next: next}
	for _, sv := range items {
		out.Servers = append(out.Servers, s.serverView(sv))
	}
	c.JSON(http.StatusOK, out)
}

// ownServer returns the customer's server. Another customer's server is
// "not found", exactly like a missing one. A server not yet in this
// replica's read model is waited for briefly: another replica may have just
// accepted it.
func (s *Server) ownServer(c *gin.Context, customer, id string) (cloudservers.Server, error) {
	srv, ok := s.rm.Server(id)
	if !ok {
		_ = s.sync(c)
		srv, ok = s.rm.Server(id)
	}
	if !ok || srv.CustomerID != customer {
		return cloudservers.Server{}, errorf(CodeNotFound, "server "+id+" not found")
	}
	return srv, nil
}

// mutation is a server operation to accept.
type mutation struct {
	op       cloudservers.OperationType
	serverID string // empty for create: derived here
	params   json.RawMessage
	create   *cloudservers.CreateParams
}

// accept publishes a mutation and answers 202 with its operation once
// Kafka has acknowledged its request (publish).
func (s *Server) accept(c *gin.Context, idem *idempotency, m mutation) {
	customer := customerOf(c)
	opID := idem.newID("operation")
	if op, ok := s.rm.Operation(opID); ok && op.CustomerID == customer && op.Error != notQueued {
		// This very request was accepted before (its idempotency record
		// was lost, or a twin was accepted concurrently): same answer.
		s.respond(c, idem, http.StatusAccepted, operationView(op), createdLocation(op))
		return
	}
	now := s.now().UTC()
	serverID := m.serverID
	if m.op == cloudservers.OpCreate {
		serverID = idem.newID("server")
	}
	req := cloudservers.Request{OperationID: opID, ServerID: serverID, CustomerID: customer, Operation: m.op, Params: m.params, RequestedAt: now}
	if idem.key != "" {
		req.Idempotency = &cloudservers.RequestIdempotency{Key: idem.key, BodyHash: idem.fingerprint,
			Method: c.Request.Method, Path: c.Request.URL.Path, ExpiresAt: now.Add(s.cfg.IdempotencyTTL)}
	}
	server, op, rec := InitialState(req)
	if err := s.write(c, func(ctx context.Context) error { return s.publish(ctx, req) }); err != nil {
		s.log.ErrorContext(c.Request.Context(), "mutation not accepted", "operation", opID, "type", m.op, "error", err)
		s.abort(c, unavailable(err))
		s.observeAccept(c, string(m.op), false)
		return
	}
	// Read-your-writes on this replica before its consumer reads the
	// request back; the answer is the idempotency record's, byte for byte.
	s.rm.Accepted(server, &op, rec)
	s.reply(c, http.StatusAccepted, mustJSON(operationView(op)), createdLocation(op))
	s.observeAccept(c, string(m.op), true)
}

// notQueued marks the operation record of a request Kafka did not take,
// which earlier versions of publish wrote (such records stay in the
// compacted topic): a retry with the same Idempotency-Key publishes it
// anew.
const notQueued = "not accepted: the request could not be queued"

func createdLocation(op cloudservers.Operation) string {
	if op.Type == cloudservers.OpCreate {
		return "/v1/servers/" + op.ServerID
	}
	return ""
}

// publish writes a mutation: one record, its request, to its customer's
// partition of the requests topic, through an idempotent acks=all producer
// that batches concurrent mutations into one produce. Once Kafka has
// acknowledged it the mutation is durable, and it is all there is of it:
// every replica's read model materializes it as the initial state (the
// server queued, the operation pending, the Idempotency-Key's record; see
// InitialState), so there is nothing else to write, nothing to keep
// atomic with it, and a write that fails leaves nothing behind. (A write
// that timed out may still have landed: its request is then processed,
// and a retry with the same Idempotency-Key, which derives the same
// operation ID, finds it and answers with it.)
func (s *Server) publish(ctx context.Context, req cloudservers.Request) error {
	return s.publishRouted(ctx, req)
}
