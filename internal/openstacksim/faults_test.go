package openstacksim

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cloudservers/cloudservers/internal/notification"
	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
)

func TestHTTPFaults(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	f := e.sim.Faults()

	// The next two server creates fail with Nova's 500.
	f.AddHTTP(HTTPFault{Path: "POST /compute/v2.1/servers", Status: 500, Count: 2})
	for i := 0; i < 2; i++ {
		st, _, body := e.nova("POST", "/servers", map[string]any{"server": map[string]any{"name": "x", "flavorRef": tinyFlavor, "imageRef": tinyImage, "networks": "none"}})
		cf, _ := body.(map[string]any)["computeFault"].(map[string]any)
		if st != 500 || cf["code"] != 500.0 || !strings.HasPrefix(cf["message"].(string), "Unexpected API Error.") {
			t.Errorf("faulted create %d: %d %v", i, st, body)
		}
	}
	if _, err := servers.Create(ctx, e.compute, servers.CreateOpts{Name: "ok", FlavorRef: tinyFlavor, ImageRef: tinyImage, Networks: "none"}, nil).Extract(); err != nil {
		t.Errorf("third create: %v", err)
	}

	// A template with a wildcard segment, any method, Neutron's body.
	id := f.AddHTTP(HTTPFault{Path: "/network/v2.0/ports/{id}", Status: 503, Message: "down for maintenance"})
	p, err := ports.Create(ctx, e.network, ports.CreateOpts{NetworkID: net1}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	st, _, body := e.do("GET", "/network/v2.0/ports/"+p.ID, nil, nil)
	want := map[string]any{"NeutronError": map[string]any{"type": "HTTPServiceUnavailable", "message": "down for maintenance", "detail": ""}}
	if st != 503 || !jsonEqual(body, want) {
		t.Errorf("neutron fault: %d %v", st, body)
	}
	if len(f.List()) != 1 || !f.Remove(id) || len(f.List()) != 0 {
		t.Errorf("rules %+v", f.List())
	}

	// Latency without an error.
	f.AddHTTP(HTTPFault{Method: "GET", Path: "/compute/v2.1/flavors/{id}", Latency: Duration(120 * time.Millisecond), Count: 1})
	start := time.Now()
	if _, err := flavors.Get(ctx, e.compute, tinyFlavor).Extract(); err != nil || time.Since(start) < 120*time.Millisecond {
		t.Errorf("latency fault: %v after %v", err, time.Since(start))
	}

	// A glob on the literal path, at a rate: with a fixed seed some but
	// not all calls fail.
	f.AddHTTP(HTTPFault{Path: "/compute/v2.1/flavors/*", Status: 503, Rate: 0.5})
	failed := 0
	for i := 0; i < 40; i++ {
		if err := flavors.Get(ctx, e.compute, tinyFlavor).Err; gophercloud.ResponseCodeIs(err, 503) {
			failed++
		}
	}
	if failed < 5 || failed > 35 {
		t.Errorf("rate 0.5 failed %d of 40", failed)
	}
	f.Clear()
}

func TestNotificationFaults(t *testing.T) {
	e := newEnv(t, Config{Formats: []string{FormatVersioned}})
	f := e.sim.Faults()
	types := func() []string {
		var out []string
		for _, r := range e.pub.all() {
			ev, err := notification.Decode(r.value)
			if err != nil {
				t.Fatal(err)
			}
			if ev.EventType != "instance.update" && !strings.HasPrefix(ev.EventType, "scheduler.") {
				out = append(out, ev.EventType)
			}
		}
		return out
	}
	boot := func(name string) {
		t.Helper()
		e.waitQuiet()
		e.pub.reset()
		id := e.createServer(name)
		e.waitStatus(id, "ACTIVE")
	}
	if _, err := f.AddNotification(NotificationFault{EventType: "instance.create.end", Action: "lose", Count: 1}); err != nil {
		t.Fatal(err)
	}
	boot("lost")
	if got := types(); strings.Join(got, " ") != "instance.create.start" {
		t.Errorf("lose: %v", got)
	}
	if _, err := f.AddNotification(NotificationFault{EventType: "instance.create.*", Action: "duplicate", Count: 2}); err != nil {
		t.Fatal(err)
	}
	boot("dup")
	if got := types(); strings.Join(got, " ") != "instance.create.start instance.create.start instance.create.end instance.create.end" {
		t.Errorf("duplicate: %v", got)
	}
	if _, err := f.AddNotification(NotificationFault{EventType: "instance.create.start", Action: "reorder", Count: 1}); err != nil {
		t.Fatal(err)
	}
	boot("reordered")
	time.Sleep(50 * time.Millisecond)
	all := e.pub.all()
	first, _ := notification.Decode(all[0].value)
	if first.EventType == "instance.create.start" || !contains(types(), "instance.create.start") {
		t.Errorf("reorder: start still first or lost: %v", types())
	}
	if _, err := f.AddNotification(NotificationFault{EventType: "instance.create.end", Action: "delay", Delay: Duration(150 * time.Millisecond), Count: 1}); err != nil {
		t.Fatal(err)
	}
	boot("delayed")
	if contains(types(), "instance.create.end") {
		t.Error("delayed create.end arrived at once")
	}
	time.Sleep(250 * time.Millisecond)
	if !contains(types(), "instance.create.end") {
		t.Error("delayed create.end never arrived")
	}
	if _, err := f.AddNotification(NotificationFault{EventType: "[", Action: "lose"}); err == nil {
		t.Error("bad glob accepted")
	}
	if _, err := f.AddNotification(NotificationFault{EventType: "*", Action: "explode"}); err == nil {
		t.Error("bad action accepted")
	}
}

func TestBootFaults(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	f := e.sim.Faults()
	if _, err := f.FailBoot(BootFault{Mode: "novalidhost", Name: "^doomed"}); err != nil {
		t.Fatal(err)
	}
	lucky := e.createServer("lucky")
	doomed := e.createServer("doomed-1")
	e.waitStatus(lucky, "ACTIVE")
	e.waitStatus(doomed, "ERROR")
	s, _ := servers.Get(ctx, e.compute, doomed).Extract()
	if s.Fault.Message != "No valid host was found. " {
		t.Errorf("fault %+v", s.Fault)
	}
	if _, err := f.FailBoot(BootFault{Mode: "sideways"}); err == nil {
		t.Error("bad mode accepted")
	}
}

// TestCallLog counts calls by template: a test can assert that a saga
// made no polling GETs.
func TestCallLog(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	e.sim.ResetCalls()
	id := e.createServer("counted")
	for i := 0; i < 3; i++ {
		if _, err := servers.Get(ctx, e.compute, id).Extract(); err != nil {
			t.Fatal(err)
		}
	}
	c := e.sim.Calls()
	if c.Count("POST /compute/v2.1/servers") != 1 || c.Count("GET /compute/v2.1/servers/{id}") != 3 || c.Total() != 4 {
		t.Errorf("counts %v", c.Counts)
	}
	if last := c.Calls[len(c.Calls)-1]; last.Path != "/compute/v2.1/servers/"+id || last.Status != 200 {
		t.Errorf("last call %+v", last)
	}
	e.do("GET", "/_sim/inventory", nil, nil) // the admin API is not counted
	if e.sim.Calls().Total() != 4 {
		t.Error("admin call counted")
	}
	e.sim.ResetCalls()
	if e.sim.Calls().Total() != 0 {
		t.Error("reset")
	}
}

// TestAdminAPI drives the /_sim/ endpoints over HTTP.
func TestAdminAPI(t *testing.T) {
	e := newEnv(t, Config{})
	admin := func(method, path, body string) (int, any) {
		t.Helper()
		req, _ := http.NewRequest(method, e.srv.URL+"/_sim"+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var v any
		if json.Unmarshal(raw, &v) != nil {
			return resp.StatusCode, string(raw)
		}
		return resp.StatusCode, v
	}
	if st, body := admin("GET", "/", ""); st != 200 || !strings.Contains(body.(string), "/_sim/faults") {
		t.Errorf("help: %d %v", st, body)
	}
	st, body := admin("POST", "/faults", `{"kind": "http", "path": "GET /compute/v2.1/servers/{id}", "status": 404, "count": 1}`)
	if st != 201 {
		t.Fatalf("add fault: %d %v", st, body)
	}
	id := e.createServer("adm")
	if st, _, body := e.nova("GET", "/servers/"+id, nil); st != 404 || body.(map[string]any)["itemNotFound"] == nil {
		t.Errorf("faulted GET: %d %v", st, body)
	}
	if st, _ := admin("POST", "/faults", `{"kind": "notification", "event_type": "instance.delete.*", "action": "lose", "count": 1}`); st != 201 {
		t.Errorf("notification fault: %d", st)
	}
	if st, _ := admin("POST", "/faults", `{"kind": "boot", "mode": "compute", "name": "^x$"}`); st != 201 {
		t.Errorf("boot fault: %d", st)
	}
	if st, _ := admin("POST", "/faults", `{"kind": "resize", "message": "Resize error: nope"}`); st != 201 {
		t.Errorf("resize fault: %d", st)
	}
	for _, bad := range []string{`{"kind": "bogus"}`, `{"kind": "http"}`, `{"kind": "http", "path": "/x", "colour": 1}`, `{`} {
		if st, _ := admin("POST", "/faults", bad); st != 400 {
			t.Errorf("%s: %d", bad, st)
		}
	}
	if st, body := admin("GET", "/faults", ""); st != 200 || len(body.([]any)) != 3 { // the 404 rule is used up
		t.Errorf("list faults: %d %v", st, body)
	}
	if st, _ := admin("DELETE", "/faults", ""); st != 204 || len(e.sim.Faults().List()) != 0 {
		t.Error("clear faults")
	}
	e.waitStatus(id, "ACTIVE")
	e.waitQuiet()
	st, body = admin("GET", "/inventory", "")
	servers := body.(map[string]any)["servers"].([]any)
	if st != 200 || len(servers) != 1 || servers[0].(map[string]any)["id"] != id || len(body.(map[string]any)["ports"].([]any)) != 1 {
		t.Errorf("inventory: %d %v", st, body)
	}
	st, body = admin("GET", "/calls", "")
	if st != 200 || body.(map[string]any)["counts"].(map[string]any)["GET /compute/v2.1/servers/{id}"] != 1.0 {
		t.Errorf("calls: %d %v", st, body)
	}
	if st, _ := admin("DELETE", "/calls", ""); st != 204 || e.sim.Calls().Total() != 0 {
		t.Error("reset calls")
	}
	st, body = admin("GET", "/notifications?event_type=instance.create.*&format=versioned", "")
	if st != 200 || len(body.([]any)) != 2 {
		t.Errorf("notifications: %d %d", st, len(body.([]any)))
	}
	st, body = admin("POST", "/quotas", `{"cores": 4, "exhaust": ["instances"]}`)
	if st != 200 || body.(map[string]any)["cores"] != 4.0 || body.(map[string]any)["instances"] != 1.0 {
		t.Errorf("quotas: %d %v", st, body)
	}
	if st, _ := admin("POST", "/quotas", `{"gpus": 1}`); st != 400 {
		t.Error("unknown quota accepted")
	}
	if st, _ := admin("POST", "/tokens/expire", ""); st != 204 {
		t.Error("expire tokens")
	}
	if st, _, _ := e.nova("GET", "/flavors", nil); st != 401 {
		t.Errorf("old token after expiry: %d", st)
	}
	if st, body := admin("GET", "/clouds.yaml", ""); st != 200 || !strings.Contains(body.(string), e.srv.URL+"/identity/v3") {
		t.Errorf("clouds.yaml: %v", body)
	}
	if st, _ := admin("GET", "/nothing", ""); st != 404 {
		t.Error("unknown admin path")
	}
}
