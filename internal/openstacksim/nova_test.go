package openstacksim

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
)

func TestMicroversions(t *testing.T) {
	e := newEnv(t, Config{})
	tests := []struct {
		headers map[string]string
		status  int
		echo    string
	}{
		{map[string]string{"X-OpenStack-Nova-API-Version": "2.60"}, 200, "2.60"},
		{map[string]string{"OpenStack-API-Version": "compute 2.93"}, 200, "2.93"},
		{map[string]string{"OpenStack-API-Version": "volume 3.0, compute 2.10"}, 200, "2.10"},
		{map[string]string{"OpenStack-API-Version": "compute latest"}, 200, "2.93"},
		{map[string]string{}, 200, "2.1"},
		{map[string]string{"OpenStack-API-Version": "compute 2.94"}, 406, ""},
		{map[string]string{"X-OpenStack-Nova-API-Version": "3.0"}, 406, ""},
		{map[string]string{"X-OpenStack-Nova-API-Version": "two"}, 400, ""},
	}
	for _, tt := range tests {
		st, hdr, body := e.do("GET", "/compute/v2.1/flavors", nil, tt.headers)
		if st != tt.status {
			t.Errorf("%v: %d %v", tt.headers, st, body)
			continue
		}
		if tt.echo != "" && (hdr.Get("OpenStack-API-Version") != "compute "+tt.echo || hdr.Get("X-OpenStack-Nova-API-Version") != tt.echo) {
			t.Errorf("%v: echoed %q %q", tt.headers, hdr.Get("OpenStack-API-Version"), hdr.Get("X-OpenStack-Nova-API-Version"))
		}
		if st == 406 {
			want := "Version 2.94 is not supported by the API. Minimum is 2.1 and maximum is 2.93."
			if tt.headers["X-OpenStack-Nova-API-Version"] == "3.0" {
				want = strings.Replace(want, "2.94", "3.0", 1)
			}
			if !jsonEqual(body, map[string]any{"computeFault": map[string]any{"code": 406, "message": want}}) {
				t.Errorf("406 body %v", body)
			}
		}
	}
}

// TestServerViewByMicroversion checks the fields Nova adds with
// microversions: at 2.1 the flavor is a link and there are no tags.
func TestServerViewByMicroversion(t *testing.T) {
	e := newEnv(t, Config{})
	id := e.createServer("mv")
	e.waitStatus(id, "ACTIVE")
	_, _, body := e.do("GET", "/compute/v2.1/servers/"+id, nil, nil)
	srv := body.(map[string]any)["server"].(map[string]any)
	if _, ok := srv["flavor"].(map[string]any)["links"]; !ok {
		t.Errorf("2.1 flavor %v", srv["flavor"])
	}
	for _, k := range []string{"tags", "locked", "description", "host_status", "server_groups", "OS-EXT-SRV-ATTR:hostname"} {
		if _, ok := srv[k]; ok {
			t.Errorf("2.1 shows %s", k)
		}
	}
	_, _, body = e.do("GET", "/compute/v2.1/servers/"+id, nil, map[string]string{"X-OpenStack-Nova-API-Version": "2.26"})
	srv = body.(map[string]any)["server"].(map[string]any)
	if _, ok := srv["tags"]; !ok {
		t.Error("2.26 has no tags")
	}
	if _, ok := srv["server_groups"]; ok {
		t.Error("2.26 has server_groups")
	}
}

