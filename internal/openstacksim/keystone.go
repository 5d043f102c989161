package openstacksim

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// Keystone v3: password (and token) authentication with project scope, the
// catalog, and token validation for the other services.

type token struct {
	id      string
	issued  time.Time
	expires time.Time
	auditID string
	methods []string
}

func (s *Sim) routeKeystone() {
	s.mux.HandleFunc("GET /identity/{$}", s.keystoneVersions)
	s.mux.HandleFunc("GET /identity/v3", s.keystoneVersion)
	s.mux.HandleFunc("GET /identity/v3/{$}", s.keystoneVersion)
	s.mux.HandleFunc("POST /identity/v3/auth/tokens", s.createToken)
	s.mux.HandleFunc("GET /identity/v3/auth/tokens", s.keystone(s.validateToken))
	s.mux.HandleFunc("HEAD /identity/v3/auth/tokens", s.keystone(s.validateToken))
	s.mux.HandleFunc("DELETE /identity/v3/auth/tokens", s.keystone(s.revokeToken))
	s.mux.HandleFunc("GET /identity/v3/auth/catalog", s.keystone(s.getCatalog))
	s.mux.HandleFunc("/identity/", s.notFound(keystoneNotFound))
}

// keystoneError writes Keystone's error body.
func keystoneError(w http.ResponseWriter, code int, title, message string) {
	writeJSON(w, code, map[string]any{"error": map[string]any{"code": code, "title": title, "message": message}})
}

func keystoneNotFound(w http.ResponseWriter, r *http.Request) {
	keystoneError(w, http.StatusNotFound, "Not Found", "The resource could not be found.")
}

// unauthorized is keystonemiddleware's answer to a missing, invalid or
// expired token, the same for every service.
func (s *Sim) unauthorized(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", `Keystone uri="`+s.baseURL(r)+`/identity"`)
	keystoneError(w, http.StatusUnauthorized, "Unauthorized", "The request you have made requires authentication.")
}

// keystone wraps a Keystone handler that needs a valid X-Auth-Token.
func (s *Sim) keystone(h func(w http.ResponseWriter, r *http.Request, t *token)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Openstack-Request-Id", newRequestID())
		w.Header().Set("Vary", "X-Auth-Token")
		t := s.checkToken(r.Header.Get("X-Auth-Token"))
		if t == nil {
			s.unauthorized(w, r)
			return
		}
		h(w, r, t)
	}
}

// checkToken returns the live token with this id, or nil.
func (s *Sim) checkToken(id string) *token {
	if id == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tokens[id]
	if t == nil {
		return nil
	}
	if !now().Before(t.expires) {
		delete(s.tokens, id)
		return nil
	}
	return t
}

func (s *Sim) keystoneVersions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusMultipleChoices, map[string]any{
		"versions": map[string]any{"values": []any{s.keystoneVersionDoc(r)}},
	})
}

func (s *Sim) keystoneVersion(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"version": s.keystoneVersionDoc(r)})
}

func (s *Sim) keystoneVersionDoc(r *http.Request) map[string]any {
	return map[string]any{
		"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
		"links":       []any{map[string]any{"rel": "self", "href": s.baseURL(r) + "/identity/v3/"}},
		"media-types": []any{map[string]any{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}},
	}
}

type authRequest struct {
	Auth *struct {
		Identity *struct {
			Methods  []string `json:"methods"`
			Password *struct {
				User *struct {
					ID       string    `json:"id"`
					Name     string    `json:"name"`
					Password string    `json:"password"`
					Domain   *idOrName `json:"domain"`
				} `json:"user"`
			} `json:"password"`
			Token *struct {
				ID string `json:"id"`
			} `json:"token"`
		} `json:"identity"`
		Scope *struct {
			Project *struct {
				ID     string    `json:"id"`
				Name   string    `json:"name"`
				Domain *idOrName `json:"domain"`
			} `json:"project"`
		} `json:"scope"`
	} `json:"auth"`
}

type idOrName struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

func (d *idOrName) is(id, name string) bool {
	if d == nil {
		return false
	}
	return (d.ID != "" && strings.EqualFold(d.ID, id)) || (d.Name != "" && d.Name == name)
}

func (s *Sim) createToken(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Openstack-Request-Id", newRequestID())
	w.Header().Set("Vary", "X-Auth-Token")
	var req authRequest
	if err := decodeBody(r, &req); err != nil {
		keystoneError(w, http.StatusBadRequest, "Bad Request", "Expecting to find auth in request body. The server could not comply with the request since it is either malformed or otherwise incorrect. The client is assumed to be in error.")
		return
	}
	if req.Auth == nil || req.Auth.Identity == nil || len(req.Auth.Identity.Methods) == 0 {
		keystoneError(w, http.StatusBadRequest, "Bad Request", "Invalid input for field 'identity': 'methods' is a required property")
		return
	}
	id := req.Auth.Identity
	cfg := &s.cfg
	ok := false
	switch id.Methods[0] {
	case "password":
		if id.Password != nil && id.Password.User != nil {
			u := id.Password.User
			userOK := u.ID == cfg.UserID || (u.Name == cfg.Username && u.Domain.is("default", cfg.Domain))
			ok = userOK && u.Password == cfg.Password
		}
	case "token":
		ok = id.Token != nil && s.checkToken(id.Token.ID) != nil
	default:
		keystoneError(w, http.StatusUnauthorized, "Unauthorized", "Attempted to authenticate with an unsupported method.")
		return
	}
	if !ok {
		s.unauthorized(w, r)
		return
	}
	if sc := req.Auth.Scope; sc != nil && sc.Project != nil {
		p := sc.Project
		if !(p.ID == cfg.ProjectID || (p.Name == cfg.Project && p.Domain.is("default", cfg.Domain))) {
			s.unauthorized(w, r)
			return
		}
	}
	t := &token{id: newTokenID(), issued: now().Truncate(time.Second), auditID: newAuditID(), methods: id.Methods[:1]}
	t.expires = now().Add(cfg.TokenTTL)
	s.mu.Lock()
	s.tokens[t.id] = t
	s.mu.Unlock()
	w.Header().Set("X-Subject-Token", t.id)
	writeJSON(w, http.StatusCreated, map[string]any{"token": s.tokenBody(r, t)})
}

