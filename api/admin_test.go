package api_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudservers/cloudservers"
	"github.com/cloudservers/cloudservers/api"
)

func TestAdmin(t *testing.T) {
	e := newEnv(t, api.Config{})
	e.create(e.alice, "a")
	e.create(e.alice, "b")
	e.create(e.bob, "c")

	// Customers' keys are refused on the admin API.
	for _, key := range []string{e.alice, e.bob} {
		expect(t, e.do(req{method: "GET", path: "/admin/v1/customers/alice/servers", key: key}), 403, api.CodeForbidden, nil)
		expect(t, e.do(req{method: "POST", path: "/admin/v1/customers/alice/keys", key: key, body: map[string]any{"name": "x"}}), 403, api.CodeForbidden, nil)
	}
	var l api.ServerList
	expect(t, e.do(req{method: "GET", path: "/admin/v1/customers/alice/servers?page_size=1", key: e.admin}), 200, "", &l)
	if len(l.Servers) != 1 || l.Next == "" {
		t.Fatalf("admin list %+v", l)
	}
	expect(t, e.do(req{method: "GET", path: l.Next, key: e.admin}), 200, "", &l)
	if len(l.Servers) != 1 || l.Next != "" || l.Servers[0].Name != "b" {
		t.Errorf("admin page 2 %+v", l)
	}
	expect(t, e.do(req{method: "GET", path: "/admin/v1/customers/nobody/servers", key: e.admin}), 200, "", &l)
	if len(l.Servers) != 0 {
		t.Errorf("nobody's servers %+v", l)
	}
	expect(t, e.do(req{method: "GET", path: "/admin/v1/customers/a%20b/servers", key: e.admin}), 400, api.CodeInvalidRequest, nil, "customer_id")
	expect(t, e.do(req{method: "GET", path: "/admin/v1/customers/alice/servers?status=x", key: e.admin}), 400, api.CodeInvalidRequest, nil, "status")

	// An operator makes a key; it works at once, for that customer only.
	var k api.CreatedKey
	r := e.do(req{method: "POST", path: "/admin/v1/customers/carol/keys", key: e.admin, body: map[string]any{"name": "ci"}})
	expect(t, r, 201, "", &k)
	if k.CustomerID != "carol" || k.APIKey == "" || k.Admin {
		t.Fatalf("key %+v", k)
	}
	recs := e.kafka.records(cloudservers.TopicAPIKeys)
	if last := recs[len(recs)-1]; string(last.key) != api.HashKey(k.APIKey) || strings.Contains(string(last.value), k.APIKey) {
		t.Errorf("stored key record %s", last.value)
	}
	expect(t, e.do(req{method: "GET", path: "/v1/servers", key: k.APIKey}), 200, "", &l)
	if len(l.Servers) != 0 {
		t.Errorf("carol sees %+v", l)
	}
	expect(t, e.do(req{method: "GET", path: "/admin/v1/customers/alice/servers", key: k.APIKey}), 403, api.CodeForbidden, nil)
	expect(t, e.do(req{method: "POST", path: "/admin/v1/customers/carol/keys", key: e.admin, body: map[string]any{"name": "ci"}, header: idem("x")}), 400, api.CodeInvalidRequest, nil, "Idempotency-Key")
	expect(t, e.do(req{method: "POST", path: "/admin/v1/customers/carol/keys", key: e.admin, body: map[string]any{"name": ""}}), 422, api.CodeValidation, nil, "name")
	expect(t, e.do(req{method: "POST", path: "/admin/v1/customers/carol/keys", key: e.admin, body: map[string]any{"name": "x", "admin": "yes"}}), 400, api.CodeInvalidRequest, nil, "admin")
	expect(t, e.do(req{method: "POST", path: "/admin/v1/customers/carol/keys", key: e.admin, body: map[string]any{"name": "x"}, header: map[string]string{"Content-Type": "text/plain"}}), 415, api.CodeUnsupportedMedia, nil)
	e.kafka.failTopic(cloudservers.TopicAPIKeys, errKafkaDown)
	expect(t, e.do(req{method: "POST", path: "/admin/v1/customers/carol/keys", key: e.admin, body: map[string]any{"name": "x"}}), 503, api.CodeUnavailable, nil)
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, api.Config{RateLimit: 1, RateBurst: 3})
	for i := range 3 {
		r := e.do(req{method: "GET", path: "/v1/sizes", key: e.alice})
		expect(t, r, 200, "", nil)
		h := r.Header()
		if h.Get("RateLimit-Limit") != "3" || h.Get("RateLimit-Remaining") != strconv.Itoa(2-i) || h.Get("RateLimit-Reset") != strconv.Itoa(i+1) {
			t.Errorf("request %d: RateLimit headers %q %q %q", i, h.Get("RateLimit-Limit"), h.Get("RateLimit-Remaining"), h.Get("RateLimit-Reset"))
		}
	}
	r := e.do(req{method: "GET", path: "/v1/servers", key: e.alice})
	expect(t, r, 429, api.CodeRateLimited, nil)
	if r.Header().Get("Retry-After") != "1" || r.Header().Get("RateLimit-Remaining") != "0" {
		t.Errorf("429 headers %v", r.Header())
	}
	// Mutations count too, and are refused before anything is written.
	n := len(e.kafka.log)
	expect(t, e.do(req{method: "POST", path: "/v1/servers", key: e.alice, body: validServer}), 429, api.CodeRateLimited, nil)
	if len(e.kafka.log) != n {
		t.Error("a rate-limited request wrote to Kafka")
	}
	// Per key: bob is not limited by alice.
	expect(t, e.do(req{method: "GET", path: "/v1/sizes", key: e.bob}), 200, "", nil)
	// The bucket refills with time.
	e.clock.advance(time.Second)
	expect(t, e.do(req{method: "GET", path: "/v1/sizes", key: e.alice}), 200, "", nil)
	expect(t, e.do(req{method: "GET", path: "/v1/sizes", key: e.alice}), 429, api.CodeRateLimited, nil)
	e.clock.advance(10 * time.Second)
	r = e.do(req{method: "GET", path: "/v1/sizes", key: e.alice})
	if r.Header().Get("RateLimit-Remaining") != "2" {
		t.Errorf("after refill: %v", r.Header())
	}
	// Unauthenticated requests are refused before they count.
	expect(t, e.do(req{method: "GET", path: "/v1/sizes", key: "cs_bad"}), 401, api.CodeUnauthorized, nil)
}

