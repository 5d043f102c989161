package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/cloudservers/cloudservers"
)

// getOperation godoc
//
//	@Summary	Get an operation
//	@Tags		operations
//	@Produce	json,application/problem+json
//	@Security	BearerAuth
//	@Param		id	path		string	true	"Operation ID"	format(uuid)
//	@Success	200	{object}	OperationView
//	@Failure	400	{object}	Problem	"invalid_request: not a UUID"
//	@Failure	401	{object}	Problem	"unauthorized"
//	@Failure	404	{object}	Problem	"not_found (also another customer's operation)"
//	@Failure	429	{object}	Problem	"rate_limited"
//	@Header		all	{integer}	RateLimit-Limit		"Requests allowed in a burst"
//	@Header		all	{integer}	RateLimit-Remaining	"Requests left now"
//	@Header		all	{integer}	RateLimit-Reset		"Seconds until the limit is fully restored"
//	@Router		/v1/operations/{id} [get]
func (s *Server) getOperation(c *gin.Context) {
	if !s.noQuery(c) {
		return
	}
	id, err := parseID(c.Param("id"), "operation")
	if err != nil {
		s.abort(c, err)
		return
	}
	op, ok := s.rm.Operation(id)
	if !ok {
		_ = s.sync(c)
		op, ok = s.rm.Operation(id)
	}
	if !ok || op.CustomerID != customerOf(c) {
		s.abort(c, errorf(CodeNotFound, "operation "+id+" not found"))
		return
	}
	c.JSON(http.StatusOK, operationView(op))
}

// listOperations godoc
//
//	@Summary	List a server's operations, oldest first
//	@Tags		operations
//	@Produce	json,application/problem+json
//	@Security	BearerAuth
//	@Param		id			path		string	true	"Server ID"	format(uuid)
//	@Param		status		query		string	false	"Only operations in this status"	Enums(pending,running,succeeded,failed)
//	@Param		page_size	query		int		false	"1 to 100, default 20"	minimum(1)	maximum(100)
//	@Param		page_token	query		string	false	"From the previous page's next link"
//	@Success	200			{object}	OperationList
//	@Failure	400			{object}	Problem	"invalid_request"
//	@Failure	401			{object}	Problem	"unauthorized"
//	@Failure	404			{object}	Problem	"not_found"
//	@Failure	429			{object}	Problem	"rate_limited"
//	@Header		all			{integer}	RateLimit-Limit		"Requests allowed in a burst"
//	@Header		all			{integer}	RateLimit-Remaining	"Requests left now"
//	@Header		all			{integer}	RateLimit-Reset		"Seconds until the limit is fully restored"
//	@Router		/v1/servers/{id}/operations [get]
func (s *Server) listOperations(c *gin.Context) {
	id, err := parseID(c.Param("id"), "server")
	if err != nil {
		s.abort(c, err)
		return
	}
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
	status := cloudservers.OperationStatus(q.Get("status"))
	switch {
	case !q.Has("status"):
	case status == cloudservers.OperationPending, status == cloudservers.OperationRunning,
		status == cloudservers.OperationSucceeded, status == cloudservers.OperationFailed:
	default:
		s.abort(c, errorf(CodeInvalidRequest, fmt.Sprintf("unknown status %q (pending, running, succeeded, failed)", clip(string(status))), "status"))
		return
	}
	srv, err := s.ownServer(c, customerOf(c), id)
	if err != nil {
		s.abort(c, err)
		return
	}
	var all []cloudservers.Operation
	for _, o := range s.rm.Operations(customerOf(c), srv.ID) {
		if status == "" || o.Status == status {
			all = append(all, o)
		}
	}
	items, next := paginate(all, func(o cloudservers.Operation) (time.Time, string) { return o.CreatedAt, o.ID }, p, "/v1/servers/"+srv.ID+"/operations", q)
	out := OperationList{Operations: make([]OperationView, 0, len(items)), Next: next}
	for _, o := range items {
		out.Operations = append(out.Operations, operationView(o))
	}
	c.JSON(http.StatusOK, out)
}
