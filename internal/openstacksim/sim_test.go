package openstacksim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
)

// recorder is a Publisher that keeps what it is given.
type recorder struct {
	mu      sync.Mutex
	records []published
}

type published struct {
	topic string
	value []byte
}

func (r *recorder) Publish(_ context.Context, topic string, value []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, published{topic, append([]byte(nil), value...)})
	return nil
}

func (r *recorder) all() []published {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]published(nil), r.records...)
}

func (r *recorder) reset() {
	r.mu.Lock()
	r.records = nil
	r.mu.Unlock()
}

// env is a simulator behind an httptest server with authenticated
// gophercloud clients.
type env struct {
	t       *testing.T
	sim     *Sim
	srv     *httptest.Server
	pub     *recorder
	pc      *gophercloud.ProviderClient
	compute *gophercloud.ServiceClient
	network *gophercloud.ServiceClient
	image   *gophercloud.ServiceClient
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	pub := &recorder{}
	if cfg.Publisher == nil {
		cfg.Publisher = pub
	}
	sim := New(cfg)
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() {
		srv.Close()
		sim.Close()
	})
	e := &env{t: t, sim: sim, srv: srv, pub: pub}
	ctx := context.Background()
	pc, err := openstack.AuthenticatedClient(ctx, sim.AuthOptions(srv.URL))
	if err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	e.pc = pc
	eo := gophercloud.EndpointOpts{Region: sim.Region()}
	if e.compute, err = openstack.NewComputeV2(pc, eo); err != nil {
		t.Fatal(err)
	}
	e.compute.Microversion = "2.79" // what the captures were taken with
	if e.network, err = openstack.NewNetworkV2(pc, eo); err != nil {
		t.Fatal(err)
	}
	if e.image, err = openstack.NewImageV2(pc, eo); err != nil {
		t.Fatal(err)
	}
	return e
}

// do sends a raw request with the current token and returns status,
// headers and decoded body (nil when empty, a string when not JSON).
func (e *env) do(method, path string, body any, headers map[string]string) (int, http.Header, any) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = strings.NewReader(string(raw))
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-Auth-Token", e.pc.Token())
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if len(raw) == 0 {
		return resp.StatusCode, resp.Header, nil
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return resp.StatusCode, resp.Header, string(raw)
	}
	return resp.StatusCode, resp.Header, v
}

// nova is do with the captures' microversion headers.
func (e *env) nova(method, path string, body any) (int, http.Header, any) {
	e.t.Helper()
	return e.do(method, "/compute/v2.1"+path, body, map[string]string{
		"OpenStack-API-Version": "compute 2.79", "X-OpenStack-Nova-API-Version": "2.79"})
}

// waitStatus waits for a server status, read from the simulator's state
// without an API call so that the call log stays clean, and then for the
// notifications of that step.
func (e *env) waitStatus(id, want string) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		got := e.serverStatus(id)
		if got == want {
			// The state changes before the step's notifications are out.
			e.waitQuiet()
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	e.t.Fatalf("server %s: status %q, want %q", id, e.serverStatus(id), want)
}

func (e *env) serverStatus(id string) string {
	for _, s := range e.sim.Inventory().Servers {
		if s.ID == id {
			if s.TaskState != "" {
				return s.Status + "/" + s.TaskState
			}
			return s.Status
		}
	}
	return "GONE"
}

// waitIdle waits until no operation is in flight: the last notification of
// an operation has gone out when the task state is clear and the
// notification count is stable.
func (e *env) waitNotifications(n int) []SentNotification {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if got := e.sim.Notifications(); len(got) >= n {
			return got
		}
		time.Sleep(2 * time.Millisecond)
	}
	e.t.Fatalf("%d notifications, want %d", len(e.sim.Notifications()), n)
	return nil
}