func TestBodyLimit(t *testing.T) {
	e := newEnv(t, api.Config{MaxBodyBytes: 100})
	big := `{"name":"` + string(make([]byte, 200)) + `"}`
	expect(t, e.do(req{method: "POST", path: "/v1/servers", key: e.alice, body: big}), 413, api.CodeTooLarge, nil)
	expect(t, e.do(req{method: "POST", path: "/v1/ssh_keys", key: e.alice, body: big}), 413, api.CodeTooLarge, nil)
	expect(t, e.do(req{method: "POST", path: "/v1/servers/0193a0e4-0000-7000-8000-000000000000/actions", key: e.alice, body: big}), 413, api.CodeTooLarge, nil)
	expect(t, e.do(req{method: "POST", path: "/admin/v1/customers/c/keys", key: e.admin, body: big}), 413, api.CodeTooLarge, nil)
	for _, m := range []string{"PUT", "PATCH"} {
		expect(t, e.do(req{method: m, path: "/v1/servers/0193a0e4-0000-7000-8000-000000000000", key: e.alice, body: big}), 413, api.CodeTooLarge, nil)
	}
}

// specRoutes lists every operation of the spec with its path parameters
// filled in with resources of alice.
func specRoutes(t *testing.T, e *env) [][2]string {
	doc, _ := loadSpec(t)
	server := e.activeServer(e.alice, "route")
	var op api.OperationView
	expect(t, e.do(req{method: "POST", path: "/v1/servers/" + server + "/actions", key: e.alice, body: map[string]any{"type": "reboot"}}), 202, "", &op)
	var out [][2]string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			p := strings.NewReplacer("{customer_id}", "alice", "{id}", server).Replace(path)
			if strings.HasPrefix(path, "/v1/operations/") {
				p = "/v1/operations/" + op.ID
			}
			if strings.HasPrefix(path, "/v1/ssh_keys/") {
				p = "/v1/ssh_keys/some-key"
			}
			out = append(out, [2]string{method, p})
		}
	}
	return out
}

// Every authenticated route refuses a request without a valid key, and
// counts against the key's rate limit.
func TestEveryRouteAuthAndRateLimit(t *testing.T) {
	e := newEnv(t, api.Config{RateLimit: 0.001, RateBurst: 2})
	routes := specRoutes(t, e) // takes alice's two requests
	// The admin key has its own bucket: spend it.
	expect(t, e.do(req{method: "GET", path: "/v1/sizes", key: e.admin}), 200, "", nil)
	expect(t, e.do(req{method: "GET", path: "/v1/sizes", key: e.admin}), 200, "", nil)
	for _, r := range routes {
		method, path := r[0], r[1]
		if !strings.HasPrefix(path, "/v1/") && !strings.HasPrefix(path, "/admin/") {
			continue
		}
		t.Run(method+" "+path, func(t *testing.T) {
			var body any
			if method == "POST" {
				body = map[string]any{}
			}
			expect(t, e.do(req{method: method, path: path, body: body}), 401, api.CodeUnauthorized, nil)
			key := e.alice
			if strings.HasPrefix(path, "/admin/") {
				key = e.admin
			}
			r := e.do(req{method: method, path: path, key: key, body: body})
			expect(t, r, 429, api.CodeRateLimited, nil)
			if r.Header().Get("Retry-After") == "" {
				t.Error("no Retry-After")
			}
		})
	}
}

// Another customer's resources do not exist for bob, on every route that
// names one; on the lists he sees only his own.
func TestIsolationEveryRoute(t *testing.T) {
	e := newEnv(t, api.Config{})
	expect(t, e.do(req{method: "POST", path: "/v1/ssh_keys", key: e.alice, body: map[string]any{"name": "some-key", "public_key": testKeys[0]}}), 201, "", nil)
	covered := 0
	for _, r := range specRoutes(t, e) {
		method, path := r[0], r[1]
		if !strings.HasPrefix(path, "/v1/") || strings.Count(path, "/") < 3 {
			continue // not a route naming a resource
		}
		var body any
		switch method {
		case "POST":
			body = map[string]any{"type": "power_off"}
		case "PUT", "PATCH":
			body = map[string]any{"name": "mine-now"}
		}
		rec := e.do(req{method: method, path: path, key: e.bob, body: body})
		if rec.Code != 404 {
			t.Errorf("bob's %s %s on alice's resource: %d %s", method, path, rec.Code, rec.Body)
		}
		covered++
	}
	if covered != 9 {
		t.Errorf("%d routes naming a resource; new ones must be covered here", covered)
	}
	// The lists and the stream show bob nothing of alice's.
	for _, p := range []string{"/v1/servers", "/v1/servers?status=active", "/v1/ssh_keys"} {
		r := e.do(req{method: "GET", path: p, key: e.bob})
		if r.Code != 200 || strings.Contains(r.Body.String(), "route") || strings.Contains(r.Body.String(), "some-key") {
			t.Errorf("bob's %s: %d %s", p, r.Code, r.Body)
		}
	}
}