func (s *Sim) validateToken(w http.ResponseWriter, r *http.Request, _ *token) {
	subject := s.checkToken(r.Header.Get("X-Subject-Token"))
	if subject == nil {
		keystoneError(w, http.StatusNotFound, "Not Found", "Could not find token: "+r.Header.Get("X-Subject-Token")+".")
		return
	}
	w.Header().Set("X-Subject-Token", subject.id)
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"token": s.tokenBody(r, subject)})
}

func (s *Sim) revokeToken(w http.ResponseWriter, r *http.Request, _ *token) {
	id := r.Header.Get("X-Subject-Token")
	s.mu.Lock()
	_, ok := s.tokens[id]
	delete(s.tokens, id)
	s.mu.Unlock()
	if !ok {
		keystoneError(w, http.StatusNotFound, "Not Found", "Could not find token: "+id+".")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) getCatalog(w http.ResponseWriter, r *http.Request, _ *token) {
	writeJSON(w, http.StatusOK, map[string]any{"catalog": s.catalog(r),
		"links": map[string]any{"self": s.baseURL(r) + "/identity/v3/auth/catalog"}})
}

// ExpireTokens makes every issued token expired, as if TokenTTL had passed:
// the next call with one gets 401 and gophercloud re-authenticates.
func (s *Sim) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.tokens {
		delete(s.tokens, id)
	}
}

func (s *Sim) tokenBody(r *http.Request, t *token) map[string]any {
	cfg := &s.cfg
	domain := map[string]any{"id": "default", "name": cfg.Domain}
	return map[string]any{
		"methods": t.methods,
		"user": map[string]any{
			"domain": domain, "id": cfg.UserID, "name": cfg.Username, "password_expires_at": nil,
		},
		"audit_ids":  []string{t.auditID},
		"expires_at": t.expires.Format(keystoneTS),
		"issued_at":  t.issued.Format(keystoneTS),
		"project":    map[string]any{"domain": domain, "id": cfg.ProjectID, "name": cfg.Project},
		"is_domain":  false,
		"roles": []any{
			map[string]any{"id": stableID("role-member"), "name": "member"},
			map[string]any{"id": stableID("role-reader"), "name": "reader"},
			map[string]any{"id": stableID("role-admin"), "name": "admin"},
		},
		"catalog": s.catalog(r),
	}
}

// catalog lists the services at their path prefixes, with the public and
// internal interfaces (identity also admin) like the real kit.
func (s *Sim) catalog(r *http.Request) []any {
	base := s.baseURL(r)
	entry := func(typ, name, url string, ifaces ...string) map[string]any {
		var eps []any
		for _, iface := range ifaces {
			eps = append(eps, map[string]any{
				"id": stableID(name + "-" + iface), "interface": iface, "region_id": s.cfg.Region,
				"url": url, "region": s.cfg.Region,
			})
		}
		return map[string]any{"endpoints": eps, "id": stableID(name), "type": typ, "name": name}
	}
	return []any{
		entry("compute", "nova", base+"/compute/v2.1", "internal", "public"),
		entry("identity", "keystone", base+"/identity/v3/", "public", "internal", "admin"),
		entry("network", "neutron", base+"/network", "internal", "public"),
		entry("image", "glance", base+"/image", "public", "internal"),
	}
}

// stableID derives a Keystone-style id from a name, so the catalog and roles
// keep their ids across runs.
func stableID(name string) string {
	sum := sha1.Sum([]byte("openstacksim/" + name))
	return hex.EncodeToString(sum[:16])
}

// newTokenID looks like a Fernet token: opaque, URL-safe, about 180 bytes.
func newTokenID() string {
	var b [128]byte
	_, _ = rand.Read(b[:])
	return "gAAAAAB" + strings.TrimRight(base64.URLEncoding.EncodeToString(b[:]), "=")
}

func newAuditID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return strings.TrimRight(base64.URLEncoding.EncodeToString(b[:]), "=")
}

// writeJSON writes a JSON body with OpenStack's Content-Type.
func writeJSON(w http.ResponseWriter, code int, body any) {
	b, err := json.Marshal(body)
	if err != nil {
		// Only our own maps reach here; a failure is a simulator bug, and a
		// 500 is what the real service gives for its bugs.
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// decodeBody reads a JSON request body into v. An empty body decodes as
// null.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.UseNumber()
	return dec.Decode(v)
}

// notFound is the catch-all of a service prefix: 405 when the path exists
// with other methods (as the services' routers answer), else the service's
// 404 body.
func (s *Sim) notFound(write func(http.ResponseWriter, *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
			if m == r.Method {
				continue
			}
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, p := s.mux.Handler(probe); p != "" && !strings.HasSuffix(p, "/") {
				w.Header().Set("Allow", m)
				writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"error": map[string]any{
					"code": 405, "title": "Method Not Allowed", "message": "The method is not allowed for the requested URL."}})
				return
			}
		}
		write(w, r)
	}
}

// stableUUID derives a UUID-shaped id from a name.
func stableUUID(name string) string {
	h := stableID(name)
	return h[0:8] + "-" + h[8:12] + "-4" + h[13:16] + "-8" + h[17:20] + "-" + h[20:32]
}