// waitQuiet waits until no notification has been sent for a while: the
// tail of an operation (its .end after the state change) is out.
func (e *env) waitQuiet() {
	e.t.Helper()
	last, since := -1, time.Now()
	for time.Since(since) < 30*time.Millisecond {
		if n := len(e.sim.Notifications()); n != last {
			last, since = n, time.Now()
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// createServer boots a server on a new port of the tenant network, as the
// capture did.
func (e *env) createServer(name string) string {
	e.t.Helper()
	r := servers.Create(context.Background(), e.compute, servers.CreateOpts{
		Name: name, FlavorRef: tinyFlavor, ImageRef: tinyImage,
		Networks: []servers.Network{{UUID: net1}}, Metadata: map[string]string{"purpose": "capture"},
	}, nil)
	s, err := r.Extract()
	if err != nil {
		e.t.Fatalf("create %s: %v", name, err)
	}
	return s.ID
}

const (
	tinyFlavor  = "411218af-4ba3-458b-866a-c266548e30c7"
	smallFlavor = "dd4e164b-a488-445a-80f1-e0b829eaaf79"
	hugeFlavor  = "af7ffe4a-d11c-48df-b689-27d2289b10cf"
	tooBig      = "8f086964-042e-468c-8dae-06ec7d35db2f"
	tinyImage   = "7edef56c-d408-4fec-8910-43a6cf8c5637"
	net1        = "9e3eb9af-c46e-4d76-be6c-b9d1bfe097a3"
	publicNet   = "be10a6b3-dfab-48a8-a990-31411c5b92e4"
)

// ---- captured exchanges ----

type exchange struct {
	Request struct {
		Method  string            `json:"method"`
		Path    string            `json:"path"`
		Headers map[string]string `json:"headers"`
		Body    any               `json:"body"`
	} `json:"request"`
	Response struct {
		Status  int               `json:"status"`
		Headers map[string]string `json:"headers"`
		Body    any               `json:"body"`
	} `json:"response"`
}

// capture loads testdata/api/NN-*.json.
func capture(t *testing.T, nn string) exchange {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join("testdata", "api", nn+"-*.json"))
	if len(files) != 1 {
		t.Fatalf("capture %s: %d files", nn, len(files))
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var x exchange
	if err := json.Unmarshal(raw, &x); err != nil {
		t.Fatal(err)
	}
	return x
}

// sameShape compares two decoded JSON documents by structure: the same
// object keys and the same JSON types, recursively (lists by their first
// element). Values are not compared: ids and times differ run to run.
func sameShape(got, want any) []string {
	var diffs []string
	var walk func(path string, g, w any)
	walk = func(path string, g, w any) {
		if jsonKind(g) != jsonKind(w) {
			diffs = append(diffs, fmt.Sprintf("%s: %s, captured %s", path, jsonKind(g), jsonKind(w)))
			return
		}
		switch w := w.(type) {
		case map[string]any:
			g := g.(map[string]any)
			for _, k := range sortedKeys(w) {
				if _, ok := g[k]; !ok {
					diffs = append(diffs, path+"."+k+": missing")
					continue
				}
				walk(path+"."+k, g[k], w[k])
			}
			for _, k := range sortedKeys(g) {
				if _, ok := w[k]; !ok {
					diffs = append(diffs, path+"."+k+": not in the capture")
				}
			}
		case []any:
			g := g.([]any)
			if len(w) > 0 && len(g) > 0 {
				walk(path+"[0]", g[0], w[0])
			}
		}
	}
	walk("$", got, want)
	return diffs
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case float64, json.Number:
		return "number"
	case bool:
		return "bool"
	}
	return fmt.Sprintf("%T", v)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkCapture compares a response with a capture: status, the headers
// the service always sends, and the body's shape.
func checkCapture(t *testing.T, nn string, status int, hdr http.Header, body any) {
	t.Helper()
	x := capture(t, nn)
	if status != x.Response.Status {
		t.Errorf("capture %s: status %d, captured %d (body %v)", nn, status, x.Response.Status, body)
	}
	for _, h := range []string{"Content-Type", "Openstack-Api-Version", "X-Openstack-Nova-Api-Version", "Vary", "Location"} {
		want, ok := x.Response.Headers[h]
		if !ok {
			continue
		}
		got := hdr.Get(h)
		if h == "Location" {
			if !strings.Contains(got, "/servers/") {
				t.Errorf("capture %s: Location %q", nn, got)
			}
			continue
		}
		if got != want {
			t.Errorf("capture %s: header %s = %q, captured %q", nn, h, got, want)
		}
	}
	for _, d := range sameShape(body, x.Response.Body) {
		t.Errorf("capture %s: %s", nn, d)
	}
}
