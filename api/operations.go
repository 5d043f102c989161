package api

import (
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
)

// getOperation godoc
//
//	@Summary	Get an operation
//	@Tags		operations
//	@Produce	json
//	@Security	BearerAuth
//	@Param		id	path		string	true	"Operation ID"
//	@Success	200	{object}	OperationView
//	@Failure	400	{object}	Problem
//	@Failure	401	{object}	Problem
//	@Failure	404	{object}	Problem
//	@Router		/v1/operations/{id} [get]
func (s *Server) getOperation(c *gin.Context) {
	id := c.Param("id")
	if _, err := uuid.Parse(id); err != nil {
		s.abort(c, errorf(CodeInvalidRequest, fmt.Sprintf("%q is not an operation ID (a UUID)", id), "id"))
		return
	}
	op, ok := s.rm.Operation(id)
	if !ok {
		s.sync(c.Request.Context())
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
//	@Produce	json
//	@Security	BearerAuth
//	@Param		id	path		string	true	"Server ID"
//	@Success	200	{object}	OperationList
//	@Failure	400	{object}	Problem
//	@Failure	401	{object}	Problem
//	@Failure	404	{object}	Problem
//	@Router		/v1/servers/{id}/operations [get]
func (s *Server) listOperations(c *gin.Context) {
	srv, err := s.ownServer(c)
	if err != nil {
		s.abort(c, err)
		return
	}
	out := OperationList{Operations: []OperationView{}}
	for _, o := range s.rm.Operations(customerOf(c), srv.ID) {
		out.Operations = append(out.Operations, operationView(o))
	}
	c.JSON(http.StatusOK, out)
}
