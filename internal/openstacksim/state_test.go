package openstacksim

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudservers/cloudservers/internal/notification"
	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
)

// smallNets gives the simulator /29 networks (five addresses in each
// pool), so that a pool that forgot what the file says is used hands out a
// used address for certain.
var smallNets = Config{TenantNetwork: NetworkConfig{CIDR: "10.0.0.0/29"}, ExternalNetwork: NetworkConfig{CIDR: "172.24.4.0/29"}}

func withState(cfg Config, file string) Config {
	cfg.StateFile = file
	return cfg
}

// views are the API's answers a restart must not change.
var stateViews = []string{
	"/compute/v2.1/servers/detail",
	"/compute/v2.1/servers/detail?changes-since=2000-01-01T00:00:00Z",
	"/compute/v2.1/os-keypairs",
	"/compute/v2.1/os-keypairs/k1",
	"/network/v2.0/ports",
	"/network/v2.0/floatingips",
	"/network/v2.0/subnets",
	"/network/v2.0/networks",
}

// viewsOfSim reads stateViews, with the simulator's own URL (links) made
// neutral.
func viewsOfSim(e *env) map[string]string {
	e.t.Helper()
	out := map[string]string{}
	for _, p := range stateViews {
		st, _, body := e.do("GET", p, nil, map[string]string{"X-OpenStack-Nova-API-Version": "2.79"})
		if st != 200 {
			e.t.Fatalf("GET %s: %d %v", p, st, body)
		}
		b, _ := json.MarshalIndent(body, "", " ")
		out[p] = strings.ReplaceAll(string(b), e.srv.URL, "http://sim")
	}
	return out
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestStateRoundTrip: servers in several states, ports, floating IPs and a
// keypair survive Close and Open on the same file; the pools do not hand
// out an address the restored resources hold; the restored servers can be
// rebooted and deleted.
func TestStateRoundTrip(t *testing.T) {
	file := filepath.Join(t.TempDir(), "sim", "state.json")
	e := newEnv(t, withState(smallNets, file))
	ctx := context.Background()

	if _, err := keypairs.Create(ctx, e.compute, keypairs.CreateOpts{Name: "k1"}).Extract(); err != nil {
		t.Fatal(err)
	}
	st, _, body := e.nova("POST", "/servers", map[string]any{"server": map[string]any{
		"name": "web", "flavorRef": tinyFlavor, "imageRef": tinyImage, "key_name": "k1",
		"networks": []any{map[string]any{"uuid": net1}}, "tags": []string{"t1"}, "description": "the web server",
		"metadata": map[string]string{"role": "web"}}})
	if st != 202 {
		t.Fatalf("create: %d %v", st, body)
	}
	active := body.(map[string]any)["server"].(map[string]any)["id"].(string)
	stopped, resized, doomed, gone := e.createServer("stopped"), e.createServer("resized"), "", e.createServer("gone")
	if _, err := e.sim.Faults().FailBoot(BootFault{Mode: "compute", Name: "^doomed$"}); err != nil {
		t.Fatal(err)
	}
	doomed = e.createServer("doomed")
	for _, id := range []string{active, stopped, resized, gone} {
		e.waitStatus(id, "ACTIVE")
	}
	e.waitStatus(doomed, "ERROR")
	mustOK(t, servers.Stop(ctx, e.compute, stopped).ExtractErr())
	mustOK(t, servers.Resize(ctx, e.compute, resized, servers.ResizeOpts{FlavorRef: smallFlavor}).ExtractErr())
	mustOK(t, servers.Delete(ctx, e.compute, gone).ExtractErr())
	e.waitStatus(stopped, "SHUTOFF")
	e.waitStatus(resized, "VERIFY_RESIZE")
	e.waitStatus(gone, "GONE")

	spare, err := ports.Create(ctx, e.network, ports.CreateOpts{Name: "spare", NetworkID: net1, Description: "kept"}).Extract()
	mustOK(t, err)
	var webPort string
	for _, s := range e.sim.Inventory().Servers {
		if s.ID == active {
			webPort = s.Ports[0]
		}
	}
	fip, err := floatingips.Create(ctx, e.network, floatingips.CreateOpts{FloatingNetworkID: publicNet, PortID: webPort, Description: "web"}).Extract()
	mustOK(t, err)
	if _, err := floatingips.Create(ctx, e.network, floatingips.CreateOpts{FloatingNetworkID: publicNet}).Extract(); err != nil {
		t.Fatal(err)
	}
	e.waitQuiet()
	before := viewsOfSim(e)
	if !strings.Contains(before["/compute/v2.1/servers/detail"], fip.FloatingIP) {
		t.Fatalf("the floating IP is not in the server's addresses: %s", before["/compute/v2.1/servers/detail"])
	}
	macs := map[string]bool{}
	e.sim.mu.Lock()
	for _, p := range e.sim.ports {
		macs[p.mac] = true
	}
	e.sim.mu.Unlock()
	var usedAddrs []string
	for _, p := range e.sim.Inventory().Ports {
		usedAddrs = append(usedAddrs, p.FixedIPs...)
	}
	for _, f := range e.sim.Inventory().FloatingIPs {
		usedAddrs = append(usedAddrs, f.Address)
	}

	e.srv.Close()
	mustOK(t, e.sim.Shutdown())
	entries, _ := os.ReadDir(filepath.Dir(file))
	if len(entries) != 1 || entries[0].Name() != "state.json" {
		t.Errorf("state folder holds %v, want only state.json (no temporary file left)", entries)
	}
	var head struct {
		Version int `json:"version"`
	}
	raw, err := os.ReadFile(file)
	mustOK(t, err)
	if json.Unmarshal(raw, &head) != nil || head.Version != 1 {
		t.Errorf("state file does not start as {\"version\":1,...}: %.80s", raw)
	}

	e2 := newEnv(t, withState(smallNets, file))
	after := viewsOfSim(e2)
	for _, p := range stateViews {
		if before[p] != after[p] {
			t.Errorf("GET %s changed across the restart:\nbefore %s\nafter  %s", p, before[p], after[p])
		}
	}

	// The pools know what is used: the tenant /29 has one free address
	// left, which a new server takes; then the pool is exhausted, and a
	// used address asked for by name is refused.
	s6 := e2.createServer("new")
	e2.waitStatus(s6, "ACTIVE")
	inv := e2.sim.Inventory()
	for _, s := range inv.Servers {
		if s.ID == s6 {
			if len(s.Addresses) != 1 || slices.Contains(usedAddrs, s.Addresses[0]) {
				t.Errorf("new server got %v; restored resources hold %v", s.Addresses, usedAddrs)
			}
			e2.sim.mu.Lock()
			if mac := e2.sim.ports[s.Ports[0]].mac; macs[mac] {
				t.Errorf("new port got MAC %s, which a restored port has", mac)
			}
			e2.sim.mu.Unlock()
		}
	}
	if _, err := ports.Create(ctx, e2.network, ports.CreateOpts{NetworkID: net1}).Extract(); !gophercloud.ResponseCodeIs(err, 409) {
		t.Errorf("a port on the full pool: %v, want 409 (pool forgot restored addresses?)", err)
	}
	if _, err := floatingips.Create(ctx, e2.network, floatingips.CreateOpts{FloatingNetworkID: publicNet, FloatingIP: fip.FloatingIP}).Extract(); !gophercloud.ResponseCodeIs(err, 409) {
		t.Errorf("a floating IP with the restored one's address: %v, want 409", err)
	}
	_, _, got := e2.nova("GET", "/servers/"+s6, nil)
	name := got.(map[string]any)["server"].(map[string]any)["OS-EXT-SRV-ATTR:instance_name"]
	if strings.Contains(before["/compute/v2.1/servers/detail"], `"`+name.(string)+`"`) {
		t.Errorf("instance name %v handed out again", name)
	}

	// What failed before the fix: actions on restored servers.
	mustOK(t, servers.Reboot(ctx, e2.compute, active, servers.RebootOpts{Type: servers.SoftReboot}).ExtractErr())
	e2.waitStatus(active, "ACTIVE")
	mustOK(t, servers.ConfirmResize(ctx, e2.compute, resized).ExtractErr())
	e2.waitStatus(resized, "ACTIVE")
	mustOK(t, servers.Delete(ctx, e2.compute, stopped).ExtractErr())
	e2.waitStatus(stopped, "GONE")
	mustOK(t, ports.Delete(ctx, e2.network, spare.ID).ExtractErr())
	if _, err := ports.Create(ctx, e2.network, ports.CreateOpts{NetworkID: net1}).Extract(); err != nil {
		t.Errorf("freed addresses are handed out again: %v", err)
	}
}

// TestStateInFlight: operations caught by Close are settled when the file
// is opened again, as Nova's services settle them when they restart, and
// no server keeps a task state.
func TestStateInFlight(t *testing.T) {
	file := filepath.Join(t.TempDir(), "state.json")
	ctx := context.Background()

	// 1. Instant operations: servers to start from.
	a := newEnv(t, withState(Config{}, file))
	ids := map[string]string{}
	for _, n := range []string{"reboot", "hard", "stop", "start", "resize", "finish", "confirm", "delete"} {
		ids[n] = a.createServer(n)
	}
	for _, id := range ids {
		a.waitStatus(id, "ACTIVE")
	}
	mustOK(t, servers.Stop(ctx, a.compute, ids["start"]).ExtractErr())
	mustOK(t, servers.Resize(ctx, a.compute, ids["confirm"], servers.ResizeOpts{FlavorRef: smallFlavor}).ExtractErr())
	a.waitStatus(ids["start"], "SHUTOFF")
	a.waitStatus(ids["confirm"], "VERIFY_RESIZE")
	a.srv.Close()
	mustOK(t, a.sim.Shutdown())

	// 2. Hour-long operations, all caught by Close.
	slow := Config{BootTime: time.Hour, RebootTime: time.Hour, StopTime: time.Hour, StartTime: time.Hour,
		ResizeTime: time.Hour, ConfirmTime: time.Hour, RevertTime: time.Hour, DeleteTime: time.Hour}
	b := newEnv(t, withState(slow, file))
	st, hdr, _ := b.nova("POST", "/servers/"+ids["reboot"]+"/action", map[string]any{"reboot": map[string]any{"type": "SOFT"}})
	if st != 202 {
		t.Fatalf("reboot: %d", st)
	}
	rebootReq := hdr.Get("X-Compute-Request-Id")
	mustOK(t, servers.Reboot(ctx, b.compute, ids["hard"], servers.RebootOpts{Type: servers.HardReboot}).ExtractErr())
	mustOK(t, servers.Stop(ctx, b.compute, ids["stop"]).ExtractErr())
	mustOK(t, servers.Start(ctx, b.compute, ids["start"]).ExtractErr())
	mustOK(t, servers.Resize(ctx, b.compute, ids["resize"], servers.ResizeOpts{FlavorRef: smallFlavor}).ExtractErr())
	mustOK(t, servers.ConfirmResize(ctx, b.compute, ids["confirm"]).ExtractErr())
	mustOK(t, servers.Delete(ctx, b.compute, ids["delete"]).ExtractErr())
	ids["build"] = b.createServer("build")
	// The finishing step of a resize, which an hour-long resize reaches
	// only after 48 minutes: put the server there as that step does.
	b.sim.mu.Lock()
	srv := b.sim.servers[ids["finish"]]
	srv.gen++
	srv.preResizeState, srv.oldFlavorID, srv.flavorID, srv.taskState = "active", srv.flavorID, smallFlavor, "resize_finish"
	b.sim.mu.Unlock()
	b.waitQuiet()
	for n, want := range map[string]string{"reboot": "REBOOT/rebooting", "hard": "HARD_REBOOT/rebooting_hard",
		"stop": "ACTIVE/powering-off", "start": "SHUTOFF/powering-on", "resize": "RESIZE/resize_prep",
		"confirm": "VERIFY_RESIZE", "delete": "ACTIVE/deleting", "build": "BUILD/scheduling", "finish": "RESIZE/resize_finish"} {
		if got := b.serverStatus(ids[n]); got != want {
			t.Errorf("before Close, %s is %s, want %s", n, got, want)
		}
	}
	deletedPorts := ""
	for _, s := range b.sim.Inventory().Servers {
		if s.ID == ids["delete"] {
			deletedPorts = s.Ports[0]
		}
	}
	b.srv.Close()
	mustOK(t, b.sim.Shutdown())

	// 3. Open again: settled at once (the build) or by running the
	// operation again (the rest).
	fast := Config{RebootTime: 50 * time.Millisecond, StopTime: 50 * time.Millisecond, StartTime: 50 * time.Millisecond,
		ConfirmTime: 50 * time.Millisecond, DeleteTime: 50 * time.Millisecond}
	c := newEnv(t, withState(fast, file))
	if got := c.serverStatus(ids["build"]); got != "ERROR" {
		t.Errorf("interrupted build right after Open: %s, want ERROR without a task", got)
	}
	_, _, body := c.nova("GET", "/servers/"+ids["build"], nil)
	if fault, _ := body.(map[string]any)["server"].(map[string]any)["fault"].(map[string]any); fault == nil ||
		!strings.Contains(fault["message"].(string), "restarted while the instance was building") {
		t.Errorf("interrupted build's fault: %v", fault)
	}
	for n, want := range map[string]string{"reboot": "ACTIVE", "hard": "ACTIVE", "stop": "SHUTOFF", "start": "ACTIVE",
		"resize": "ACTIVE", "finish": "VERIFY_RESIZE", "confirm": "ACTIVE", "delete": "GONE", "build": "ERROR"} {
		c.waitStatus(ids[n], want)
	}
	for _, s := range c.sim.Inventory().Servers {
		if s.TaskState != "" {
			t.Errorf("server %s keeps task state %s", s.Name, s.TaskState)
		}
	}
	flavorOf := func(id string) any {
		_, _, body := c.nova("GET", "/servers/"+id, nil)
		return body.(map[string]any)["server"].(map[string]any)["flavor"].(map[string]any)["original_name"]
	}
	if f := flavorOf(ids["resize"]); f != "m1.tiny" {
		t.Errorf("rolled back resize: flavor %v, want m1.tiny", f)
	}
	if f := flavorOf(ids["finish"]); f != "m1.small" {
		t.Errorf("finished resize: flavor %v, want m1.small", f)
	}
	if f := flavorOf(ids["confirm"]); f != "m1.small" {
		t.Errorf("confirmed resize: flavor %v, want m1.small", f)
	}
	mustOK(t, servers.ConfirmResize(ctx, c.compute, ids["finish"]).ExtractErr())
	c.waitStatus(ids["finish"], "ACTIVE")
	for _, p := range c.sim.Inventory().Ports {
		if p.ID == deletedPorts {
			t.Errorf("the deleted server's port %s is left", p.ID)
		}
	}
	// Whoever waits for the interrupted reboot hears it end, under the
	// request id it was given.
	var ended bool
	for _, d := range simStream(t, c.sim.Notifications(), ids["reboot"], notification.FormatVersioned) {
		if d.ev.EventType == "instance.reboot.end" && d.ev.RequestID == rebootReq {
			ended = true
		}
	}
	if !ended {
		t.Errorf("no instance.reboot.end with request id %s after the restart", rebootReq)
	}
	var update bool
	for _, d := range simStream(t, c.sim.Notifications(), ids["build"], notification.FormatVersioned) {
		update = update || d.ev.EventType == "instance.update" && d.ev.State == "error"
	}
	if !update {
		t.Error("no instance.update to error for the interrupted build")
	}
}

// TestStateFileErrors: a file that cannot be read or does not hold a
// state is an error naming it, and is left as it was.
func TestStateFileErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	s := New(Config{StateFile: good})
	mustOK(t, s.Shutdown())
	valid, err := os.ReadFile(good)
	mustOK(t, err)
	var st State
	mustOK(t, json.Unmarshal(valid, &st))
	st.Ports = append(st.Ports, PortState{ID: "p", NetworkID: "nowhere"})
	orphan, _ := json.Marshal(st)

	for name, c := range map[string]struct {
		content string
		want    string
	}{
		"garbage":   {"this is not JSON", "not a state file"},
		"truncated": {string(valid[:len(valid)/2]), "not a state file"},
		"empty":     {"", "not a state file"},
		"version":   {`{"version": 2, "servers": []}`, "version 2, this simulator reads version 1"},
		"unversion": {`{"servers": []}`, "version none"},
		"orphan":    {string(orphan), "port p: unknown network nowhere"},
		"directory": {"", "read state file"},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name+".json")
			if name == "directory" {
				mustOK(t, os.Mkdir(path, 0o755))
			} else {
				mustOK(t, os.WriteFile(path, []byte(c.content), 0o600))
			}
			sim, err := Open(Config{StateFile: path})
			if err == nil {
				sim.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q, want one naming %s and saying %q", err, path, c.want)
			}
			if name != "directory" {
				if b, _ := os.ReadFile(path); string(b) != c.content {
					t.Error("the bad file was overwritten")
				}
			}
			defer func() {
				if recover() == nil {
					t.Error("New did not panic")
				}
			}()
			New(Config{StateFile: path})
		})
	}

	// A file that cannot be written is Shutdown's error: here a file
	// stands where its folder would be made.
	blocker := filepath.Join(dir, "later")
	sim := New(Config{StateFile: filepath.Join(blocker, "state.json")})
	mustOK(t, os.WriteFile(blocker, nil, 0o600))
	if err := sim.Shutdown(); err == nil || !strings.Contains(err.Error(), "state file") {
		t.Errorf("Shutdown with an unwritable state file: %v", err)
	}
}

