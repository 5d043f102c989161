package api_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloudservers/cloudservers/api"
)

// FuzzRequest sends arbitrary methods, paths, bodies and headers through
// the real handler and checks that no input gets a 5xx, a panic, a hang or
// an answer that is not a problem document.
func FuzzRequest(f *testing.F) {
	e := newEnv(f, api.Config{MaxBodyBytes: 4096})
	e.checkSpec = false
	server := e.activeServer(e.alice, "fuzz")
	op := e.create(e.alice, "fuzz2")
	e.do(req{method: "POST", path: "/v1/ssh_keys", key: e.alice, body: map[string]any{"name": "k", "public_key": testKeys[0]}})
	methods := []string{"GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"}

	seeds := []struct {
		method       byte
		path, body   string
		contentType  string
		idem, lastID string
		auth         byte
	}{
		{1, "/v1/servers", `{"name":"a","size":"s-1vcpu-64mb","image":"tiny","region":"region-one"}`, "application/json", "", "", 0},
		{1, "/v1/servers", `{"name":"a","size":"s-1vcpu-64mb","image":"tiny","region":"region-one","ssh_key":"k"}`, "application/json", "k1", "", 0},
		{1, "/v1/servers", `{"name":"a","ssh_keys":["k",1]}`, "application/json", "k1", "", 1},
		{1, "/v1/servers/" + server + "/actions", `{"type":"reboot","reboot_type":"hard"}`, "application/json", "k2", "", 0},
		{1, "/v1/servers/" + server + "/actions", `{"type":"resize","size":"s-2vcpu-256mb"}`, "application/json; charset=utf-8", "", "", 0},
		{1, "/v1/servers/" + server + "/actions", `{"type":"power_off","size":null}`, "application/json", "", "", 0},
		{2, "/v1/servers/" + op.ServerID, ``, "", "k3", "", 0},
		{0, "/v1/servers?status=active&page_size=2", ``, "", "", "", 0},
		{0, "/v1/servers?page_token=eyJ0IjoiMjAyNi0wMy0wMVQxMjowMDowMFoiLCJpIjoiYSJ9", ``, "", "", "", 0},
		{0, "/v1/servers/" + server + "/operations?status=failed", ``, "", "", "", 0},
		{0, "/v1/operations/" + op.ID, ``, "", "", "", 1},
		{1, "/v1/ssh_keys", `{"name":"x","public_key":"ssh-ed25519 AAAA"}`, "application/json", "", "", 0},
		{2, "/v1/ssh_keys/k", ``, "", "", "", 0},
		{0, "/v1/events", ``, "", "", "s0:1.o2:3", 0},
		{0, "/admin/v1/customers/alice/servers", ``, "", "", "", 2},
		{1, "/admin/v1/customers/x/keys", `{"name":"n","admin":true}`, "application/json", "", "", 2},
		{3, "/v1/servers", `{}`, "text/plain", "", "", 4},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, []byte(s.body), s.contentType, s.idem, s.lastID, s.auth)
	}
	f.Fuzz(func(t *testing.T, method byte, path string, body []byte, contentType, idemKey, lastID string, auth byte) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		// The stream answers 200 and stays open: end it soon.
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		m := methods[int(method)%len(methods)]
		r, err := http.NewRequestWithContext(ctx, m, "http://api.test"+path, bytes.NewReader(body))
		if err != nil {
			return // not an HTTP request a server could receive
		}
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		if idemKey != "" {
			r.Header.Set("Idempotency-Key", idemKey)
		}
		if lastID != "" {
			r.Header.Set("Last-Event-ID", lastID)
		}
		switch auth % 5 {
		case 0:
			r.Header.Set("Authorization", "Bearer "+e.alice)
		case 1:
			r.Header.Set("Authorization", "Bearer "+e.bob)
		case 2:
			r.Header.Set("Authorization", "Bearer "+e.admin)
		case 3:
		case 4:
			r.Header.Set("Authorization", contentType)
		}
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			defer close(done)
			e.h.ServeHTTP(rec, r)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s %s hangs", m, path)
		}
		if rec.Code >= 500 {
			t.Fatalf("%s %s (body %q, Content-Type %q) answered %d: %s", m, path, body, contentType, rec.Code, rec.Body)
		}
		checkProblem(t, req{method: m, path: path, body: string(body)}, rec)
	})
}

// FuzzMutationBody sends arbitrary JSON-typed bodies to every endpoint
// that decodes one: the decoding and validation answer 2xx or a 4xx
// problem, never a 5xx.
func FuzzMutationBody(f *testing.F) {
	e := newEnv(f, api.Config{})
	e.checkSpec = false
	server := e.activeServer(e.alice, "fuzz")
	paths := []string{"/v1/servers", "/v1/servers/" + server + "/actions", "/v1/ssh_keys", "/admin/v1/customers/c/keys"}
	for _, b := range []string{
		`{"name":"a","size":"s-1vcpu-64mb","image":"tiny","region":"region-one"}`,
		`{"type":"resize","size":"s-1vcpu-128mb"}`,
		`{"type":"reboot","reboot_type":"soft"}`,
		`{"name":"k","public_key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl x"}`,
		`{"name":"k","admin":false}`,
		`{"ssh_keys":[],"ssh_key":""}`, `[]`, `null`, `{"a":{"b":[1,2,{}]}}`, `{"name":"\u0000"}`,
	} {
		for i := range paths {
			f.Add(byte(i), []byte(b))
		}
	}
	f.Fuzz(func(t *testing.T, endpoint byte, body []byte) {
		path := paths[int(endpoint)%len(paths)]
		key := e.alice
		if strings.HasPrefix(path, "/admin") {
			key = e.admin
		}
		r := httptest.NewRequest("POST", path, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer "+key)
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, r)
		if rec.Code >= 500 {
			t.Fatalf("POST %s %q answered %d: %s", path, body, rec.Code, rec.Body)
		}
		checkProblem(t, req{method: "POST", path: path, body: string(body)}, rec)
		// Keep the action endpoint usable: an accepted operation the
		// lifecycle never picks up stops locking the server after a while.
		if rec.Code == 202 {
			e.clock.advance(time.Hour)
		}
	})
}
