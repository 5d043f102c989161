package openstacksim

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
)

// TestCapturedWalk replays the captured run (testdata/api, in call order)
// against the simulator and compares every answer with the real one:
// status, Nova's version headers and the body's shape (keys and JSON types
// at every level). gophercloud drives the calls it has; the rest are raw
// requests with the captured bodies, so that error messages can be
// compared word for word.
func TestCapturedWalk(t *testing.T) {
	e := newEnv(t, Config{BootTime: time.Second, DeleteTime: 600 * time.Millisecond, // slow enough to see BUILD and "deleting"
		RebootTime: 50 * time.Millisecond, StopTime: 50 * time.Millisecond, StartTime: 50 * time.Millisecond,
		ResizeTime: 50 * time.Millisecond, ConfirmTime: 50 * time.Millisecond})
	ctx := context.Background()
	exact := func(nn string, body any) {
		t.Helper()
		want := capture(t, nn).Response.Body
		if !jsonEqual(body, want) {
			t.Errorf("capture %s: body %v, captured %v", nn, body, want)
		}
	}
	send := func(nn string) (int, http.Header, any) {
		t.Helper()
		x := capture(t, nn)
		return e.nova(x.Request.Method, x.Request.Path[len("/v2.1"):], x.Request.Body)
	}

	t.Run("keystone", func(t *testing.T) {
		x := capture(t, "01")
		body := x.Request.Body
		st, hdr, resp := e.do("POST", "/identity/v3/auth/tokens", replacePassword(body, "secret"), nil)
		checkCapture(t, "01", st, hdr, resp)
		if hdr.Get("X-Subject-Token") == "" {
			t.Error("no X-Subject-Token")
		}
		st, hdr, resp = e.do("GET", "/identity/v3/auth/catalog", nil, nil)
		checkCapture(t, "02", st, hdr, resp)
	})
	t.Run("versions", func(t *testing.T) {
		st, hdr, body := e.do("GET", "/compute/", nil, nil)
		checkCapture(t, "03", st, hdr, body)
	})
	t.Run("glance images", func(t *testing.T) {
		st, hdr, body := e.do("GET", "/image/v2/images", nil, nil)
		checkCapture(t, "04", st, hdr, body)
		pages, err := images.List(e.image, images.ListOpts{Name: "tiny"}).AllPages(ctx)
		if err != nil {
			t.Fatal(err)
		}
		list, err := images.ExtractImages(pages)
		if err != nil || len(list) != 1 || list[0].ID != tinyImage || list[0].SizeBytes != 1048576 {
			t.Errorf("images.List(tiny) = %+v, %v", list, err)
		}
	})
	t.Run("flavors", func(t *testing.T) {
		st, hdr, body := e.nova("GET", "/flavors/detail", nil)
		checkCapture(t, "05", st, hdr, body)
		f, err := flavors.Get(ctx, e.compute, smallFlavor).Extract()
		if err != nil || f.Name != "m1.small" || f.RAM != 128 || f.Disk != 2 {
			t.Errorf("flavors.Get = %+v, %v", f, err)
		}
	})
	t.Run("neutron networks", func(t *testing.T) {
		st, hdr, body := e.do("GET", "/network/v2.0/networks?name=net1", nil, nil)
		checkCapture(t, "09", st, hdr, body)
		pages, err := networks.List(e.network, networks.ListOpts{Name: "public"}).AllPages(ctx)
		if err != nil {
			t.Fatal(err)
		}
		list, _ := networks.ExtractNetworks(pages)
		if len(list) != 1 || list[0].ID != publicNet {
			t.Errorf("networks.List(public) = %+v", list)
		}
	})

	// 14: the port the server boots on.
	port, err := ports.Create(ctx, e.network, ports.CreateOpts{Name: "cap-vm-port", NetworkID: net1}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	{
		st, hdr, body := e.do("GET", "/network/v2.0/ports/"+port.ID, nil, nil)
		if st != 200 {
			t.Fatalf("GET port: %d", st)
		}
		checkCapture(t, "14", 201, hdr, map[string]any{"port": body.(map[string]any)["port"]})
	}

	t.Run("create errors", func(t *testing.T) {
		for _, nn := range []string{"15", "16", "17", "21", "22"} {
			st, hdr, body := send(nn)
			checkCapture(t, nn, st, hdr, body)
			exact(nn, body)
		}
	})
	t.Run("min_disk", func(t *testing.T) {
		imgs := DefaultImages()
		imgs[0].MinDisk = 2
		e2 := newEnv(t, Config{Images: imgs})
		x := capture(t, "19")
		st, hdr, body := e2.nova("POST", "/servers", x.Request.Body)
		checkCapture(t, "19", st, hdr, body)
		exact("19", body)
	})

	// 23-26: create, BUILD, ACTIVE, ACTIVE at 2.93.
	x := capture(t, "23")
	reqBody := x.Request.Body.(map[string]any)
	reqBody["server"].(map[string]any)["networks"] = []any{map[string]any{"port": port.ID}}
	st, hdr, body := e.nova("POST", "/servers", reqBody)
	checkCapture(t, "23", st, hdr, body)
	id := body.(map[string]any)["server"].(map[string]any)["id"].(string)
	st, hdr, body = e.nova("GET", "/servers/"+id, nil)
	checkCapture(t, "24", st, hdr, body)
	e.waitStatus(id, "ACTIVE")
	st, hdr, body = e.nova("GET", "/servers/"+id, nil)
	checkCapture(t, "25", st, hdr, body)
	st, hdr, body = e.do("GET", "/compute/v2.1/servers/"+id, nil, map[string]string{"OpenStack-API-Version": "compute 2.93"})
	checkCapture(t, "26", st, hdr, body)
	srv, err := servers.Get(ctx, e.compute, id).Extract()
	if err != nil || srv.Status != "ACTIVE" || srv.Addresses["net1"] == nil {
		t.Errorf("servers.Get = %+v, %v", srv, err)
	}

	// 27-30: floating IP on the port.
	fip, err := floatingips.Create(ctx, e.network, floatingips.CreateOpts{FloatingNetworkID: publicNet, Description: "capture"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	st, hdr, body = e.do("GET", "/network/v2.0/floatingips/"+fip.ID, nil, nil)
	checkCapture(t, "27", 201, hdr, body)
	st, hdr, body = e.do("PUT", "/network/v2.0/floatingips/"+fip.ID, map[string]any{"floatingip": map[string]any{"port_id": port.ID}}, nil)
	checkCapture(t, "28", st, hdr, body)
	st, hdr, body = e.do("GET", "/network/v2.0/floatingips", nil, nil)
	checkCapture(t, "29", st, hdr, body)
	st, hdr, body = e.do("GET", "/network/v2.0/ports/"+port.ID, nil, nil)
	checkCapture(t, "30", st, hdr, body)

	// 31-32: lists.
	st, hdr, body = e.nova("GET", "/servers/detail", nil)
	checkCapture(t, "31", st, hdr, body)
	st, hdr, body = e.nova("GET", "/servers", nil)
	checkCapture(t, "32", st, hdr, body)

	// 33-40: reboot, stop, start, resize, confirm.
	action := func(nn, wantStatus string) {
		t.Helper()
		x := capture(t, nn)
		st, _, body := e.nova("POST", "/servers/"+id+"/action", x.Request.Body)
		if st != x.Response.Status || body != nil {
			t.Errorf("capture %s: %d %v, captured %d", nn, st, body, x.Response.Status)
		}
		e.waitStatus(id, wantStatus)
	}
	action("33", "ACTIVE")
	action("34", "SHUTOFF")
	st, hdr, body = e.nova("GET", "/servers/"+id, nil)
	checkCapture(t, "35", st, hdr, body)
	action("36", "ACTIVE")
	x37 := capture(t, "37")
	x37.Request.Body.(map[string]any)["resize"].(map[string]any)["flavorRef"] = smallFlavor
	if st, _, body := e.nova("POST", "/servers/"+id+"/action", x37.Request.Body); st != 202 || body != nil {
		t.Errorf("resize: %d %v", st, body)
	}
	e.waitStatus(id, "VERIFY_RESIZE")
	st, hdr, body = e.nova("GET", "/servers/"+id, nil)
	checkCapture(t, "38", st, hdr, body)
	action("39", "ACTIVE")
	st, hdr, body = e.nova("GET", "/servers/"+id, nil)
	checkCapture(t, "40", st, hdr, body)
	if f := body.(map[string]any)["server"].(map[string]any)["flavor"].(map[string]any)["original_name"]; f != "m1.small" {
		t.Errorf("flavor after resize: %v", f)
	}

	// 43-45: delete.
	st, hdr, body = e.nova("DELETE", "/servers/"+id, nil)
	checkCapture(t, "43", st, hdr, body)
	st, hdr, body = e.nova("GET", "/servers/"+id, nil)
	checkCapture(t, "44", st, hdr, body)
	e.waitStatus(id, "GONE")
	st, hdr, body = e.nova("GET", "/servers/"+id, nil)
	checkCapture(t, "45", st, hdr, body)
	if err := servers.Get(ctx, e.compute, id).Err; !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Errorf("servers.Get after delete: %v", err)
	}

	// 46-49: clean up Neutron.
	st, hdr, body = e.do("PUT", "/network/v2.0/floatingips/"+fip.ID, map[string]any{"floatingip": map[string]any{"port_id": nil}}, nil)
	checkCapture(t, "46", st, hdr, body)
	st, hdr, body = e.do("DELETE", "/network/v2.0/floatingips/"+fip.ID, nil, nil)
	checkCapture(t, "47", st, hdr, body)
	st, hdr, body = e.do("DELETE", "/network/v2.0/ports/"+port.ID, nil, nil)
	checkCapture(t, "48", st, hdr, body)
	st, hdr, body = e.do("GET", "/network/v2.0/ports/"+port.ID, nil, nil)
	checkCapture(t, "49", st, hdr, body)
	exact("49", replaceID(body, port.ID, "5de128b1-5dba-4de7-b70b-fd984c9bef30"))

	// 50-52: No valid host.
	x50 := capture(t, "50")
	st, hdr, body = e.nova("POST", "/servers", x50.Request.Body)
	checkCapture(t, "50", st, hdr, body)
	bad := body.(map[string]any)["server"].(map[string]any)["id"].(string)
	e.waitStatus(bad, "ERROR")
	st, hdr, body = e.nova("GET", "/servers/"+bad, nil)
	checkCapture(t, "51", st, hdr, body)
	st, hdr, body = e.nova("DELETE", "/servers/"+bad, nil)
	checkCapture(t, "52", st, hdr, body)
	e.waitStatus(bad, "GONE")

	// 55-57: a build that fails on the compute host.
	if _, err := e.sim.Faults().FailBoot(BootFault{Mode: "compute", Name: "^cap-vm-nobind$", Count: 1}); err != nil {
		t.Fatal(err)
	}
	x55 := capture(t, "55")
	x55.Request.Body.(map[string]any)["server"].(map[string]any)["networks"] = []any{map[string]any{"uuid": net1}}
	st, hdr, body = e.nova("POST", "/servers", x55.Request.Body)
	checkCapture(t, "55", st, hdr, body)
	nobind := body.(map[string]any)["server"].(map[string]any)["id"].(string)
	e.waitStatus(nobind, "ERROR")
	st, hdr, body = e.nova("GET", "/servers/"+nobind, nil)
	checkCapture(t, "56", st, hdr, body)
	st, hdr, body = e.nova("DELETE", "/servers/"+nobind, nil)
	checkCapture(t, "57", st, hdr, body)
	e.waitStatus(nobind, "GONE")

	st, hdr, body = e.nova("GET", "/servers/detail", nil)
	checkCapture(t, "62", st, hdr, body)
	if inv := e.sim.Inventory(); len(inv.Servers)+len(inv.Ports)+len(inv.FloatingIPs) != 0 {
		t.Errorf("left behind: %+v", inv)
	}
}

func replacePassword(body any, pw string) any {
	b := body.(map[string]any)
	b["auth"].(map[string]any)["identity"].(map[string]any)["password"].(map[string]any)["user"].(map[string]any)["password"] = pw
	return b
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// replaceID swaps an id in a decoded document, to compare messages that
// name resources.
func replaceID(v any, from, to string) any {
	raw, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal([]byte(strings.ReplaceAll(string(raw), from, to)), &out)
	return out
}