// TestCloseWithoutStateFileWritesNothing: the in-memory simulator, as
// before, leaves no file anywhere.
func TestCloseWithoutStateFileWritesNothing(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	e := newEnv(t, Config{})
	e.waitStatus(e.createServer("x"), "ACTIVE")
	e.srv.Close()
	mustOK(t, e.sim.Shutdown())
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("Close wrote %v", entries)
	}
}

// TestStateAutosave: while it runs, the simulator saves its cloud when it
// changes, so one killed without Close comes back with the server it had
// moments before (and a build it caught in flight settled, as after Close).
func TestStateAutosave(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	e := newEnv(t, Config{StateFile: path, StateSaveInterval: 50 * time.Millisecond})
	id := e.createServer("kept")
	e.waitStatus(id, "ACTIVE")
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && strings.Contains(string(b), id) && strings.Contains(string(b), `"vm_state": "active"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the state file has no active server %s after 5 s of 50 ms autosaves: %v", id, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// No Close: the first simulator is "killed"; a second one opens the file.
	s2, err := Open(Config{StateFile: path, StateSaveInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	found := false
	for _, srv := range s2.Inventory().Servers {
		found = found || (srv.ID == id && srv.Status == "ACTIVE")
	}
	if !found {
		t.Fatalf("server %s not restored from the autosaved file: %+v", id, s2.Inventory().Servers)
	}
}