func TestNovaErrors(t *testing.T) {
	e := newEnv(t, Config{StopTime: time.Millisecond})
	ctx := context.Background()
	id := e.createServer("err")
	e.waitStatus(id, "ACTIVE")
	kp, err := keypairs.Create(ctx, e.compute, keypairs.CreateOpts{Name: "k1"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	srvBody := func(extra map[string]any) map[string]any {
		s := map[string]any{"name": "x", "flavorRef": tinyFlavor, "imageRef": tinyImage, "networks": "none"}
		for k, v := range extra {
			s[k] = v
		}
		return map[string]any{"server": s}
	}
	tests := []struct {
		name, method, path string
		body               any
		status             int
		message            string
	}{
		{"malformed", "POST", "/servers", "{", 400, "Malformed request body"},
		{"no server", "POST", "/servers", map[string]any{"x": 1}, 400, "Invalid input for field/attribute body. Value: {'x': 1}. 'server' is a required property"},
		{"unknown image", "POST", "/servers", srvBody(map[string]any{"imageRef": "nope"}), 400, "Image nope could not be found."},
		{"unknown network", "POST", "/servers", srvBody(map[string]any{"networks": []any{map[string]any{"uuid": "nope"}}}), 400, "Network nope could not be found."},
		{"unknown port", "POST", "/servers", srvBody(map[string]any{"networks": []any{map[string]any{"port": "nope"}}}), 400, "Port id nope could not be found."},
		{"unknown key", "POST", "/servers", srvBody(map[string]any{"key_name": "nope"}), 400, "Invalid key_name provided."},
		{"networks required", "POST", "/servers", map[string]any{"server": map[string]any{"name": "x", "flavorRef": tinyFlavor, "imageRef": tinyImage}}, 400, ""},
		{"action on missing", "POST", "/servers/nope/action", map[string]any{"os-stop": nil}, 404, "Instance nope could not be found."},
		{"unknown action", "POST", "/servers/" + id + "/action", map[string]any{"fly": nil}, 400, "There is no such action: fly"},
		{"bad reboot type", "POST", "/servers/" + id + "/action", map[string]any{"reboot": map[string]any{"type": "WARM"}}, 400,
			"Invalid input for field/attribute type. Value: WARM. 'WARM' is not one of ['HARD', 'Hard', 'hard', 'SOFT', 'Soft', 'soft']"},
		{"resize same flavor", "POST", "/servers/" + id + "/action", map[string]any{"resize": map[string]any{"flavorRef": tinyFlavor}}, 400, "When resizing, instances must change flavor!"},
		{"resize unknown flavor", "POST", "/servers/" + id + "/action", map[string]any{"resize": map[string]any{"flavorRef": "nope"}}, 400, "Unable to locate requested flavor."},
		{"confirm not resized", "POST", "/servers/" + id + "/action", map[string]any{"confirmResize": nil}, 409,
			"Cannot 'confirmResize' instance " + id + " while it is in vm_state active"},
		{"start active", "POST", "/servers/" + id + "/action", map[string]any{"os-start": nil}, 409,
			"Cannot 'start' instance " + id + " while it is in vm_state active"},
		{"delete missing", "DELETE", "/servers/nope", nil, 404, "Instance nope could not be found."},
		{"flavor missing", "GET", "/flavors/nope", nil, 404, "Flavor nope could not be found."},
		{"keypair missing", "GET", "/os-keypairs/nope", nil, 404, "Keypair nope not found for user " + defaultUserID},
		{"keypair duplicate", "POST", "/os-keypairs", map[string]any{"keypair": map[string]any{"name": kp.Name}}, 409, "Key pair 'k1' already exists."},
		{"keypair bad key", "POST", "/os-keypairs", map[string]any{"keypair": map[string]any{"name": "k2", "public_key": "ssh-rsa garbage"}}, 400,
			"Keypair data is invalid: failed to generate fingerprint"},
		{"unknown path", "GET", "/nothing", nil, 404, "The resource could not be found."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, hdr, body := e.nova(tt.method, tt.path, tt.body)
			if st != tt.status {
				t.Fatalf("%d %v, want %d", st, body, tt.status)
			}
			if hdr.Get("Content-Type") != "application/json; charset=UTF-8" {
				t.Errorf("Content-Type %q", hdr.Get("Content-Type"))
			}
			m, _ := body.(map[string]any)
			if len(m) != 1 {
				t.Fatalf("body %v", body)
			}
			for name, v := range m {
				if name != novaFaultNames[tt.status] {
					t.Errorf("fault name %q", name)
				}
				f := v.(map[string]any)
				if f["code"] != float64(tt.status) || (tt.message != "" && f["message"] != tt.message) {
					t.Errorf("fault %v, want message %q", f, tt.message)
				}
			}
		})
	}

	st, _, body := e.do("POST", "/compute/v2.1/servers", srvBody(map[string]any{"tags": []any{"a"}}),
		map[string]string{"X-OpenStack-Nova-API-Version": "2.51"})
	if st != 400 || !strings.Contains(body.(map[string]any)["badRequest"].(map[string]any)["message"].(string), "('tags' was unexpected)") {
		t.Errorf("tags before 2.52: %d %v", st, body)
	}

	// 409 for an action in the wrong state, in Nova's words.
	if err := servers.Stop(ctx, e.compute, id).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(id, "SHUTOFF")
	st, _, body = e.nova("POST", "/servers/"+id+"/action", map[string]any{"os-stop": nil})
	want := map[string]any{"conflictingRequest": map[string]any{"code": 409,
		"message": "Cannot 'stop' instance " + id + " while it is in vm_state stopped"}}
	if st != 409 || !jsonEqual(body, want) {
		t.Errorf("stop a stopped server: %d %v", st, body)
	}
	err = servers.Reboot(ctx, e.compute, id, servers.RebootOpts{Type: servers.SoftReboot}).ExtractErr()
	if !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
		t.Errorf("soft reboot of a stopped server: %v", err)
	}
}

