package openstacksim

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// bodyEndpoints are the calls that take a body.
var bodyEndpoints = []string{
	"POST /identity/v3/auth/tokens",
	"POST /compute/v2.1/servers",
	"PUT /compute/v2.1/servers/{server}",
	"POST /compute/v2.1/servers/{server}/action",
	"POST /compute/v2.1/os-keypairs",
	"POST /network/v2.0/ports",
	"PUT /network/v2.0/ports/{port}",
	"POST /network/v2.0/floatingips",
	"PUT /network/v2.0/floatingips/{fip}",
}

var badBodies = []string{
	``, `{`, `null`, `[]`, `"x"`, `42`, `{"server": null}`, `{"server": []}`,
	`{"server": {"name": 5, "flavorRef": [], "imageRef": {}, "networks": 7}}`,
	`{"server": {"name": "x", "flavorRef": "` + tinyFlavor + `", "networks": [{"uuid": 5}, "x"]}}`,
	`{"server": {"name": "x", "flavorRef": "` + tinyFlavor + `", "imageRef": "` + tinyImage + `", "networks": "none", "metadata": {"a": 1}}}`,
	`{"reboot": null}`, `{"reboot": "HARD"}`, `{"resize": null}`, `{"resize": {"flavorRef": 3}}`, `{"os-stop": null, "os-start": null}`,
	`{"keypair": {"name": 3}}`, `{"keypair": {"name": "ok", "public_key": 3}}`,
	`{"port": {"network_id": 5, "fixed_ips": "x", "admin_state_up": "yes"}}`, `{"port": {"network_id": "` + net1 + `", "fixed_ips": [{"ip_address": "nope"}]}}`,
	`{"floatingip": {"floating_network_id": [], "port_id": 5}}`, `{"floatingip": {"port_id": {"x": 1}}}`,
	`{"auth": {"identity": {"methods": []}}}`, `{"auth": {"identity": {"methods": ["password"], "password": {"user": null}}}}`,
	`{"auth": {"identity": {"methods": ["token"], "token": {"id": 5}}}}`,
}

// sendBad sends a body to every body-taking endpoint and fails on a 5xx:
// the real services answer bad input with 4xx.
func sendBad(t testing.TB, h http.Handler, token, serverID, portID, fipID, body string) {
	for _, ep := range bodyEndpoints {
		method, path, _ := strings.Cut(ep, " ")
		path = strings.NewReplacer("{server}", serverID, "{port}", portID, "{fip}", fipID).Replace(path)
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("X-Auth-Token", token)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Errorf("%s with %q: %d %s", ep, body, rec.Code, rec.Body.String())
		}
	}
}

func TestBadInputNeverFails5xx(t *testing.T) {
	e := newEnv(t, Config{})
	id := e.createServer("target")
	e.waitStatus(id, "ACTIVE")
	port := e.sim.Inventory().Ports[0].ID
	_, _, fip := e.do("POST", "/network/v2.0/floatingips", map[string]any{"floatingip": map[string]any{"floating_network_id": publicNet}}, nil)
	fipID := fip.(map[string]any)["floatingip"].(map[string]any)["id"].(string)
	for _, b := range badBodies {
		sendBad(t, e.sim.Handler(), e.pc.Token(), id, port, fipID, b)
	}
	// Odd paths and methods.
	for _, p := range []string{"/", "/compute", "/compute/v2.1/servers/%zz", "/network/v2.0/ports?limit=x", "/image/v2/images?limit=-1",
		"/compute/v2.1/servers?changes-since=yesterday", "/compute/v2.1/servers?limit=-3", "/compute/v2.1/servers?marker=nope",
		"/compute/v2.1/servers?name=(", "/network/v2.0/ports?fixed_ips=garbage"} {
		for _, m := range []string{"GET", "PATCH", "DELETE"} {
			req := httptest.NewRequest(m, "http://sim"+strings.ReplaceAll(p, "%zz", "x"), nil)
			req.Header.Set("X-Auth-Token", e.pc.Token())
			rec := httptest.NewRecorder()
			e.sim.Handler().ServeHTTP(rec, req)
			if rec.Code >= 500 {
				t.Errorf("%s %s: %d %s", m, p, rec.Code, rec.Body.String())
			}
		}
	}
}

// FuzzHandler sends arbitrary bodies to every endpoint that takes one.
func FuzzHandler(f *testing.F) {
	for _, b := range badBodies {
		f.Add(b)
	}
	sim := New(Config{})
	defer sim.Close()
	tok := sim.issueTestToken()
	sim.mu.Lock()
	var port string
	for id := range sim.ports {
		port = id
	}
	sim.mu.Unlock()
	f.Fuzz(func(t *testing.T, body string) {
		sendBad(t, sim.Handler(), tok, "00000000-0000-4000-8000-000000000000", port, "nope", body)
	})
}

// issueTestToken logs in through the handler.
func (s *Sim) issueTestToken() string {
	body := `{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin", "password": "secret",
		"domain": {"name": "Default"}}}}, "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}`
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("POST", "/identity/v3/auth/tokens", strings.NewReader(body)))
	return rec.Header().Get("X-Subject-Token")
}
