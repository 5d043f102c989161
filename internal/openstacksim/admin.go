package openstacksim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
)

// The simulator's own API under /_sim/: no token, not in the call log.

func (s *Sim) routeAdmin() {
	m := s.admin
	m.HandleFunc("GET /_sim/{$}", s.adminHelp)
	m.HandleFunc("GET /_sim/calls", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.Calls()) })
	m.HandleFunc("DELETE /_sim/calls", func(w http.ResponseWriter, r *http.Request) { s.ResetCalls(); w.WriteHeader(204) })
	m.HandleFunc("POST /_sim/calls/reset", func(w http.ResponseWriter, r *http.Request) { s.ResetCalls(); w.WriteHeader(204) })
	m.HandleFunc("GET /_sim/inventory", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.Inventory()) })
	m.HandleFunc("GET /_sim/notifications", s.adminNotifications)
	m.HandleFunc("DELETE /_sim/notifications", func(w http.ResponseWriter, r *http.Request) {
		s.ResetNotifications()
		w.WriteHeader(204)
	})
	m.HandleFunc("GET /_sim/faults", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.faults.List()) })
	m.HandleFunc("POST /_sim/faults", s.adminAddFault)
	m.HandleFunc("DELETE /_sim/faults", func(w http.ResponseWriter, r *http.Request) { s.faults.Clear(); w.WriteHeader(204) })
	m.HandleFunc("DELETE /_sim/faults/{id}", s.adminRemoveFault)
	m.HandleFunc("GET /_sim/quotas", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, quotaJSON(s.faults.Quotas())) })
	m.HandleFunc("POST /_sim/quotas", s.adminSetQuotas)
	m.HandleFunc("POST /_sim/tokens/expire", func(w http.ResponseWriter, r *http.Request) { s.ExpireTokens(); w.WriteHeader(204) })
	m.HandleFunc("GET /_sim/clouds.yaml", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write([]byte(s.CloudsYAML(s.baseURL(r))))
	})
	m.HandleFunc("/_sim/", func(w http.ResponseWriter, r *http.Request) {
		adminError(w, http.StatusNotFound, "no such simulator endpoint; GET /_sim/ lists them")
	})
}

const adminHelpText = `OpenStack simulator admin API
GET    /_sim/calls                 call counts by method and path template, and the recent calls
DELETE /_sim/calls                 reset the call log (also POST /_sim/calls/reset)
GET    /_sim/inventory             live servers, ports and floating IPs
GET    /_sim/notifications         notifications sent (?event_type=glob&format=versioned)
DELETE /_sim/notifications         forget them
GET    /_sim/faults                installed fault rules
POST   /_sim/faults                add one: {"kind": "http"|"notification"|"boot"|"resize", ...fields}
DELETE /_sim/faults[/{id}]         remove all rules, or one
GET    /_sim/quotas                quotas in force
POST   /_sim/quotas                {"instances": 0, "cores": 4, ...} or {"exhaust": ["instances"]}
POST   /_sim/tokens/expire         expire every token (clients must re-authenticate)
GET    /_sim/clouds.yaml           a clouds.yaml for this simulator
`

func (s *Sim) adminHelp(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(adminHelpText))
}

func adminError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]any{"error": msg})
}

func (s *Sim) adminNotifications(w http.ResponseWriter, r *http.Request) {
	glob, format := r.URL.Query().Get("event_type"), r.URL.Query().Get("format")
	out := []SentNotification{}
	for _, n := range s.Notifications() {
		if format != "" && n.Format != format {
			continue
		}
		if glob != "" && !globMatch(glob, n.EventType) {
			continue
		}
		out = append(out, n)
	}
	writeJSON(w, http.StatusOK, out)
}

// faultRequest is the body of POST /_sim/faults: a kind and that kind's
// fields (HTTPFault, NotificationFault, BootFault or ResizeFault).
type faultRequest struct {
	Kind string `json:"kind"`
}