func TestNovaQuota(t *testing.T) {
	e := newEnv(t, Config{Quotas: Quotas{Instances: 2, Cores: 20}})
	e.createServer("q1")
	e.createServer("q2")
	st, _, body := e.nova("POST", "/servers", map[string]any{"server": map[string]any{"name": "q3", "flavorRef": tinyFlavor,
		"imageRef": tinyImage, "networks": "none"}})
	want := map[string]any{"forbidden": map[string]any{"code": 403, "message": "Quota exceeded for instances: Requested 1, but already used 2 of 2 instances"}}
	if st != 403 || !jsonEqual(body, want) {
		t.Errorf("over the instance quota: %d %v", st, body)
	}
	if err := e.sim.Faults().SetQuota(QuotaInstances, -1); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.Faults().SetQuota(QuotaCores, 2); err != nil {
		t.Fatal(err)
	}
	st, _, body = e.nova("POST", "/servers", map[string]any{"server": map[string]any{"name": "q3", "flavorRef": tinyFlavor,
		"imageRef": tinyImage, "networks": "none"}})
	want = map[string]any{"forbidden": map[string]any{"code": 403, "message": "Quota exceeded for cores: Requested 1, but already used 2 of 2 cores"}}
	if st != 403 || !jsonEqual(body, want) {
		t.Errorf("over the cores quota: %d %v", st, body)
	}
}

func TestKeypairs(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	gen, err := keypairs.Create(ctx, e.compute, keypairs.CreateOpts{Name: "gen"}).Extract()
	if err != nil || gen.PrivateKey == "" || !strings.HasPrefix(gen.PublicKey, "ssh-ed25519 ") || len(gen.Fingerprint) != 47 {
		t.Fatalf("generated keypair %+v, %v", gen, err)
	}
	imp, err := keypairs.Create(ctx, e.compute, keypairs.CreateOpts{Name: "imp", PublicKey: gen.PublicKey}).Extract()
	if err != nil || imp.PrivateKey != "" || imp.Fingerprint != gen.Fingerprint {
		t.Fatalf("imported keypair %+v, %v", imp, err)
	}
	got, err := keypairs.Get(ctx, e.compute, "imp", nil).Extract()
	if err != nil || got.PublicKey != gen.PublicKey || got.UserID != defaultUserID {
		t.Errorf("keypairs.Get = %+v, %v", got, err)
	}
	pages, err := keypairs.List(e.compute, nil).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	list, _ := keypairs.ExtractKeyPairs(pages)
	if len(list) != 2 {
		t.Errorf("list %+v", list)
	}
	// A server boots with it.
	s, err := servers.Create(ctx, e.compute, keypairs.CreateOptsExt{CreateOptsBuilder: servers.CreateOpts{Name: "k", FlavorRef: tinyFlavor,
		ImageRef: tinyImage, Networks: "none"}, KeyName: "imp"}, nil).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := servers.Get(ctx, e.compute, s.ID).Extract(); got.KeyName != "imp" {
		t.Errorf("key_name %q", got.KeyName)
	}
	if err := keypairs.Delete(ctx, e.compute, "imp", nil).ExtractErr(); err != nil {
		t.Error(err)
	}
	if err := keypairs.Delete(ctx, e.compute, "imp", nil).ExtractErr(); !gophercloud.ResponseCodeIs(err, 404) {
		t.Errorf("second delete: %v", err)
	}
	// 2.92 requires an imported key.
	st, _, _ := e.do("POST", "/compute/v2.1/os-keypairs", map[string]any{"keypair": map[string]any{"name": "new"}},
		map[string]string{"X-OpenStack-Nova-API-Version": "2.92"})
	if st != 400 {
		t.Errorf("2.92 without public_key: %d", st)
	}
}

