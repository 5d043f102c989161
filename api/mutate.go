package api

import (
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/cloudservers/cloudservers"
)

// openMutation is the preamble of every mutation handler: no query
// string, the path's id checked by ref (when given), the JSON body decoded
// into req (when given), then beginMutation. ok false: it has answered.
func (s *Server) openMutation(c *gin.Context, ref func(raw string) (string, error), req any) (id string, idem *idempotency, ok bool) {
	if !s.noQuery(c) {
		return "", nil, false
	}
	if ref != nil {
		var err error
		if id, err = ref(c.Param("id")); err != nil {
			s.abort(c, err)
			return "", nil, false
		}
	}
	var body []byte
	if req != nil {
		var err error
		if body, err = s.decode(c, req); err != nil {
			s.abort(c, err)
			return "", nil, false
		}
	}
	idem, ok = s.beginMutation(c, body)
	return id, idem, ok
}

// mutationOf opens a mutation of the customer's resource named by the
// path's id (see openMutation) and finds it with own. ok false: it has
// answered.
func mutationOf[T any](s *Server, c *gin.Context, ref func(raw string) (string, error), req any,
	own func(id string) (T, error)) (v T, idem *idempotency, ok bool) {
	id, idem, ok := s.openMutation(c, ref, req)
	if !ok {
		return v, nil, false
	}
	v, err := own(id)
	if err != nil {
		s.abort(c, err)
		return v, nil, false
	}
	return v, idem, true
}

// serverMutation opens a mutation of the path's server, the customer's.
func (s *Server) serverMutation(c *gin.Context, req any) (cloudservers.Server, *idempotency, bool) {
	return mutationOf(s, c, serverRef, req, func(id string) (cloudservers.Server, error) {
		return s.ownServer(c, customerOf(c), id)
	})
}

func serverRef(raw string) (string, error) { return parseID(raw, "server") }

// invalid collects what is wrong with a request's fields, for one
// validation_failed problem naming them all.
type invalid struct{ fields, problems []string }

func (v *invalid) add(field, problem string) {
	v.fields, v.problems = append(v.fields, field), append(v.problems, problem)
}

// err is the validation_failed error, or nil when nothing was added.
func (v *invalid) err() error {
	if len(v.fields) == 0 {
		return nil
	}
	return errorf(CodeValidation, strings.Join(v.problems, "; "), v.fields...)
}