func (s *Sim) adminAddFault(w http.ResponseWriter, r *http.Request) {
	raw, err := readAll(r)
	var req faultRequest
	if err == nil {
		err = json.Unmarshal(raw, &req)
	}
	if err != nil {
		adminError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	strict := func(v any) error {
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.DisallowUnknownFields()
		return dec.Decode(v)
	}
	var id int
	switch req.Kind {
	case "http":
		var f struct {
			faultRequest
			HTTPFault
		}
		if err = strict(&f); err == nil {
			if f.Path == "" {
				err = fmt.Errorf("path is required")
			} else {
				id = s.faults.AddHTTP(f.HTTPFault)
			}
		}
	case "notification":
		var f struct {
			faultRequest
			NotificationFault
		}
		if err = strict(&f); err == nil {
			id, err = s.faults.AddNotification(f.NotificationFault)
		}
	case "boot":
		var f struct {
			faultRequest
			BootFault
		}
		if err = strict(&f); err == nil {
			id, err = s.faults.FailBoot(f.BootFault)
		}
	case "resize":
		var f struct {
			faultRequest
			ResizeFault
		}
		if err = strict(&f); err == nil {
			id, err = s.faults.FailResize(f.ResizeFault)
		}
	default:
		err = fmt.Errorf("kind %q: want http, notification, boot or resize", req.Kind)
	}
	if err != nil {
		adminError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"id": id})
}

func (s *Sim) adminRemoveFault(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil || !s.faults.Remove(id) {
		adminError(w, http.StatusNotFound, "no fault rule "+r.PathValue("id"))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func quotaJSON(q Quotas) map[string]int {
	return map[string]int{QuotaInstances: q.Instances, QuotaCores: q.Cores, QuotaRAM: q.RAM,
		QuotaPorts: q.Ports, QuotaFloatingIPs: q.FloatingIPs}
}

func (s *Sim) adminSetQuotas(w http.ResponseWriter, r *http.Request) {
	raw, err := readAll(r)
	var body map[string]json.RawMessage
	if err == nil {
		err = json.Unmarshal(raw, &body)
	}
	if err != nil {
		adminError(w, http.StatusBadRequest, "body: want a JSON object")
		return
	}
	for k, v := range body {
		if k == "exhaust" {
			var list []string
			if err := json.Unmarshal(v, &list); err != nil {
				adminError(w, http.StatusBadRequest, "exhaust: want a list of resources")
				return
			}
			for _, res := range list {
				if err := s.faults.ExhaustQuota(res); err != nil {
					adminError(w, http.StatusBadRequest, err.Error())
					return
				}
			}
			continue
		}
		var n int
		if err := json.Unmarshal(v, &n); err != nil {
			adminError(w, http.StatusBadRequest, k+": want an integer")
			return
		}
		if err := s.faults.SetQuota(k, n); err != nil {
			adminError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, quotaJSON(s.faults.Quotas()))
}

// AuthOptions returns gophercloud options that log in to a simulator
// reached at baseURL, with AllowReauth so that expired tokens are renewed.
func (s *Sim) AuthOptions(baseURL string) gophercloud.AuthOptions {
	return gophercloud.AuthOptions{
		IdentityEndpoint: strings.TrimSuffix(baseURL, "/") + "/identity/v3",
		Username:         s.cfg.Username,
		Password:         s.cfg.Password,
		DomainName:       s.cfg.Domain,
		TenantName:       s.cfg.Project,
		AllowReauth:      true,
	}
}

// Region is the region of the simulator's catalog.
func (s *Sim) Region() string { return s.cfg.Region }

// CloudsYAML returns a clouds.yaml ("openstacksim" cloud) for a simulator
// reached at baseURL, for gophercloud's clientconfig, openstacksdk or the
// openstack CLI.
func (s *Sim) CloudsYAML(baseURL string) string {
	c := &s.cfg
	return fmt.Sprintf(`clouds:
  openstacksim:
    auth:
      auth_url: %s/identity/v3
      username: %s
      password: %s
      project_name: %s
      user_domain_name: %s
      project_domain_name: %s
    region_name: %s
    interface: public
    identity_api_version: 3
`, strings.TrimSuffix(baseURL, "/"), c.Username, c.Password, c.Project, c.Domain, c.Domain, c.Region)
}

func globMatch(pattern, s string) bool {
	ok, err := path.Match(pattern, s)
	return err == nil && ok
}