// TestServerListFilters exercises Nova's list filters and paging through
// gophercloud.
func TestServerListFilters(t *testing.T) {
	e := newEnv(t, Config{})
	e.compute.Microversion = "2.52"
	ctx := context.Background()
	mk := func(name string, tags []string) string {
		s, err := servers.Create(ctx, e.compute, servers.CreateOpts{Name: name, FlavorRef: tinyFlavor, ImageRef: tinyImage,
			Networks: "auto", Tags: tags}, nil).Extract()
		if err != nil {
			t.Fatal(err)
		}
		e.waitStatus(s.ID, "ACTIVE")
		return s.ID
	}
	web1 := mk("web-1", []string{"web", "prod"})
	web2 := mk("web-2", []string{"web"})
	db := mk("db-1", []string{"db", "prod"})
	if err := servers.Stop(ctx, e.compute, db).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(db, "SHUTOFF")
	time.Sleep(10 * time.Millisecond)
	before := time.Now().UTC()

	list := func(opts servers.ListOpts) []string {
		t.Helper()
		pages, err := servers.List(e.compute, opts).AllPages(ctx)
		if err != nil {
			t.Fatal(err)
		}
		all, err := servers.ExtractServers(pages)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range all {
			names = append(names, s.Name)
		}
		return names
	}
	check := func(what string, got []string, want ...string) {
		t.Helper()
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: %v, want %v", what, got, want)
		}
	}
	check("all, newest first", list(servers.ListOpts{}), "db-1", "web-2", "web-1")
	check("name regex", list(servers.ListOpts{Name: "^web"}), "web-2", "web-1")
	check("status", list(servers.ListOpts{Status: "SHUTOFF"}), "db-1")
	check("tags", list(servers.ListOpts{Tags: "web,prod"}), "web-1")
	check("tags-any", list(servers.ListOpts{TagsAny: "db,prod"}), "db-1", "web-1")
	check("not-tags", list(servers.ListOpts{NotTags: "prod"}), "web-2")
	check("paged", list(servers.ListOpts{Limit: 1}), "db-1", "web-2", "web-1")
	if err := servers.Delete(ctx, e.compute, web2).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(web2, "GONE")
	check("changes-since sees the deleted", list(servers.ListOpts{ChangesSince: before.Format(time.RFC3339Nano)}), "web-2")
	_ = web1
}

// TestNetworksAutoAndNone checks the string forms of networks.
func TestNetworksAutoAndNone(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	for _, nets := range []string{"auto", "none"} {
		s, err := servers.Create(ctx, e.compute, servers.CreateOpts{Name: nets, FlavorRef: tinyFlavor, ImageRef: tinyImage, Networks: nets}, nil).Extract()
		if err != nil {
			t.Fatal(err)
		}
		e.waitStatus(s.ID, "ACTIVE")
		got, err := servers.Get(ctx, e.compute, s.ID).Extract()
		if err != nil {
			t.Fatal(err)
		}
		if (nets == "auto") != (got.Addresses["net1"] != nil) {
			t.Errorf("networks %q: addresses %v", nets, got.Addresses)
		}
	}
}

// TestUpdateServerName renames a server; Nova notifies instance.update
// with old_display_name.
func TestUpdateServerName(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	id := e.createServer("before")
	e.waitStatus(id, "ACTIVE")
	e.waitQuiet()
	e.sim.ResetNotifications()
	s, err := servers.Update(ctx, e.compute, id, servers.UpdateOpts{Name: "after"}).Extract()
	if err != nil || s.Name != "after" {
		t.Fatalf("update %+v, %v", s, err)
	}
	sent := e.waitNotifications(2)
	d := decodeValue(t, sent[len(sent)-1].Value)
	if d.ev.EventType != "instance.update" || d.ev.DisplayName != "after" {
		t.Errorf("notification %+v", d.ev)
	}
	if old := d.raw["payload"].(map[string]any)["nova_object.data"].(map[string]any)["old_display_name"]; old != "before" {
		t.Errorf("old_display_name %v", old)
	}
}
